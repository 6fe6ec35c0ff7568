// weftd's observability listener (`weftd --metrics-addr ADDR:PORT`): plain
// HTTP/1.1 over TCP for Prometheus scrapes (/metrics), the live page (/ui)
// and its feeds (/api/v1/state, /api/v1/events). It is read-only by
// construction: only GET and HEAD are served (anything else is 405), so no
// route on this listener can change the cluster, and it needs no login on a
// loopback or underlay address.
//
// It runs its own thread and io_context, apart from the API and the gossip,
// so a slow scrape or a stuck browser delays neither. Handlers run on that
// thread; what they read must be safe to read from it.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

namespace weft::observe {

// One GET (or HEAD) request as a handler sees it.
struct HttpGet {
  std::string path;   // decoded path without the query, e.g. "/metrics"
  std::string query;  // raw query string without '?', may be empty
  std::string accept; // the Accept header, may be empty
};

struct HttpReply {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using GetHandler = std::function<HttpReply(const HttpGet&)>;

// A server-sent-events connection. send() may be called from any thread;
// it queues `frame` (already formatted, e.g. "data: {...}\n\n") for the
// connection. It returns false once the connection is closed or when the
// client reads so slowly that its backlog is over the server's bound (the
// connection is then closed): the caller drops the sink.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual bool send(std::string frame) = 0;
  virtual bool open() const = 0;
};

// Called once per new stream connection, after the response headers
// (text/event-stream, no-cache) are written. The handler keeps the sink
// (e.g. in a publisher's list) and sends frames to it.
using StreamHandler = std::function<void(std::shared_ptr<EventSink>)>;

struct ObserveServerLimits {
  std::size_t max_connections = 64;  // over it, the idlest connection is closed
  std::size_t max_streams = 32;      // event streams at once; one more gets 503
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds request_timeout{std::chrono::seconds(5)};
  std::size_t max_request_header_bytes = 8 * 1024;
  std::size_t max_stream_backlog_bytes = 1024 * 1024;
};

// Thrown by parse_listen_address for text that is not ADDR:PORT.
struct ListenAddressError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// "192.0.2.1:9323", "[::1]:9323", "0.0.0.0:9323"; a port from 1 to 65535.
// Names are not resolved.
boost::asio::ip::tcp::endpoint parse_listen_address(std::string_view text);

class ObserveServer {
 public:
  explicit ObserveServer(boost::asio::ip::tcp::endpoint listen, ObserveServerLimits limits = {});
  ~ObserveServer();  // stop()
  ObserveServer(const ObserveServer&) = delete;
  ObserveServer& operator=(const ObserveServer&) = delete;

  // Routes are exact paths. Add them before start().
  void add_route(std::string path, GetHandler handler);
  void add_stream(std::string path, StreamHandler handler);

  // Binds and listens, then starts the server's thread. Throws
  // std::runtime_error with a message naming the address and the cause
  // ("192.0.2.1:9323: address already in use") when it cannot listen.
  void start();
  // Closes the listener and every connection, joins the thread. Idempotent.
  void stop();

  // The bound address (useful with port 0 in tests).
  boost::asio::ip::tcp::endpoint local_endpoint() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::observe
