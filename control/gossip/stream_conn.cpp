#include "control/gossip/stream_conn.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

namespace weft::control::gossip {

StreamConnection::StreamConnection(Tcp::socket socket, std::shared_ptr<const Keyring> keyring, bool require_encryption,
                                   StreamLimits limits)
    : socket_(std::move(socket)),
      deadline_(socket_.get_executor()),
      keyring_(std::move(keyring)),
      require_encryption_(require_encryption),
      limits_(std::move(limits)) {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  if (!ec) {
    remote_address_ = ep.address().to_string();
    remote_ = fmt::format("{}:{}", remote_address_, ep.port());
  }
}

StreamConnection::~StreamConnection() { close(); }

void StreamConnection::connect(asio::io_context& io, const Tcp::endpoint& to, std::chrono::milliseconds timeout,
                               std::shared_ptr<const Keyring> keyring, bool require_encryption, StreamLimits limits,
                               ConnectHandler done) {
  auto conn =
      std::make_shared<StreamConnection>(Tcp::socket(io), std::move(keyring), require_encryption, std::move(limits));
  conn->remote_address_ = to.address().to_string();
  conn->remote_ = fmt::format("{}:{}", conn->remote_address_, to.port());
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
  // Whatever was buffered is of no use any more: give it back now rather
  // than when the last handler lets go of this object.
  reader_.reset();
}

void StreamConnection::read_message(ReadHandler done) {
  reader_ = std::make_unique<StreamReader>(keyring_.get(), require_encryption_, limits_.max_message_bytes,
                                           limits_.budget.get());
  read_more(std::move(done));
}

void StreamConnection::read_more(ReadHandler done) {
  socket_.async_read_some(
      asio::buffer(chunk_), [self = shared_from_this(), done = std::move(done)](const boost::system::error_code& ec,
                                                                                 std::size_t n) mutable {
        if (ec) {
          const bool nothing_received = !self->reader_ || self->reader_->buffered() == 0;
          self->reader_.reset();
          if (ec == asio::error::eof && nothing_received) {
            done(std::nullopt, "eof");
          } else if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) {
            done(std::nullopt, "timed out");
          } else {
            done(std::nullopt, ec.message());
          }
          return;
        }
        if (!self->reader_) {  // closed meanwhile
          done(std::nullopt, "timed out");
          return;
        }
        std::optional<StreamMessage> message;
        try {
          message = self->reader_->feed(ByteView(self->chunk_.data(), n));
        } catch (const DecodeError& e) {
          self->reader_.reset();
          done(std::nullopt, e.what());
          return;
        }
        if (message) {
          self->reader_.reset();
          done(std::move(message), {});
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
