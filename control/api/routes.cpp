#include "control/api/routes.h"

#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/api/docker_services.h"
#include "control/api/docker_engine.h"
#include "control/api/events.h"
#include "control/api/filters.h"
#include "control/api/json.h"
#include "control/api/services.h"
#include "control/api/swarm.h"
#include "control/model/names.h"
#include "observe/cluster_snapshot.h"

namespace weft::control::api {

namespace {

using nlohmann::json;
using Params = std::vector<std::string>;  // decoded "{...}" segments, in order

// Boost 1.74's Beast speaks boost::string_view, the rest of weft std's.
std::string_view to_std(boost::beast::string_view view) { return {view.data(), view.size()}; }
boost::beast::string_view to_beast(std::string_view view) { return {view.data(), view.size()}; }

struct Reply {
  http::status status = http::status::ok;
  std::string body;
  std::string_view content_type;  // empty: no body
  std::string allow;              // for 405 only
  std::vector<std::pair<std::string, std::string>> headers{};  // more headers
};

Reply json_reply(http::status status, const json& body) {
  return Reply{status, dump(body), "application/json", {}};
}

Reply error_reply(http::status status, const std::string& message) {
  return json_reply(status, json{{"message", message}});
}

// --- handlers ---------------------------------------------------------------

Reply create_network(const Request& request, const Params&, Services& s) {
  const Network network = s.networks.create_network(parse_network_create(request.body()));
  return json_reply(http::status::created, json{{"Id", network.id}, {"Warning", ""}});
}

// dockerd's network filters that mean something here: name (a part of
// it), id (a prefix), driver, scope ("swarm": weft's networks all are).
bool network_matches(const Network& network, const Filters& filters) {
  for (const auto& [key, values] : filters) {
    if (values.empty() || (key != "name" && key != "id" && key != "driver" && key != "scope")) continue;
    bool ok = false;
    for (const std::string& value : values) {
      if (key == "name") ok = network.name.find(value) != std::string::npos;
      else if (key == "id") ok = network.id.starts_with(value);
      else if (key == "driver") ok = network.driver == value;
      else if (key == "scope") ok = value == "swarm";
      if (ok) break;
    }
    if (!ok) return false;
  }
  return true;
}

Reply list_networks(const Request& request, const Params&, Services& s) {
  Filters filters;
  if (auto text = query_parameter(query_of(to_std(request.target())), "filters", kMaxFiltersLength); text && !text->empty())
    filters = parse_filters(*text, {"name", "id", "driver", "scope", "type", "label", "dangling"});
  json networks = json::array();
  for (const Network& network : s.networks.list_networks()) {
    // weft's networks have no labels, are never dangling, and are all custom.
    if (filters.count("label") && !filters["label"].empty()) continue;
    if (filters.count("type") && !filters["type"].empty() && !filters["type"].count("custom")) continue;
    if (network_matches(network, filters)) networks.push_back(network);
  }
  return json_reply(http::status::ok, networks);
}

// A network reference from the path, bounded before the service sees it.
const std::string& network_ref(const Params& params) {
  names::validate_network_ref(params[0]);
  return params[0];
}

const std::string& node_ref(const Params& params) {
  names::validate_text("node name or id", params[0], names::kMaxNodeRef);
  return params[0];
}

Reply inspect_network(const Request&, const Params& params, Services& s) {
  const Network network = s.networks.get_network(network_ref(params));
  return json_reply(http::status::ok, network_detail_json(network, s.networks.list_endpoints()));
}

Reply remove_network(const Request&, const Params& params, Services& s) {
  s.networks.remove_network(network_ref(params));
  return Reply{http::status::no_content, {}, {}, {}};
}

Reply connect(const Request& request, const Params& params, Services& s) {
  const Endpoint endpoint = s.networks.connect(parse_network_connect(network_ref(params), request.body()));
  return json_reply(http::status::ok, json(endpoint));
}

Reply disconnect(const Request& request, const Params& params, Services& s) {
  s.networks.disconnect(parse_network_disconnect(network_ref(params), request.body()));
  return json_reply(http::status::ok, json::object());
}

Reply list_endpoints(const Request&, const Params&, Services& s) {
  return json_reply(http::status::ok, json(s.networks.list_endpoints()));
}

// dockerd's headers: clients negotiate their API version from Api-Version
// (to_response) and learn the swarm's state from Swarm.
Reply ping(const Request&, const Params&, Services& s) {
  const bool active = s.docker && s.docker->swarm_active.load();
  Reply reply{http::status::ok, "OK", "text/plain; charset=utf-8", {}};
  // Every weft node takes swarm-wide changes, so an active one is a manager.
  reply.headers = {{"Docker-Experimental", "false"},
                   {"Swarm", active ? "active/manager" : "inactive"},
                   {"OSType", "linux"},
                   {"Cache-Control", "no-cache, no-store, must-revalidate"},
                   {"Pragma", "no-cache"}};
  return reply;
}

HostFacts host_of(const Services& s) { return s.docker ? s.docker->host : host_facts(); }

void remember_swarm_state(Services& s, bool active) {
  if (s.docker) s.docker->swarm_active = active;
}

Reply version(const Request&, const Params&, Services& s) {
  return json_reply(http::status::ok, version_json(host_of(s)));
}

Reply info(const Request&, const Params&, Services& s) {
  std::optional<SwarmInfo> swarm;
  std::vector<NodeInfo> nodes;
  if (s.swarm) {
    swarm = s.swarm->info();
    remember_swarm_state(s, swarm->active);
    if (swarm->active) {
      try {
        nodes = s.swarm->list_nodes();
      } catch (const ApiError&) {
        // Left meanwhile: no nodes.
      }
    }
  }
  const std::size_t networks = s.networks.list_networks().size();
  return json_reply(http::status::ok, info_json(host_of(s), swarm ? &*swarm : nullptr, nodes, networks));
}

Reply not_implemented(const Request&, const Params&, Services&, const std::string& message) {
  return error_reply(http::status::not_implemented, message);
}

Reply swarm_update(const Request& r, const Params& p, Services& s) {
  return not_implemented(r, p, s,
                         "weft's swarm has no settings to update, and its join token is the cluster's gossip key: "
                         "a new token means a new swarm (`docker swarm leave` on every node, then `docker swarm "
                         "init`)");
}

Reply swarm_unlock(const Request& r, const Params& p, Services& s) {
  return not_implemented(r, p, s, "weft's swarm has no lock: there is nothing to unlock");
}

Reply events_without_stream(const Request& r, const Params& p, Services& s) {
  return not_implemented(r, p, s, "the event stream is served by the agent's API socket only");
}

// --- swarm and nodes ----------------------------------------------------------

SwarmService& swarm_of(Services& s) {
  if (!s.swarm) throw ApiError(ApiError::Kind::Internal, "this agent has no cluster support");
  return *s.swarm;
}

Reply swarm_init(const Request& request, const Params&, Services& s) {
  const SwarmInitRequest init = parse_swarm_init(request.body());
  const SwarmInitResult result = swarm_of(s).init(init);
  remember_swarm_state(s, true);
  // dockerd answers the node's id as a JSON string.
  if (is_docker_path(to_std(request.target()))) return json_reply(http::status::ok, json(result.node_id));
  return json_reply(http::status::ok, swarm_init_json(result));
}

Reply swarm_join(const Request& request, const Params&, Services& s) {
  const SwarmJoinRequest join = parse_swarm_join(request.body());
  swarm_of(s).join(join);
  remember_swarm_state(s, true);
  return json_reply(http::status::ok, json::object());
}

Reply swarm_leave(const Request& request, const Params&, Services& s) {
  swarm_of(s).leave(parse_swarm_leave(request.body()));
  remember_swarm_state(s, false);
  return json_reply(http::status::ok, json::object());
}

Reply swarm_inspect(const Request& request, const Params&, Services& s) {
  const SwarmInfo info = swarm_of(s).info();
  remember_swarm_state(s, info.active);
  if (!is_docker_path(to_std(request.target()))) return json_reply(http::status::ok, swarm_json(info));
  if (!info.active) {
    // dockerd's answer and words, which the CLI shows as they are.
    return error_reply(http::status::service_unavailable,
                       "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to "
                       "connect this node to swarm and try again.");
  }
  return json_reply(http::status::ok, docker_swarm_json(info));
}

// Docker's clients (a versioned path) get Docker's node; weft's CLI weft's.
json node_json_for(const Request& request, const NodeInfo& node) {
  return is_docker_path(to_std(request.target())) ? docker_node_json(node) : node_json(node);
}

Reply list_nodes(const Request& request, const Params&, Services& s) {
  json nodes = json::array();
  for (const auto& n : swarm_of(s).list_nodes()) nodes.push_back(node_json_for(request, n));
  return json_reply(http::status::ok, nodes);
}

Reply inspect_node(const Request& request, const Params& params, Services& s) {
  const std::string& node = node_ref(params);
  return json_reply(http::status::ok, node_json_for(request, swarm_of(s).get_node(node)));
}

// Docker's CLI sends the node's whole spec back with the availability
// changed; weft's sends {"Availability": ...}. Docker answers 200 with no body.
Reply update_node(const Request& request, const Params& params, Services& s) {
  const std::string& node = node_ref(params);
  auto& swarm = swarm_of(s);
  const NodeInfo current = swarm.get_node(node);
  const std::string role = is_docker_path(to_std(request.target()))
                               ? docker_node_json(current)["Spec"].value("Role", std::string("manager"))
                               : current.role;
  swarm.set_node_availability(current.id, parse_node_update(request.body(), role));
  return json_reply(http::status::ok, json::object());
}

Reply remove_node(const Request&, const Params& params, Services& s) {
  const std::string& node = node_ref(params);
  swarm_of(s).remove_node(node);
  return Reply{http::status::no_content, {}, {}, {}};
}

// --- services and the load balancer --------------------------------------------

ServiceApi& services_of(Services& s) {
  if (!s.services) throw ApiError(ApiError::Kind::Internal, "services are not available");
  return *s.services;
}

const std::string& service_ref(const Params& params) {
  validate_service_ref(params[0]);
  return params[0];
}

// Docker's services and tasks (docker_services.h) answer what they make.
Reply from_docker(DockerAnswer answer) {
  return Reply{answer.status, std::move(answer.body), answer.content_type, {}};
}

Reply create_service(const Request& request, const Params&, Services& s) {
  refuse_service_image(request.body(), &s.networks);
  const ServiceSpec spec = parse_service_create(request.body());
  const Service service = services_of(s).create_service(spec);
  return json_reply(http::status::created, json{{"ID", service.id}});
}

Reply list_services(const Request& request, const Params&, Services& s) {
  return from_docker(docker_list_services(to_std(request.target()), services_of(s)));
}

Reply inspect_service(const Request&, const Params& params, Services& s) {
  const std::string& service = service_ref(params);
  return json_reply(http::status::ok, service_json(services_of(s).get_service(service)));
}

Reply remove_service(const Request&, const Params& params, Services& s) {
  const std::string& service = service_ref(params);
  services_of(s).remove_service(service);
  return Reply{http::status::ok, {}, {}, {}};  // Docker answers 200 without a body
}

// Tasks (control/tasks): weft's service tasks, Docker-shaped.
Reply update_service(const Request& request, const Params& params, Services& s) {
  const std::string& service = service_ref(params);
  return from_docker(docker_update_service(service, to_std(request.target()), request.body(), services_of(s)));
}

Reply service_tasks(const Request&, const Params& params, Services& s) {
  const std::string& ref = service_ref(params);
  ServiceApi& services = services_of(s);
  const Service service = services.get_service(ref).service;
  json tasks = json::array();
  for (const TaskRecord& task : services.list_tasks(service.id)) tasks.push_back(task_json(task, service));
  return json_reply(http::status::ok, tasks);
}

// This node's task logs, at most 1 MiB from the end of each task's file.
Reply service_logs(const Request& request, const Params& params, Services& s) {
  const std::string& ref = service_ref(params);
  if (wants_docker_logs(to_std(request.target()))) {
    return from_docker(docker_service_logs(ref, to_std(request.target()), services_of(s), s.swarm));
  }
  return Reply{http::status::ok, services_of(s).task_logs(ref, 1u << 20), "text/plain", {}};
}

Reply list_tasks(const Request& request, const Params&, Services& s) {
  return from_docker(docker_list_tasks(to_std(request.target()), services_of(s), s.networks, s.swarm));
}

Reply inspect_task(const Request&, const Params& params, Services& s) {
  return from_docker(docker_inspect_task(params[0], services_of(s), s.networks, s.swarm));
}

Reply task_logs(const Request& request, const Params& params, Services& s) {
  return from_docker(docker_task_logs(params[0], to_std(request.target()), services_of(s), s.networks, s.swarm));
}

Reply lb_lookup(const Request& request, const Params&, Services& s) {
  const std::string_view target = to_std(request.target());
  const auto question = target.find('?');
  const std::string_view query =
      question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
  const LbLookupRequest lookup = parse_lb_lookup_query(query.substr(0, query.find('#')));
  ServiceApi& services = services_of(s);
  const LbLookupResult result = services.lookup(lookup);
  // The result names the service by id; show its name too, as typed if it
  // went away meanwhile.
  std::string name = lookup.service;
  try {
    name = services.get_service(result.service_id).service.name;
  } catch (const ApiError&) {
  }
  return json_reply(http::status::ok, lb_lookup_json(result, name));
}

// The live page's state JSON (observe/cluster_snapshot.h), for `weft top`.
Reply cluster_state(const Request&, const Params&, Services& s) {
  if (!s.state) throw ApiError(ApiError::Kind::Internal, "this agent has no state feed");
  return Reply{http::status::ok, s.state->state_json(), "application/json", {}};
}

// --- routing ----------------------------------------------------------------

struct Route {
  http::verb method;
  std::string_view pattern;  // "/"-separated; "{...}" matches any one segment
  Reply (*handler)(const Request&, const Params&, Services&);
  Workload workload;
};

constexpr auto kNow = Workload::kImmediate;
constexpr auto kRead = Workload::kRead;
constexpr auto kNetwork = Workload::kNetworkChange;
constexpr auto kSwarm = Workload::kSwarmChange;

// First match wins, so literal segments go before "{id}" at the same place.
constexpr std::array kRoutes{
    Route{http::verb::post, "/networks/create", create_network, kNetwork},
    Route{http::verb::get, "/networks", list_networks, kRead},
    Route{http::verb::get, "/networks/{id}", inspect_network, kRead},
    Route{http::verb::delete_, "/networks/{id}", remove_network, kNetwork},
    Route{http::verb::post, "/networks/{id}/connect", connect, kNetwork},
    Route{http::verb::post, "/networks/{id}/disconnect", disconnect, kNetwork},
    Route{http::verb::get, "/endpoints", list_endpoints, kRead},
    Route{http::verb::post, "/services/create", create_service, kNetwork},
    Route{http::verb::get, "/services", list_services, kRead},
    Route{http::verb::get, "/services/{id}", inspect_service, kRead},
    Route{http::verb::delete_, "/services/{id}", remove_service, kNetwork},
    Route{http::verb::post, "/services/{id}/update", update_service, kNetwork},
    Route{http::verb::get, "/services/{id}/tasks", service_tasks, kRead},
    Route{http::verb::get, "/services/{id}/logs", service_logs, kRead},
    Route{http::verb::get, "/tasks", list_tasks, kRead},
    Route{http::verb::get, "/tasks/{id}", inspect_task, kRead},
    Route{http::verb::get, "/tasks/{id}/logs", task_logs, kRead},
    Route{http::verb::get, "/lb/lookup", lb_lookup, kRead},
    Route{http::verb::post, "/swarm/init", swarm_init, kSwarm},
    Route{http::verb::post, "/swarm/join", swarm_join, kSwarm},
    Route{http::verb::post, "/swarm/leave", swarm_leave, kSwarm},
    Route{http::verb::post, "/swarm/update", swarm_update, kNow},
    Route{http::verb::get, "/swarm/unlockkey", swarm_unlock, kNow},
    Route{http::verb::post, "/swarm/unlock", swarm_unlock, kNow},
    Route{http::verb::get, "/swarm", swarm_inspect, kRead},
    Route{http::verb::get, "/nodes", list_nodes, kRead},
    Route{http::verb::get, "/nodes/{id}", inspect_node, kRead},
    Route{http::verb::delete_, "/nodes/{id}", remove_node, kSwarm},
    Route{http::verb::get, "/api/v1/state", cluster_state, kRead},
    Route{http::verb::post, "/nodes/{id}/update", update_node, kSwarm},
    Route{http::verb::get, "/info", info, kRead},
    Route{http::verb::get, "/events", events_without_stream, kNow},
    Route{http::verb::get, "/_ping", ping, kNow},
    Route{http::verb::head, "/_ping", ping, kNow},  // how Docker clients probe first
    Route{http::verb::get, "/version", version, kNow},
};

std::vector<std::string_view> split_segments(std::string_view path) {
  std::vector<std::string_view> segments;
  if (path.starts_with('/')) path.remove_prefix(1);
  while (true) {
    const auto slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return segments;
}

// Docker clients put the API version first: "/v1.41/networks".
bool is_version_prefix(std::string_view segment) {
  if (segment.size() < 2 || segment[0] != 'v') return false;
  bool previous_was_digit = false;
  for (char c : segment.substr(1)) {
    if (c >= '0' && c <= '9') {
      previous_was_digit = true;
    } else if (c == '.' && previous_was_digit) {
      previous_was_digit = false;
    } else {
      return false;
    }
  }
  return previous_was_digit;
}

// The decoded segments of the target's path without query, version prefix
// or trailing slash; nullopt when a segment is malformed.
std::optional<std::vector<std::string>> path_segments(std::string_view target) {
  target = target.substr(0, target.find_first_of("?#"));
  auto raw = split_segments(target);
  if (raw.size() > 1 && is_version_prefix(raw.front())) raw.erase(raw.begin());
  if (raw.size() > 1 && raw.back().empty()) raw.pop_back();

  std::vector<std::string> segments;
  for (std::string_view segment : raw) {
    auto decoded = percent_decode(segment);
    if (!decoded) return std::nullopt;
    segments.push_back(std::move(*decoded));
  }
  return segments;
}

std::optional<Params> match(std::string_view pattern, const std::vector<std::string>& segments) {
  const auto parts = split_segments(pattern);
  if (parts.size() != segments.size()) return std::nullopt;
  Params params;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].starts_with('{')) {
      if (segments[i].empty()) return std::nullopt;
      params.push_back(segments[i]);
    } else if (parts[i] != segments[i]) {
      return std::nullopt;
    }
  }
  return params;
}

// dockerd's answer to a path that names an API version it does not serve.
std::optional<Reply> refuse_version(const Request& request) {
  std::string_view target = to_std(request.target());
  if (!is_docker_path(target)) return std::nullopt;
  target.remove_prefix(1);
  const auto version = parse_version_segment(target.substr(0, target.find_first_of("/?#")));
  if (auto message = unsupported_version_message(*version)) return error_reply(http::status::bad_request, *message);
  return std::nullopt;
}

Reply route(const Request& request, Services& services) {
  const auto segments = path_segments(to_std(request.target()));
  if (!segments) return error_reply(http::status::bad_request, "malformed percent-encoding in request path");
  if (auto refused = refuse_version(request)) return std::move(*refused);

  std::string allowed;  // methods of routes whose path matched
  for (const Route& candidate : kRoutes) {
    auto params = match(candidate.pattern, *segments);
    if (!params) continue;
    if (candidate.method != request.method()) {
      if (!allowed.empty()) allowed += ", ";
      allowed += to_std(http::to_string(candidate.method));
      continue;
    }
    try {
      return candidate.handler(request, *params, services);
    } catch (const ApiError& e) {
      return error_reply(static_cast<http::status>(e.http_status()), e.what());
    } catch (const std::exception& e) {
      return error_reply(http::status::internal_server_error, e.what());
    }
  }
  if (allowed.empty()) {
    if (auto message = not_implemented_message(segments->front()))
      return error_reply(http::status::not_implemented, *message);
    return error_reply(http::status::not_found, "page not found");
  }
  Reply reply = error_reply(http::status::method_not_allowed, "method not allowed");
  reply.allow = std::move(allowed);
  return reply;
}

// The route a request is answered by: the same search as route(), without
// calling it; null when the router answers itself (404, 405, bad path).
const Route* route_of(const Request& request) {
  const auto segments = path_segments(to_std(request.target()));
  if (!segments) return nullptr;
  for (const Route& candidate : kRoutes) {
    if (candidate.method == request.method() && match(candidate.pattern, *segments)) return &candidate;
  }
  return nullptr;
}

Response to_response(const Request& request, Reply reply) {
  Response response{reply.status, request.version()};
  response.set(http::field::server, "weftd/" + std::string(kWeftVersion));
  response.set("Api-Version", to_beast(kApiVersion));
  if (!reply.content_type.empty()) response.set(http::field::content_type, to_beast(reply.content_type));
  if (!reply.allow.empty()) response.set(http::field::allow, reply.allow);
  for (const auto& [name, value] : reply.headers) response.set(name, value);
  response.body() = std::move(reply.body);
  response.keep_alive(request.keep_alive());
  response.prepare_payload();
  if (request.method() == http::verb::head) {
    // Same headers as GET would have, including Content-Length, but no body.
    response.body().clear();
  }
  return response;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view segment) {
  std::string decoded;
  decoded.reserve(segment.size());
  for (std::size_t i = 0; i < segment.size(); ++i) {
    if (segment[i] != '%') {
      decoded += segment[i];
      continue;
    }
    if (i + 2 >= segment.size()) return std::nullopt;  // needs two hex digits
    const int high = hex_value(segment[i + 1]);
    const int low = hex_value(segment[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    const char c = static_cast<char>(high * 16 + low);
    if (c == '/' || c == '\0') return std::nullopt;
    decoded += c;
    i += 2;
  }
  return decoded;
}

Response handle_request(const Request& request, Services services) {
  return to_response(request, route(request, services));
}

Workload workload_of(const Request& request) {
  const Route* found = route_of(request);
  return found ? found->workload : Workload::kImmediate;
}

std::string_view route_pattern(const Request& request) {
  const Route* found = route_of(request);
  return found ? found->pattern : std::string_view("unmatched");
}

Response error_response(const Request& request, http::status status, const std::string& message) {
  return to_response(request, error_reply(status, message));
}

bool is_event_stream_request(const Request& request) {
  if (request.method() != http::verb::get) return false;
  const auto segments = path_segments(to_std(request.target()));
  return segments && segments->size() == 1 && segments->front() == "events";
}

std::optional<Response> refuse_event_stream(const Request& request, const Services& services) {
  if (auto refused = refuse_version(request)) return to_response(request, std::move(*refused));
  if (!services.docker) return error_response(request, http::status::not_implemented, "this agent has no event stream");
  const std::string_view target = to_std(request.target());
  const auto question = target.find('?');
  try {
    if (question != std::string_view::npos) parse_event_query(target.substr(question + 1));
  } catch (const ApiError& e) {
    return error_response(request, static_cast<http::status>(e.http_status()), e.what());
  }
  return std::nullopt;
}

}  // namespace weft::control::api
