// What memberlist needs from the network, after memberlist's own Transport:
// best-effort packets to an address, and byte streams dialled to or
// accepted from one. NetTransport is UDP and TCP; InProcessNetwork
// (inprocess_transport.h) connects instances within one process, without
// sockets, for tests.
//
// Everything runs on one io_context thread; handlers are invoked from it,
// never from inside the call that started the operation.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "control/gossip/host_port.h"
#include "control/gossip/msgpack_wire.h"

namespace weft::control::gossip {

// One connected, ordered byte stream (a TCP connection).
class ByteStream {
 public:
  using Handler = std::function<void(const boost::system::error_code&, std::size_t)>;
  virtual ~ByteStream() = default;
  // Some bytes into `into`, or asio::error::eof once the peer closed and all
  // was read. After close(): asio::error::operation_aborted.
  virtual void async_read_some(boost::asio::mutable_buffer into, Handler done) = 0;
  // All of `data`, which must stay valid until `done`.
  virtual void async_write(boost::asio::const_buffer data, Handler done) = 0;
  // Ends both directions; pending operations complete with operation_aborted.
  virtual void close() = 0;
  virtual const HostPort& remote() const = 0;
};

class Transport {
 public:
  using PacketHandler = std::function<void(ByteView packet, const HostPort& from)>;
  using StreamHandler = std::function<void(std::unique_ptr<ByteStream>)>;
  using DialHandler = std::function<void(const boost::system::error_code&, std::unique_ptr<ByteStream>)>;

  virtual ~Transport() = default;
  // Listens for packets and streams on `bind` (port 0: any free port) and
  // returns the port. Throws std::runtime_error naming the address.
  virtual std::uint16_t listen(const HostPort& bind, PacketHandler on_packet, StreamHandler on_stream) = 0;
  // Best effort: failures are logged at debug level by the transport, if at all.
  virtual void send_packet(const HostPort& to, ByteView packet) = 0;
  // A stream to `to`, or asio::error::timed_out if none is connected by
  // `deadline`, or the connect error.
  virtual void dial(const HostPort& to, std::chrono::steady_clock::time_point deadline, DialHandler done) = 0;
  // Stops listening; no packet or stream handler runs afterwards.
  virtual void shutdown() = 0;
};

// UDP packets and TCP streams on one address and port, as memberlist's NetTransport.
std::unique_ptr<Transport> make_net_transport(boost::asio::io_context& io, std::string log_name);

}  // namespace weft::control::gossip
