#include "dns/server.h"

#include <sys/socket.h>

#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "dns/wire.h"

namespace weft::dns {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {
// Rounds of recvmmsg per wake-up before other sockets get their turn.
constexpr int udp_rounds_per_wakeup = 8;
}  // namespace

struct Server::UdpListener {
  UdpListener(udp::socket s, std::string c) : socket(std::move(s)), context(std::move(c)) {}
  udp::socket socket;
  std::string context;
};

struct Server::TcpListener {
  TcpListener(tcp::acceptor a, std::string c) : acceptor(std::move(a)), context(std::move(c)) {}
  tcp::acceptor acceptor;
  std::string context;
};

struct Server::TcpConnection {
  TcpConnection(tcp::socket s, std::string c, asio::io_context& io)
      : socket(std::move(s)), context(std::move(c)), timer(io) {}
  tcp::socket socket;
  std::string context;
  asio::steady_timer timer;
  std::array<uint8_t, 2> length{};
  std::vector<uint8_t> query;
  std::vector<uint8_t> frame;
  bool closed = false;
};

Server::Server(asio::io_context& io, const NameView& view, ResponderConfig responder, ForwarderConfig forwarder,
               ServerLimits limits)
    : io_(io), responder_(view, responder), forwarder_(io, std::move(forwarder)), limits_(limits) {
  if (limits_.udp_batch == 0) limits_.udp_batch = 1;
  // One byte over the limit so an oversized query is seen as such.
  receive_buffers_.assign(limits_.udp_batch, std::vector<uint8_t>(limits_.max_query_size + 1));
  in_.resize(limits_.udp_batch);
  out_.resize(limits_.udp_batch);
  in_iov_.resize(limits_.udp_batch);
  out_iov_.resize(limits_.udp_batch);
  peers_.resize(limits_.udp_batch);
  replies_.resize(limits_.udp_batch);
}

Server::~Server() {
  *alive_ = false;
  stop();
}

void Server::add_udp(udp::socket socket, std::string context) {
  socket.non_blocking(true);
  auto listener = std::make_shared<UdpListener>(std::move(socket), std::move(context));
  udp_.push_back(listener);
  wait_udp(listener);
}

void Server::add_tcp(tcp::acceptor acceptor, std::string context) {
  auto listener = std::make_shared<TcpListener>(std::move(acceptor), std::move(context));
  tcp_.push_back(listener);
  accept_tcp(listener);
}

void Server::remove_context(const std::string& context) {
  boost::system::error_code ec;
  udp_.remove_if([&](const auto& l) {
    if (l->context != context) return false;
    l->socket.close(ec);
    return true;
  });
  tcp_.remove_if([&](const auto& l) {
    if (l->context != context) return false;
    l->acceptor.close(ec);
    return true;
  });
  for (auto& weak : connections_)
    if (auto c = weak.lock(); c && c->context == context) close_tcp(c);
}

void Server::stop() {
  boost::system::error_code ec;
  for (auto& l : udp_) l->socket.close(ec);
  for (auto& l : tcp_) l->acceptor.close(ec);
  for (auto& weak : connections_)
    if (auto c = weak.lock()) close_tcp(c);
  udp_.clear();
  tcp_.clear();
  connections_.clear();
  forwarder_.stop();
}

void Server::wait_udp(const std::shared_ptr<UdpListener>& listener) {
  listener->socket.async_wait(udp::socket::wait_read,
                              [this, listener, alive = alive_](boost::system::error_code ec) {
                                if (ec || !*alive || !listener->socket.is_open()) return;
                                drain_udp(listener);
                                wait_udp(listener);
                              });
}

void Server::drain_udp(const std::shared_ptr<UdpListener>& listener) {
  const std::size_t batch = limits_.udp_batch;
  auto& in = in_;
  auto& out = out_;
  const int fd = listener->socket.native_handle();
  for (int round = 0; round < udp_rounds_per_wakeup; ++round) {
    for (std::size_t i = 0; i < batch; ++i) {
      in_iov_[i] = iovec{receive_buffers_[i].data(), receive_buffers_[i].size()};
      in[i] = mmsghdr{};
      in[i].msg_hdr.msg_name = &peers_[i];
      in[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      in[i].msg_hdr.msg_iov = &in_iov_[i];
      in[i].msg_hdr.msg_iovlen = 1;
    }
    const int received = ::recvmmsg(fd, in.data(), static_cast<unsigned>(batch), MSG_DONTWAIT, nullptr);
    if (received <= 0) break;
    const auto arrived = std::chrono::steady_clock::now();
    std::size_t answers = 0;
    for (int i = 0; i < received; ++i) {
      const auto& msg = in[static_cast<std::size_t>(i)];
      const std::size_t size = msg.msg_len;
      if ((msg.msg_hdr.msg_flags & MSG_TRUNC) || size > limits_.max_query_size) {
        ++stats_.dropped;
        continue;
      }
      ++stats_.udp_queries;
      std::span<const uint8_t> query(receive_buffers_[static_cast<std::size_t>(i)].data(), size);
      metrics_.query(Transport::udp, query);
      // Answers fill replies_ from the front; replies_[answers] is free.
      Reply& reply = replies_[answers];
      responder_.handle(query, Transport::udp, listener->context, reply);
      if (reply.kind == Reply::Kind::answer) {
        metrics_.answered(reply.wire, std::chrono::steady_clock::now() - arrived);
        out_iov_[answers] = iovec{reply.wire.data(), reply.wire.size()};
        out[answers] = mmsghdr{};
        out[answers].msg_hdr.msg_name = msg.msg_hdr.msg_name;
        out[answers].msg_hdr.msg_namelen = msg.msg_hdr.msg_namelen;
        out[answers].msg_hdr.msg_iov = &out_iov_[answers];
        out[answers].msg_hdr.msg_iovlen = 1;
        ++answers;
      } else if (reply.kind == Reply::Kind::forward) {
        ++stats_.forwarded;
        sockaddr_storage peer = peers_[static_cast<std::size_t>(i)];
        socklen_t peer_len = msg.msg_hdr.msg_namelen;
        const std::size_t limit = reply.udp_limit;
        std::weak_ptr<UdpListener> weak = listener;
        forwarder_.forward(query, [weak, peer, peer_len, limit, arrived, metrics = &metrics_,
                                   alive = alive_](std::vector<uint8_t> answer) {
          auto l = weak.lock();
          if (!l || !l->socket.is_open()) return;
          if (answer.size() > limit) answer = truncated_copy(answer);
          if (answer.empty()) return;
          if (*alive) metrics->answered(answer, std::chrono::steady_clock::now() - arrived);
          ::sendto(l->socket.native_handle(), answer.data(), answer.size(), MSG_DONTWAIT,
                   reinterpret_cast<const sockaddr*>(&peer), peer_len);
        });
      } else {
        ++stats_.dropped;
      }
    }
    std::size_t sent = 0;
    while (sent < answers) {
      const int n = ::sendmmsg(fd, out.data() + sent, static_cast<unsigned>(answers - sent), MSG_DONTWAIT);
      if (n <= 0) break;  // a full socket buffer drops the rest, as the network could
      sent += static_cast<std::size_t>(n);
    }
    if (static_cast<std::size_t>(received) < batch) break;
  }
}

void Server::accept_tcp(const std::shared_ptr<TcpListener>& listener) {
  listener->acceptor.async_accept([this, listener, alive = alive_](boost::system::error_code ec, tcp::socket socket) {
    if (!*alive || !listener->acceptor.is_open()) return;
    if (!ec) {
      if (tcp_connections_ >= limits_.max_tcp_connections) {
        ++stats_.tcp_refused;
        boost::system::error_code ignored;
        socket.close(ignored);
      } else {
        auto connection = std::make_shared<TcpConnection>(std::move(socket), listener->context, io_);
        ++tcp_connections_;
        connections_.remove_if([](const auto& w) { return w.expired(); });
        connections_.push_back(connection);
        read_tcp(connection);
      }
    } else if (ec == asio::error::operation_aborted) {
      return;
    }
    accept_tcp(listener);
  });
}

void Server::read_tcp(const std::shared_ptr<TcpConnection>& c) {
  c->timer.expires_after(limits_.tcp_idle);
  c->timer.async_wait([this, c, alive = alive_](boost::system::error_code ec) {
    if (!ec && *alive) close_tcp(c);
  });
  asio::async_read(c->socket, asio::buffer(c->length), [this, c, alive = alive_](boost::system::error_code ec, std::size_t) {
    if (!*alive || c->closed) return;
    const std::size_t size = c->length[0] << 8 | c->length[1];
    if (ec || size < header_size || size > limits_.max_query_size) {
      if (!ec) ++stats_.dropped;
      close_tcp(c);
      return;
    }
    c->query.resize(size);
    asio::async_read(c->socket, asio::buffer(c->query), [this, c, alive](boost::system::error_code ec, std::size_t) {
      if (!*alive || c->closed) return;
      if (ec) {
        close_tcp(c);
        return;
      }
      ++stats_.tcp_queries;
      const auto arrived = std::chrono::steady_clock::now();
      metrics_.query(Transport::tcp, c->query);
      Reply reply = responder_.handle(c->query, Transport::tcp, c->context);
      if (reply.kind == Reply::Kind::answer) {
        metrics_.answered(reply.wire, std::chrono::steady_clock::now() - arrived);
        write_tcp(c, std::move(reply.wire));
      } else if (reply.kind == Reply::Kind::forward) {
        ++stats_.forwarded;
        forwarder_.forward(c->query, [this, c, alive, arrived](std::vector<uint8_t> answer) {
          if (!*alive || c->closed) return;
          metrics_.answered(answer, std::chrono::steady_clock::now() - arrived);
          write_tcp(c, std::move(answer));
        });
      } else {
        ++stats_.dropped;
        close_tcp(c);
      }
    });
  });
}

void Server::write_tcp(const std::shared_ptr<TcpConnection>& c, std::vector<uint8_t> answer) {
  if (answer.size() > 65535) {
    close_tcp(c);
    return;
  }
  c->frame.resize(answer.size() + 2);
  c->frame[0] = static_cast<uint8_t>(answer.size() >> 8);
  c->frame[1] = static_cast<uint8_t>(answer.size());
  std::copy(answer.begin(), answer.end(), c->frame.begin() + 2);
  asio::async_write(c->socket, asio::buffer(c->frame), [this, c, alive = alive_](boost::system::error_code ec, std::size_t) {
    if (!*alive || c->closed) return;
    if (ec) {
      close_tcp(c);
      return;
    }
    read_tcp(c);
  });
}

void Server::close_tcp(const std::shared_ptr<TcpConnection>& c) {
  if (c->closed) return;
  c->closed = true;
  --tcp_connections_;
  boost::system::error_code ec;
  c->timer.cancel();
  c->socket.close(ec);
}

}  // namespace weft::dns
