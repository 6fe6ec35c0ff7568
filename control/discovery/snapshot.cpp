#include "control/discovery/snapshot.h"

#include "control/model/packed_endpoint.h"

namespace weft::control::discovery {

std::string namespace_context(const std::string& netns) {
  if (netns.find('/') != std::string::npos) return netns;
  return "/run/netns/" + netns;
}

std::map<std::string, std::vector<Endpoint>> group_by_namespace(const std::vector<Endpoint>& local_endpoints) {
  std::map<std::string, std::vector<Endpoint>> out;
  for (const auto& e : local_endpoints)
    // A node's own load-balancer address (nftables fallback) is an endpoint
    // without a namespace: no container asks names through it.
    if (!e.netns.empty()) out[namespace_context(e.netns)].push_back(e);
  return out;
}

namespace {

Snapshot names_of(const std::vector<Service>& services, const std::vector<Network>& networks,
                  const std::map<std::string, std::vector<Endpoint>>& local_namespaces) {
  Snapshot s;
  s.networks.reserve(networks.size());
  for (const auto& n : networks) s.networks.push_back(NetworkRecord{n.id, n.name});
  s.services.reserve(services.size());
  for (const auto& svc : services) {
    ServiceRecord r{svc.id, svc.name, svc.mode, svc.network_ids, {}, svc.ports};
    if (svc.mode == EndpointMode::vip)
      for (const auto& v : svc.vips) r.vips.emplace_back(v.network_id, v.addr);
    s.services.push_back(std::move(r));
  }
  for (const auto& [context, local] : local_namespaces) {
    auto& seen = s.contexts[context];
    for (const auto& e : local) seen.insert(e.network_id);
  }
  return s;
}

}  // namespace

Snapshot build_snapshot(const std::vector<Service>& services, const std::vector<Endpoint>& endpoints,
                        const std::vector<Network>& networks,
                        const std::map<std::string, std::vector<Endpoint>>& local_namespaces) {
  Snapshot s = names_of(services, networks, local_namespaces);
  s.endpoints.reserve(endpoints.size());
  for (const auto& e : endpoints) {
    s.endpoints.push_back(
        EndpointRecord{e.id, e.name, e.aliases, e.network_id, e.ip, e.service_id, e.backend_state, e.node});
  }
  return s;
}

Snapshot build_snapshot(const std::vector<Service>& services,
                        const std::vector<std::shared_ptr<const PackedEndpoint>>& endpoints,
                        const std::vector<Network>& networks,
                        const std::map<std::string, std::vector<Endpoint>>& local_namespaces) {
  Snapshot s = names_of(services, networks, local_namespaces);
  s.endpoints.reserve(endpoints.size());
  for (const auto& e : endpoints) {
    s.endpoints.push_back(EndpointRecord{e->id(), std::string(e->name()), e->aliases(), e->network_id(), e->ip(),
                                         e->service_id(), e->backend_state(), e->node()});
  }
  return s;
}

Snapshot build_snapshot(const std::vector<Service>& services, std::shared_ptr<const EndpointSnapshot> endpoints,
                        const std::vector<Network>& networks,
                        const std::map<std::string, std::vector<Endpoint>>& local_namespaces) {
  Snapshot s = names_of(services, networks, local_namespaces);
  s.shared_endpoints = std::move(endpoints);
  return s;
}

}  // namespace weft::control::discovery
