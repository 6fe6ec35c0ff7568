// This node's own address in each of its networks, for the nftables load
// balancer: it DNATs a client's connection in the client node's network
// namespace, and a backend on another node would answer the client
// directly, past that namespace's conntrack. So balanced flows are SNATed
// to this address, which every other node reaches through this node (its
// endpoint record gives them the neighbour and FDB entries), and replies
// come back to be un-NATed. Docker burns one address per node and network
// for the same reason (its "lb-<network>" endpoint); the eBPF load balancer
// needs none, so it is only kept while the agent runs the nftables one.
//
// The address is an AddressReservation (owner "node-lb:<node>"): recorded in
// the state file before the record is published or the load balancer is
// told, and, being no attach, never touched by reconcile(). Its kernel side
// (a local route and a local FDB entry for its MAC on the bridge) belongs to
// the load balancer that uses it (dataplane/lb/nft_netns.h).
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "control/network/network_manager.h"
#include "control/network/network_manager_impl.h"

namespace weft::control::network {

std::string node_lb_owner(const std::string& node_name) { return std::string(kNodeLbOwnerPrefix) + node_name; }

// Deterministic, so a restarted agent publishes the same record, and any
// node can tell such a record from an attached endpoint's (random ids).
std::string node_lb_endpoint_id(const std::string& node_name, const std::string& network_id) {
  const std::string text = "node-lb/" + node_name + "/" + network_id;
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1 || size != 32)
    throw std::runtime_error("sha256 failed");
  std::string id;
  id.reserve(64);
  for (unsigned int i = 0; i < size; ++i) id += fmt::format("{:02x}", digest[i]);
  return id;
}

bool is_node_lb_endpoint(const Endpoint& endpoint) {
  return endpoint.netns.empty() && endpoint.id == node_lb_endpoint_id(endpoint.node, endpoint.network_id);
}

const AddressReservation* NetworkManager::Impl::node_lb_reservation(const std::string& network_id) const {
  const std::string owner = node_lb_owner(config.node_name);
  auto it = std::find_if(reserved.begin(), reserved.end(),
                         [&](const auto& r) { return r.network_id == network_id && r.owner == owner; });
  return it == reserved.end() ? nullptr : &*it;
}

Endpoint NetworkManager::Impl::node_lb_endpoint(const AddressReservation& r) const {
  Endpoint e;
  e.id = node_lb_endpoint_id(config.node_name, r.network_id);
  e.name = "lb-" + config.node_name;
  e.network_id = r.network_id;
  if (auto n = networks.find(r.network_id); n != networks.end()) {
    e.network_name = n->second.name;
    e.prefix_len = n->second.subnet.prefix;
  }
  e.ip = r.ip;
  e.mac = dp::MacAddress::from_ipv4(r.ip);
  e.node = config.node_name;
  return e;
}

std::vector<Endpoint> NetworkManager::Impl::node_lb_endpoints() const {
  std::vector<Endpoint> result;
  const std::string owner = node_lb_owner(config.node_name);
  for (const auto& r : reserved)
    if (r.owner == owner) result.push_back(node_lb_endpoint(r));
  return result;
}

bool NetworkManager::Impl::ensure_node_lb_address(const std::string& network_id) {
  if (!node_lb_addresses || node_lb_reservation(network_id)) return false;
  auto alloc = addresses.find(network_id);
  if (alloc == addresses.end()) return false;
  const auto& network = networks.at(network_id);
  ipam::Ipv4 ip;
  try {
    // The top: the creator of a network keeps .2 and up for its first
    // service and endpoints, as in Docker.
    ip = alloc->second.allocate_highest();
  } catch (const ipam::IpamError& e) {
    // Without a range of the network yet: the donation comes in through
    // set_owned(), which calls this again. Never waited for here: this runs
    // on the cluster's thread too, which brings the donation.
    if (cluster) cluster->request_range(network_space(network_id), 1);
    if (!node_lb_waiting.insert(network_id).second) return false;
    if (cluster)
      spdlog::debug("network {}: no address of this node for its load balancer yet; asked a peer for some",
                    network.name);
    else
      spdlog::warn("network {}: no address left for this node's load balancer ({}): only backends on this node are "
                   "reachable through its VIPs",
                   network.name, e.what());
    return false;
  }
  reserved.push_back({.network_id = network_id, .ip = ip, .owner = node_lb_owner(config.node_name)});
  try {
    persist();
  } catch (const std::exception& err) {
    reserved.pop_back();
    alloc->second.release(ip);
    if (node_lb_waiting.insert(network_id).second)
      spdlog::error("network {}: cannot reserve this node's load-balancer address: cannot record it in the state "
                    "file: {}; tried again with the next change",
                    network.name, err.what());
    return false;
  }
  node_lb_waiting.erase(network_id);
  if (cluster) cluster->publish_endpoint(node_lb_endpoint(reserved.back()));
  spdlog::info("network {}: {} is this node's load-balancer address (lb-{})", network.name, ip.str(),
               config.node_name);
  return true;
}

void NetworkManager::Impl::withdraw_node_lb_endpoint(const std::string& network_id) {
  if (cluster && node_lb_reservation(network_id)) cluster->withdraw_endpoint(node_lb_endpoint_id(config.node_name, network_id));
  node_lb_waiting.erase(network_id);
}

void NetworkManager::set_node_lb_addresses(bool on) {
  ChangeNotice notice(impl_->endpoint_listeners);
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  self.node_lb_addresses = on;
  const std::string owner = node_lb_owner(self.config.node_name);
  // Off: all of them go; on: those of another node name (the agent was
  // renamed), whose records the cluster no longer keeps for this node.
  std::vector<AddressReservation> dropped;
  std::erase_if(self.reserved, [&](const AddressReservation& r) {
    if (!Impl::is_node_lb_reservation(r) || (on && r.owner == owner)) return false;
    dropped.push_back(r);
    return true;
  });
  if (!dropped.empty()) {
    try {
      self.persist();
      for (const auto& r : dropped) {
        if (auto a = self.addresses.find(r.network_id); a != self.addresses.end() && a->second.is_allocated(r.ip))
          a->second.release(r.ip);
        if (self.cluster)
          self.cluster->withdraw_endpoint(
              node_lb_endpoint_id(r.owner.substr(kNodeLbOwnerPrefix.size()), r.network_id));
        spdlog::info("released {} of network {}: no longer a load-balancer address ({})", r.ip.str(),
                     short_id(r.network_id), r.owner);
      }
      notice.fire();
    } catch (const std::exception& err) {
      // Still on disk, so still allocated; the next start tries again.
      self.reserved.insert(self.reserved.end(), dropped.begin(), dropped.end());
      spdlog::error("cannot release the load-balancer addresses of this node: {}; tried again at the next start",
                    err.what());
    }
  }
  if (!on) return;
  for (const auto& [id, n] : self.networks)
    if (self.ensure_node_lb_address(id)) notice.fire();
}

}  // namespace weft::control::network
