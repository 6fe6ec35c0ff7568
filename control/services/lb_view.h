// What the node's load balancer must carry, as the control plane knows it:
// built by the service manager from the services and the endpoints (local
// and remote), consumed by ServiceDataplane (service_dataplane.h), which
// makes the eBPF maps or the nftables tables match it. Plain values: the
// data-plane side never reaches back into the managers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <boost/iterator/indirect_iterator.hpp>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/model/model.h"
#include "control/model/packed_endpoint.h"
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

// The services of a view: an immutable list of immutable services shared
// with the service manager (and every other view of the same moment) rather
// than a copy per view. Changed only through copies: the list when shared,
// and each service changed by hand (tests and tools build views so).
class ServiceList {
 public:
  using List = std::vector<std::shared_ptr<const Service>>;
  using const_iterator = boost::indirect_iterator<List::const_iterator>;

  ServiceList() = default;
  ServiceList(std::initializer_list<Service> services) {
    auto list = std::make_shared<List>();
    for (const auto& s : services) list->push_back(std::make_shared<const Service>(s));
    list_ = std::move(list);
  }
  explicit ServiceList(std::shared_ptr<const List> shared) : list_(std::move(shared)) {}

  const List& list() const { return list_ ? *list_ : no_services(); }
  const_iterator begin() const { return const_iterator(list().begin()); }
  const_iterator end() const { return const_iterator(list().end()); }
  std::size_t size() const { return list().size(); }
  bool empty() const { return list().empty(); }
  const Service& at(std::size_t i) const { return *list().at(i); }
  const Service& operator[](std::size_t i) const { return *list()[i]; }
  const Service& back() const { return *list().back(); }

  Service& operator[](std::size_t i) { return own(mutate()[i]); }
  Service& back() { return own(mutate().back()); }
  void push_back(Service s) { mutate().push_back(std::make_shared<const Service>(std::move(s))); }
  void reserve(std::size_t n) { mutate().reserve(n); }
  void clear() { list_.reset(); }

 private:
  // The list, this view's own (copied when shared).
  List& mutate() {
    if (!list_ || list_.use_count() > 1) {
      auto copy = std::make_shared<List>(list());
      list_ = copy;
      return *copy;
    }
    // Made as a mutable List (here or by the manager) and held by no one else.
    return const_cast<List&>(*list_);
  }
  // A service of this view's own list, copied before it is changed.
  static Service& own(std::shared_ptr<const Service>& slot) {
    auto copy = std::make_shared<Service>(*slot);
    slot = copy;
    return *copy;
  }
  static const List& no_services() {
    static const List none;
    return none;
  }
  std::shared_ptr<const List> list_;
};

struct LbView {
  ServiceList services;                // every service known here (vip and dnsrr)
  // Every endpoint with a service_id, on any node, with the fields the
  // load balancer uses (ServiceNetworks::list_backends).
  std::vector<Endpoint> backends;
  // When set, the backends are those of these endpoints that have a
  // service_id, and `backends` is not used: the network manager's shared
  // snapshot, instead of a copy of every backend per apply.
  std::shared_ptr<const EndpointSnapshot> all_endpoints;
  // Where to read the backends from: every endpoint with a service_id in
  // it (`backends` packed when there is no shared snapshot). Hold it while
  // its endpoints are read.
  std::shared_ptr<const EndpointSnapshot> backend_source() const {
    return all_endpoints ? all_endpoints : EndpointSnapshot::of(backends);
  }
  std::vector<LbNetwork> networks;     // networks with a namespace on this node
  std::vector<LbAttachPoint> attach_points;
};

// What the service manager asks of the node's load balancer (implemented by
// ServiceDataplane). Safe to call from several threads.
class LbQuery {
 public:
  virtual ~LbQuery() = default;
  // "ebpf" or "nftables", as `weftd --lb-backend` spells it.
  virtual std::string_view kind() const = 0;
  // The backend endpoint a new flow from src:sport to the service's VIP on
  // that network, port dport, would get, from the very table the data path
  // uses: "" when none would; nullopt when the data path draws at random
  // per connection (nftables).
  virtual std::optional<std::string> lookup(const std::string& service_id, const std::string& network_id,
                                            dataplane::Ipv4 src, std::uint16_t sport, std::uint16_t dport,
                                            PortProtocol proto) = 0;
  // Counters per backend endpoint id of the service on that network.
  virtual std::map<std::string, BackendCounters> counters(const std::string& service_id,
                                                          const std::string& network_id) = 0;
};

}  // namespace weft::control::services
