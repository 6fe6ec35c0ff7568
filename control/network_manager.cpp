#include "control/network_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "control/ids.h"
#include "control/ipam.h"
#include "control/state_file.h"
#include "dataplane/overlay.h"

namespace weft::control {
namespace fs = std::filesystem;
namespace dp = weft::dataplane;
using nlohmann::json;

namespace {

constexpr std::uint32_t kFirstVni = 4096;
constexpr int kStateVersion = 1;

[[noreturn]] void bad_request(const std::string& message) { throw ApiError(ApiError::Kind::BadRequest, message); }
[[noreturn]] void not_found(const std::string& message) { throw ApiError(ApiError::Kind::NotFound, message); }
[[noreturn]] void conflict(const std::string& message) { throw ApiError(ApiError::Kind::Conflict, message); }

ApiError from_ipam(const ipam::IpamError& e) {
  using K = ipam::IpamError::Kind;
  switch (e.kind()) {
    case K::Overlap:
    case K::InUse: return ApiError(ApiError::Kind::Conflict, e.what());
    case K::Exhausted: return ApiError(ApiError::Kind::Conflict, e.what());
    case K::NotAllocated: return ApiError(ApiError::Kind::NotFound, e.what());
    case K::Invalid:
    case K::OutOfRange: break;
  }
  return ApiError(ApiError::Kind::BadRequest, e.what());
}

void validate_network_name(const std::string& name) {
  static const std::regex allowed("^[a-zA-Z0-9][a-zA-Z0-9_.-]*$");
  if (name.empty()) bad_request("network name is required");
  if (!std::regex_match(name, allowed))
    bad_request("invalid network name \"" + name + "\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
}

// Persistent form, separate from the API's Docker-shaped JSON so either can
// change without breaking the other.
json to_state(const Network& n) {
  return {{"id", n.id},         {"name", n.name},     {"driver", n.driver},         {"subnet", n.subnet},
          {"gateway", n.gateway}, {"vni", n.vni},     {"attachable", n.attachable}, {"created", n.created},
          {"node", n.node}};
}

Network network_from_state(const json& j) {
  Network n;
  n.id = j.at("id").get<std::string>();
  n.name = j.at("name").get<std::string>();
  n.driver = j.at("driver").get<std::string>();
  n.subnet = j.at("subnet").get<std::string>();
  n.gateway = j.at("gateway").get<std::string>();
  n.vni = j.at("vni").get<std::uint32_t>();
  n.attachable = j.value("attachable", false);
  n.created = j.value("created", "");
  n.node = j.value("node", "");
  return n;
}

json to_state(const Endpoint& e) {
  return {{"id", e.id},         {"name", e.name},   {"network_id", e.network_id}, {"netns", e.netns},
          {"ifname", e.ifname}, {"ip", e.ip},       {"prefix_len", e.prefix_len}, {"mac", e.mac},
          {"node", e.node}};
}

Endpoint endpoint_from_state(const json& j) {
  Endpoint e;
  e.id = j.at("id").get<std::string>();
  e.name = j.value("name", "");
  e.network_id = j.at("network_id").get<std::string>();
  e.netns = j.at("netns").get<std::string>();
  e.ifname = j.value("ifname", "eth0");
  e.ip = j.at("ip").get<std::string>();
  e.prefix_len = j.at("prefix_len").get<int>();
  e.mac = j.at("mac").get<std::string>();
  e.node = j.value("node", "");
  return e;
}

std::string default_endpoint_name(const std::string& netns_ref) {
  auto name = fs::path(netns_ref).filename().string();
  if (name == "net") {  // /proc/PID/ns/net
    auto pid_dir = fs::path(netns_ref).parent_path().parent_path().filename().string();
    return "pid-" + pid_dir;
  }
  return name;
}

}  // namespace

struct NetworkManager::Impl {
  explicit Impl(AgentConfig c)
      : config(std::move(c)), pool(parse_pool(config)), node_mtu(dp::overlay_mtu(node, config.advertise_addr)) {}

  static ipam::SubnetPool parse_pool(const AgentConfig& config) {
    auto cidr = ipam::Cidr::parse(config.default_addr_pool);
    if (!cidr) throw std::invalid_argument("invalid default address pool \"" + config.default_addr_pool + "\"");
    const int mask = config.default_addr_pool_mask_length;
    if (mask < cidr->prefix || mask > 30)
      throw std::invalid_argument("default address pool mask length " + std::to_string(mask) +
                                  " must be between " + std::to_string(cidr->prefix) + " and 30");
    return ipam::SubnetPool(*cidr, mask);
  }

  fs::path state_path() const { return fs::path(config.state_dir) / "state.json"; }
  fs::path netns_dir() const { return fs::path(config.state_dir) / "netns"; }
  fs::path netns_path(const Network& n) const { return netns_dir() / n.id.substr(0, 12); }

  dp::OverlayLayout layout(const Network& n) const {
    const auto cidr = ipam::Cidr::parse(n.subnet);
    return dp::OverlayLayout{.netns_path = netns_path(n),
                             .vni = n.vni,
                             .gateway = n.gateway,
                             .prefix_len = cidr ? cidr->prefix : 24,
                             .underlay_ip = config.advertise_addr,
                             .mtu = node_mtu};
  }

  static dp::EndpointLayout layout(const Endpoint& e) {
    return dp::EndpointLayout{.host_ifname = "veth" + e.id.substr(0, 11), .ip = e.ip, .mac = e.mac};
  }

  void persist() {
    json state = {{"version", kStateVersion}, {"networks", json::array()}, {"endpoints", json::array()}};
    for (const auto& [id, n] : networks) state["networks"].push_back(to_state(n));
    for (const auto& [id, e] : endpoints) state["endpoints"].push_back(to_state(e));
    write_file_atomically(state_path(), state.dump(2) + "\n");
  }

  // Docker's order: full ID, then exact name, then unique ID prefix.
  Network& find_network(const std::string& ref) {
    if (ref.empty()) bad_request("network name or ID is required");
    if (auto it = networks.find(ref); it != networks.end()) return it->second;
    std::vector<Network*> by_name, by_prefix;
    for (auto& [id, n] : networks) {
      if (n.name == ref) by_name.push_back(&n);
      if (id.starts_with(ref)) by_prefix.push_back(&n);
    }
    if (by_name.size() == 1) return *by_name.front();
    if (by_name.size() > 1)
      conflict("network name \"" + ref + "\" is ambiguous (" + std::to_string(by_name.size()) +
               " networks have it): use the network ID");
    if (by_prefix.size() == 1) return *by_prefix.front();
    if (by_prefix.size() > 1) conflict("network ID prefix \"" + ref + "\" is ambiguous");
    not_found("network " + ref + " not found");
  }

  std::uint32_t next_vni() const {
    std::uint32_t vni = kFirstVni;
    std::vector<std::uint32_t> used;
    for (const auto& [id, n] : networks) used.push_back(n.vni);
    std::sort(used.begin(), used.end());
    for (auto u : used)
      if (u == vni) ++vni;
    return vni;
  }

  ipam::AddressAllocator make_allocator(const ipam::Cidr& subnet) const {
    // On its own a node owns all of each subnet it makes.
    return ipam::AddressAllocator(subnet, ipam::RangeSet(ipam::Range{subnet.first(), subnet.last()}));
  }

  std::vector<Endpoint*> endpoints_of(const std::string& network_id) {
    std::vector<Endpoint*> result;
    for (auto& [id, e] : endpoints)
      if (e.network_id == network_id) result.push_back(&e);
    return result;
  }

  Endpoint* endpoint_in(const std::string& network_id, const std::string& netns_ref,
                        const std::optional<dp::NetnsHandle>& ns) {
    for (auto* e : endpoints_of(network_id)) {
      if (e->netns == netns_ref) return e;
      if (!ns) continue;
      try {
        if (dp::NetnsHandle::open(e->netns).same_as(*ns)) return e;
      } catch (const std::system_error&) {
        // That endpoint's namespace is gone; it cannot be this one.
      }
    }
    return nullptr;
  }

  void load_state();
  void reconcile_network(const Network& n);
  void reconcile_endpoint(Endpoint& e, std::vector<std::string>& gone);
  void remove_stale_kernel_objects();

  AgentConfig config;
  std::mutex mutex;
  dp::NetlinkSocket node;  // in the agent's (node's) namespace
  ipam::SubnetPool pool;
  int node_mtu;
  std::map<std::string, Network> networks;  // by id
  std::map<std::string, Endpoint> endpoints;  // by id
  std::map<std::string, ipam::AddressAllocator> addresses;  // by network id
};

NetworkManager::NetworkManager(AgentConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
NetworkManager::~NetworkManager() = default;

void NetworkManager::Impl::load_state() {
  auto text = read_file(state_path());
  if (!text) return;
  json state;
  try {
    state = json::parse(*text);
    for (const auto& j : state.at("networks")) {
      auto n = network_from_state(j);
      networks.emplace(n.id, n);
    }
    for (const auto& j : state.at("endpoints")) {
      auto e = endpoint_from_state(j);
      endpoints.emplace(e.id, e);
    }
  } catch (const json::exception& e) {
    throw std::runtime_error("state file " + state_path().string() + " is corrupt: " + e.what());
  }
  for (auto& [id, n] : networks) {
    auto subnet = ipam::Cidr::parse(n.subnet);
    auto gateway = ipam::Ipv4::parse(n.gateway);
    if (!subnet || !gateway) throw std::runtime_error("state file: network " + n.name + " has a bad subnet");
    pool.reserve(*subnet);
    auto [it, _] = addresses.emplace(id, make_allocator(*subnet));
    it->second.allocate(*gateway);
  }
  for (auto& [id, e] : endpoints) {
    auto ip = ipam::Ipv4::parse(e.ip);
    auto alloc = addresses.find(e.network_id);
    if (!ip || alloc == addresses.end()) throw std::runtime_error("state file: endpoint " + id + " is inconsistent");
    alloc->second.allocate(*ip);
    e.network_name = networks.at(e.network_id).name;
  }
}

void NetworkManager::Impl::reconcile_network(const Network& n) {
  try {
    dp::ensure_overlay(node, layout(n));
  } catch (const std::exception& e) {
    spdlog::error("network {} ({}): cannot restore its devices: {}", n.name, n.id.substr(0, 12), e.what());
  }
}

void NetworkManager::Impl::reconcile_endpoint(Endpoint& e, std::vector<std::string>& gone) {
  const auto& network = networks.at(e.network_id);
  std::optional<dp::NetnsHandle> ns;
  try {
    ns = dp::NetnsHandle::open(e.netns);
  } catch (const std::system_error& err) {
    spdlog::info("endpoint {} on {}: namespace {} is gone ({}); removing it", e.name, network.name, e.netns,
                 err.what());
    dp::detach_endpoint(layout(network), layout(e));
    gone.push_back(e.id);
    return;
  }
  try {
    if (dp::endpoint_intact(layout(network), layout(e), *ns, e.ifname)) return;
    spdlog::warn("endpoint {} on {}: devices missing or wrong; re-creating", e.name, network.name);
    dp::detach_endpoint(layout(network), layout(e));
    e.ifname = dp::attach_endpoint(layout(network), layout(e), *ns);
  } catch (const std::exception& err) {
    spdlog::error("endpoint {} on {}: cannot restore it: {}", e.name, network.name, err.what());
  }
}

void NetworkManager::Impl::remove_stale_kernel_objects() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(netns_dir(), ec)) {
    const auto name = entry.path().filename().string();
    const bool known = std::any_of(networks.begin(), networks.end(),
                                   [&](const auto& kv) { return kv.first.substr(0, 12) == name; });
    if (known) continue;
    spdlog::info("removing stale network namespace {}", entry.path().string());
    try {
      // Its VNI is unknown; deleting every link inside frees whatever it held.
      if (dp::is_pinned_netns(entry.path())) {
        dp::NetlinkSocket net(dp::NetnsHandle::open(entry.path()));
        for (const auto& link : net.list_links())
          if (link.name != "lo") net.delete_link_if_exists(link.name);
      }
      dp::remove_pinned_netns(entry.path());
    } catch (const std::exception& err) {
      spdlog::error("cannot remove stale namespace {}: {}", entry.path().string(), err.what());
    }
  }
  // A VXLAN device in the node namespace is a leftover: live ones sit in
  // their network's namespace.
  for (const auto& link : node.list_links()) {
    if (link.kind == "vxlan" && dp::is_vxlan_device_name(link.name)) {
      spdlog::info("removing stale vxlan device {}", link.name);
      node.delete_link_if_exists(link.name);
    }
  }
}

void NetworkManager::reconcile() {
  std::lock_guard lock(impl_->mutex);
  impl_->load_state();
  impl_->remove_stale_kernel_objects();
  for (const auto& [id, n] : impl_->networks) impl_->reconcile_network(n);
  std::vector<std::string> gone;
  for (auto& [id, e] : impl_->endpoints) impl_->reconcile_endpoint(e, gone);
  for (const auto& id : gone) {
    const auto& e = impl_->endpoints.at(id);
    impl_->addresses.at(e.network_id).release(*ipam::Ipv4::parse(e.ip));
    impl_->endpoints.erase(id);
  }
  impl_->persist();
  spdlog::info("reconciled {} networks, {} endpoints ({} removed)", impl_->networks.size(), impl_->endpoints.size(),
               gone.size());
}

Network NetworkManager::create_network(const NetworkSpec& spec) {
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  validate_network_name(spec.name);
  if (spec.driver != "overlay")
    bad_request("network driver \"" + spec.driver + "\" is not supported: weft networks use the overlay driver");
  for (const auto& [id, n] : self.networks)
    if (n.name == spec.name) conflict("network with name " + spec.name + " already exists");
  if (spec.gateway && !spec.subnet) bad_request("a gateway needs a subnet (--subnet)");

  ipam::Cidr subnet;
  try {
    if (spec.subnet) {
      auto parsed = ipam::Cidr::parse(*spec.subnet);
      if (!parsed) bad_request("invalid subnet \"" + *spec.subnet + "\": expected an IPv4 network such as 10.1.2.0/24");
      if (parsed->prefix > 30) bad_request("subnet " + *spec.subnet + " is too small: at most /30");
      self.pool.reserve(*parsed);
      subnet = *parsed;
    } else {
      subnet = self.pool.allocate();
    }
  } catch (const ipam::IpamError& e) {
    throw from_ipam(e);
  }

  Network n;
  try {
    auto allocator = self.make_allocator(subnet);
    ipam::Ipv4 gateway{subnet.first().value + 1};
    if (spec.gateway) {
      auto parsed = ipam::Ipv4::parse(*spec.gateway);
      if (!parsed) bad_request("invalid gateway \"" + *spec.gateway + "\"");
      if (!subnet.contains(*parsed))
        bad_request("gateway " + *spec.gateway + " is outside subnet " + subnet.str());
      gateway = *parsed;
    }
    allocator.allocate(gateway);
    n = Network{.id = random_id(),
                .name = spec.name,
                .driver = spec.driver,
                .subnet = subnet.str(),
                .gateway = gateway.str(),
                .vni = self.next_vni(),
                .attachable = spec.attachable,
                .created = now_rfc3339(),
                .node = self.config.node_name};
    dp::ensure_overlay(self.node, self.layout(n));
    self.networks.emplace(n.id, n);
    self.addresses.emplace(n.id, std::move(allocator));
  } catch (...) {
    self.pool.release(subnet);
    try {
      throw;
    } catch (const ipam::IpamError& e) {
      throw from_ipam(e);
    } catch (const dp::NetlinkError& e) {
      throw ApiError(ApiError::Kind::Internal, "cannot create network " + spec.name + ": " + e.what());
    }
  }
  try {
    self.persist();
  } catch (...) {
    dp::remove_overlay(self.node, self.layout(n));
    self.networks.erase(n.id);
    self.addresses.erase(n.id);
    self.pool.release(subnet);
    throw;
  }
  spdlog::info("created network {} ({}) subnet {} vni {}", n.name, n.id.substr(0, 12), n.subnet, n.vni);
  return n;
}

std::vector<Network> NetworkManager::list_networks() {
  std::lock_guard lock(impl_->mutex);
  std::vector<Network> result;
  for (const auto& [id, n] : impl_->networks) result.push_back(n);
  std::sort(result.begin(), result.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return result;
}

Network NetworkManager::get_network(const std::string& name_or_id) {
  std::lock_guard lock(impl_->mutex);
  return impl_->find_network(name_or_id);
}

void NetworkManager::remove_network(const std::string& name_or_id) {
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  const Network n = self.find_network(name_or_id);
  if (!self.endpoints_of(n.id).empty())
    conflict("error while removing network: network " + n.name + " id " + n.id + " has active endpoints");
  dp::remove_overlay(self.node, self.layout(n));
  self.networks.erase(n.id);
  self.addresses.erase(n.id);
  self.pool.release(*ipam::Cidr::parse(n.subnet));
  self.persist();
  spdlog::info("removed network {} ({})", n.name, n.id.substr(0, 12));
}

Endpoint NetworkManager::connect(const AttachRequest& request) {
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  const Network network = self.find_network(request.network);
  if (request.netns.empty()) bad_request("a network namespace is required (--netns NAME|PATH)");
  std::optional<dp::NetnsHandle> ns;
  try {
    ns = dp::NetnsHandle::open(request.netns);
  } catch (const std::system_error& e) {
    not_found("network namespace " + request.netns + " not found: " + e.what());
  }
  if (auto* existing = self.endpoint_in(network.id, request.netns, ns))
    conflict("namespace " + request.netns + " is already attached to network " + network.name + " (endpoint " +
             existing->name + ", " + existing->ip + ")");

  auto& allocator = self.addresses.at(network.id);
  ipam::Ipv4 ip;
  try {
    if (request.ip) {
      auto parsed = ipam::Ipv4::parse(*request.ip);
      if (!parsed) bad_request("invalid IPv4 address \"" + *request.ip + "\"");
      allocator.allocate(*parsed);
      ip = *parsed;
    } else {
      ip = allocator.allocate();
    }
  } catch (const ipam::IpamError& e) {
    throw from_ipam(e);
  }

  Endpoint e{.id = random_id(),
             .name = request.name.value_or(default_endpoint_name(request.netns)),
             .network_id = network.id,
             .network_name = network.name,
             .netns = request.netns,
             .ifname = {},
             .ip = ip.str(),
             .prefix_len = ipam::Cidr::parse(network.subnet)->prefix,
             .mac = dp::format_mac(dp::mac_from_ipv4(ip.str())),
             .node = self.config.node_name};
  try {
    e.ifname = dp::attach_endpoint(self.layout(network), self.layout(e), *ns);
    self.endpoints.emplace(e.id, e);
    self.persist();
  } catch (const std::exception& err) {
    self.endpoints.erase(e.id);
    dp::detach_endpoint(self.layout(network), self.layout(e));
    allocator.release(ip);
    throw ApiError(ApiError::Kind::Internal,
                   "cannot attach " + request.netns + " to network " + network.name + ": " + err.what());
  }
  spdlog::info("attached {} to {} as {} ({})", e.netns, network.name, e.ip, e.ifname);
  return e;
}

void NetworkManager::disconnect(const DetachRequest& request) {
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  const Network network = self.find_network(request.network);
  if (request.netns.empty()) bad_request("a network namespace is required (--netns NAME|PATH)");
  std::optional<dp::NetnsHandle> ns;
  try {
    ns = dp::NetnsHandle::open(request.netns);
  } catch (const std::system_error&) {
    // A namespace that is gone can still be detached by the name it had.
  }
  Endpoint* e = self.endpoint_in(network.id, request.netns, ns);
  if (!e) not_found("no endpoint of namespace " + request.netns + " on network " + network.name);
  dp::detach_endpoint(self.layout(network), self.layout(*e));
  self.addresses.at(network.id).release(*ipam::Ipv4::parse(e->ip));
  spdlog::info("detached {} from {}", e->netns, network.name);
  self.endpoints.erase(e->id);
  self.persist();
}

std::vector<Endpoint> NetworkManager::list_endpoints() {
  std::lock_guard lock(impl_->mutex);
  std::vector<Endpoint> result;
  for (const auto& [id, e] : impl_->endpoints) result.push_back(e);
  std::sort(result.begin(), result.end(), [](const auto& a, const auto& b) {
    return std::tie(a.network_name, a.name) < std::tie(b.network_name, b.name);
  });
  return result;
}

}  // namespace weft::control
