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

class StreamConnection : public std::enable_shared_from_this<StreamConnection> {
 public:
  using Tcp = asio::ip::tcp;
  using ReadHandler = std::function<void(std::optional<StreamMessage>, std::string error)>;
  using WriteHandler = std::function<void(std::string error)>;
  using ConnectHandler = std::function<void(std::shared_ptr<StreamConnection>, std::string error)>;

  StreamConnection(Tcp::socket socket, std::shared_ptr<const Keyring> keyring, bool require_encryption);
  ~StreamConnection();

  // Connects within `timeout`; the handler gets a connection whose deadline
  // is already set to the same point in time.
  static void connect(asio::io_context& io, const Tcp::endpoint& to, std::chrono::milliseconds timeout,
                      std::shared_ptr<const Keyring> keyring, bool require_encryption, ConnectHandler done);

  void set_deadline(std::chrono::steady_clock::time_point when);
  // Reads until one whole message has arrived. error "eof" means the peer
  // closed without sending anything.
  void read_message(ReadHandler done);
  void write(Bytes data, WriteHandler done);
  void close();
  std::string remote() const { return remote_; }

 private:
  void read_more(ReadHandler done);

  Tcp::socket socket_;
  asio::steady_timer deadline_;
  std::shared_ptr<const Keyring> keyring_;
  bool require_encryption_;
  Bytes received_;
  std::array<std::uint8_t, 16 * 1024> chunk_{};
  Bytes outgoing_;
  std::string remote_;
};

}  // namespace weft::control::gossip
