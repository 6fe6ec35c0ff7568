// What the service manager needs of the node's networks: names resolved,
// addresses reserved for virtual IPs, the endpoints (local and remote) that
// are backends, and what the load balancer must know of the local kernel
// side. The agent's NetworkManager through NetworkManagerNetworks; unit
// tests use a fake.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "control/model/model.h"
#include "control/network/network_manager.h"
#include "control/network/service_directory.h"
#include "dataplane/address.h"

namespace weft::control::services {

class ServiceNetworks {
 public:
  virtual ~ServiceNetworks() = default;
  // By name, id or unique id prefix; ApiError (404, 409) otherwise.
  virtual Network get_network(const std::string& name_or_id) = 0;
  // Every endpoint known here, local and remote.
  virtual std::vector<Endpoint> list_endpoints() = 0;
  // The backends of one service, every field filled, in any order.
  virtual std::vector<Endpoint> backends_of(const std::string& service_id) {
    auto endpoints = list_endpoints();
    std::erase_if(endpoints, [&](const Endpoint& e) { return e.service_id.empty() || e.service_id != service_id; });
    return endpoints;
  }
  // Every endpoint that is a service backend, in any order; only the fields
  // the load balancer uses need be filled (see NetworkManager::list_backends).
  virtual std::vector<Endpoint> list_backends() {
    auto endpoints = list_endpoints();
    std::erase_if(endpoints, [](const Endpoint& e) { return e.service_id.empty(); });
    return endpoints;
  }
  // Every endpoint, shared (NetworkManager::shared_endpoints); null: none
  // kept, use list_backends().
  virtual std::shared_ptr<const EndpointSnapshot> shared_endpoints() { return nullptr; }
  // See NetworkManager::reserve_address / release_address / reservations.
  virtual dataplane::Ipv4 reserve_address(const std::string& network_id, const std::string& owner) = 0;
  virtual void release_address(const std::string& network_id, dataplane::Ipv4 ip) = 0;
  virtual std::vector<network::AddressReservation> reservations() = 0;
  virtual network::LocalTopology local_topology() = 0;
  virtual void on_endpoints_changed(std::function<void()> listener) = 0;
  virtual void set_service_directory(network::ServiceDirectory* directory) = 0;
};

class NetworkManagerNetworks final : public ServiceNetworks {
 public:
  explicit NetworkManagerNetworks(network::NetworkManager& nm) : nm_(nm) {}
  Network get_network(const std::string& name_or_id) override { return nm_.get_network(name_or_id); }
  std::vector<Endpoint> list_endpoints() override { return nm_.list_endpoints(); }
  std::vector<Endpoint> list_backends() override { return nm_.list_backends(); }
  std::shared_ptr<const EndpointSnapshot> shared_endpoints() override { return nm_.shared_endpoints(); }
  std::vector<Endpoint> backends_of(const std::string& service_id) override { return nm_.backends_of(service_id); }
  dataplane::Ipv4 reserve_address(const std::string& network_id, const std::string& owner) override {
    return nm_.reserve_address(network_id, owner);
  }
  void release_address(const std::string& network_id, dataplane::Ipv4 ip) override {
    nm_.release_address(network_id, ip);
  }
  std::vector<network::AddressReservation> reservations() override { return nm_.reservations(); }
  network::LocalTopology local_topology() override { return nm_.local_topology(); }
  void on_endpoints_changed(std::function<void()> listener) override {
    nm_.on_endpoints_changed(std::move(listener));
  }
  void set_service_directory(network::ServiceDirectory* directory) override {
    nm_.set_service_directory(directory);
  }

 private:
  network::NetworkManager& nm_;
};

}  // namespace weft::control::services
