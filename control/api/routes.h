// The local API's routes: turns one parsed HTTP request into a response by
// calling NetworkService. Knows nothing about sockets, so it can be tested
// with a fake service and reused by any transport.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "control/model/model.h"
#include "control/model/service_model.h"
#include "control/model/swarm_model.h"

namespace weft::observe {
class StateView;  // observe/cluster_snapshot.h
}

namespace weft::control::api {

inline constexpr std::string_view kWeftVersion = WEFT_VERSION;  // project(VERSION), see CMakeLists.txt
inline constexpr std::string_view kApiVersion = "1.41";

namespace http = boost::beast::http;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// Never throws for a request's sake: errors from the service become
// {"message": ...} responses (ApiError -> its status, anything else -> 500).
// The response mirrors the request's HTTP version and keep-alive, and has its
// payload prepared.
// What the routes call: the swarm routes answer 500 while `swarm` is null
// (an agent built without cluster support, or API tests), the service and
// load-balancer routes while `services` is.
struct DockerEngineState;  // docker_engine.h
struct Services {
  NetworkService& networks;
  SwarmService* swarm = nullptr;
  ServiceApi* services = nullptr;
  // `GET /api/v1/state` (the live page's state JSON, for `weft top`); 500 while null.
  const observe::StateView* state = nullptr;
  // Host facts, the event bus and the cached swarm state of the Docker
  // routes (docker_engine.h); when null, /events answers 501 and the rest
  // works from fresh facts.
  DockerEngineState* docker = nullptr;
};

Response handle_request(const Request& request, Services services);
inline Response handle_request(const Request& request, NetworkService& service) {
  return handle_request(request, Services{service});
}

// What answering a request involves, so that the transport can run it where
// it holds up nobody else (see server.h).
enum class Workload {
  // Touches no service: _ping, /version, and every error the router answers
  // itself (404, 405, malformed path). Microseconds.
  kImmediate,
  // Reads the services' state: lists, inspects, swarm info, lb lookup.
  kRead,
  // Changes networks, endpoints or services; may wait for a peer to donate
  // addresses (up to 8 s).
  kNetworkChange,
  // Changes this node's swarm membership (init, join, leave, node rm); may
  // wait for peers for up to 15 s.
  kSwarmChange,
};
Workload workload_of(const Request& request);

// The route template that answers a request ("/networks/{id}"), for metrics:
// never the raw path, so its values are bounded by the route table.
// "unmatched" when no route takes it (404, 405, a malformed path).
std::string_view route_pattern(const Request& request);

// An error response with the same headers handle_request gives one:
// {"message": ...}, the request's HTTP version and keep-alive.
Response error_response(const Request& request, http::status status, const std::string& message);

// `GET /events` (any API version): the transport streams these itself
// (server.cpp) instead of calling handle_request.
bool is_event_stream_request(const Request& request);
// The response that refuses or ends a request for the event stream before
// it starts (bad version or query, no event bus), else nullopt.
std::optional<Response> refuse_event_stream(const Request& request, const Services& services);

// Decodes %XX escapes in one path segment; nullopt when an escape is
// malformed or decodes to '/' or NUL, which no name or id contains.
std::optional<std::string> percent_decode(std::string_view segment);

}  // namespace weft::control::api
