#include "tools/api_client.h"

#include <limits>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "control/api/routes.h"

namespace weft::tools {

namespace asio = boost::asio;
namespace beast = boost::beast;
using local = asio::local::stream_protocol;

namespace {

constexpr std::string_view kUnixScheme = "unix://";

std::string socket_path_of(const std::string& host) {
  std::string path;
  if (host.starts_with(kUnixScheme)) {
    path = host.substr(kUnixScheme.size());
  } else if (host.find("://") == std::string::npos) {
    path = host;
  } else {
    throw std::invalid_argument("unsupported agent address \"" + host +
                                "\": weft agents listen on unix sockets (unix:///path/to.sock)");
  }
  if (path.empty()) throw std::invalid_argument("agent address \"" + host + "\" names no socket path");
  return path;
}

bool is_peer_gone(const boost::system::error_code& ec) {
  return ec == asio::error::broken_pipe || ec == asio::error::connection_reset;
}

bool is_unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

}  // namespace

std::string ApiResponse::error_message() const {
  if (json.is_object()) {
    auto message = json.find("message");
    if (message != json.end() && message->is_string()) return message->get<std::string>();
  }
  const auto end = text.find_last_not_of(" \t\r\n");
  if (end != std::string::npos) return text.substr(0, end + 1);
  return "HTTP " + std::to_string(status);
}

struct ApiClient::Connection {
  asio::io_context io;
  local::socket socket{io};
  beast::flat_buffer buffer;

  void close() {
    boost::system::error_code ignored;
    socket.close(ignored);
    buffer.clear();
  }
};

ApiClient::ApiClient(std::string host)
    : socket_path_(socket_path_of(host)), connection_(std::make_unique<Connection>()) {
  host_ = std::string(kUnixScheme) + socket_path_;
}

ApiClient::~ApiClient() = default;
ApiClient::ApiClient(ApiClient&&) noexcept = default;
ApiClient& ApiClient::operator=(ApiClient&&) noexcept = default;

ApiResponse ApiClient::request(http::verb method, std::string_view target,
                               const std::optional<nlohmann::json>& body) {
  if (!body) return request_raw(method, target, {}, {});
  return request_raw(method, target, body->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                     "application/json");
}

ApiResponse ApiClient::request_raw(http::verb method, std::string_view target, std::string body,
                                   std::string_view content_type) {
  http::request<http::string_body> request{method, beast::string_view(target.data(), target.size()), 11};
  request.set(http::field::host, "weftd");
  request.set(http::field::user_agent, "weft/" + std::string(control::api::kWeftVersion));
  if (!content_type.empty()) {
    request.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  }
  request.body() = std::move(body);
  request.keep_alive(true);
  request.prepare_payload();

  Connection& connection = *connection_;
  // The agent closes idle keep-alive connections; a request that finds its
  // reused connection closed before any answer was sent is retried once on a
  // fresh one (the agent cannot have acted on it).
  for (int attempt = 0;; ++attempt) {
    const bool reused = connection.socket.is_open();
    boost::system::error_code ec;
    if (!reused) {
      connection.socket.connect(local::endpoint(socket_path_), ec);
      if (ec) {
        connection.close();
        throw ApiConnectionError("Cannot connect to the weft agent at " + host_ + ". Is weftd running? (connect: " +
                                 ec.message() + ")");
      }
    }

    // The agent may answer and close before taking the whole body (a body
    // over its limit): the write then fails but the answer is waiting.
    boost::system::error_code write_ec;
    http::write(connection.socket, request, write_ec);
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    parser.skip(method == http::verb::head);  // its Content-Length describes a body that is not sent
    if (!write_ec || is_peer_gone(write_ec)) http::read(connection.socket, connection.buffer, parser, ec);
    if (write_ec || ec) connection.close();
    if (ec || (write_ec && !is_peer_gone(write_ec))) {
      const auto failure = ec ? ec : write_ec;
      if (reused && attempt == 0 && (failure == http::error::end_of_stream || is_peer_gone(failure))) continue;
      throw ApiConnectionError("Error talking to the weft agent at " + host_ + ": " + failure.message());
    }

    auto response = parser.release();
    if (!response.keep_alive()) connection.close();

    ApiResponse result;
    result.status = response.result_int();
    result.text = std::move(response.body());
    if (!result.text.empty()) {
      result.json = nlohmann::json::parse(result.text, nullptr, /*allow_exceptions=*/false);
      if (result.json.is_discarded()) result.json = nullptr;
    }
    return result;
  }
}

nlohmann::json ApiClient::call(http::verb method, std::string_view target,
                               const std::optional<nlohmann::json>& body) {
  ApiResponse response = request(method, target, body);
  if (!response.ok()) throw ApiStatusError(response.status, response.error_message());
  return std::move(response.json);
}

std::string escape_path_segment(std::string_view segment) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string escaped;
  for (unsigned char c : segment) {
    if (is_unreserved(static_cast<char>(c))) {
      escaped += static_cast<char>(c);
    } else {
      escaped += '%';
      escaped += kHex[c >> 4];
      escaped += kHex[c & 0x0F];
    }
  }
  return escaped;
}

}  // namespace weft::tools
