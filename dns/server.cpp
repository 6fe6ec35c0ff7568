#include "dns/server.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>

#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "dataplane/unique_fd.h"
#include "dns/wire.h"

namespace weft::dns {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {
// Rounds of recvmmsg per wake-up before other sockets get their turn.
constexpr int udp_rounds_per_wakeup = 8;
}  // namespace

struct Server::ReceiveThread {
  std::thread thread;
  std::atomic<bool> stopping{false};  // the loop's word: end now, the socket closes
  std::atomic<bool> ending{false};    // the thread's: it ends, hand_back follows
};

struct Server::UdpListener {
  UdpListener(udp::socket s, std::string c) : socket(std::move(s)), context(std::move(c)) {}
  ~UdpListener() { assert(!thread); }
  // Open while the loop serves the socket; released (taken out of the
  // loop's epoll) while a receive thread does, which then holds `taken`.
  udp::socket socket;
  std::string context;
  dataplane::UniqueFd taken;
  std::unique_ptr<ReceiveThread> thread;
  int fd() { return taken ? taken.get() : socket.native_handle(); }
  bool open() const { return taken || socket.is_open(); }
};

// One batch's buffers and headers, sized once: a batch allocates nothing.
struct Server::UdpBatch {
  UdpBatch(std::size_t size, std::size_t max_query)
      : buffers(size, std::vector<uint8_t>(max_query + 1)),  // one byte over: an oversized query shows as such
        in(size), out(size), in_iov(size), out_iov(size), peers(size), replies(size) {}
  std::size_t size() const { return in.size(); }
  void prepare() {
    for (std::size_t i = 0; i < size(); ++i) {
      in_iov[i] = iovec{buffers[i].data(), buffers[i].size()};
      in[i] = mmsghdr{};
      in[i].msg_hdr.msg_name = &peers[i];
      in[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      in[i].msg_hdr.msg_iov = &in_iov[i];
      in[i].msg_hdr.msg_iovlen = 1;
    }
  }
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<mmsghdr> in, out;
  std::vector<iovec> in_iov, out_iov;
  std::vector<sockaddr_storage> peers;
  std::vector<Reply> replies;
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
  if (limits_.thread_batch == 0) limits_.thread_batch = 1;
  if (limits_.thread_check.count() <= 0) limits_.thread_check = std::chrono::milliseconds(1);
  loop_batch_ = std::make_unique<UdpBatch>(limits_.udp_batch, limits_.max_query_size);
}

ServerStats Server::stats() const {
  ServerStats s;
  s.udp_queries = stats_.udp_queries.load(std::memory_order_relaxed);
  s.tcp_queries = stats_.tcp_queries.load(std::memory_order_relaxed);
  s.dropped = stats_.dropped.load(std::memory_order_relaxed);
  s.forwarded = stats_.forwarded.load(std::memory_order_relaxed);
  s.tcp_refused = stats_.tcp_refused.load(std::memory_order_relaxed);
  s.promotions = stats_.promotions.load(std::memory_order_relaxed);
  s.demotions = stats_.demotions.load(std::memory_order_relaxed);
  s.udp_threads = threads_now_.load(std::memory_order_relaxed);
  return s;
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
    stop_thread(*l);
    l->taken.reset();
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
  for (auto& l : udp_) {
    stop_thread(*l);
    l->taken.reset();
    l->socket.close(ec);
  }
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
                                if (drain_udp(listener)) wait_udp(listener);
                              });
}

template <typename Forward>
std::size_t Server::answer_udp(UdpBatch& batch, int fd, int received, const std::string& context,
                               Forward&& forward) {
  const auto arrived = std::chrono::steady_clock::now();
  std::size_t answers = 0;
  uint64_t queries = 0, dropped = 0;
  for (int i = 0; i < received; ++i) {
    const auto at = static_cast<std::size_t>(i);
    const auto& msg = batch.in[at];
    const std::size_t size = msg.msg_len;
    if ((msg.msg_hdr.msg_flags & MSG_TRUNC) || size > limits_.max_query_size) {
      ++dropped;
      continue;
    }
    ++queries;
    std::span<const uint8_t> query(batch.buffers[at].data(), size);
    metrics_.query(Transport::udp, query);
    // Answers fill replies from the front; replies[answers] is free.
    Reply& reply = batch.replies[answers];
    responder_.handle(query, Transport::udp, context, reply);
    if (reply.kind == Reply::Kind::answer) {
      batch.out_iov[answers] = iovec{reply.wire.data(), reply.wire.size()};
      auto& out = batch.out[answers];
      out = mmsghdr{};
      out.msg_hdr.msg_name = msg.msg_hdr.msg_name;
      out.msg_hdr.msg_namelen = msg.msg_hdr.msg_namelen;
      out.msg_hdr.msg_iov = &batch.out_iov[answers];
      out.msg_hdr.msg_iovlen = 1;
      ++answers;
    } else if (reply.kind == Reply::Kind::forward) {
      if (!forward(query, batch.peers[at], msg.msg_hdr.msg_namelen, reply.udp_limit, arrived)) ++dropped;
    } else {
      ++dropped;
    }
  }
  stats_.udp_queries.fetch_add(queries, std::memory_order_relaxed);
  if (dropped) stats_.dropped.fetch_add(dropped, std::memory_order_relaxed);
  // One clock read for the batch's answers: they leave together.
  const auto elapsed = std::chrono::steady_clock::now() - arrived;
  for (std::size_t i = 0; i < answers; ++i) metrics_.answered(batch.replies[i].wire, elapsed);
  std::size_t sent = 0;
  while (sent < answers) {
    const int n = ::sendmmsg(fd, batch.out.data() + sent, static_cast<unsigned>(answers - sent), MSG_DONTWAIT);
    if (n <= 0) break;  // a full socket buffer drops the rest, as the network could
    sent += static_cast<std::size_t>(n);
  }
  return answers;
}

void Server::forward_udp(const std::weak_ptr<UdpListener>& weak, std::span<const uint8_t> query,
                         const sockaddr_storage& peer, socklen_t peer_len, std::size_t limit,
                         std::chrono::steady_clock::time_point arrived) {
  stats_.forwarded.fetch_add(1, std::memory_order_relaxed);
  forwarder_.forward(query, [weak, peer, peer_len, limit, arrived, metrics = &metrics_,
                             alive = alive_](std::vector<uint8_t> answer) {
    auto l = weak.lock();
    if (!l || !l->open()) return;
    if (answer.size() > limit) answer = truncated_copy(answer);
    if (answer.empty()) return;
    if (*alive) metrics->answered(answer, std::chrono::steady_clock::now() - arrived);
    ::sendto(l->fd(), answer.data(), answer.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&peer), peer_len);
  });
}

bool Server::drain_udp(const std::shared_ptr<UdpListener>& listener) {
  UdpBatch& batch = *loop_batch_;
  const int fd = listener->socket.native_handle();
  const std::weak_ptr<UdpListener> weak = listener;
  auto forward = [&](std::span<const uint8_t> query, const sockaddr_storage& peer, socklen_t peer_len,
                     std::size_t limit, std::chrono::steady_clock::time_point arrived) {
    forward_udp(weak, query, peer, peer_len, limit, arrived);
    return true;
  };
  std::size_t answered = 0;
  for (int round = 0; round < udp_rounds_per_wakeup; ++round) {
    batch.prepare();
    const int received = ::recvmmsg(fd, batch.in.data(), static_cast<unsigned>(batch.size()), MSG_DONTWAIT, nullptr);
    if (received <= 0) break;
    answered += answer_udp(batch, fd, received, listener->context, forward);
    if (static_cast<std::size_t>(received) < batch.size()) break;
  }
  // Busy with names it answers itself: forwarded queries would only take
  // one more hop from a thread.
  if (answered >= limits_.promote_after && threads_running_ < limits_.udp_threads) {
    promote(listener);
    return false;
  }
  return true;
}

// On the loop, inside the socket's wait handler: no operation of the loop's
// is pending on it, so it can leave the loop's epoll.
void Server::promote(const std::shared_ptr<UdpListener>& listener) {
  boost::system::error_code ec;
  const int fd = listener->socket.release(ec);
  if (ec || fd < 0) return;
  listener->taken.reset(fd);
  // Blocking, so the thread sleeps in recvmmsg; the timeout wakes a quiet
  // one to see whether it should hand the socket back.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  const auto check = std::chrono::duration_cast<std::chrono::microseconds>(limits_.thread_check);
  timeval timeout{static_cast<time_t>(check.count() / 1000000), static_cast<suseconds_t>(check.count() % 1000000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  auto thread = std::make_unique<ReceiveThread>();
  ReceiveThread& t = *thread;
  try {
    t.thread = std::thread([this, &t, fd, context = listener->context, weak = std::weak_ptr(listener)]() mutable {
      receive_loop(t, fd, std::move(context), std::move(weak));
    });
  } catch (const std::system_error& e) {
    spdlog::warn("dns: no receive thread ({}); the loop keeps serving", e.what());
    listener->socket.assign(udp::v4(), listener->taken.release(), ec);
    listener->socket.non_blocking(true, ec);
    wait_udp(listener);
    return;
  }
  listener->thread = std::move(thread);
  ++threads_running_;
  threads_now_.store(threads_running_, std::memory_order_relaxed);
  stats_.promotions.fetch_add(1, std::memory_order_relaxed);
}

// On the receive thread. It reads only what is its own (the fd, the
// context's copy, its batch) and what is safe from any thread (the
// responder, the metrics, the counters); the loop joins it before the
// socket closes or the server goes.
void Server::receive_loop(ReceiveThread& thread, int fd, std::string context, std::weak_ptr<UdpListener> listener) {
  UdpBatch batch(limits_.thread_batch, limits_.max_query_size);
  auto forward = [&](std::span<const uint8_t> query, const sockaddr_storage& peer, socklen_t peer_len,
                     std::size_t limit, std::chrono::steady_clock::time_point arrived) {
    // The forwarder is the loop's: hand the query over, within a bound.
    if (handoffs_.fetch_add(1, std::memory_order_relaxed) >= limits_.max_handoffs) {
      handoffs_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    asio::post(io_, [this, alive = alive_, listener, q = std::vector<uint8_t>(query.begin(), query.end()), peer,
                     peer_len, limit, arrived] {
      if (!*alive) return;
      handoffs_.fetch_sub(1, std::memory_order_relaxed);
      forward_udp(listener, q, peer, peer_len, limit, arrived);
    });
    return true;
  };
  auto period_start = std::chrono::steady_clock::now();
  std::size_t period_answers = 0;
  while (!thread.stopping.load(std::memory_order_acquire)) {
    batch.prepare();
    // MSG_WAITFORONE: sleeps for the first datagram, then takes what is queued.
    const int received = ::recvmmsg(fd, batch.in.data(), static_cast<unsigned>(batch.size()), MSG_WAITFORONE, nullptr);
    if (thread.stopping.load(std::memory_order_acquire)) return;
    if (received > 0) period_answers += answer_udp(batch, fd, received, context, forward); else if (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      spdlog::warn("dns: receive thread of {}: {}; the loop takes the socket back", context, std::strerror(errno));
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - period_start >= limits_.thread_check) {
      if (period_answers < limits_.thread_min_answers) break;
      period_start = now;
      period_answers = 0;
    }
  }
  if (thread.stopping.load(std::memory_order_acquire)) return;
  thread.ending.store(true, std::memory_order_release);
  asio::post(io_, [this, alive = alive_, listener] {
    if (*alive) hand_back(listener);
  });
}

// On the loop: the thread has ended (or ends now); the socket goes back
// into the loop's epoll. Nothing to do when the socket was closed meanwhile.
void Server::hand_back(const std::weak_ptr<UdpListener>& weak) {
  auto listener = weak.lock();
  if (!listener || !listener->thread) return;
  stop_thread(*listener);
  if (!listener->taken) return;
  boost::system::error_code ec;
  ::fcntl(listener->taken.get(), F_SETFL, ::fcntl(listener->taken.get(), F_GETFL) | O_NONBLOCK);
  listener->socket.assign(udp::v4(), listener->taken.get(), ec);
  if (ec) {
    spdlog::warn("dns: cannot serve {} from the loop again: {}", listener->context, ec.message());
    return;  // `taken` keeps the fd until the context goes
  }
  listener->taken.release();
  listener->socket.non_blocking(true, ec);
  stats_.demotions.fetch_add(1, std::memory_order_relaxed);
  wait_udp(listener);
}

// On the loop (or the destructor, after it). Wakes a thread asleep in
// recvmmsg (shutdown does, even on an unconnected UDP socket, though it
// reports ENOTCONN) and waits for it; the fd stays open until the caller
// closes it. A thread that is ending on its own is just joined: its
// hand_back then finds no thread and does nothing.
void Server::stop_thread(UdpListener& listener) {
  if (!listener.thread) return;
  auto& t = *listener.thread;
  if (t.thread.joinable()) {
    t.stopping.store(true, std::memory_order_release);
    // Not when it is ending on its own: the socket goes back to the loop,
    // and a shut-down socket would read nothing ever again.
    if (listener.taken && !t.ending.load(std::memory_order_acquire)) ::shutdown(listener.taken.get(), SHUT_RD);
    t.thread.join();
  }
  listener.thread.reset();
  --threads_running_;
  threads_now_.store(threads_running_, std::memory_order_relaxed);
}

void Server::accept_tcp(const std::shared_ptr<TcpListener>& listener) {
  listener->acceptor.async_accept([this, listener, alive = alive_](boost::system::error_code ec, tcp::socket socket) {
    if (!*alive || !listener->acceptor.is_open()) return;
    if (!ec) {
      if (tcp_connections_ >= limits_.max_tcp_connections) {
        stats_.tcp_refused.fetch_add(1, std::memory_order_relaxed);
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
      if (!ec) stats_.dropped.fetch_add(1, std::memory_order_relaxed);
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
      stats_.tcp_queries.fetch_add(1, std::memory_order_relaxed);
      const auto arrived = std::chrono::steady_clock::now();
      metrics_.query(Transport::tcp, c->query);
      Reply reply = responder_.handle(c->query, Transport::tcp, c->context);
      if (reply.kind == Reply::Kind::answer) {
        metrics_.answered(reply.wire, std::chrono::steady_clock::now() - arrived);
        write_tcp(c, std::move(reply.wire));
      } else if (reply.kind == Reply::Kind::forward) {
        stats_.forwarded.fetch_add(1, std::memory_order_relaxed);
        forwarder_.forward(c->query, [this, c, alive, arrived](std::vector<uint8_t> answer) {
          if (!*alive || c->closed) return;
          metrics_.answered(answer, std::chrono::steady_clock::now() - arrived);
          write_tcp(c, std::move(answer));
        });
      } else {
        stats_.dropped.fetch_add(1, std::memory_order_relaxed);
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
