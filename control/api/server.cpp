#include "control/api/server.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <list>
#include <optional>
#include <utility>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "control/api/docker_engine.h"
#include "control/api/events.h"
#include "control/api/json.h"
#include "control/api/request_counters.h"
#include "control/api/routes.h"
#include "control/api/scheduler.h"

namespace weft::control::api {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using local = asio::local::stream_protocol;

constexpr std::size_t kMaxBodyBytes = 1024 * 1024;
// Beast's default, made explicit: the longest valid name, percent-encoded,
// is a small fraction of it.
constexpr std::size_t kMaxHeaderBytes = 8 * 1024;
// What an idle connection reads to learn that a request has begun; all an
// idle connection holds besides its socket.
constexpr std::size_t kFirstReadBytes = 512;
// After an accept error such as EMFILE, retrying at once would spin; the
// delay doubles while the errors go on.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};
constexpr std::chrono::milliseconds kAcceptRetryMaxDelay{1600};
// Warnings a client can provoke at will are logged once per interval.
constexpr std::chrono::seconds kWarningInterval{10};
// Below this many connections at the peak, giving memory back is not worth a
// malloc_trim; above it, the heap is trimmed once three quarters have closed.
constexpr std::size_t kTrimAfterPeak = 64;
// Event streams (`GET /events`) open at once; one more is answered 503.
constexpr std::size_t kMaxEventStreams = 32;
// Events written to a stream and not yet taken by its client; a client this
// far behind is disconnected rather than buffered for.
constexpr std::size_t kMaxStreamBacklogBytes = 1024 * 1024;

using Clock = std::chrono::steady_clock;

// Lets a message through at most once per kWarningInterval and counts the
// ones it held back, so a flood costs a line per interval.
class SparseLog {
 public:
  // The number held back since the last one let through, or nullopt to
  // hold this one back.
  std::optional<std::size_t> admit() {
    const auto now = Clock::now();
    if (last_ && now - *last_ < kWarningInterval) {
      ++held_back_;
      return std::nullopt;
    }
    last_ = now;
    return std::exchange(held_back_, 0);
  }

 private:
  std::optional<Clock::time_point> last_;
  std::size_t held_back_ = 0;
};

std::string_view as_std(beast::string_view view) { return {view.data(), view.size()}; }

std::runtime_error socket_error(const std::string& path, const std::string& what, const std::string& reason) {
  return std::runtime_error("API socket " + path + ": " + what + ": " + reason);
}

// Creates the missing directories above `socket_path` as 0755 (explicitly,
// whatever the umask), leaving existing ones as they are.
void create_parent_directories(const std::string& socket_path) {
  const std::filesystem::path parent = std::filesystem::path(socket_path).parent_path();
  std::filesystem::path current;
  for (const auto& component : parent) {
    current /= component;
    if (::mkdir(current.c_str(), 0755) == 0) {
      ::chmod(current.c_str(), 0755);
    } else if (errno != EEXIST) {
      throw socket_error(socket_path, "cannot create directory " + current.string(), std::strerror(errno));
    }
  }
}

// A socket file left by an agent that died is removed; one that someone
// still accepts on means a second agent was started by mistake.
void remove_stale_socket(asio::io_context& io, const std::string& socket_path) {
  struct stat status {};
  if (::lstat(socket_path.c_str(), &status) != 0) return;
  if (!S_ISSOCK(status.st_mode)) {
    throw std::runtime_error("API socket " + socket_path + " exists and is not a socket; refusing to replace it");
  }
  local::socket probe(io);
  boost::system::error_code ec;
  probe.connect(local::endpoint(socket_path), ec);
  if (!ec) {
    throw std::runtime_error("another agent is already listening on " + socket_path +
                             " (stop it first, or pick another --api-socket)");
  }
  if (ec != asio::error::connection_refused) {
    throw socket_error(socket_path, "cannot check whether another agent is listening", ec.message());
  }
  if (::unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
    throw socket_error(socket_path, "cannot remove stale socket", std::strerror(errno));
  }
  spdlog::info("removed stale API socket {}", socket_path);
}

// Which file we created, so stop() does not remove a socket that another
// agent has since put at the same path.
struct FileIdentity {
  dev_t device = 0;
  ino_t inode = 0;
  static std::optional<FileIdentity> of(const std::string& path) {
    struct stat status {};
    if (::lstat(path.c_str(), &status) != 0) return std::nullopt;
    return FileIdentity{status.st_dev, status.st_ino};
  }
  bool operator==(const FileIdentity&) const = default;
};

// Binds under a temporary name and renames into place once the mode is
// 0600, so no client ever sees the socket with umask-dependent permissions.
local::acceptor bind_socket(asio::io_context& io, const std::string& socket_path) {
  const std::string temporary_path = socket_path + ".tmp";
  ::unlink(temporary_path.c_str());  // left over from a crash between bind and rename

  local::acceptor acceptor(io);
  boost::system::error_code ec;
  if (acceptor.open(local(), ec); ec) throw socket_error(socket_path, "cannot create socket", ec.message());
  if (acceptor.bind(local::endpoint(temporary_path), ec); ec) {
    throw socket_error(socket_path, "cannot bind " + temporary_path, ec.message());
  }
  if (::chmod(temporary_path.c_str(), 0600) != 0 || ::rename(temporary_path.c_str(), socket_path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary_path.c_str());
    throw socket_error(socket_path, "cannot put socket in place", std::strerror(error));
  }
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    throw socket_error(socket_path, "cannot listen", ec.message());
  }
  return acceptor;
}

}  // namespace

// Network changes running at once. NetworkManager holds one lock through
// each change's kernel work and releases it only while waiting for a peer's
// donation (after which it checks names and namespaces again), so a second
// change at once would gain only during such waits; they take turns, as
// they did when the API had one thread. Reads never wait for them.
constexpr std::size_t kNetworkChangesAtOnce = 1;

// Runs requests off the io thread: admits them (RequestScheduler, on the io
// thread), runs their handlers on the worker pool and brings the responses
// back to the io thread. See the top of server.h.
class RequestDispatcher : public std::enable_shared_from_this<RequestDispatcher> {
 public:
  using Done = std::function<void(Response)>;

  RequestDispatcher(asio::io_context& io, Services services, const ApiServerLimits& limits)
      : io_(io),
        services_(services),
        workers_(std::max<std::size_t>(limits.workers, 2)),
        pool_(workers_),
        scheduler_({.max_running_network_changes = std::min(kNetworkChangesAtOnce, workers_ - 1),
                    .max_pending = limits.max_pending_requests}) {}

  // On the io thread. `done` is called on the io thread, at once for a
  // request that needs no service or is refused, else once its handler has
  // run; never if the server stops before the request started.
  void dispatch(std::shared_ptr<const Request> request, Done done) {
    if (stopped_) return;
    const Workload workload = workload_of(*request);
    if (workload == Workload::kImmediate) return done(handle_request(*request, services_));
    const auto admission =
        scheduler_.submit(workload, [self = shared_from_this(), request, done, workload]() mutable {
          self->run(std::move(request), std::move(done), workload);
        });
    if (admission != RequestScheduler::Admission::kRefused) return;
    if (auto held_back = refused_log_.admit()) {
      spdlog::warn("api: {} requests in progress, refusing {} {} with 503 ({} more refused since the last report)",
                   scheduler_.pending(), as_std(request->method_string()), as_std(request->target()), *held_back);
    }
    done(error_response(*request, http::status::service_unavailable,
                        "the agent is busy: " + std::to_string(scheduler_.pending()) +
                            " requests are in progress; try again"));
  }

  // Drops the requests not started yet and waits for the running handlers.
  void stop() {
    if (stopped_) return;
    stopped_ = true;
    scheduler_.clear();
    pool_.join();
  }

  std::size_t workers() const { return workers_; }
  const Services& services() const { return services_; }

  // Event streams, io thread only: a stream holds no worker, only its
  // connection, and at most kMaxEventStreams are open.
  bool begin_stream() {
    if (stopped_ || streams_ >= kMaxEventStreams) return false;
    ++streams_;
    return true;
  }
  void end_stream() { --streams_; }

 private:
  // On the io thread: hands the request to a worker.
  void run(std::shared_ptr<const Request> request, Done done, Workload workload) {
    asio::post(pool_, [self = shared_from_this(), request = std::move(request), done = std::move(done), workload,
                       io_work = asio::make_work_guard(io_)]() mutable {
      // Posted but not begun when the server stopped: nobody waits for it.
      std::optional<Response> response;
      if (!self->stopped_) response = handle_request(*request, self->services_);
      asio::post(self->io_, [self, done = std::move(done), workload, response = std::move(response)]() mutable {
        self->scheduler_.finished(workload);
        if (response) done(std::move(*response));
      });
    });
  }

  asio::io_context& io_;
  Services services_;
  const std::size_t workers_;
  asio::thread_pool pool_;
  RequestScheduler scheduler_;  // io thread only
  SparseLog refused_log_;       // io thread only
  std::size_t streams_ = 0;     // io thread only
  std::atomic<bool> stopped_ = false;
};


namespace {

// One client connection: waits for a request (idle), reads it (reading),
// has the dispatcher answer it (handling), writes the answer (writing), and
// again (keep-alive).
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Handling: a worker runs the request's handler. Streaming: the
  // connection carries an event stream until it ends or the client goes.
  enum class State { Idle, Reading, Handling, Writing, Streaming, Closed };
  using List = std::list<std::shared_ptr<Connection>>;

  Connection(local::socket socket, std::shared_ptr<api::RequestDispatcher> dispatcher, const ApiServerLimits& limits,
             std::function<void(Connection&)> on_closed)
      : stream_(std::move(socket)),
        dispatcher_(std::move(dispatcher)),
        limits_(limits),
        on_closed_(std::move(on_closed)) {}

  // Where the listener keeps this connection; set once, right after insertion.
  List::iterator slot;

  void start() { wait_for_request(); }

  State state() const { return state_; }
  Clock::time_point state_since() const { return state_since_; }

  // Completions already queued see Closed and do nothing, so after this the
  // service is never called again through this connection.
  void close() {
    if (state_ == State::Closed) return;
    const auto self = shared_from_this();  // the listener may hold the last reference
    enter(State::Closed);
    end_event_stream();
    boost::system::error_code ignored;
    stream_.socket().shutdown(local::socket::shutdown_both, ignored);
    stream_.close();
    if (auto on_closed = std::exchange(on_closed_, nullptr)) on_closed(*this);
  }

 private:
  void enter(State state) {
    state_ = state;
    state_since_ = Clock::now();
  }

  // Idle until the first byte, so the listener can tell a connection that
  // waits from one in the middle of a request.
  void wait_for_request() {
    enter(State::Idle);
    if (buffer_.size() > 0) return read_request();  // pipelined behind the last one
    // A large request leaves a large buffer; an idle connection keeps none.
    buffer_.shrink_to_fit();
    stream_.expires_after(limits_.idle_timeout);
    stream_.async_read_some(buffer_.prepare(kFirstReadBytes),
                            [self = shared_from_this()](beast::error_code ec, std::size_t bytes) {
                              self->on_first_bytes(ec, bytes);
                            });
  }

  void on_first_bytes(beast::error_code ec, std::size_t bytes) {
    if (state_ == State::Closed) return;
    if (ec) return close();  // gone, or idle too long
    buffer_.commit(bytes);
    read_request();
  }

  void read_request() {
    enter(State::Reading);
    parser_.emplace();
    parser_->body_limit(kMaxBodyBytes);
    parser_->header_limit(kMaxHeaderBytes);
    stream_.expires_after(limits_.request_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (state_ == State::Closed) return;
    if (ec == http::error::body_limit) {
      return reply_and_close(http::status::payload_too_large, "request body exceeds the limit of 1 MiB");
    }
    if (ec == http::error::header_limit) {
      return reply_and_close(http::status::request_header_fields_too_large,
                             "request line and headers exceed the limit of 8 KiB");
    }
    // A malformed request earns a 400; a client that went away or was too
    // slow (end_of_stream, partial_message, timeout, socket errors) gets nothing.
    if (ec && ec.category() == beast::http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return reply_and_close(http::status::bad_request, "malformed HTTP request: " + ec.message());
    }
    if (ec) return close();

    auto request = std::make_shared<const api::Request>(parser_->release());
    parser_.reset();
    if (api::is_event_stream_request(*request)) return start_event_stream(*request);
    enter(State::Handling);
    dispatcher_->dispatch(request, [self = shared_from_this(), request, started = Clock::now()](api::Response response) {
      self->on_handled(*request, std::move(response), started);
    });
  }

  void on_handled(const api::Request& request, api::Response response, Clock::time_point started) {
    if (state_ == State::Closed) return;  // the client went, or the server stopped, meanwhile
    response_ = std::move(response);
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count();
    const unsigned status = response_.result_int();
    api::request_counters().record(api::route_pattern(request), status);
    spdlog::debug("api: {} {} -> {} ({} us)", as_std(request.method_string()), as_std(request.target()), status,
                  micros);
    // A 503 is a refusal the dispatcher has logged already, sparsely; a 501
    // (what weft is not, docker_engine.h) is any client's to ask for and
    // costs no warning.
    if (status >= 500 && status != 503 && status != 501) {
      spdlog::warn("api: {} {} failed: {}", as_std(request.method_string()), as_std(request.target()),
                   response_.body());
    }
    write_response();
  }

  // After a framing error the rest of the stream cannot be trusted, so the
  // connection ends with this response.
  void reply_and_close(http::status status, const std::string& message) {
    spdlog::debug("api: rejected request: {}", message);
    api::request_counters().record("unmatched", static_cast<unsigned>(status));
    parser_.reset();
    response_ = api::Response{status, 11};
    response_.set(http::field::content_type, "application/json");
    response_.body() = api::dump(nlohmann::json{{"message", message}});
    response_.keep_alive(false);
    response_.prepare_payload();
    write_response();
  }

  void write_response() {
    enter(State::Writing);
    stream_.expires_after(limits_.idle_timeout);
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    if (state_ == State::Closed) return;
    const bool last = ec || response_.need_eof();
    response_ = {};  // an idle connection holds no response
    if (last) return close();
    wait_for_request();
  }

  // --- the event stream (GET /events) ---------------------------------------

  void start_event_stream(const api::Request& request) {
    const Clock::time_point started = Clock::now();
    enter(State::Handling);
    const api::Services& services = dispatcher_->services();
    if (auto refusal = api::refuse_event_stream(request, services)) {
      return on_handled(request, std::move(*refusal), started);
    }
    if (!dispatcher_->begin_stream()) {
      return on_handled(request,
                        api::error_response(request, http::status::service_unavailable,
                                            "too many event streams are open (" + std::to_string(kMaxEventStreams) +
                                                "); try again later"),
                        started);
    }
    streaming_ = true;
    const std::string_view target = as_std(request.target());
    const auto question = target.find('?');
    query_ = api::parse_event_query(question == std::string_view::npos ? "" : target.substr(question + 1));
    chunked_ = request.version() >= 11;
    enter(State::Streaming);
    stream_.expires_never();
    spdlog::debug("api: {} -> event stream", as_std(request.target()));

    std::string head = std::string("HTTP/") + (chunked_ ? "1.1" : "1.0") +
                       " 200 OK\r\nServer: weftd/" + std::string(api::kWeftVersion) +
                       "\r\nApi-Version: " + std::string(api::kApiVersion) +
                       "\r\nDocker-Experimental: false\r\nOstype: linux\r\nContent-Type: application/json\r\n" +
                       (chunked_ ? "Transfer-Encoding: chunked\r\n" : "Connection: close\r\n") + "\r\n";
    enqueue(std::move(head));

    events_ = &services.docker->events;
    std::vector<api::DockerEvent> backlog;
    subscription_ = events_->subscribe(
        [weak = weak_from_this(), executor = stream_.get_executor()](const api::DockerEvent& event) {
          asio::post(executor, [weak, event] {
            if (auto self = weak.lock()) self->on_event(event);
          });
        },
        query_.since_nano, backlog);
    for (const auto& event : backlog) on_event(event);

    const std::int64_t now = api::now_nano();
    if (query_.until_nano && *query_.until_nano <= now) return finish_stream();
    // An `until` more than a year away is as good as none: the stream lasts
    // until the client goes (and the timer's arithmetic stays in range).
    constexpr std::int64_t kLongestUntilNano = 366LL * 24 * 3600 * 1'000'000'000;
    if (query_.until_nano && *query_.until_nano - now <= kLongestUntilNano) {
      until_timer_.emplace(stream_.get_executor());
      until_timer_->expires_after(std::chrono::nanoseconds(*query_.until_nano - now));
      until_timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        if (auto self = weak.lock(); self && !ec) self->finish_stream();
      });
    }
    // The client sends nothing more: whatever arrives, or the end of the
    // connection, ends the stream.
    stream_.socket().async_read_some(asio::buffer(probe_), [self = shared_from_this()](beast::error_code, std::size_t) {
      if (self->state_ == State::Streaming) self->close();
    });
  }

  void on_event(const api::DockerEvent& event) {
    if (state_ != State::Streaming || ending_) return;
    if (query_.since_nano && event.time_nano < *query_.since_nano) return;
    if (query_.until_nano && event.time_nano > *query_.until_nano) return;
    if (!query_.matches(event)) return;
    std::string line = api::dump(api::event_json(event)) + "\n";
    if (!chunked_) return enqueue(std::move(line));
    char size[20];
    std::snprintf(size, sizeof size, "%zx\r\n", line.size());
    enqueue(size + line + "\r\n");
  }

  // until has passed: the stream ends cleanly (the last chunk), then the
  // connection.
  void finish_stream() {
    if (state_ != State::Streaming || ending_) return;
    if (chunked_) enqueue("0\r\n\r\n");
    ending_ = true;
    if (!writing_) close();
  }

  void enqueue(std::string bytes) {
    if (stream_backlog_bytes_ + bytes.size() > kMaxStreamBacklogBytes) {
      if (auto held_back = slow_stream_log_.admit())
        spdlog::warn("api: an event stream's client is {} bytes behind; closing it ({} more since the last report)",
                     stream_backlog_bytes_, *held_back);
      return close();
    }
    stream_backlog_bytes_ += bytes.size();
    outgoing_.push_back(std::move(bytes));
    if (!writing_) write_next();
  }

  void write_next() {
    if (outgoing_.empty()) {
      writing_ = false;
      if (ending_) close();
      return;
    }
    writing_ = true;
    asio::async_write(stream_, asio::buffer(outgoing_.front()),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (self->state_ != State::Streaming) return;
                        if (ec) return self->close();
                        self->stream_backlog_bytes_ -= self->outgoing_.front().size();
                        self->outgoing_.pop_front();
                        self->write_next();
                      });
  }

  void end_event_stream() {
    if (!streaming_) return;
    streaming_ = false;
    if (events_) events_->unsubscribe(subscription_);
    events_ = nullptr;
    if (until_timer_) until_timer_->cancel();
    dispatcher_->end_stream();
  }

  beast::basic_stream<local> stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;  // while a request is read
  api::Response response_;  // kept alive until async_write is done with it
  std::shared_ptr<api::RequestDispatcher> dispatcher_;
  const ApiServerLimits limits_;
  std::function<void(Connection&)> on_closed_;
  State state_ = State::Idle;
  Clock::time_point state_since_ = Clock::now();
  // The event stream's, io thread only.
  bool streaming_ = false;
  bool chunked_ = true;
  bool ending_ = false;
  bool writing_ = false;
  api::EventQuery query_;
  api::EventBus* events_ = nullptr;
  std::uint64_t subscription_ = 0;
  std::optional<asio::steady_timer> until_timer_;
  std::deque<std::string> outgoing_;
  std::size_t stream_backlog_bytes_ = 0;
  std::array<char, 64> probe_{};
  SparseLog slow_stream_log_;
};

bool is_out_of_descriptors(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space || ec == asio::error::no_memory ||
         (ec.category() == boost::system::system_category() && ec.value() == ENFILE);
}

void give_memory_back() {
#ifdef __GLIBC__
  ::malloc_trim(0);
#endif
}

}  // namespace

std::size_t default_max_api_connections() {
  constexpr std::size_t kCeiling = 512;
  constexpr std::size_t kFloor = 4;
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return kCeiling;
  return std::clamp<std::size_t>(static_cast<std::size_t>(limit.rlim_cur) / 4, kFloor, kCeiling);
}

// Owns the accepting socket and the live connections: admits new ones up to
// the cap, displacing the one idle longest, and ends them all on stop().
// Shared with its pending handlers, so it outlives the ApiServer if the
// io_context still holds completions.
class ApiServer::Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(local::acceptor acceptor, std::shared_ptr<api::RequestDispatcher> dispatcher, std::string socket_path,
           ApiServerLimits limits)
      : acceptor_(std::move(acceptor)),
        retry_timer_(acceptor_.get_executor()),
        dispatcher_(std::move(dispatcher)),
        socket_path_(std::move(socket_path)),
        socket_file_(FileIdentity::of(socket_path_)),
        limits_(limits) {
    if (limits_.max_connections == 0) limits_.max_connections = default_max_api_connections();
  }

  void accept_next() {
    acceptor_.async_accept([self = shared_from_this()](boost::system::error_code ec, local::socket socket) {
      self->on_accept(ec, std::move(socket));
    });
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    retry_timer_.cancel();
    Connection::List connections = std::move(connections_);
    connections_.clear();
    for (const auto& connection : connections) connection->close();
    if (socket_file_ && FileIdentity::of(socket_path_) == socket_file_) ::unlink(socket_path_.c_str());
  }

  std::size_t max_connections() const { return limits_.max_connections; }

 private:
  void on_accept(boost::system::error_code ec, local::socket socket) {
    if (stopped_) return;
    if (ec) return on_accept_error(ec);
    retry_delay_ = kAcceptRetryDelay;
    if (connections_.size() >= limits_.max_connections && !displace_one()) {
      // Every connection is in the middle of a response: this one waits no
      // better elsewhere, so it is refused.
      if (auto held_back = refused_log_.admit()) {
        spdlog::warn("api: {} connections busy, refusing a new one ({} more refused since the last report)",
                     connections_.size(), *held_back);
      }
      boost::system::error_code ignored;
      socket.close(ignored);
    } else {
      admit(std::move(socket));
    }
    accept_next();
  }

  void admit(local::socket socket) {
    auto connection = std::make_shared<Connection>(
        std::move(socket), dispatcher_, limits_,
        [weak = weak_from_this()](Connection& closed) {
          if (auto self = weak.lock()) self->forget(closed);
        });
    connections_.push_back(connection);
    connection->slot = std::prev(connections_.end());
    peak_connections_ = std::max(peak_connections_, connections_.size());
    connection->start();
  }

  void forget(Connection& closed) {
    if (stopped_) return;  // stop() took the list
    connections_.erase(closed.slot);
    if (peak_connections_ >= kTrimAfterPeak && connections_.size() * 4 <= peak_connections_) {
      // Hundreds of connections leave freed heap behind; hand it back.
      peak_connections_ = connections_.size();
      give_memory_back();
    }
  }

  // Closes the connection idle longest, else the one that has spent longest
  // reading a request (a slow client); never one that is being answered.
  bool displace_one() {
    Connection* victim = nullptr;
    for (const auto& candidate : connections_) {
      const auto state = candidate->state();
      if (state != Connection::State::Idle && state != Connection::State::Reading) continue;
      if (victim == nullptr || rank(*candidate) < rank(*victim)) victim = candidate.get();
    }
    if (victim == nullptr) return false;
    if (auto held_back = displaced_log_.admit()) {
      spdlog::warn("api: closed the longest idle of {} connections (limit {}) to make room for a new one "
                   "({} more closed since the last report)",
                   connections_.size(), limits_.max_connections, *held_back);
    }
    victim->close();
    return true;
  }

  // Idle before reading, then the oldest first.
  static std::pair<int, Clock::time_point> rank(const Connection& connection) {
    return {connection.state() == Connection::State::Idle ? 0 : 1, connection.state_since()};
  }

  void on_accept_error(boost::system::error_code ec) {
    // Out of descriptors: the connection idle longest gives its back, so
    // the waiting client, and gossip, get one.
    if (is_out_of_descriptors(ec)) displace_one();
    if (auto held_back = accept_error_log_.admit()) {
      spdlog::warn("api: accept on {} failed: {}; retrying in {} ms ({} more failures since the last report)",
                   socket_path_, ec.message(), retry_delay_.count(), *held_back);
    }
    retry_timer_.expires_after(retry_delay_);
    retry_delay_ = std::min(retry_delay_ * 2, kAcceptRetryMaxDelay);
    retry_timer_.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
      if (!wait_ec && !self->stopped_) self->accept_next();
    });
  }

  local::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  std::shared_ptr<api::RequestDispatcher> dispatcher_;
  std::string socket_path_;
  std::optional<FileIdentity> socket_file_;
  ApiServerLimits limits_;
  Connection::List connections_;  // in order of acceptance
  std::size_t peak_connections_ = 0;
  std::chrono::milliseconds retry_delay_ = kAcceptRetryDelay;
  SparseLog refused_log_;
  SparseLog displaced_log_;
  SparseLog accept_error_log_;
  bool stopped_ = false;
};

ApiServer::ApiServer(asio::io_context& io, const std::string& socket_path, NetworkService& service,
                     SwarmService* swarm, ApiServerLimits limits)
    : ApiServer(io, socket_path, Services{service, swarm}, limits) {}

ApiServer::ApiServer(asio::io_context& io, const std::string& socket_path, Services services,
                     ApiServerLimits limits)
    : io_(io), socket_path_(socket_path), services_(services), limits_(limits) {}

ApiServer::~ApiServer() { stop(); }

void ApiServer::start() {
  if (listener_) throw std::logic_error("ApiServer::start called twice");
  create_parent_directories(socket_path_);
  remove_stale_socket(io_, socket_path_);
  auto acceptor = bind_socket(io_, socket_path_);
  dispatcher_ = std::make_shared<api::RequestDispatcher>(io_, services_, limits_);
  listener_ = std::make_shared<Listener>(std::move(acceptor), dispatcher_, socket_path_, limits_);
  listener_->accept_next();
  spdlog::info("API listening on unix://{} (at most {} connections, {} workers)", socket_path_,
               listener_->max_connections(), dispatcher_->workers());
}

void ApiServer::stop() {
  if (!listener_) return;
  listener_->stop();
  listener_.reset();
  // After the connections are closed, so no new request arrives meanwhile.
  dispatcher_->stop();
  dispatcher_.reset();
}

}  // namespace weft::control::api
