// Serves DNS on sockets it is given (the agent opens them inside each
// endpoint's namespace): UDP with recvmmsg/sendmmsg batches, TCP with
// length-prefixed messages. Each socket carries a context, so the answer
// depends on the socket a query came in on. One io_context, one thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include <chrono>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include <sys/socket.h>

#include "dns/forwarder.h"
#include "dns/query_metrics.h"
#include "dns/responder.h"

namespace weft::dns {

struct ServerLimits {
  std::size_t max_tcp_connections = 128;  // more are closed as they arrive
  std::size_t max_query_size = 4096;      // larger queries are dropped (UDP) or end the connection (TCP)
  std::chrono::milliseconds tcp_idle{10000};
  std::size_t udp_batch = 32;             // datagrams per recvmmsg/sendmmsg
};

struct ServerStats {
  uint64_t udp_queries = 0;
  uint64_t tcp_queries = 0;
  uint64_t dropped = 0;
  uint64_t forwarded = 0;
  uint64_t tcp_refused = 0;
};

class Server {
 public:
  Server(boost::asio::io_context& io, const NameView& view, ResponderConfig responder, ForwarderConfig forwarder,
         ServerLimits limits = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The socket is bound already (in whichever namespace it belongs to).
  void add_udp(boost::asio::ip::udp::socket socket, std::string context);
  void add_tcp(boost::asio::ip::tcp::acceptor acceptor, std::string context);
  // Stops serving every socket of the context (an endpoint detached).
  void remove_context(const std::string& context);
  void stop();

  const ServerStats& stats() const { return stats_; }
  // Safe to read from any thread (weftd's /metrics).
  const QueryMetrics& metrics() const { return metrics_; }
  std::size_t tcp_connections() const { return tcp_connections_; }
  const Forwarder& forwarder() const { return forwarder_; }
  Forwarder& forwarder() { return forwarder_; }

 private:
  struct UdpListener;
  struct TcpListener;
  struct TcpConnection;
  void wait_udp(const std::shared_ptr<UdpListener>& listener);
  void drain_udp(const std::shared_ptr<UdpListener>& listener);
  void accept_tcp(const std::shared_ptr<TcpListener>& listener);
  void read_tcp(const std::shared_ptr<TcpConnection>& connection);
  void write_tcp(const std::shared_ptr<TcpConnection>& connection, std::vector<uint8_t> answer);
  void close_tcp(const std::shared_ptr<TcpConnection>& connection);

  boost::asio::io_context& io_;
  Responder responder_;
  Forwarder forwarder_;
  ServerLimits limits_;
  ServerStats stats_;
  QueryMetrics metrics_;
  std::list<std::shared_ptr<UdpListener>> udp_;
  std::list<std::shared_ptr<TcpListener>> tcp_;
  std::list<std::weak_ptr<TcpConnection>> connections_;
  std::size_t tcp_connections_ = 0;
  // Shared by every UDP socket: the loop is single-threaded and drains one
  // socket at a time, so a thousand sockets do not cost a thousand batches.
  std::vector<std::vector<uint8_t>> receive_buffers_;
  // The batch's headers and answers, sized once: a batch allocates nothing.
  std::vector<mmsghdr> in_, out_;
  std::vector<iovec> in_iov_, out_iov_;
  std::vector<sockaddr_storage> peers_;
  std::vector<Reply> replies_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace weft::dns
