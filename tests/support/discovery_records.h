// Test helper: endpoint records for the discovery snapshots the DNS tests
// build (ClusterNameView and the DNS agent).
#pragma once

#include <string>
#include <utility>

#include "control/discovery/snapshot.h"

namespace weft::control::discovery::testing {

inline dataplane::Ipv4 ip(const char* text) { return *dataplane::Ipv4::parse(text); }

// An endpoint on `network` at `address`, a backend of `service` when given.
inline EndpointRecord endpoint(std::string id, std::string name, std::string network, const char* address,
                               std::string service = "", BackendState state = BackendState::active,
                               std::string node = "node1") {
  EndpointRecord e;
  e.id = std::move(id);
  e.name = std::move(name);
  e.network_id = std::move(network);
  e.ip = ip(address);
  e.service_id = std::move(service);
  e.state = state;
  e.node = std::move(node);
  return e;
}

}  // namespace weft::control::discovery::testing
