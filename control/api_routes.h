// The local API's routes: turns one parsed HTTP request into a response by
// calling NetworkService. Knows nothing about sockets, so it can be tested
// with a fake service and reused by any transport.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "control/model.h"
#include "control/swarm_model.h"

namespace weft::control::api {

inline constexpr std::string_view kWeftVersion = "0.1.0";
inline constexpr std::string_view kApiVersion = "1.0";

namespace http = boost::beast::http;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// Never throws for a request's sake: errors from the service become
// {"message": ...} responses (ApiError -> its status, anything else -> 500).
// The response mirrors the request's HTTP version and keep-alive, and has its
// payload prepared.
// What the routes call: the swarm routes answer 503 while `swarm` is null
// (an agent built without cluster support, or API tests).
struct Services {
  NetworkService& networks;
  SwarmService* swarm = nullptr;
};

Response handle_request(const Request& request, Services services);
inline Response handle_request(const Request& request, NetworkService& service) {
  return handle_request(request, Services{service});
}

// Decodes %XX escapes in one path segment; nullopt when an escape is
// malformed or decodes to '/' or NUL, which no name or id contains.
std::optional<std::string> percent_decode(std::string_view segment);

}  // namespace weft::control::api
