// One stream connection carrying memberlist stream messages, with a deadline
// that closes it (memberlist's TCPTimeout) so a stalled peer can't pin it.
#pragma once

#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "control/gossip/keyring.h"
#include "control/gossip/stream.h"
#include "control/gossip/transport.h"

namespace weft::control::gossip {

namespace asio = boost::asio;

// What one connection may receive: messages up to `max_message_bytes`, its
// buffer growth taken from `budget` when given (shared by all connections
// of a kind, e.g. every inbound one).
struct StreamLimits {
  std::size_t max_message_bytes = kDefaultMaxStreamBytes;
  std::shared_ptr<StreamBufferBudget> budget;
};

// Why a stream read ended without a message, beyond the transport's own errors.
enum class StreamErrc {
  closed_before_message = 1,  // the peer closed without sending a byte: nothing to answer
  malformed,                  // the bytes were refused; StreamError::detail says why
};
const boost::system::error_category& stream_category();
inline boost::system::error_code make_error_code(StreamErrc e) { return {static_cast<int>(e), stream_category()}; }

// A failed read: `code` is a StreamErrc, asio::error::timed_out (the
// deadline, or a close, cut it short) or the transport's error.
struct StreamError {
  boost::system::error_code code;
  std::string detail;  // the decoder's reason, for StreamErrc::malformed
  explicit operator bool() const { return static_cast<bool>(code); }
  std::string message() const;
};

// "timed out" for asio::error::timed_out (as memberlist logs it), else the code's message.
std::string describe(const boost::system::error_code& ec);

class StreamConnection : public std::enable_shared_from_this<StreamConnection> {
 public:
  using ReadHandler = std::function<void(std::optional<StreamMessage>, const StreamError& error)>;
  using WriteHandler = std::function<void(const boost::system::error_code& error)>;
  using ConnectHandler = std::function<void(std::shared_ptr<StreamConnection>, const boost::system::error_code& error)>;

  StreamConnection(asio::any_io_executor executor, std::unique_ptr<ByteStream> stream,
                   std::shared_ptr<const Keyring> keyring, bool require_encryption, StreamLimits limits = {});
  ~StreamConnection();

  // Dials `to` within `timeout`; the handler gets a connection whose
  // deadline is already set to the same point in time.
  static void connect(asio::io_context& io, Transport& transport, const HostPort& to, std::chrono::milliseconds timeout,
                      std::shared_ptr<const Keyring> keyring, bool require_encryption, StreamLimits limits,
                      ConnectHandler done);

  void set_deadline(std::chrono::steady_clock::time_point when);
  // Reads until one whole message has arrived.
  void read_message(ReadHandler done);
  void write(Bytes data, WriteHandler done);
  void close();
  std::string remote() const { return remote_.to_string(); }
  // The peer's IP address alone: the key for rate-limited log lines.
  std::string remote_address() const { return remote_.ip.to_string(); }
  // Keeps `token` alive as long as this connection (e.g. a slot among the
  // inbound streams, given back when the connection is gone).
  void hold(std::shared_ptr<void> token) { held_ = std::move(token); }
  std::size_t buffered_capacity() const { return reader_ ? reader_->capacity() : 0; }

 private:
  void read_more(ReadHandler done);

  std::unique_ptr<ByteStream> stream_;
  asio::steady_timer deadline_;
  std::shared_ptr<const Keyring> keyring_;
  bool require_encryption_;
  StreamLimits limits_;
  std::unique_ptr<StreamReader> reader_;
  std::shared_ptr<void> held_;
  std::array<std::uint8_t, 16 * 1024> chunk_{};
  Bytes outgoing_;
  HostPort remote_;
  bool closed_ = false;
};

}  // namespace weft::control::gossip

template <>
struct boost::system::is_error_code_enum<weft::control::gossip::StreamErrc> : std::true_type {};
