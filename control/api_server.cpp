#include "control/api_server.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <list>
#include <optional>
#include <utility>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "control/api_json.h"
#include "control/api_routes.h"

namespace weft::control {

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

// One client connection: waits for a request (idle), reads it (reading),
// answers it through api::handle_request (writing), and again (keep-alive).
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class State { Idle, Reading, Writing, Closed };
  using List = std::list<std::shared_ptr<Connection>>;

  Connection(local::socket socket, api::Services services, const ApiServerLimits& limits,
             std::function<void(Connection&)> on_closed)
      : stream_(std::move(socket)), services_(services), limits_(limits), on_closed_(std::move(on_closed)) {}

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

    const api::Request request = parser_->release();
    parser_.reset();
    const auto started = Clock::now();
    response_ = api::handle_request(request, services_);
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count();
    const unsigned status = response_.result_int();
    spdlog::debug("api: {} {} -> {} ({} us)", as_std(request.method_string()), as_std(request.target()), status,
                  micros);
    if (status >= 500) {
      spdlog::warn("api: {} {} failed: {}", as_std(request.method_string()), as_std(request.target()),
                   response_.body());
    }
    write_response();
  }

  // After a framing error the rest of the stream cannot be trusted, so the
  // connection ends with this response.
  void reply_and_close(http::status status, const std::string& message) {
    spdlog::debug("api: rejected request: {}", message);
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

  beast::basic_stream<local> stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;  // while a request is read
  api::Response response_;  // kept alive until async_write is done with it
  api::Services services_;
  const ApiServerLimits limits_;
  std::function<void(Connection&)> on_closed_;
  State state_ = State::Idle;
  Clock::time_point state_since_ = Clock::now();
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
  Listener(local::acceptor acceptor, api::Services services, std::string socket_path, ApiServerLimits limits)
      : acceptor_(std::move(acceptor)),
        retry_timer_(acceptor_.get_executor()),
        services_(services),
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
        std::move(socket), services_, limits_,
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
  api::Services services_;
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
    : io_(io), socket_path_(socket_path), service_(service), swarm_(swarm), limits_(limits) {}

ApiServer::~ApiServer() { stop(); }

void ApiServer::start() {
  if (listener_) throw std::logic_error("ApiServer::start called twice");
  create_parent_directories(socket_path_);
  remove_stale_socket(io_, socket_path_);
  listener_ = std::make_shared<Listener>(bind_socket(io_, socket_path_), api::Services{service_, swarm_}, socket_path_,
                                         limits_);
  listener_->accept_next();
  spdlog::info("API listening on unix://{} (at most {} connections)", socket_path_, listener_->max_connections());
}

void ApiServer::stop() {
  if (!listener_) return;
  listener_->stop();
  listener_.reset();
}

}  // namespace weft::control
