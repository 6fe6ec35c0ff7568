#include "control/gossip/stream_conn.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

namespace weft::control::gossip {

StreamConnection::StreamConnection(Tcp::socket socket, std::shared_ptr<const Keyring> keyring, bool require_encryption)
    : socket_(std::move(socket)),
      deadline_(socket_.get_executor()),
      keyring_(std::move(keyring)),
      require_encryption_(require_encryption) {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  if (!ec) remote_ = fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

StreamConnection::~StreamConnection() { close(); }

void StreamConnection::connect(asio::io_context& io, const Tcp::endpoint& to, std::chrono::milliseconds timeout,
                               std::shared_ptr<const Keyring> keyring, bool require_encryption, ConnectHandler done) {
  auto conn = std::make_shared<StreamConnection>(Tcp::socket(io), std::move(keyring), require_encryption);
  conn->remote_ = fmt::format("{}:{}", to.address().to_string(), to.port());
  conn->set_deadline(std::chrono::steady_clock::now() + timeout);
  conn->socket_.async_connect(to, [conn, done = std::move(done)](const boost::system::error_code& ec) {
    if (ec) {
      const std::string what = ec == asio::error::operation_aborted ? "timed out" : ec.message();
      conn->close();
      done(nullptr, fmt::format("connect to {} failed: {}", conn->remote_, what));
      return;
    }
    done(conn, {});
  });
}

void StreamConnection::set_deadline(std::chrono::steady_clock::time_point when) {
  deadline_.expires_at(when);
  std::weak_ptr<StreamConnection> weak = weak_from_this();
  deadline_.async_wait([weak](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->close();
  });
}

void StreamConnection::close() {
  boost::system::error_code ignored;
  if (socket_.is_open()) {
    socket_.shutdown(Tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }
  deadline_.cancel();
}

void StreamConnection::read_message(ReadHandler done) {
  received_.clear();
  read_more(std::move(done));
}

void StreamConnection::read_more(ReadHandler done) {
  socket_.async_read_some(
      asio::buffer(chunk_), [self = shared_from_this(), done = std::move(done)](const boost::system::error_code& ec,
                                                                                 std::size_t n) mutable {
        if (ec) {
          if (ec == asio::error::eof && self->received_.empty()) {
            done(std::nullopt, "eof");
          } else if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) {
            done(std::nullopt, "timed out");
          } else {
            done(std::nullopt, ec.message());
          }
          return;
        }
        self->received_.insert(self->received_.end(), self->chunk_.begin(),
                               self->chunk_.begin() + static_cast<std::ptrdiff_t>(n));
        StreamParse parsed;
        try {
          parsed = parse_stream(self->received_, self->keyring_.get(), self->require_encryption_);
        } catch (const DecodeError& e) {
          done(std::nullopt, e.what());
          return;
        }
        if (parsed.complete) {
          done(std::move(parsed.message), {});
          return;
        }
        self->read_more(std::move(done));
      });
}

void StreamConnection::write(Bytes data, WriteHandler done) {
  outgoing_ = std::move(data);
  asio::async_write(socket_, asio::buffer(outgoing_),
                    [self = shared_from_this(), done = std::move(done)](const boost::system::error_code& ec,
                                                                        std::size_t) {
                      done(ec ? ec.message() : std::string{});
                    });
}

}  // namespace weft::control::gossip
