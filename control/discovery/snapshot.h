// What the embedded DNS answers from, as plain values: the services,
// endpoints and networks of the replicated tables (every node's), and the
// contexts (one per local namespace with an endpoint: its 127.0.0.11
// socket) with the networks each sees. The control plane builds a new one
// on every change and publishes it whole (ClusterNameView::publish).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "control/model/model.h"
#include "control/model/service_model.h"
#include "dataplane/address.h"

namespace weft::control::discovery {

struct ServiceRecord {
  std::string id;
  std::string name;
  EndpointMode mode = EndpointMode::vip;
  std::vector<std::string> network_ids;
  std::vector<std::pair<std::string, dataplane::Ipv4>> vips;  // network id, VIP (vip mode)
  std::vector<PublishedPort> ports;
};

struct EndpointRecord {
  std::string id;
  std::string name;  // may be empty
  std::vector<std::string> aliases;
  std::string network_id;
  dataplane::Ipv4 ip{};
  std::string service_id;  // empty: no service's backend
  BackendState state = BackendState::active;
  std::string node;
};

struct NetworkRecord {
  std::string id;
  std::string name;
};

struct Snapshot {
  std::vector<ServiceRecord> services;
  std::vector<EndpointRecord> endpoints;
  // More endpoints, after `endpoints`, read where they are: the network
  // manager's shared snapshot (a copy of 100 000 endpoints as records is
  // ~49 MB while a sync compiles them).
  std::shared_ptr<const EndpointSnapshot> shared_endpoints;
  std::vector<NetworkRecord> networks;
  // Context (what the DnsAgent attached to a namespace's sockets) -> the
  // network ids whose names it sees.
  std::map<std::string, std::set<std::string>> contexts;
};

// The context key of a namespace as an endpoint names it (Endpoint::netns):
// a bare name means /run/netns/NAME, as everywhere in weft.
std::string namespace_context(const std::string& netns);

// The local endpoints grouped by namespace_context(netns): one DNS context
// per attached namespace, seeing the networks of all its endpoints (a
// namespace on two networks has one 127.0.0.11, so one context).
std::map<std::string, std::vector<Endpoint>> group_by_namespace(const std::vector<Endpoint>& local_endpoints);

// `endpoints` are all of them, local and remote; a service's backends are
// the endpoints whose service_id is its id; an endpoint's --alias names come
// with it (Endpoint::aliases). Names are lower-cased when published.
Snapshot build_snapshot(const std::vector<Service>& services, const std::vector<Endpoint>& endpoints,
                        const std::vector<Network>& networks,
                        const std::map<std::string, std::vector<Endpoint>>& local_namespaces);
// The same from the network manager's shared snapshot (EndpointSnapshot),
// each endpoint copied into a record.
Snapshot build_snapshot(const std::vector<Service>& services,
                        const std::vector<std::shared_ptr<const PackedEndpoint>>& endpoints,
                        const std::vector<Network>& networks,
                        const std::map<std::string, std::vector<Endpoint>>& local_namespaces);
// The same holding the shared snapshot itself (Snapshot::shared_endpoints):
// no copy of any endpoint.
Snapshot build_snapshot(const std::vector<Service>& services, std::shared_ptr<const EndpointSnapshot> endpoints,
                        const std::vector<Network>& networks,
                        const std::map<std::string, std::vector<Endpoint>>& local_namespaces);

}  // namespace weft::control::discovery
