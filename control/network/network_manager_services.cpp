// What services need of the network manager: virtual IPs reserved from a
// network's addresses, the directory `attach --service` asks, draining
// backends and the local kernel side the load balancer is attached to.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "control/network/network_manager.h"
#include "control/network/network_manager_impl.h"

namespace weft::control::network {

// Write-ahead like everything else: the draining state and its deadline are
// on disk (so a restart finishes the drain) and then published (so every
// node's load balancer stops giving the backend new connections).
void NetworkManager::Impl::start_drain(const Endpoint& e, std::uint32_t seconds, const std::string& what) {
  const auto until = DrainTimer::Clock::now() + std::chrono::seconds(seconds);
  Endpoint draining = e;
  draining.backend_state = BackendState::draining;
  draining.drain_until = rfc3339_seconds(until);
  endpoints[e.id] = draining;
  try {
    persist();
  } catch (const std::exception& err) {
    endpoints[e.id] = e;
    throw ApiError(ApiError::Kind::Internal, "cannot " + what + ": cannot record it in the state file: " +
                                                 err.what() + "; the endpoint is unchanged");
  }
  if (cluster) cluster->publish_endpoint(draining);
  drains->arm(e.id, until);
  spdlog::info("draining {} on {} until {}", e.name, e.network_name, draining.drain_until);
}

void NetworkManager::Impl::finish_drain(const std::string& endpoint_id) {
  ChangeNotice notice(endpoint_listeners);
  std::lock_guard lock(mutex);
  auto it = endpoints.find(endpoint_id);
  // Detached meanwhile, or its network went.
  if (it == endpoints.end() || it->second.backend_state != BackendState::draining) return;
  const Endpoint e = it->second;
  auto network = networks.find(e.network_id);
  if (network == networks.end()) return;
  try {
    detach_now(e, network->second, "finish the drain of " + e.name);
  } catch (const std::exception& err) {
    constexpr auto kRetry = std::chrono::seconds(5);
    spdlog::error("{}; trying again in {}s", err.what(), kRetry.count());
    drains->arm(endpoint_id, DrainTimer::Clock::now() + kRetry);
    return;
  }
  notice.fire();
  spdlog::info("drained {}: detached {} from {}", e.name, e.netns, network->second.name);
}

// --- services ---------------------------------------------------------------

void NetworkManager::set_service_directory(ServiceDirectory* directory) { impl_->services = directory; }

void NetworkManager::on_endpoints_changed(std::function<void()> listener) {
  impl_->endpoint_listeners.add(std::move(listener));
}

void NetworkManager::on_networks_changed(std::function<void()> listener) {
  impl_->network_listeners.add(std::move(listener));
}

void NetworkManager::after_local_attach_or_detach(std::function<void()> listener) {
  impl_->local_change_listeners.add(std::move(listener));
}

ipam::Ipv4 NetworkManager::reserve_address(const std::string& network_ref, const std::string& owner) {
  std::unique_lock lock(impl_->mutex);
  auto& self = *impl_;
  const Network network = self.find_network(network_ref);
  ipam::Ipv4 ip;
  try {
    ip = self.with_donations(lock, network_space(network.id), 1, [&] {
      auto it = self.addresses.find(network.id);
      if (it == self.addresses.end()) not_found("network " + network.name + " was removed");
      return it->second.allocate();
    });
  } catch (const ipam::IpamError& e) {
    throw from_ipam(e);
  }
  self.reserved.push_back({.network_id = network.id, .ip = ip, .owner = owner});
  try {
    self.record_reservation({.reserved = true, .reservation = self.reserved.back()});
  } catch (const std::exception& err) {
    self.reserved.pop_back();
    self.addresses.at(network.id).release(ip);
    throw ApiError(ApiError::Kind::Internal, "cannot reserve an address of network " + network.name +
                                                 ": cannot record it in the state file: " + err.what());
  }
  return ip;
}

void NetworkManager::release_address(const std::string& network_id, ipam::Ipv4 ip) {
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  auto it = std::find_if(self.reserved.begin(), self.reserved.end(),
                         [&](const auto& r) { return r.network_id == network_id && r.ip == ip; });
  if (it == self.reserved.end()) return;
  const auto r = *it;
  self.reserved.erase(it);
  try {
    self.record_reservation({.reserved = false, .reservation = r});
  } catch (const std::exception& err) {
    // Still on disk, so it stays allocated: handing it out now could give it
    // twice after a crash. The next start drops it, its owner being gone.
    self.reserved.push_back(r);
    spdlog::error("cannot release {} (held for {}): {}; it is freed at the next start", ip.str(), r.owner,
                  err.what());
    return;
  }
  if (auto a = self.addresses.find(network_id); a != self.addresses.end() && a->second.is_allocated(ip))
    a->second.release(ip);
}

std::vector<AddressReservation> NetworkManager::reservations() {
  std::lock_guard lock(impl_->mutex);
  return impl_->reserved;
}

LocalTopology NetworkManager::local_topology() {
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  LocalTopology topology;
  for (const auto& [id, n] : self.networks) {
    const auto* lb = self.node_lb_reservation(id);
    topology.networks.push_back({.network_id = id,
                                 .netns = self.netns_path(n),
                                 .bridge = dp::kOverlayBridgeName,
                                 .subnet = n.subnet,
                                 .gateway = n.gateway,
                                 .node_lb_address = lb ? lb->ip : ipam::Ipv4{}});
  }
  for (const auto& [id, e] : self.endpoints)
    topology.veths.push_back({.endpoint_id = id, .network_id = e.network_id, .host_ifname = Impl::layout(e).host_ifname});
  return topology;
}

std::size_t NetworkManager::pending_drains() { return impl_->drains->pending(); }

}  // namespace weft::control::network
