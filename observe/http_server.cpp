// The observability listener: Boost.Beast HTTP/1.1 on its own thread.
// Every connection is a Connection on that thread; only an EventSink's
// send() comes from other threads, and it touches the connection only by
// posting to the server's io_context through a Gate that stop() closes.
#include "observe/http_server.h"

#include <atomic>
#include <cctype>
#include <charconv>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <mutex>
#include <thread>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace weft::observe {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

tcp::endpoint parse_listen_address(std::string_view text) {
  const auto fail = [&](const char* why) {
    return ListenAddressError("invalid listen address \"" + std::string(text) + "\": " + why +
                              " (expected ADDR:PORT, e.g. 192.0.2.1:9323 or [::1]:9323)");
  };
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) throw fail("no port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (host.find(':') == std::string_view::npos) throw fail("brackets hold an IPv6 address only");
  } else if (host.find(':') != std::string_view::npos) {
    throw fail("an IPv6 address needs brackets");
  }
  if (host.empty()) throw fail("no address");
  if (port_text.empty() || port_text.size() > 5) throw fail("bad port");
  unsigned port = 0;
  for (char c : port_text)
    if (!std::isdigit(static_cast<unsigned char>(c))) throw fail("bad port");
  std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port < 1 || port > 65535) throw fail("port out of range 1..65535");
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(std::string(host), ec);
  if (ec) throw fail("not an IP address");
  return {address, static_cast<unsigned short>(port)};
}

namespace listener_detail {

// Lets threads outside the server post to its io_context until stop().
struct Gate {
  std::mutex mutex;
  asio::io_context* io = nullptr;  // null once stopped

  template <class F>
  bool post(F&& f) {
    std::lock_guard lock(mutex);
    if (io == nullptr) return false;
    asio::post(*io, std::forward<F>(f));
    return true;
  }
  void close() {
    std::lock_guard lock(mutex);
    io = nullptr;
  }
};

std::string percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && std::isxdigit(static_cast<unsigned char>(in[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
      unsigned value = 0;
      std::from_chars(in.data() + i + 1, in.data() + i + 3, value, 16);
      out.push_back(static_cast<char>(value));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

class Connection;

// The listener's state, shared by its connections (on its thread).
struct ListenerCore {
  tcp::endpoint listen;
  ObserveServerLimits limits;
  std::map<std::string, GetHandler, std::less<>> routes;
  std::map<std::string, StreamHandler, std::less<>> streams;

  asio::io_context io;
  std::optional<tcp::acceptor> acceptor;
  std::thread thread;
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  tcp::endpoint bound;
  bool started = false;
  bool stopped = false;

  // Touched on the server's thread only.
  std::list<std::shared_ptr<Connection>> connections;
  std::size_t open_streams = 0;

  void accept();
  void make_room();
  void close_all();
  void forget(const Connection* connection);
};

}  // namespace listener_detail

struct ObserveServer::Impl : listener_detail::ListenerCore {};

using namespace listener_detail;

namespace listener_detail {

class StreamSink;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(ListenerCore& server, tcp::socket socket)
      : server_(server), socket_(std::move(socket)), timer_(socket_.get_executor()),
        buffer_(server.limits.max_request_header_bytes + 1024) {}

  void start() { read_request(server_.limits.request_timeout); }

  void close();
  bool closed() const { return closed_; }
  bool streaming() const { return sink_ != nullptr; }
  std::chrono::steady_clock::time_point last_activity() const { return last_activity_; }

  // From the sink, on the server's thread.
  void write_frames();

 private:
  friend class StreamSink;

  // A generation tells a stale expiry (queued before a re-arm) from a live one.
  void arm(std::chrono::milliseconds timeout) {
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this(), generation = ++timer_generation_](boost::system::error_code ec) {
      if (!ec && generation == self->timer_generation_) self->close();
    });
  }
  void disarm() {
    ++timer_generation_;
    timer_.cancel();
  }
  void touch() { last_activity_ = std::chrono::steady_clock::now(); }

  void read_request(std::chrono::milliseconds timeout);
  void on_request(boost::system::error_code ec);
  void reply(unsigned status, std::string content_type, std::string body, bool head, bool keep_alive,
             std::initializer_list<std::pair<http::field, const char*>> extra = {});
  void after_reply(bool keep_alive);
  void start_stream(const StreamHandler& handler);
  void watch_stream_peer();

  ListenerCore& server_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  std::shared_ptr<void> response_;  // kept alive while it is written
  std::shared_ptr<StreamSink> sink_;
  std::string writing_;        // the frames being written
  bool write_in_progress_ = false;
  std::array<char, 512> discard_{};
  std::uint64_t timer_generation_ = 0;
  bool closed_ = false;
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
};

class StreamSink : public EventSink {
 public:
  StreamSink(std::weak_ptr<Connection> connection, std::shared_ptr<Gate> gate, std::size_t max_backlog)
      : connection_(std::move(connection)), gate_(std::move(gate)), max_backlog_(max_backlog) {}

  bool send(std::string frame) override {
    std::lock_guard lock(mutex_);
    if (closed_) return false;
    if (backlog_bytes_ + frame.size() > max_backlog_) {
      closed_ = true;
      gate_->post([c = connection_] {
        if (auto connection = c.lock()) connection->close();
      });
      return false;
    }
    backlog_bytes_ += frame.size();
    queue_.push_back(std::move(frame));
    if (!flush_posted_) {
      flush_posted_ = true;
      if (!gate_->post([c = connection_] {
            if (auto connection = c.lock()) connection->write_frames();
          })) {
        closed_ = true;
        return false;
      }
    }
    return true;
  }

  bool open() const override {
    std::lock_guard lock(mutex_);
    return !closed_;
  }

  void mark_closed() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    queue_.clear();
    backlog_bytes_ = 0;
  }

  // Moves the queued frames into `out`; false when nothing was queued.
  // The backlog counts them until they are written (done()).
  bool take(std::string& out) {
    std::lock_guard lock(mutex_);
    flush_posted_ = false;
    if (queue_.empty() || closed_) return false;
    out.clear();
    for (auto& frame : queue_) out += frame;
    queue_.clear();
    flush_posted_ = true;  // write_frames() runs again when this write ends
    return true;
  }
  void done(std::size_t bytes) {
    std::lock_guard lock(mutex_);
    backlog_bytes_ -= std::min(bytes, backlog_bytes_);
    flush_posted_ = false;
  }

 private:
  mutable std::mutex mutex_;
  std::weak_ptr<Connection> connection_;
  std::shared_ptr<Gate> gate_;
  const std::size_t max_backlog_;
  std::deque<std::string> queue_;
  std::size_t backlog_bytes_ = 0;
  bool flush_posted_ = false;  // a write_frames() is posted or a write runs
  bool closed_ = false;
};

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  if (sink_) {
    sink_->mark_closed();
    --server_.open_streams;
  }
  boost::system::error_code ignored;
  disarm();
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  server_.forget(this);
}

void Connection::read_request(std::chrono::milliseconds timeout) {
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(server_.limits.max_request_header_bytes));
  parser_->body_limit(0);
  arm(timeout);
  http::async_read(socket_, buffer_, *parser_,
                   [self = shared_from_this()](boost::system::error_code ec, std::size_t) { self->on_request(ec); });
}

void Connection::on_request(boost::system::error_code ec) {
  if (closed_) return;
  disarm();
  touch();
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    reply(431, "text/plain; charset=utf-8", "request header too large\n", false, false);
    return;
  }
  if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::operation_aborted ||
      ec == asio::error::connection_reset) {
    close();
    return;
  }
  if (ec) {
    reply(400, "text/plain; charset=utf-8", "bad request\n", false, false);
    return;
  }
  const auto& request = parser_->get();
  const bool keep_alive = request.keep_alive();
  const bool head = request.method() == http::verb::head;
  if (request.method() != http::verb::get && !head) {
    reply(405, "text/plain; charset=utf-8", "method not allowed: this listener is read-only\n", false, keep_alive,
          {{http::field::allow, "GET, HEAD"}});
    return;
  }
  const std::string_view target(request.target().data(), request.target().size());
  const auto question = target.find('?');
  HttpGet get;
  get.path = percent_decode(target.substr(0, question));
  if (question != std::string_view::npos) get.query = std::string(target.substr(question + 1));
  if (auto accept = request.find(http::field::accept); accept != request.end()) get.accept.assign(accept->value().data(), accept->value().size());

  if (auto route = server_.routes.find(get.path); route != server_.routes.end()) {
    HttpReply result;
    try {
      result = route->second(get);
    } catch (const std::exception& e) {
      spdlog::warn("observe: {} failed: {}", get.path, e.what());
      result = HttpReply{500, "text/plain; charset=utf-8", "internal error\n"};
    }
    reply(result.status, std::move(result.content_type), std::move(result.body), head, keep_alive);
    return;
  }
  if (auto stream = server_.streams.find(get.path); stream != server_.streams.end()) {
    if (head) {
      reply(200, "text/event-stream", "", true, keep_alive, {{http::field::cache_control, "no-cache"}});
      return;
    }
    if (server_.open_streams >= server_.limits.max_streams) {
      reply(503, "text/plain; charset=utf-8", "too many event streams\n", false, false,
            {{http::field::retry_after, "5"}});
      return;
    }
    start_stream(stream->second);
    return;
  }
  reply(404, "text/plain; charset=utf-8", "not found\n", head, keep_alive);
}

void Connection::reply(unsigned status, std::string content_type, std::string body, bool head, bool keep_alive,
                       std::initializer_list<std::pair<http::field, const char*>> extra) {
  auto write = [&](auto response) {
    response->set(http::field::server, "weftd");
    response->set(http::field::content_type, content_type);
    for (const auto& [field, value] : extra) response->set(field, value);
    response->keep_alive(keep_alive);
    auto& ref = *response;
    response_ = response;
    arm(server_.limits.request_timeout);  // a client that does not read its reply is closed
    http::async_write(socket_, ref, [self = shared_from_this(), keep_alive](boost::system::error_code ec, std::size_t) {
      self->response_.reset();
      if (ec) {
        self->close();
        return;
      }
      self->after_reply(keep_alive);
    });
  };
  if (head) {
    auto response = std::make_shared<http::response<http::empty_body>>(static_cast<http::status>(status), 11);
    response->content_length(body.size());
    write(std::move(response));
  } else {
    auto response = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), 11);
    response->body() = std::move(body);
    response->prepare_payload();
    write(std::move(response));
  }
}

void Connection::after_reply(bool keep_alive) {
  if (closed_) return;
  disarm();
  touch();
  if (!keep_alive) {
    close();
    return;
  }
  if (buffer_.size() > 0) {  // a pipelined request is here already
    read_request(server_.limits.request_timeout);
    return;
  }
  // The next request may wait idle_timeout; once bytes come, it has request_timeout.
  arm(server_.limits.idle_timeout);
  socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](boost::system::error_code ec) {
    if (self->closed_) return;
    if (ec) {
      self->close();
      return;
    }
    self->disarm();
    self->read_request(self->server_.limits.request_timeout);
  });
}

void Connection::start_stream(const StreamHandler& handler) {
  ++server_.open_streams;
  sink_ = std::make_shared<StreamSink>(weak_from_this(), server_.gate, server_.limits.max_stream_backlog_bytes);
  // Close-delimited: the stream ends when either side closes.
  auto header = std::make_shared<std::string>(
      "HTTP/1.1 200 OK\r\nServer: weftd\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
      "Connection: close\r\nX-Accel-Buffering: no\r\n\r\n");
  arm(server_.limits.request_timeout);
  asio::async_write(socket_, asio::buffer(*header),
                    [self = shared_from_this(), header, &handler](boost::system::error_code ec, std::size_t) {
                      if (self->closed_) return;
                      self->disarm();
                      if (ec) {
                        self->close();
                        return;
                      }
                      self->touch();
                      self->watch_stream_peer();
                      try {
                        handler(self->sink_);
                      } catch (const std::exception& e) {
                        spdlog::warn("observe: stream handler failed: {}", e.what());
                        self->close();
                      }
                    });
}

// A stream's client sends nothing; reading tells when it goes away.
void Connection::watch_stream_peer() {
  socket_.async_read_some(asio::buffer(discard_), [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
    if (self->closed_) return;
    if (ec) {
      self->close();
      return;
    }
    self->watch_stream_peer();
  });
}

void Connection::write_frames() {
  // One write at a time; the one running calls this again when it ends.
  if (closed_ || !sink_ || write_in_progress_) return;
  if (!sink_->take(writing_)) return;
  write_in_progress_ = true;
  // A client that stops reading is closed once its backlog is over the bound
  // (send() refuses) or when one write takes longer than request_timeout.
  arm(server_.limits.request_timeout);
  asio::async_write(socket_, asio::buffer(writing_), [self = shared_from_this()](boost::system::error_code ec,
                                                                                 std::size_t bytes) {
    self->write_in_progress_ = false;
    if (self->closed_) return;
    self->disarm();
    if (ec) {
      self->close();
      return;
    }
    self->touch();
    self->sink_->done(bytes);
    self->write_frames();
  });
}

}  // namespace listener_detail

void listener_detail::ListenerCore::forget(const Connection* connection) {
  for (auto it = connections.begin(); it != connections.end(); ++it) {
    if (it->get() == connection) {
      connections.erase(it);
      return;
    }
  }
}

// At the bound, the connection idle longest goes; request connections before streams.
void listener_detail::ListenerCore::make_room() {
  while (connections.size() >= limits.max_connections && !connections.empty()) {
    std::shared_ptr<Connection> victim;
    for (const auto& c : connections) {
      if (!victim || (victim->streaming() && !c->streaming()) ||
          (victim->streaming() == c->streaming() && c->last_activity() < victim->last_activity()))
        victim = c;
    }
    victim->close();
  }
}

void listener_detail::ListenerCore::accept() {
  acceptor->async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
    if (!ec) {
      make_room();
      auto connection = std::make_shared<Connection>(*this, std::move(socket));
      connections.push_back(connection);
      connection->start();
    }
    accept();
  });
}

void listener_detail::ListenerCore::close_all() {
  boost::system::error_code ignored;
  if (acceptor) acceptor->close(ignored);
  while (!connections.empty()) {
    auto connection = connections.front();
    connection->close();  // forgets itself
  }
}

ObserveServer::ObserveServer(tcp::endpoint listen, ObserveServerLimits limits) : impl_(std::make_unique<Impl>()) {
  impl_->listen = listen;
  impl_->limits = limits;
  if (impl_->limits.max_connections == 0) impl_->limits.max_connections = 1;
}

ObserveServer::~ObserveServer() { stop(); }

void ObserveServer::add_route(std::string path, GetHandler handler) {
  impl_->routes.insert_or_assign(std::move(path), std::move(handler));
}

void ObserveServer::add_stream(std::string path, StreamHandler handler) {
  impl_->streams.insert_or_assign(std::move(path), std::move(handler));
}

void ObserveServer::start() {
  if (impl_->started) return;
  const std::string where = impl_->listen.address().is_v6()
                                ? "[" + impl_->listen.address().to_string() + "]:" + std::to_string(impl_->listen.port())
                                : impl_->listen.address().to_string() + ":" + std::to_string(impl_->listen.port());
  boost::system::error_code ec;
  tcp::acceptor acceptor(impl_->io);
  const auto fail = [&](const boost::system::error_code& error) {
    return std::runtime_error(where + ": " + error.message());
  };
  if (acceptor.open(impl_->listen.protocol(), ec); ec) throw fail(ec);
  if (acceptor.set_option(tcp::acceptor::reuse_address(true), ec); ec) throw fail(ec);
  if (acceptor.bind(impl_->listen, ec); ec) throw fail(ec);
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) throw fail(ec);
  impl_->bound = acceptor.local_endpoint();
  impl_->acceptor.emplace(std::move(acceptor));
  impl_->gate->io = &impl_->io;
  impl_->started = true;
  impl_->accept();
  impl_->thread = std::thread([impl = impl_.get()] {
    try {
      impl->io.run();
    } catch (const std::exception& e) {
      spdlog::error("observe: listener stopped: {}", e.what());
    }
  });
}

void ObserveServer::stop() {
  if (!impl_ || !impl_->started || impl_->stopped) return;
  impl_->stopped = true;
  impl_->gate->close();  // sinks' send() returns false from here on
  asio::post(impl_->io, [impl = impl_.get()] {
    impl->close_all();
    impl->io.stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
  // Handlers still queued hold connections; they go with the io_context.
  impl_->connections.clear();
}

tcp::endpoint ObserveServer::local_endpoint() const { return impl_->bound; }

}  // namespace weft::observe
