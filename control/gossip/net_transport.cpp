#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "control/gossip/transport.h"

namespace weft::control::gossip {

namespace {

namespace asio = boost::asio;
using Tcp = asio::ip::tcp;
using Udp = asio::ip::udp;

class TcpStream final : public ByteStream {
 public:
  TcpStream(Tcp::socket socket, HostPort remote) : socket_(std::move(socket)), remote_(std::move(remote)) {}
  ~TcpStream() override { close(); }

  void async_read_some(asio::mutable_buffer into, Handler done) override {
    socket_.async_read_some(into, std::move(done));
  }
  void async_write(asio::const_buffer data, Handler done) override {
    asio::async_write(socket_, data, std::move(done));
  }
  void close() override {
    boost::system::error_code ignored;
    if (!socket_.is_open()) return;
    socket_.shutdown(Tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }
  const HostPort& remote() const override { return remote_; }

 private:
  Tcp::socket socket_;
  HostPort remote_;
};

class NetTransport final : public Transport {
 public:
  NetTransport(asio::io_context& io, std::string log_name)
      : io_(io), log_name_(std::move(log_name)), udp_(io), acceptor_(io) {}

  std::uint16_t listen(const HostPort& bind, PacketHandler on_packet, StreamHandler on_stream) override {
    const std::string ip = bind.ip.to_string();
    boost::system::error_code ec;
    Tcp::endpoint tcp_ep(bind.ip, bind.port);
    acceptor_.open(tcp_ep.protocol());
    acceptor_.set_option(Tcp::acceptor::reuse_address(true));
    acceptor_.bind(tcp_ep, ec);
    if (ec) throw std::runtime_error(fmt::format("gossip: cannot bind TCP {}:{}: {}", ip, bind.port, ec.message()));
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      throw std::runtime_error(fmt::format("gossip: cannot listen on TCP {}:{}: {}", ip, bind.port, ec.message()));
    const std::uint16_t port = acceptor_.local_endpoint().port();

    Udp::endpoint udp_ep(bind.ip, port);
    udp_.open(udp_ep.protocol());
    udp_.bind(udp_ep, ec);
    if (ec) throw std::runtime_error(fmt::format("gossip: cannot bind UDP {}:{}: {}", ip, port, ec.message()));
    // Bursts of gossip should not be dropped by a small default socket buffer.
    udp_.set_option(asio::socket_base::receive_buffer_size(2 * 1024 * 1024), ec);

    on_packet_ = std::move(on_packet);
    on_stream_ = std::move(on_stream);
    listening_ = std::make_shared<bool>(true);
    receive_packet();
    accept_stream();
    return port;
  }

  void send_packet(const HostPort& to, ByteView packet) override {
    boost::system::error_code ec;
    udp_.send_to(asio::buffer(packet.data(), packet.size()), Udp::endpoint(to.ip, to.port), 0, ec);
    if (ec) spdlog::debug("[gossip {}] send to {} failed: {}", log_name_, to.ip.to_string(), ec.message());
  }

  void dial(const HostPort& to, std::chrono::steady_clock::time_point deadline, DialHandler done) override {
    struct Dial {
      explicit Dial(asio::io_context& io) : socket(io), timer(io) {}
      Tcp::socket socket;
      asio::steady_timer timer;
      bool expired = false;
    };
    auto d = std::make_shared<Dial>(io_);
    d->timer.expires_at(deadline);
    d->timer.async_wait([d](const boost::system::error_code& ec) {
      if (ec) return;
      d->expired = true;
      boost::system::error_code ignored;
      d->socket.close(ignored);
    });
    d->socket.async_connect(Tcp::endpoint(to.ip, to.port),
                            [d, to, done = std::move(done)](const boost::system::error_code& ec) {
                              d->timer.cancel();
                              if (d->expired || ec == asio::error::operation_aborted) {
                                done(asio::error::timed_out, nullptr);
                              } else if (ec) {
                                done(ec, nullptr);
                              } else {
                                done({}, std::make_unique<TcpStream>(std::move(d->socket), to));
                              }
                            });
  }

  void shutdown() override {
    if (listening_) *listening_ = false;
    boost::system::error_code ignored;
    udp_.close(ignored);
    acceptor_.close(ignored);
  }

  ~NetTransport() override { shutdown(); }

 private:
  // The handlers hold `listening` rather than this object, which may be
  // gone by the time an aborted operation completes.
  void receive_packet() {
    udp_.async_receive_from(asio::buffer(recv_buf_), recv_from_,
                            [this, listening = listening_](const boost::system::error_code& ec, std::size_t n) {
                              if (!*listening || ec == asio::error::operation_aborted) return;
                              if (!ec)
                                on_packet_(ByteView(recv_buf_.data(), n), {recv_from_.address(), recv_from_.port()});
                              if (*listening) receive_packet();
                            });
  }

  void accept_stream() {
    acceptor_.async_accept([this, listening = listening_](const boost::system::error_code& ec, Tcp::socket socket) {
      if (!*listening || ec == asio::error::operation_aborted) return;
      if (!ec) {
        boost::system::error_code peer_ec;
        const auto peer = socket.remote_endpoint(peer_ec);
        on_stream_(std::make_unique<TcpStream>(std::move(socket),
                                               peer_ec ? HostPort{} : HostPort{peer.address(), peer.port()}));
      }
      if (*listening) accept_stream();
    });
  }

  asio::io_context& io_;
  std::string log_name_;
  Udp::socket udp_;
  Tcp::acceptor acceptor_;
  std::array<std::uint8_t, 65536> recv_buf_{};
  Udp::endpoint recv_from_;
  PacketHandler on_packet_;
  StreamHandler on_stream_;
  std::shared_ptr<bool> listening_;
};

}  // namespace

std::unique_ptr<Transport> make_net_transport(asio::io_context& io, std::string log_name) {
  return std::make_unique<NetTransport>(io, std::move(log_name));
}

}  // namespace weft::control::gossip
