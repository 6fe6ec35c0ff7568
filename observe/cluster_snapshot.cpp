#include "observe/cluster_snapshot.h"

namespace weft::observe {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SnapshotNode, name, address, state, role, self)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SnapshotNetwork, name, id, subnet, vni, endpoints_per_node)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SnapshotBackend, endpoint, name, ip, node, state, connections)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SnapshotVip, network, addr)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SnapshotService, name, id, mode, vips, ports, replicas, running,
                                                backends, dns_names)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SnapshotTask, id, service, slot, node, state, since, error)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ClusterSnapshot, node, version, nodes, networks, services, tasks)

namespace {
template <typename T>
bool cut(std::vector<T>& list, std::size_t max) {
  if (list.size() <= max) return false;
  list.resize(max);
  return true;
}
}  // namespace

bool apply_limits(ClusterSnapshot& snapshot, const SnapshotLimits& limits) {
  bool cut_any = cut(snapshot.nodes, limits.max_nodes);
  cut_any |= cut(snapshot.networks, limits.max_networks);
  cut_any |= cut(snapshot.services, limits.max_services);
  cut_any |= cut(snapshot.tasks, limits.max_tasks);
  for (auto& service : snapshot.services) {
    cut_any |= cut(service.backends, limits.max_backends_per_service);
    cut_any |= cut(service.dns_names, limits.max_dns_names_per_service);
  }
  return cut_any;
}

nlohmann::json to_json(const ClusterSnapshot& snapshot) {
  nlohmann::json json;
  to_json(json, snapshot);
  return json;
}

ClusterSnapshot snapshot_from_json(const nlohmann::json& json) {
  ClusterSnapshot snapshot;
  from_json(json, snapshot);
  return snapshot;
}

}  // namespace weft::observe
