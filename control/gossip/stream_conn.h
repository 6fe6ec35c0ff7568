// One TCP connection carrying memberlist stream messages, with a deadline
// that closes it (memberlist's TCPTimeout) so a stalled peer can't pin it.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "control/gossip/keyring.h"
#include "control/gossip/stream.h"

namespace weft::control::gossip {

namespace asio = boost::asio;

// What one connection may receive: messages up to `max_message_bytes`, its
// buffer growth taken from `budget` when given (shared by all connections
// of a kind, e.g. every inbound one).
struct StreamLimits {
  std::size_t max_message_bytes = kDefaultMaxStreamBytes;
  std::shared_ptr<StreamBufferBudget> budget;
};

class StreamConnection : public std::enable_shared_from_this<StreamConnection> {
 public:
  using Tcp = asio::ip::tcp;
  using ReadHandler = std::function<void(std::optional<StreamMessage>, std::string error)>;
  using WriteHandler = std::function<void(std::string error)>;
  using ConnectHandler = std::function<void(std::shared_ptr<StreamConnection>, std::string error)>;

  StreamConnection(Tcp::socket socket, std::shared_ptr<const Keyring> keyring, bool require_encryption,
                   StreamLimits limits = {});
  ~StreamConnection();

  // Connects within `timeout`; the handler gets a connection whose deadline
  // is already set to the same point in time.
  static void connect(asio::io_context& io, const Tcp::endpoint& to, std::chrono::milliseconds timeout,
                      std::shared_ptr<const Keyring> keyring, bool require_encryption, StreamLimits limits,
                      ConnectHandler done);

  void set_deadline(std::chrono::steady_clock::time_point when);
  // Reads until one whole message has arrived. error "eof" means the peer
  // closed without sending anything.
  void read_message(ReadHandler done);
  void write(Bytes data, WriteHandler done);
  void close();
  std::string remote() const { return remote_; }
  // The peer's IP address alone: the key for rate-limited log lines.
  std::string remote_address() const { return remote_address_; }
  // Keeps `token` alive as long as this connection (e.g. a slot among the
  // inbound streams, given back when the connection is gone).
  void hold(std::shared_ptr<void> token) { held_ = std::move(token); }
  std::size_t buffered_capacity() const { return reader_ ? reader_->capacity() : 0; }

 private:
  void read_more(ReadHandler done);

  Tcp::socket socket_;
  asio::steady_timer deadline_;
  std::shared_ptr<const Keyring> keyring_;
  bool require_encryption_;
  StreamLimits limits_;
  std::unique_ptr<StreamReader> reader_;
  std::shared_ptr<void> held_;
  std::array<std::uint8_t, 16 * 1024> chunk_{};
  Bytes outgoing_;
  std::string remote_;
  std::string remote_address_;
};

}  // namespace weft::control::gossip
