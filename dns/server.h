// Serves DNS on sockets it is given (the agent opens them inside each
// endpoint's namespace): UDP with recvmmsg/sendmmsg batches, TCP with
// length-prefixed messages. Each socket carries a context, so the answer
// depends on the socket a query came in on. One io_context, one thread,
// plus at most ServerLimits::udp_threads receive threads: a UDP socket the
// loop finds far behind (a full backlog in one wake-up) is taken out of the
// loop's epoll and served by a thread of its own, blocking in recvmmsg the
// way the bench's echo does. No epoll callback per datagram, no loop turn per
// batch; the thread answers owned names itself and hands forwarded queries
// to the loop. A thread whose socket goes quiet hands the socket back.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include <atomic>
#include <chrono>
#include <list>
#include <memory>
#include <span>
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
  // Receive threads at most (each serves one busy UDP socket; 0: the loop
  // serves every socket), their batch, and what makes a socket busy: at
  // least `promote_after` queries answered (not forwarded) in one wake-up
  // of the loop.
  std::size_t udp_threads = 2;
  std::size_t thread_batch = 64;
  std::size_t promote_after = 64;
  // A thread hands its socket back to the loop after a period of
  // `thread_check` with fewer than `thread_min_answers` answers.
  std::chrono::milliseconds thread_check{1000};
  std::size_t thread_min_answers = 1000;
  // Queries a thread has handed to the loop (to forward) and the loop has
  // not taken yet; more are dropped.
  std::size_t max_handoffs = 1024;
};

// A copy of the server's counters.
struct ServerStats {
  uint64_t udp_queries = 0;
  uint64_t tcp_queries = 0;
  uint64_t dropped = 0;
  uint64_t forwarded = 0;
  uint64_t tcp_refused = 0;
  uint64_t promotions = 0;    // sockets given a receive thread
  uint64_t demotions = 0;     // sockets a quiet thread handed back
  std::size_t udp_threads = 0;  // receive threads running now
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

  // Any thread; udp_threads is exact on the loop's thread.
  ServerStats stats() const;
  // Safe to read from any thread (weftd's /metrics).
  const QueryMetrics& metrics() const { return metrics_; }
  std::size_t tcp_connections() const { return tcp_connections_; }
  const Forwarder& forwarder() const { return forwarder_; }
  Forwarder& forwarder() { return forwarder_; }

 private:
  struct UdpListener;
  struct UdpBatch;
  struct ReceiveThread;
  struct TcpListener;
  struct TcpConnection;
  struct Counters {
    std::atomic<uint64_t> udp_queries{0}, tcp_queries{0}, dropped{0}, forwarded{0}, tcp_refused{0}, promotions{0},
        demotions{0};
  };
  void wait_udp(const std::shared_ptr<UdpListener>& listener);
  // True when the socket stays with the loop (false: a thread took it).
  bool drain_udp(const std::shared_ptr<UdpListener>& listener);
  // Answers `received` datagrams of `batch` and sends the answers; the
  // queries to forward go to `forward` (query, peer, peer length, client
  // limit, arrival; false: dropped). Returns the answers.
  template <typename Forward>
  std::size_t answer_udp(UdpBatch& batch, int fd, int received, const std::string& context, Forward&& forward);
  void forward_udp(const std::weak_ptr<UdpListener>& listener, std::span<const uint8_t> query,
                   const sockaddr_storage& peer, socklen_t peer_len, std::size_t limit,
                   std::chrono::steady_clock::time_point arrived);
  void promote(const std::shared_ptr<UdpListener>& listener);
  void receive_loop(ReceiveThread& thread, int fd, std::string context, std::weak_ptr<UdpListener> listener);
  void hand_back(const std::weak_ptr<UdpListener>& listener);
  void stop_thread(UdpListener& listener);
  void accept_tcp(const std::shared_ptr<TcpListener>& listener);
  void read_tcp(const std::shared_ptr<TcpConnection>& connection);
  void write_tcp(const std::shared_ptr<TcpConnection>& connection, std::vector<uint8_t> answer);
  void close_tcp(const std::shared_ptr<TcpConnection>& connection);

  boost::asio::io_context& io_;
  Responder responder_;
  Forwarder forwarder_;
  ServerLimits limits_;
  Counters stats_;
  QueryMetrics metrics_;
  std::size_t threads_running_ = 0;           // the loop's
  std::atomic<std::size_t> threads_now_{0};   // the same, for stats() from elsewhere
  std::atomic<std::size_t> handoffs_{0};
  std::list<std::shared_ptr<UdpListener>> udp_;
  std::list<std::shared_ptr<TcpListener>> tcp_;
  std::list<std::weak_ptr<TcpConnection>> connections_;
  std::size_t tcp_connections_ = 0;
  // Shared by every UDP socket the loop serves: the loop is single-threaded
  // and drains one socket at a time, so a thousand sockets do not cost a
  // thousand batches (a receive thread has its own).
  std::unique_ptr<UdpBatch> loop_batch_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace weft::dns
