// What the node's load balancer must carry, as the control plane knows it:
// built by the service manager from the services and the endpoints (local
// and remote), consumed by ServiceDataplane (service_dataplane.h), which
// makes the eBPF maps or the nftables tables match it. Plain values: the
// data-plane side never reaches back into the managers.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "control/model/model.h"
#include "control/model/service_model.h"
#include "dataplane/address.h"

namespace weft::control::services {

// A network with a namespace on this node (its bridge and VXLAN live there,
// and the host side of each local endpoint's veth).
struct LbNetwork {
  std::string network_id;
  std::filesystem::path netns;  // the network's namespace file
  std::string bridge;           // e.g. "br0"
  dataplane::Cidr subnet{};
  dataplane::Ipv4 gateway{};
  // This node's own address in the network, for the nftables fallback's
  // SNAT (replies of remote backends must come back through this node); a
  // zero address: none reserved (backends on this node only).
  dataplane::Ipv4 node_lb_address{};
};

// A local endpoint: the tc programs go on its host-side veth.
struct LbAttachPoint {
  std::string endpoint_id;
  std::string network_id;
  std::string host_ifname;  // in the network's namespace
};

struct LbView {
  std::vector<Service> services;       // every service known here (vip and dnsrr)
  std::vector<Endpoint> backends;      // every endpoint with a service_id, on any node
  std::vector<LbNetwork> networks;     // networks with a namespace on this node
  std::vector<LbAttachPoint> attach_points;
};

}  // namespace weft::control::services
