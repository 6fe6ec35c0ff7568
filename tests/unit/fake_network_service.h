// An in-memory NetworkService for API tests: behaves like the real one at
// the level the API sees (names unique, lookups by name/id/id prefix,
// NotFound/Conflict errors) and records what it was asked.
#pragma once

#include <algorithm>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "control/model/model.h"

namespace weft::control::test_support {

class FakeNetworkService : public NetworkService {
 public:
  // Thrown by the next call, then cleared.
  std::exception_ptr fail_next;

  std::vector<Network> networks;
  std::vector<Endpoint> endpoints;
  std::vector<NetworkSpec> create_requests;
  std::vector<AttachRequest> connect_requests;
  std::vector<DetachRequest> disconnect_requests;
  std::vector<std::string> remove_requests;

  Network create_network(const NetworkSpec& spec) override {
    maybe_fail();
    create_requests.push_back(spec);
    if (find_network(spec.name) != networks.end()) {
      throw ApiError(ApiError::Kind::Conflict, "network with name " + spec.name + " already exists");
    }
    const int n = ++created_networks_;
    Network network;
    network.id = make_id(n);
    network.name = spec.name;
    network.driver = spec.driver;
    network.subnet = parsed<dataplane::Cidr>("subnet", spec.subnet.value_or(fmt::format("10.0.{}.0/24", n)));
    network.gateway = parsed<dataplane::Ipv4>("gateway", spec.gateway.value_or(fmt::format("10.0.{}.1", n)));
    network.vni = 4096 + n;
    network.attachable = spec.attachable;
    network.created = "2024-05-01T12:00:00Z";
    network.node = "node-1";
    networks.push_back(network);
    return network;
  }

  std::vector<Network> list_networks() override {
    maybe_fail();
    return networks;
  }

  Network get_network(const std::string& name_or_id) override {
    maybe_fail();
    return *existing_network(name_or_id);
  }

  void remove_network(const std::string& name_or_id) override {
    maybe_fail();
    remove_requests.push_back(name_or_id);
    networks.erase(existing_network(name_or_id));
  }

  Endpoint connect(const AttachRequest& request) override {
    maybe_fail();
    connect_requests.push_back(request);
    const Network& network = *existing_network(request.network);
    const int n = ++created_endpoints_;
    Endpoint endpoint;
    endpoint.id = make_id(100 + n);
    endpoint.name = request.name.value_or(request.netns);
    endpoint.network_id = network.id;
    endpoint.network_name = network.name;
    endpoint.netns = request.netns;
    endpoint.ifname = "eth0";
    endpoint.aliases = request.aliases;
    endpoint.ip = parsed<dataplane::Ipv4>("IPv4 address", request.ip.value_or(fmt::format("10.0.0.{}", n + 1)));
    endpoint.prefix_len = 24;
    endpoint.mac = parsed<dataplane::MacAddress>("MAC address", fmt::format("02:42:0a:00:00:{:02x}", n + 1));
    endpoint.node = "node-1";
    endpoints.push_back(endpoint);
    return endpoint;
  }

  void disconnect(const DetachRequest& request) override {
    maybe_fail();
    disconnect_requests.push_back(request);
    const Network& network = *existing_network(request.network);
    auto it = std::find_if(endpoints.begin(), endpoints.end(), [&](const Endpoint& e) {
      return e.network_id == network.id && e.netns == request.netns;
    });
    if (it == endpoints.end()) {
      throw ApiError(ApiError::Kind::NotFound, request.netns + " is not connected to network " + network.name);
    }
    endpoints.erase(it);
  }

  std::vector<Endpoint> list_endpoints() override {
    maybe_fail();
    return endpoints;
  }

 private:
  // What the real service answers for an address that does not parse.
  template <class Value>
  static Value parsed(const char* what, const std::string& text) {
    const auto value = Value::parse(text);
    if (!value) throw ApiError(ApiError::Kind::BadRequest, std::string("invalid ") + what + " \"" + text + "\"");
    return *value;
  }

  // 64 hex characters whose first two differ between n = 1..255.
  static std::string make_id(int n) {
    std::string id;
    for (int i = 0; i < 32; ++i) id += fmt::format("{:02x}", n % 256);
    return id;
  }

  void maybe_fail() {
    if (fail_next) std::rethrow_exception(std::exchange(fail_next, nullptr));
  }

  std::vector<Network>::iterator find_network(const std::string& name_or_id) {
    auto it = std::find_if(networks.begin(), networks.end(),
                           [&](const Network& n) { return n.name == name_or_id || n.id == name_or_id; });
    if (it != networks.end() || name_or_id.empty()) return it;
    return std::find_if(networks.begin(), networks.end(),
                        [&](const Network& n) { return n.id.starts_with(name_or_id); });
  }

  std::vector<Network>::iterator existing_network(const std::string& name_or_id) {
    auto it = find_network(name_or_id);
    if (it == networks.end()) throw ApiError(ApiError::Kind::NotFound, "network " + name_or_id + " not found");
    return it;
  }

  int created_networks_ = 0;
  int created_endpoints_ = 0;
};

}  // namespace weft::control::test_support
