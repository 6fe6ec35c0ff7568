#include "control/api_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
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
// Drops clients that go quiet mid-request or sit idle on a keep-alive
// connection, so a stuck client cannot pin a connection forever.
constexpr std::chrono::seconds kIdleTimeout{60};
// After an accept error such as EMFILE, retrying at once would spin.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};

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

// One client connection: reads requests one after another (keep-alive) and
// answers each through api::handle_request.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(local::socket socket, api::Services services) : stream_(std::move(socket)), services_(services) {}

  void start() { read_request(); }

  // Completions already queued see closed_ and do nothing, so after this the
  // service is never called again through this connection.
  void close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    stream_.socket().shutdown(local::socket::shutdown_both, ignored);
    stream_.close();
  }

 private:
  void read_request() {
    parser_.emplace();
    parser_->body_limit(kMaxBodyBytes);
    stream_.expires_after(kIdleTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (closed_) return;
    if (ec == http::error::body_limit) {
      return reply_and_close(http::status::payload_too_large, "request body exceeds the limit of 1 MiB");
    }
    // A malformed request earns a 400; a client that went away or idled out
    // (end_of_stream, partial_message, timeout, socket errors) gets nothing.
    if (ec && ec.category() == beast::http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return reply_and_close(http::status::bad_request, "malformed HTTP request: " + ec.message());
    }
    if (ec) return close();

    const api::Request request = parser_->release();
    const auto started = std::chrono::steady_clock::now();
    response_ = api::handle_request(request, services_);
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count();
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
    response_ = api::Response{status, 11};
    response_.set(http::field::content_type, "application/json");
    response_.body() = api::dump(nlohmann::json{{"message", message}});
    response_.keep_alive(false);
    response_.prepare_payload();
    write_response();
  }

  void write_response() {
    stream_.expires_after(kIdleTimeout);
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    if (closed_) return;
    if (ec || response_.need_eof()) return close();
    read_request();
  }

  beast::basic_stream<local> stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;  // fresh per request
  api::Response response_;  // kept alive until async_write is done with it
  api::Services services_;
  bool closed_ = false;
};

}  // namespace

// Owns the accepting socket and knows the live connections so stop() can end
// them. Shared with its pending handlers, so it outlives the ApiServer if the
// io_context still holds completions.
class ApiServer::Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(local::acceptor acceptor, api::Services services, std::string socket_path)
      : acceptor_(std::move(acceptor)),
        retry_timer_(acceptor_.get_executor()),
        services_(services),
        socket_path_(std::move(socket_path)),
        socket_file_(FileIdentity::of(socket_path_)) {}

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
    for (const auto& weak : connections_) {
      if (auto connection = weak.lock()) connection->close();
    }
    connections_.clear();
    if (socket_file_ && FileIdentity::of(socket_path_) == socket_file_) ::unlink(socket_path_.c_str());
  }

 private:
  void on_accept(boost::system::error_code ec, local::socket socket) {
    if (stopped_) return;
    if (ec) {
      spdlog::warn("api: accept on {} failed: {}", socket_path_, ec.message());
      retry_timer_.expires_after(kAcceptRetryDelay);
      retry_timer_.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
        if (!wait_ec && !self->stopped_) self->accept_next();
      });
      return;
    }
    std::erase_if(connections_, [](const auto& weak) { return weak.expired(); });
    auto connection = std::make_shared<Connection>(std::move(socket), services_);
    connections_.push_back(connection);
    connection->start();
    accept_next();
  }

  local::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  api::Services services_;
  std::string socket_path_;
  std::optional<FileIdentity> socket_file_;
  std::vector<std::weak_ptr<Connection>> connections_;
  bool stopped_ = false;
};

ApiServer::ApiServer(asio::io_context& io, const std::string& socket_path, NetworkService& service,
                     SwarmService* swarm)
    : io_(io), socket_path_(socket_path), service_(service), swarm_(swarm) {}

ApiServer::~ApiServer() { stop(); }

void ApiServer::start() {
  if (listener_) throw std::logic_error("ApiServer::start called twice");
  create_parent_directories(socket_path_);
  remove_stale_socket(io_, socket_path_);
  listener_ = std::make_shared<Listener>(bind_socket(io_, socket_path_), api::Services{service_, swarm_}, socket_path_);
  listener_->accept_next();
  spdlog::info("API listening on unix://{}", socket_path_);
}

void ApiServer::stop() {
  if (!listener_) return;
  listener_->stop();
  listener_.reset();
}

}  // namespace weft::control
