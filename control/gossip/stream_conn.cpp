#include "control/gossip/stream_conn.h"

#include <fmt/format.h>

#include <boost/asio/error.hpp>

namespace weft::control::gossip {

namespace {

class StreamCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "gossip stream"; }
  std::string message(int ev) const override {
    switch (static_cast<StreamErrc>(ev)) {
      case StreamErrc::closed_before_message:
        return "closed before sending a message";
      case StreamErrc::malformed:
        return "malformed stream message";
    }
    return "unknown gossip stream error";
  }
};

}  // namespace

const boost::system::error_category& stream_category() {
  static const StreamCategory category;
  return category;
}

std::string describe(const boost::system::error_code& ec) {
  return ec == asio::error::timed_out ? "timed out" : ec.message();
}

std::string StreamError::message() const { return detail.empty() ? describe(code) : detail; }

StreamConnection::StreamConnection(asio::any_io_executor executor, std::unique_ptr<ByteStream> stream,
                                   std::shared_ptr<const Keyring> keyring, bool require_encryption, StreamLimits limits)
    : stream_(std::move(stream)),
      deadline_(std::move(executor)),
      keyring_(std::move(keyring)),
      require_encryption_(require_encryption),
      limits_(std::move(limits)),
      remote_(stream_->remote()) {}

StreamConnection::~StreamConnection() { close(); }

void StreamConnection::connect(asio::io_context& io, Transport& transport, const HostPort& to,
                               std::chrono::milliseconds timeout, std::shared_ptr<const Keyring> keyring,
                               bool require_encryption, StreamLimits limits, ConnectHandler done) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  transport.dial(to, deadline,
                 [&io, deadline, keyring = std::move(keyring), require_encryption, limits = std::move(limits),
                  done = std::move(done)](const boost::system::error_code& ec, std::unique_ptr<ByteStream> stream) {
                   if (ec) {
                     done(nullptr, ec);
                     return;
                   }
                   auto conn = std::make_shared<StreamConnection>(io.get_executor(), std::move(stream), keyring,
                                                                  require_encryption, limits);
                   conn->set_deadline(deadline);
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
  if (!closed_) {
    closed_ = true;
    stream_->close();
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
  stream_->async_read_some(asio::buffer(chunk_), [self = shared_from_this(), done = std::move(done)](
                                                     const boost::system::error_code& ec, std::size_t n) mutable {
    if (ec) {
      const bool nothing_received = !self->reader_ || self->reader_->buffered() == 0;
      self->reader_.reset();
      if (ec == asio::error::eof && nothing_received) {
        done(std::nullopt, StreamError{StreamErrc::closed_before_message, {}});
      } else if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) {
        done(std::nullopt, StreamError{asio::error::timed_out, {}});
      } else {
        done(std::nullopt, StreamError{ec, {}});
      }
      return;
    }
    if (!self->reader_) {  // closed meanwhile
      done(std::nullopt, StreamError{asio::error::timed_out, {}});
      return;
    }
    std::optional<StreamMessage> message;
    try {
      message = self->reader_->feed(ByteView(self->chunk_.data(), n));
    } catch (const DecodeError& e) {
      self->reader_.reset();
      done(std::nullopt, StreamError{StreamErrc::malformed, e.what()});
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
  stream_->async_write(asio::buffer(outgoing_), [self = shared_from_this(), done = std::move(done)](
                                                    const boost::system::error_code& ec, std::size_t) { done(ec); });
}

}  // namespace weft::control::gossip
