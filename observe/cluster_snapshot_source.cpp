#include "observe/cluster_snapshot_source.h"

#include <algorithm>
#include <exception>
#include <map>
#include <set>
#include <utility>

#include "control/model/ids.h"
#include "control/model/packed_endpoint.h"

namespace weft::observe {

namespace {

std::string node_state(const std::string& status) {
  if (status == "ready") return "Ready";
  if (status == "left") return "Left";
  return "Down";
}

// "192.0.2.1:7946" -> "192.0.2.1"
std::string address_without_port(const std::string& address) {
  const auto colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

std::string port_text(const control::PublishedPort& port) {
  return std::to_string(port.port) + (port.protocol == control::PortProtocol::udp ? "/udp" : "/tcp");
}

}  // namespace

AgentStateSource::AgentStateSource(AgentIdentity identity, control::NetworkService& networks,
                                   control::SwarmService* swarm, control::ServiceApi* services, SnapshotLimits limits)
    : identity_(std::move(identity)), networks_(networks), swarm_(swarm), services_(services), limits_(limits) {}

ClusterSnapshot AgentStateSource::read() {
  ClusterSnapshot snapshot;
  snapshot.node = identity_.node_name;
  snapshot.version = identity_.version;

  std::vector<control::NodeInfo> nodes;
  if (swarm_ != nullptr) {
    try {
      nodes = swarm_->list_nodes();
    } catch (const std::exception&) {
      // Not in a swarm: this node alone.
    }
  }
  for (const auto& node : nodes)
    snapshot.nodes.push_back({.name = node.hostname,
                              .address = address_without_port(node.address),
                              .state = node_state(node.status),
                              .role = node.role,
                              .self = node.self});
  if (std::none_of(snapshot.nodes.begin(), snapshot.nodes.end(), [](const auto& n) { return n.self; }))
    snapshot.nodes.push_back({.name = identity_.node_name,
                              .address = identity_.advertise_addr,
                              .state = "Ready",
                              .role = "weft",
                              .self = true});
  std::sort(snapshot.nodes.begin(), snapshot.nodes.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });

  const auto networks = networks_.list_networks();
  // Shared with the other readers, not copied on every poll.
  const auto shared_endpoints = networks_.shared_endpoints();
  const auto& endpoints = shared_endpoints->endpoints;
  std::map<std::string, std::string> network_names;
  for (const auto& network : networks) {
    network_names[network.id] = network.name;
    SnapshotNetwork shown{.name = network.name,
                          .id = control::short_id(network.id),
                          .subnet = network.subnet.str(),
                          .vni = network.vni,
                          .endpoints_per_node = {}};
    for (const auto& endpoint : endpoints)
      if (endpoint->network_id() == network.id) ++shown.endpoints_per_node[endpoint->node()];
    snapshot.networks.push_back(std::move(shown));
  }
  std::sort(snapshot.networks.begin(), snapshot.networks.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });

  if (services_ == nullptr) {
    apply_limits(snapshot, limits_);
    return snapshot;
  }
  // Only the first max_services (by name) are shown: of the others only
  // those with tasks are listed (without their backends), for their tasks.
  auto details = services_->list_services_for_page(limits_.max_services);
  const std::size_t shown_count = std::min(limits_.max_services, details.size());
  std::map<std::string, std::set<std::string>> aliases_of_service;
  for (std::size_t i = 0; i < shown_count; ++i) aliases_of_service[details[i].service.id];
  for (const auto& endpoint : endpoints) {
    if (endpoint->service_id().empty()) continue;
    const auto aliases = aliases_of_service.find(endpoint->service_id());
    if (aliases == aliases_of_service.end()) continue;
    for (auto& alias : endpoint->aliases()) aliases->second.insert(std::move(alias));
  }

  for (std::size_t i = 0; i < details.size(); ++i) {
    const auto& detail = details[i];
    const auto& service = detail.service;
    if (i < shown_count) {
      SnapshotService shown{.name = service.name,
                            .id = control::short_id(service.id),
                            .mode = service.mode == control::EndpointMode::dnsrr ? "dnsrr" : "vip",
                            .vips = {},
                            .ports = {},
                            .replicas = service.replicas,
                            .running = detail.running_tasks,
                            .backends = {},
                            .dns_names = {service.name, "tasks." + service.name}};
      for (const auto& vip : service.vips) shown.vips.push_back({network_names[vip.network_id], vip.addr.str()});
      for (const auto& port : service.ports) shown.ports.push_back(port_text(port));
      for (const auto& backend : detail.backends)
        shown.backends.push_back({.endpoint = control::short_id(backend.endpoint_id),
                                  .name = backend.endpoint_name,
                                  .ip = backend.ip.str(),
                                  .node = backend.node,
                                  .state = backend.state == control::BackendState::draining ? "draining" : "active",
                                  .connections = backend.counters
                                                     ? static_cast<std::int64_t>(backend.counters->connections)
                                                     : -1});
      for (const auto& alias : aliases_of_service[service.id])
        if (alias != service.name) shown.dns_names.push_back(alias);
      snapshot.services.push_back(std::move(shown));
    }

    if (!service.command.empty()) {
      std::vector<control::TaskRecord> tasks;
      try {
        tasks = services_->list_tasks(service.id);
      } catch (const std::exception&) {
        // Removed meanwhile, or an agent without tasks.
      }
      for (const auto& task : tasks)
        snapshot.tasks.push_back({.id = service.name + "." + std::to_string(task.slot),
                                  .service = service.name,
                                  .slot = task.slot,
                                  .node = task.node,
                                  .state = task.state,
                                  .since = task.started_at,
                                  .error = task.error});
    }
  }
  // Stable: details come by name, then id, so the first max_services here
  // are the ones listed with their backends.
  std::stable_sort(snapshot.services.begin(), snapshot.services.end(),
                   [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(snapshot.tasks.begin(), snapshot.tasks.end(), [](const auto& a, const auto& b) {
    return std::tie(a.service, a.slot, a.node) < std::tie(b.service, b.slot, b.node);
  });
  apply_limits(snapshot, limits_);
  return snapshot;
}

}  // namespace weft::observe
