// The cluster as the API and the CLI see it: `weft swarm ...` and
// `weft node ...`, modelled on Docker's swarm and node commands.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "control/model/model.h"

namespace weft::control {

struct SwarmInitRequest {
  // Address:port other nodes reach this node's gossip at; default: the
  // agent's advertise address and gossip port.
  std::optional<std::string> advertise_addr{};
};

struct SwarmInitResult {
  std::string node_id;
  std::string join_token;
  std::string advertise;  // "ip:port" to pass to `weft swarm join`
};

// `weft swarm leave [--drain SECONDS]`
struct SwarmLeaveRequest {
  // This node's service backends first get no new connections for this long
  // on every other node, while their open ones go on; then the node leaves
  // (and its backends' remaining flows elsewhere are reset). 0: at once.
  std::uint32_t drain_seconds = 0;
};
// The longest drain a leave waits for (the request waits with it).
inline constexpr std::uint32_t kMaxLeaveDrainSeconds = 3600;

struct SwarmJoinRequest {
  std::string join_token;
  std::vector<std::string> remote_addrs;  // "ip:port"
};

struct NodeInfo {
  std::string id;            // the node's id (its name for a non-weft peer)
  std::string hostname;      // the node name
  std::string status;        // "ready", "down" or "left" (Docker: Ready/Down)
  std::string availability;  // "active", "pause" or "drain" (Swarm's)
  std::string address;       // underlay "ip:port" of its gossip
  std::string role;          // "weft", or "serf" for a plain serf agent
  std::string membership;    // gossip state: "alive", "suspect", "dead", "left"
  bool self = false;
  std::uint32_t incarnation = 0;
};

struct SwarmInfo {
  bool active = false;
  std::string node_id;
  std::string node_name;
  std::string gossip_key_base64;  // the form serf's -encrypt takes
  std::string join_token;
  std::string advertise;
};

// Implemented by the agent's cluster layer; API tests use a fake. Errors are
// ApiError (control/model/model.h).
class SwarmService {
 public:
  virtual ~SwarmService() = default;
  virtual SwarmInitResult init(const SwarmInitRequest& request) = 0;
  virtual void join(const SwarmJoinRequest& request) = 0;
  virtual void leave(const SwarmLeaveRequest& request) = 0;
  virtual SwarmInfo info() = 0;
  virtual std::vector<NodeInfo> list_nodes() = 0;
  virtual NodeInfo get_node(const std::string& id_or_name) = 0;
  // A node gone for good: its address ranges go to a live node. Refused
  // while the node is alive.
  virtual void remove_node(const std::string& id_or_name) = 0;
  // Swarm's availability: "active", "pause" (keeps its tasks, gets no new
  // ones) or "drain" (its tasks move to other nodes). Replicated: any node
  // may set any node's, and it outlives the node's restarts.
  virtual void set_node_availability(const std::string& id_or_name, const std::string& availability) {
    (void)id_or_name;
    (void)availability;
    throw ApiError(ApiError::Kind::Internal, "this agent cannot change a node's availability");
  }
};

// "active", "pause", "drain": the availabilities a node may be given.
inline bool is_node_availability(const std::string& text) {
  return text == "active" || text == "pause" || text == "drain";
}

}  // namespace weft::control
