// Blocking client of the agent's local API (HTTP/1.1 over a unix socket), for
// the CLI, tests and benchmarks. Keeps its connection open between requests.
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>

namespace weft::tools {

namespace http = boost::beast::http;

inline constexpr std::string_view kDefaultHost = "unix:///run/weft/weftd.sock";

struct ApiResponse {
  unsigned status = 0;
  std::string text;     // the body as received
  nlohmann::json json;  // the body parsed; null when empty or not JSON

  bool ok() const { return status >= 200 && status < 300; }
  // The agent's {"message": ...}, else the body text, else "HTTP <status>".
  std::string error_message() const;
};

// The agent could not be reached, or the connection broke mid-request.
class ApiConnectionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The agent answered with an error status; what() is the agent's message.
class ApiStatusError : public std::runtime_error {
 public:
  ApiStatusError(unsigned status, const std::string& message) : std::runtime_error(message), status_(status) {}
  unsigned status() const { return status_; }

 private:
  unsigned status_;
};

class ApiClient {
 public:
  // `host`: "unix:///path/to.sock" or a bare socket path. Throws
  // std::invalid_argument for anything else (e.g. tcp://).
  explicit ApiClient(std::string host);
  ~ApiClient();
  ApiClient(ApiClient&&) noexcept;
  ApiClient& operator=(ApiClient&&) noexcept;

  // "unix:///path", however the host was given.
  const std::string& host() const { return host_; }
  const std::string& socket_path() const { return socket_path_; }

  // Sends `body` (if any) as JSON. Any status is returned; only transport
  // failures throw (ApiConnectionError).
  ApiResponse request(http::verb method, std::string_view target,
                      const std::optional<nlohmann::json>& body = std::nullopt);
  // The same with a body sent verbatim, e.g. to test malformed input.
  ApiResponse request_raw(http::verb method, std::string_view target, std::string body,
                          std::string_view content_type);

  // request() for callers that only care about success: the parsed body, or
  // ApiStatusError carrying the agent's message for a non-2xx status.
  nlohmann::json call(http::verb method, std::string_view target,
                      const std::optional<nlohmann::json>& body = std::nullopt);

 private:
  struct Connection;

  std::string host_;
  std::string socket_path_;
  std::unique_ptr<Connection> connection_;
};

// Percent-encodes one path segment (a network name typed by a user may hold
// characters that are not safe in a URL path).
std::string escape_path_segment(std::string_view segment);

}  // namespace weft::tools
