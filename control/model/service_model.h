// Services as the API, the CLI, the cluster and the load balancer see them:
// `weft service ...`, modelled on Docker's services. A service has one VIP
// per network (endpoint mode vip) or none (dnsrr); its backends are the
// endpoints attached with `--service` (control/model/model.h Endpoint::service_id),
// on any node. Addresses are typed; text only at the JSON edge.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "control/model/model.h"
#include "dataplane/address.h"

namespace weft::control {

enum class EndpointMode : std::uint8_t { vip, dnsrr };
enum class PortProtocol : std::uint8_t { tcp = 6, udp = 17 };
// When a task that exited is started again (Docker's RestartPolicy.Condition).
enum class RestartCondition : std::uint8_t { any, on_failure, none };

struct PublishedPort {
  std::uint16_t port = 0;  // 1..65535
  PortProtocol protocol = PortProtocol::tcp;
  auto operator<=>(const PublishedPort&) const = default;
};

// What a user asks for with `weft service create`; kept as typed, the
// service manager parses it and says what is wrong with it.
struct ServiceSpec {
  std::string name;
  std::vector<std::string> networks;         // names, ids or unique id prefixes; at least one
  std::optional<std::string> endpoint_mode;  // "vip" (default) or "dnsrr"
  std::vector<std::string> ports;            // "6379", "6379/tcp", "53/udp"
  // Tasks: the command (argv) each replica runs; none: backends are attached
  // by hand, as before tasks existed.
  std::vector<std::string> command{};
  std::optional<std::uint64_t> replicas{};         // default 1 with a command
  std::optional<std::string> restart_condition{};  // "any" (default), "on-failure", "none"
};

// `weft service update`: what changes; absent fields stay as they are.
struct ServiceUpdate {
  std::optional<std::uint64_t> replicas;
};

struct ServiceVip {
  std::string network_id;
  dataplane::Ipv4 addr{};
  int prefix_len = 0;  // its network's: "10.0.0.2/24" at the JSON edge
};

struct Service {
  std::string id;  // 64 hex chars, like Docker's
  std::string name;
  EndpointMode mode = EndpointMode::vip;
  std::vector<PublishedPort> ports;
  std::vector<std::string> network_ids;
  std::vector<ServiceVip> vips;  // one per network in vip mode, none in dnsrr
  std::string created;           // RFC 3339
  std::string node;              // node that created (owns) it
  // Tasks (control/tasks): empty command = no tasks, replicas is then 0.
  std::vector<std::string> command{};
  std::uint64_t replicas = 0;
  RestartCondition restart_condition = RestartCondition::any;
  std::uint64_t version = 0;  // raised by each update; a record's newer copy wins
};

// The tasks table's key of one holder of a slot: "<service id>.<slot>@<node>".
inline std::string task_key(const std::string& service_id, std::uint64_t slot, const std::string& node) {
  return service_id + "." + std::to_string(slot) + "@" + node;
}

// One task of a service: a replica slot running on a node. Published by the
// node that runs it in the cluster's node-scoped `tasks` table, so a dead
// node's tasks vanish with it (control/tasks).
struct TaskRecord {
  std::string service_id{};
  std::uint64_t slot = 0;  // 1..replicas
  std::string node{};
  std::string endpoint_id{};  // first network's endpoint; empty until attached
  std::string state{};        // "starting", "running", "restarting", "stopping", "failed", "complete"
  std::string started_at{};   // RFC 3339 with nanoseconds, of the current process
  std::string error{};        // why the last run ended, if it failed
  std::int64_t pid = 0;       // on `node`
  std::string netns{};        // path of the task's network namespace, on `node`
  // The table key: one record per (service, slot, node), so two holders of
  // a slot (a partition) are both seen and one of them can stop.
  std::string key() const { return task_key(service_id, slot, node); }
};

// The log of one task on this node: at most the requested bytes from its end.
struct TaskLog {
  std::uint64_t slot = 0;
  std::string text{};
};

// Per-backend counters, as the load balancer's maps hold them (summed over
// CPUs). Only the node whose programs saw the flows counts them; the
// inspecting node shows its own view.
struct BackendCounters {
  std::uint64_t connections = 0;
  std::uint64_t packets = 0;  // client -> backend
  std::uint64_t bytes = 0;
};

// One backend of a service: an endpoint attached with --service.
struct ServiceBackendInfo {
  std::string endpoint_id;
  std::string endpoint_name;
  std::string network_id;
  dataplane::Ipv4 ip{};
  std::string node;
  BackendState state = BackendState::active;
  std::optional<BackendCounters> counters{};  // nullopt: no load balancer here
};

struct ServiceDetail {
  Service service;
  std::vector<ServiceBackendInfo> backends;
  std::uint64_t running_tasks = 0;  // task records in state "running", cluster-wide
};

// `weft lb lookup SERVICE --src IP:PORT --dport N [--proto tcp|udp] [--network NET]`
struct LbLookupRequest {
  std::string service;                 // name, id or unique prefix
  std::optional<std::string> network;  // needed when the service has several
  std::string src;                     // "IP:PORT" as typed
  std::string dport;                   // as typed
  std::optional<std::string> proto;    // "tcp" (default) or "udp"
};

struct LbLookupResult {
  std::string service_id;
  std::string network_id;
  dataplane::Ipv4 vip{};
  std::string backend_endpoint_id;  // empty: no backend would get the flow
  dataplane::Ipv4 backend_ip{};
  std::string lb_backend;           // "ebpf" or "nftables"
  bool deterministic = true;        // false: nftables draws at random per connection
};

// The operations behind `weft service` and `weft lb`. Implemented by the
// agent's service manager (control/services); API tests use a fake. Errors
// are ApiError. Safe to call from several threads.
class ServiceApi {
 public:
  virtual ~ServiceApi() = default;
  virtual Service create_service(const ServiceSpec& spec) = 0;
  virtual std::vector<ServiceDetail> list_services() = 0;
  // list_services() for the live page's poller, which shows only the first
  // `max_with_backends` services of it (by name, then id) and reads the
  // others for their tasks alone. Those others come without backends,
  // counters and running tasks, which are nearly all of the list's cost
  // (10 000 services x 10 backends: 100 000 backend records and 10 000
  // counter reads), and only those with tasks (a command) come, so 10 000
  // services without are not copied per read. The poller asks twice a
  // second.
  virtual std::vector<ServiceDetail> list_services_for_page(std::size_t max_with_backends) {
    auto all = list_services();
    std::stable_sort(all.begin(), all.end(), [](const ServiceDetail& a, const ServiceDetail& b) {
      return std::tie(a.service.name, a.service.id) < std::tie(b.service.name, b.service.id);
    });
    std::size_t kept = std::min(max_with_backends, all.size());
    for (std::size_t i = kept; i < all.size(); ++i)
      if (!all[i].service.command.empty()) {
        all[i].backends = {};
        all[i].running_tasks = 0;
        if (kept != i) all[kept] = std::move(all[i]);
        ++kept;
      }
    all.resize(kept);
    return all;
  }
  virtual ServiceDetail get_service(const std::string& name_or_id) = 0;
  virtual void remove_service(const std::string& name_or_id) = 0;
  virtual LbLookupResult lookup(const LbLookupRequest& request) = 0;
  // Tasks; an agent without them refuses (API tests' fakes need not know).
  virtual Service update_service(const std::string& name_or_id, const ServiceUpdate& update) {
    (void)name_or_id, (void)update;
    throw ApiError(ApiError::Kind::Internal, "service update is not available");
  }
  virtual std::vector<TaskRecord> list_tasks(const std::string& name_or_id) {
    (void)name_or_id;
    throw ApiError(ApiError::Kind::Internal, "tasks are not available");
  }
  // The logs of the service's tasks on this node, at most `max_bytes` from
  // the end of each.
  virtual std::string task_logs(const std::string& name_or_id, std::uint64_t max_bytes) {
    (void)name_or_id, (void)max_bytes;
    throw ApiError(ApiError::Kind::Internal, "task logs are not available");
  }
  // The same, one entry per task (slot) on this node, in slot order: the
  // docker CLI labels each line with its task.
  virtual std::vector<TaskLog> task_logs_by_slot(const std::string& name_or_id, std::uint64_t max_bytes) {
    (void)name_or_id, (void)max_bytes;
    throw ApiError(ApiError::Kind::Internal, "task logs are not available");
  }
};

}  // namespace weft::control
