// Test helper: a node's networks without a kernel, as the service manager
// (services::ServiceNetworks) and the cluster (cluster::NodeNetworks) see
// them. Addresses come from the real IPAM allocator; reservations are kept
// as the network manager keeps them, with a switch that makes their
// "state file" fail.
#pragma once

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "control/cluster/cluster.h"
#include "control/model/ids.h"
#include "control/network/ipam.h"
#include "control/services/service_networks.h"
#include "tests/support/addresses.h"

namespace weft::testing {

class FakeServiceNetworks final : public control::services::ServiceNetworks, public control::cluster::NodeNetworks {
 public:
  using Network = control::Network;
  using Endpoint = control::Endpoint;
  using ApiError = control::ApiError;

  explicit FakeServiceNetworks(std::string node = "node1") : node_(std::move(node)) {}

  // --- the test's side ---
  Network add_network(const std::string& name, const std::string& subnet, const std::string& id = "") {
    std::lock_guard lock(mu_);
    Network n{.id = id.empty() ? control::random_id() : id,
              .name = name,
              .driver = "overlay",
              .subnet = cidr(subnet),
              .gateway = dataplane::Ipv4{cidr(subnet).first().value + 1},
              .vni = 4096,
              .attachable = false,
              .created = "2026-01-01T00:00:00Z",
              .node = node_};
    networks_[n.id] = n;
    namespace ipam = control::network::ipam;
    auto [it, _] = allocators_.emplace(n.id, ipam::AddressAllocator(n.subnet, ipam::RangeSet(ipam::host_range(n.subnet))));
    it->second.allocate(n.gateway);
    return n;
  }
  // A local endpoint (published to the cluster when attached to one).
  Endpoint attach(const std::string& network_id, const std::string& name, const std::string& service_id = "") {
    Endpoint e;
    control::network::ClusterLink* link;
    {
      std::lock_guard lock(mu_);
      const auto ip = allocators_.at(network_id).allocate();
      e = Endpoint{.id = control::random_id(),
                   .name = name,
                   .network_id = network_id,
                   .network_name = networks_.at(network_id).name,
                   .netns = "/run/netns/" + name,
                   .ifname = "eth0",
                   .ip = ip,
                   .prefix_len = networks_.at(network_id).subnet.prefix,
                   .mac = dataplane::MacAddress::from_ipv4(ip),
                   .node = node_,
                   .service_id = service_id,
                   .backend_state = control::BackendState::active,
                   .drain_until = {}};
      local_[e.id] = e;
      link = link_;
    }
    if (link) link->publish_endpoint(e);
    changed();
    return e;
  }
  void set_draining(const std::string& endpoint_id, const std::string& until) {
    Endpoint e;
    control::network::ClusterLink* link;
    {
      std::lock_guard lock(mu_);
      auto& stored = local_.at(endpoint_id);
      stored.backend_state = control::BackendState::draining;
      stored.drain_until = until;
      e = stored;
      link = link_;
    }
    if (link) link->publish_endpoint(e);
    changed();
  }
  void fail_writes(bool fail) {
    std::lock_guard lock(mu_);
    fail_writes_ = fail;
  }
  // Released addresses, in order.
  std::vector<std::string> released() {
    std::lock_guard lock(mu_);
    return released_;
  }
  bool remote_endpoint_known(const std::string& id) {
    std::lock_guard lock(mu_);
    return remote_.count(id) != 0;
  }

  // --- ServiceNetworks ---
  Network get_network(const std::string& ref) override {
    std::lock_guard lock(mu_);
    if (auto it = networks_.find(ref); it != networks_.end()) return it->second;
    for (const auto& [id, n] : networks_)
      if (n.name == ref || id.starts_with(ref)) return n;
    throw ApiError(ApiError::Kind::NotFound, "network " + ref + " not found");
  }
  std::vector<Endpoint> list_endpoints() override {
    std::lock_guard lock(mu_);
    std::vector<Endpoint> all;
    for (const auto& [id, e] : local_) all.push_back(e);
    for (const auto& [id, e] : remote_) all.push_back(e);
    return all;
  }
  dataplane::Ipv4 reserve_address(const std::string& network_id, const std::string& owner) override {
    std::lock_guard lock(mu_);
    auto& allocator = allocators_.at(network_id);
    const auto ip = allocator.allocate();
    if (fail_writes_) {
      allocator.release(ip);
      throw ApiError(ApiError::Kind::Internal, "cannot reserve: No space left on device");
    }
    reservations_.push_back({.network_id = network_id, .ip = ip, .owner = owner});
    return ip;
  }
  void release_address(const std::string& network_id, dataplane::Ipv4 ip) override {
    std::lock_guard lock(mu_);
    auto it = std::find_if(reservations_.begin(), reservations_.end(),
                           [&](const auto& r) { return r.network_id == network_id && r.ip == ip; });
    if (it == reservations_.end()) return;
    reservations_.erase(it);
    allocators_.at(network_id).release(ip);
    released_.push_back(ip.str());
  }
  std::vector<control::network::AddressReservation> reservations() override {
    std::lock_guard lock(mu_);
    return reservations_;
  }
  control::network::LocalTopology local_topology() override {
    std::lock_guard lock(mu_);
    control::network::LocalTopology t;
    for (const auto& [id, n] : networks_)
      t.networks.push_back({.network_id = id, .netns = "/state/netns/" + id.substr(0, 12), .bridge = "br0",
                            .subnet = n.subnet, .gateway = n.gateway});
    for (const auto& [id, e] : local_)
      t.veths.push_back({.endpoint_id = id, .network_id = e.network_id, .host_ifname = "veth" + id.substr(0, 11)});
    return t;
  }
  void on_endpoints_changed(std::function<void()> listener) override {
    std::lock_guard lock(mu_);
    listeners_.push_back(std::move(listener));
  }
  void set_service_directory(control::network::ServiceDirectory* directory) override {
    std::lock_guard lock(mu_);
    directory_ = directory;
  }

  // --- NodeNetworks ---
  void attach_cluster(control::network::ClusterLink* link) override {
    std::lock_guard lock(mu_);
    link_ = link;
  }
  void detach_cluster() override {
    std::lock_guard lock(mu_);
    link_ = nullptr;
  }
  bool has_networks() override { return false; }
  std::vector<Network> local_networks() override { return {}; }
  std::vector<Endpoint> local_endpoints() override {
    std::lock_guard lock(mu_);
    std::vector<Endpoint> all;
    for (const auto& [id, e] : local_) all.push_back(e);
    return all;
  }
  void apply_remote_network(const Network&) override {}
  void forget_remote_network(const std::string&) override {}
  void apply_remote_endpoint(const Endpoint& endpoint, dataplane::Ipv4) override {
    {
      std::lock_guard lock(mu_);
      remote_[endpoint.id] = endpoint;
    }
    changed();
  }
  void forget_remote_endpoint(const std::string& id) override {
    {
      std::lock_guard lock(mu_);
      remote_.erase(id);
    }
    changed();
  }
  void set_owned(const std::string&, const control::network::ipam::RangeSet&) override {}
  void give_away(const std::string&,
                 const std::function<control::network::ipam::RangeSet(const control::network::ipam::RangeSet&)>&) override {
  }
  control::network::ipam::Cidr address_pool() override { return cidr("10.0.0.0/8"); }

 private:
  void changed() {
    std::vector<std::function<void()>> listeners;
    {
      std::lock_guard lock(mu_);
      listeners = listeners_;
    }
    for (const auto& l : listeners) l();
  }

  std::string node_;
  std::mutex mu_;
  std::map<std::string, Network> networks_;
  std::map<std::string, control::network::ipam::AddressAllocator> allocators_;
  std::map<std::string, Endpoint> local_, remote_;
  std::vector<control::network::AddressReservation> reservations_;
  std::vector<std::string> released_;
  std::vector<std::function<void()>> listeners_;
  control::network::ServiceDirectory* directory_ = nullptr;
  control::network::ClusterLink* link_ = nullptr;
  bool fail_writes_ = false;
};

}  // namespace weft::testing
