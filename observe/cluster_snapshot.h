// What the live page (/ui), its feeds (/api/v1/state, /api/v1/events) and
// `weft top` show: one picture of the cluster as this agent knows it, in
// plain values, so the page's JSON, the event diff and their tests need no
// running agent. StateSource is the narrow interface that fills it;
// AgentStateSource (cluster_snapshot_source.h) reads the agent's managers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace weft::observe {

struct SnapshotNode {
  std::string name;
  std::string address;  // underlay IPv4 (without the gossip port)
  std::string state;    // "Ready", "Down" or "Left"
  std::string role;     // "weft", or "serf" for a plain serf agent
  bool self = false;
  bool operator==(const SnapshotNode&) const = default;
};

struct SnapshotNetwork {
  std::string name;
  std::string id;      // short (12 hex)
  std::string subnet;  // "10.0.0.0/24"
  std::uint32_t vni = 0;
  std::map<std::string, std::uint32_t> endpoints_per_node;
  bool operator==(const SnapshotNetwork&) const = default;
};

struct SnapshotBackend {
  std::string endpoint;  // short endpoint id
  std::string name;      // endpoint name
  std::string ip;
  std::string node;
  std::string state;  // "active" or "draining"
  // Connections the load balancer of this node has sent to it since it
  // started (a counter; `weft top` turns two reads into a rate); -1: no
  // load balancer on this node.
  std::int64_t connections = -1;
  bool operator==(const SnapshotBackend&) const = default;
};

struct SnapshotVip {
  std::string network;  // network name
  std::string addr;     // "10.0.0.2"
  bool operator==(const SnapshotVip&) const = default;
};

struct SnapshotService {
  std::string name;
  std::string id;    // short
  std::string mode;  // "vip" or "dnsrr"
  std::vector<SnapshotVip> vips;
  std::vector<std::string> ports;  // "6379/tcp"
  std::uint64_t replicas = 0;
  std::uint64_t running = 0;
  std::vector<SnapshotBackend> backends;
  std::vector<std::string> dns_names;  // name, tasks.name, aliases of its backends
  bool operator==(const SnapshotService&) const = default;
};

struct SnapshotTask {
  std::string id;  // "<service name>.<slot>", as `weft service ps` names it
  std::string service;
  std::uint64_t slot = 0;
  std::string node;
  std::string state;  // "starting", "running", "restarting", "stopping", "failed", "complete"
  std::string since;  // RFC 3339: when its current process started
  std::string error;
  bool operator==(const SnapshotTask&) const = default;
};

struct ClusterSnapshot {
  std::string node;     // the agent that made it
  std::string version;  // weft's
  std::vector<SnapshotNode> nodes;
  std::vector<SnapshotNetwork> networks;
  std::vector<SnapshotService> services;
  std::vector<SnapshotTask> tasks;
  // Only the picture, not when it was taken: equal snapshots mean nothing changed.
  bool operator==(const ClusterSnapshot&) const = default;
};

// Bounds on what one snapshot carries, whatever the cluster holds: the page
// must stay a page. Over them the lists are cut (and "truncated" says so).
struct SnapshotLimits {
  std::size_t max_nodes = 1024;
  std::size_t max_networks = 256;
  std::size_t max_services = 1024;
  std::size_t max_backends_per_service = 256;
  std::size_t max_tasks = 4096;
  std::size_t max_dns_names_per_service = 16;
};

// Cuts the lists to `limits`; true if anything was cut.
bool apply_limits(ClusterSnapshot& snapshot, const SnapshotLimits& limits);

// The state JSON (see README "Live page and weft top"): {"node", "version",
// "nodes": [...], "networks": [...], "services": [...], "tasks": [...]}.
// Compact keys are not worth it: field names stay readable for scripts.
nlohmann::json to_json(const ClusterSnapshot& snapshot);
ClusterSnapshot snapshot_from_json(const nlohmann::json& json);  // for `weft top` and tests

// What the observability code reads the cluster through. Implementations
// must be safe to call from any thread.
class StateSource {
 public:
  virtual ~StateSource() = default;
  virtual ClusterSnapshot read() = 0;
};

// What the local API's `GET /api/v1/state` and the listener's routes serve:
// the latest state JSON with the recent events (EventFeed implements it).
class StateView {
 public:
  virtual ~StateView() = default;
  virtual std::string state_json() const = 0;
};

}  // namespace weft::observe
