// What makes weftd look like dockerd to Docker's clients (the docker CLI,
// Portainer, docker-swarm-visualizer): API version negotiation, `/_ping`'s
// headers, `/version`, `/info`, Docker's shapes of the swarm and its nodes,
// and a clear 501 for what weft is not (containers, images, volumes...).
//
// Two dialects share the routes. A request whose path starts with an API
// version (`/v1.41/nodes`) comes from a Docker client and gets Docker's
// shapes where weft's own differ (a node's `Status` is Docker's object, swarm
// init answers the node id as a JSON string); an unversioned path is weft's
// own API (the `weft` CLI), whose JSON stays as it was.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "control/api/events.h"
#include "control/model/swarm_model.h"

namespace weft::control::api {

// Docker 20.10's API version, the highest served, and dockerd's lowest.
inline constexpr std::string_view kDockerApiVersion = "1.41";
inline constexpr std::string_view kDockerMinApiVersion = "1.24";

struct ApiVersion {
  unsigned major = 0;
  unsigned minor = 0;
  auto operator<=>(const ApiVersion&) const = default;
};

// "v1.41" -> {1, 41}; nullopt when the segment is not "v" MAJOR "." MINOR
// with at most 4 digits each.
std::optional<ApiVersion> parse_version_segment(std::string_view segment);

// dockerd's 400 message for a version outside [1.24, 1.41], else nullopt.
std::optional<std::string> unsupported_version_message(ApiVersion version);

// The request's path names an API version: a Docker client is asking.
bool is_docker_path(std::string_view target);

// Facts about the machine the agent runs on, for `/version` and `/info`.
struct HostFacts {
  std::string hostname;
  std::string kernel_version;    // uname -r
  std::string operating_system;  // /etc/os-release PRETTY_NAME
  std::string architecture;      // uname -m ("x86_64"), /info's Architecture
  std::string go_arch;           // Go's name ("amd64"), /version's Arch
  long ncpu = 0;
  long long mem_total = 0;  // bytes
};
HostFacts host_facts();

nlohmann::json version_json(const HostFacts& host);

// What the Docker routes keep between requests; one per agent, shared by
// the API's threads.
struct DockerEngineState {
  HostFacts host = host_facts();
  EventBus events;
  // The swarm's state as last learnt (by a swarm route or the event
  // watcher), for `/_ping`'s Swarm header: _ping never waits for the cluster.
  std::atomic<bool> swarm_active = false;
};

// `GET /info`. `swarm` is null for an agent without cluster support; `nodes`
// are the swarm's nodes when it is active.
nlohmann::json info_json(const HostFacts& host, const SwarmInfo* swarm, const std::vector<NodeInfo>& nodes,
                         std::size_t networks);

// Docker's node (`GET /v1.xx/nodes`): ID, Description.Hostname, Status {State,
// Addr}, Spec {Role, Availability}, ManagerStatus. weft has no managers and
// no leader: every weft node takes swarm-wide changes, so each is shown as a
// manager that is "reachable" while Ready and "unreachable" otherwise, never
// "Leader"; a plain serf agent in the cluster is a worker.
nlohmann::json docker_node_json(const NodeInfo& node);

// Docker's swarm (`GET /v1.xx/swarm`): ID, Spec.Name, JoinTokens (weft has
// one token, the same for workers and managers), plus weft's fields.
nlohmann::json docker_swarm_json(const SwarmInfo& info);

// The cluster's id: derived from the gossip key, so every node of the
// swarm shows the same one and a new swarm a new one.
std::string cluster_id(const SwarmInfo& info);

// The 501 message for a path whose first segment (after the version
// prefix) is something weft is not (containers, images, volumes...), naming
// the weft command to use instead; nullopt for any other segment.
std::optional<std::string> not_implemented_message(std::string_view first_segment);

}  // namespace weft::control::api
