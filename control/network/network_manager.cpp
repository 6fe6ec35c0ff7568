#include "control/network/network_manager.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "control/model/ids.h"
#include "control/model/names.h"
#include "control/model/record_json.h"
#include "control/network/ipam.h"
#include "control/network/network_manager_impl.h"
#include "control/network/state_file.h"
#include "dataplane/overlay.h"

namespace weft::control::network {

namespace {

// Why a subnet did not parse, with the fix when host bits are set.
std::string explain_bad_subnet(const std::string& text) {
  const auto slash = text.find('/');
  if (slash != std::string::npos) {
    const auto ip = ipam::Ipv4::parse(text.substr(0, slash));
    const auto prefix_text = text.substr(slash + 1);
    const bool digits = !prefix_text.empty() && prefix_text.size() <= 2 &&
                        std::all_of(prefix_text.begin(), prefix_text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (ip && digits) {
      const int prefix = std::stoi(prefix_text);
      if (prefix <= 32) {
        const auto network = ipam::Cidr::containing(*ip, prefix);
        return "invalid subnet \"" + text + "\": host bits are set (did you mean " + network.str() + "?)";
      }
    }
  }
  return "invalid subnet \"" + text + "\": expected an IPv4 network such as 10.1.2.0/24";
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


// Two agents on one state dir would each "repair" the other's devices away.
dp::UniqueFd lock_state_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  dp::UniqueFd fd(::open((dir / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) throw std::system_error(errno, std::generic_category(), "open " + (dir / "lock").string());
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
    throw std::runtime_error("another weftd is using the state dir " + dir.string());
  return fd;
}


std::string network_space(const std::string& network_id) { return std::string(kNetworkSpacePrefix) + network_id; }

NetworkManager::NetworkManager(AgentConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {
  impl_->drains = std::make_unique<DrainTimer>([impl = impl_.get()](const std::string& id) { impl->finish_drain(id); });
  // First, so a listener told of a change finds the new version.
  auto bump = [impl = impl_.get()] { impl->endpoints_version.fetch_add(1, std::memory_order_acq_rel); };
  impl_->endpoint_listeners.add(bump);
  impl_->network_listeners.add(bump);  // remote endpoints take their network's name
}
NetworkManager::~NetworkManager() = default;

void NetworkManager::Impl::load_state() {
  auto text = read_file(state_path());
  if (!text) return;
  json state;
  try {
    state = json::parse(*text);
    if (state.contains("reservations") && !state.at("reservations").is_array())
      throw json::type_error::create(302, "\"reservations\" is not an array", &state);
    for (const auto& j : state.at("networks")) {
      auto n = network_from_record(j);
      networks.emplace(n.id, n);
    }
    for (const auto& j : state.at("endpoints")) {
      auto e = endpoint_from_record(j);
      if (j.value(kStateKey, "") == kAttaching)
        attaching.emplace(e.id, e);
      else
        endpoints.emplace(e.id, e);
    }
  } catch (const json::exception& e) {
    throw std::runtime_error("state file " + state_path().string() + " is corrupt: " + e.what());
  }
  for (auto& [id, n] : networks) {
    pool.reserve(n.subnet);
    auto [it, _] = addresses.emplace(id, make_allocator(n.subnet, id));
    it->second.allocate(n.gateway);
  }
  for (auto& [id, e] : endpoints) {
    auto alloc = addresses.find(e.network_id);
    if (alloc == addresses.end()) throw std::runtime_error("state file: endpoint " + id + " is inconsistent");
    alloc->second.allocate(e.ip);
    e.network_name = networks.at(e.network_id).name;
  }
  // An unfinished attach's address may be on a veth in the kernel: it is
  // not handed out before roll_back_attaches() deleted that veth.
  for (auto it = attaching.begin(); it != attaching.end();) {
    auto& e = it->second;
    auto alloc = addresses.find(e.network_id);
    if (alloc == addresses.end()) {
      // Its network is gone, and with the network's namespace its veth.
      spdlog::warn("state file: dropping unfinished attach {} of unknown network {}", it->first, e.network_id);
      it = attaching.erase(it);
      continue;
    }
    try {
      if (!alloc->second.is_allocated(e.ip)) alloc->second.allocate(e.ip);
    } catch (const ipam::IpamError& err) {
      spdlog::warn("state file: unfinished attach {} {}: {}", it->first, e.ip.str(), err.what());
    }
    e.network_name = networks.at(e.network_id).name;
    ++it;
  }
  // By network and address: a journal line replaces or drops one.
  std::map<std::pair<std::string, std::uint32_t>, AddressReservation> recorded;
  for (const auto& j : state.value("reservations", json::array())) {
    try {
      AddressReservation r{.network_id = j.at("network_id").get<std::string>(),
                           .ip = *ipam::Ipv4::parse(j.at("ip").get<std::string>()),
                           .owner = j.at("owner").get<std::string>()};
      if (r.ip == ipam::Ipv4{}) throw std::invalid_argument("no address");
      auto key = std::pair(r.network_id, r.ip.value);
      recorded.insert_or_assign(std::move(key), std::move(r));
    } catch (const std::exception& e) {
      spdlog::warn("state file: dropping a malformed address reservation {}: {}", j.dump(), e.what());
    }
  }
  // The reservations made and released since this snapshot.
  journal_generation = state.value(kJournalGenerationKey, std::uint64_t{0});
  for (auto& change : reservation_journal().read(journal_generation)) {
    auto key = std::pair(change.reservation.network_id, change.reservation.ip.value);
    if (change.reserved)
      recorded.insert_or_assign(std::move(key), std::move(change.reservation));
    else
      recorded.erase(key);
  }
  for (const auto& [key, r] : recorded) {
    auto alloc = addresses.find(r.network_id);
    if (alloc == addresses.end()) {
      spdlog::warn("state file: dropping the reservation of {} for {}: network {} is gone", r.ip.str(), r.owner,
                   r.network_id);
      continue;
    }
    try {
      alloc->second.allocate(r.ip);
      reserved.push_back(r);
    } catch (const ipam::IpamError& err) {
      spdlog::warn("state file: dropping the reservation of {} for {}: {}", r.ip.str(), r.owner, err.what());
    }
  }
}

// An attach cut short (by a crash, or by a failed state write) is rolled
// back, not finished: its client got no answer or an error.
void NetworkManager::Impl::roll_back_attaches() {
  std::vector<std::string> ids;
  for (const auto& [id, e] : attaching) ids.push_back(id);
  for (const auto& id : ids) {
    const auto e = attaching.at(id);
    if (roll_back_attach(id))
      spdlog::info("rolled back the unfinished attach of {} to {} ({})", e.netns, e.network_name, e.ip.str());
  }
}

// A veth in a network's namespace that no record accounts for (e.g. left by
// an agent before write-ahead records) would keep an address the allocator
// thinks is free; it goes before the API hands out any address.
void NetworkManager::Impl::remove_orphan_endpoints() {
  for (const auto& [network_id, n] : networks) {
    std::set<std::string> known;
    for (const auto& [id, e] : endpoints)
      if (e.network_id == network_id) known.insert(layout(e).host_ifname);
    for (const auto& [id, e] : attaching)
      if (e.network_id == network_id) known.insert(layout(e).host_ifname);
    try {
      for (const auto& name : dp::remove_unknown_endpoints(layout(n), known))
        spdlog::warn("network {}: removed veth {} that no endpoint accounts for (left by a crash)", n.name, name);
    } catch (const std::exception& e) {
      spdlog::error("network {}: cannot remove unknown veths: {}", n.name, e.what());
    }
  }
}

void NetworkManager::Impl::reconcile_network(const Network& n) {
  try {
    dp::ensure_overlay(node, layout(n));
  } catch (const std::exception& e) {
    spdlog::error("network {} ({}): cannot restore its devices: {}", n.name, short_id(n.id), e.what());
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
                                   [&](const auto& kv) { return short_id(kv.first) == name; });
    if (known) continue;
    spdlog::info("removing stale network namespace {}", entry.path().string());
    try {
      // Its VNI is unknown; deleting every link inside frees whatever it held.
      dp::remove_network_namespace(entry.path());
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
  ChangeNotice notice(impl_->endpoint_listeners);
  notice.fire();
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  // Nothing else writes in the state dir yet (the cluster starts after).
  for (const auto& dir : {fs::path(self.config.state_dir), fs::path(self.config.state_dir) / "cluster"}) {
    try {
      for (const auto& name : remove_leftover_temp_files(dir))
        spdlog::info("removed {} left by an interrupted state write", (dir / name).string());
    } catch (const std::exception& e) {
      spdlog::warn("{}", e.what());
    }
  }
  self.load_state();
  self.remove_stale_kernel_objects();
  for (const auto& [id, n] : self.networks) self.reconcile_network(n);
  self.roll_back_attaches();
  self.remove_orphan_endpoints();
  std::vector<std::string> gone;
  for (auto& [id, e] : self.endpoints) self.reconcile_endpoint(e, gone);
  for (const auto& id : gone) {
    const auto& e = self.endpoints.at(id);
    self.addresses.at(e.network_id).release(e.ip);
    self.endpoints.erase(id);
  }
  // Drains a restart interrupted: overdue ones finish now, the others at
  // their time.
  for (const auto& [id, e] : self.endpoints) {
    if (e.backend_state != BackendState::draining) continue;
    const auto until = parse_rfc3339(e.drain_until);
    if (!until) spdlog::warn("endpoint {}: unreadable drain time \"{}\"; finishing its drain now", e.name, e.drain_until);
    self.drains->arm(id, until.value_or(DrainTimer::Clock::now()));
  }
  // Everything reconcile changed is derived again from the same file and the
  // kernel at the next start, so a full disk must not stop the agent: it
  // serves, and each change the API asks for needs a successful write.
  self.persist_or_log("reconciling");
  spdlog::info("reconciled {} networks, {} endpoints ({} removed)", impl_->networks.size(), impl_->endpoints.size(),
               gone.size());
}

Network NetworkManager::create_network(const NetworkSpec& spec) {
  // Networks change what the DNS serves; the service manager (the load
  // balancer's view) listens to endpoints, node load-balancer addresses included.
  ChangeNotice notice(impl_->network_listeners);
  ChangeNotice endpoint_notice(impl_->endpoint_listeners);
  std::unique_lock lock(impl_->mutex);
  auto& self = *impl_;
  names::validate_network_name(spec.name);
  if (spec.driver != "overlay")
    bad_request("network driver \"" + spec.driver + "\" is not supported: weft networks use the overlay driver");
  // Checked again after the waits for a donation below, which release the lock.
  const auto check_name_free = [&] {
    for (const auto& [id, n] : self.networks)
      if (n.name == spec.name) conflict("network with name " + spec.name + " already exists");
  };
  check_name_free();
  if (spec.gateway && !spec.subnet) bad_request("a gateway needs a subnet (--subnet)");

  ipam::Cidr subnet;
  try {
    if (spec.subnet) {
      auto parsed = ipam::Cidr::parse(*spec.subnet);
      if (!parsed) bad_request(explain_bad_subnet(*spec.subnet));
      if (parsed->prefix > 30) bad_request("subnet " + *spec.subnet + " is too small: at most /30");
      self.pool.reserve(*parsed);
      subnet = *parsed;
    } else {
      const auto unit = static_cast<std::uint32_t>(std::uint64_t{1} << (32 - self.pool.subnet_prefix()));
      subnet = self.with_donations(lock, kPoolSpace, unit, [&] { return self.pool.allocate(); });
    }
  } catch (const ipam::IpamError& e) {
    throw from_ipam(e);
  }

  Network n;
  try {
    // The creator of a network holds all of its addresses at first.
    ipam::AddressAllocator allocator(subnet, ipam::RangeSet(ipam::host_range(subnet)));
    ipam::Ipv4 gateway{subnet.first().value + 1};
    if (spec.gateway) {
      auto parsed = ipam::Ipv4::parse(*spec.gateway);
      if (!parsed) bad_request("invalid gateway \"" + *spec.gateway + "\"");
      if (!subnet.contains(*parsed))
        bad_request("gateway " + *spec.gateway + " is outside subnet " + subnet.str());
      gateway = *parsed;
    }
    allocator.allocate(gateway);
    const auto vni = self.with_donations(lock, kVniSpace, 1, [&] {
      auto free = self.free_vni();
      if (!free) throw ipam::IpamError(ipam::IpamError::Kind::Exhausted, "no free VXLAN network identifier");
      return *free;
    });
    check_name_free();
    n = Network{.id = random_id(),
                .name = spec.name,
                .driver = spec.driver,
                .subnet = subnet,
                .gateway = gateway,
                .vni = vni,
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
  // Made before it is recorded: a crash in between leaves a namespace the
  // state does not know, which the next start removes.
  try {
    self.persist();
  } catch (const std::exception& e) {
    try {
      dp::remove_overlay(self.node, self.layout(n));
    } catch (const std::exception& err) {
      spdlog::error("network {}: cannot remove its devices again: {}; the next start does", n.name, err.what());
    }
    self.networks.erase(n.id);
    self.addresses.erase(n.id);
    self.pool.release(subnet);
    throw ApiError(ApiError::Kind::Internal, "cannot create network " + spec.name +
                                                 ": cannot record it in the state file: " + e.what() +
                                                 "; nothing was created");
  }
  if (self.cluster) {
    self.cluster->claim_space(network_space(n.id), ipam::host_range(subnet));
    self.cluster->publish_network(n);
  }
  if (self.ensure_node_lb_address(n.id)) endpoint_notice.fire();
  notice.fire();
  spdlog::info("created network {} ({}) subnet {} vni {}", n.name, short_id(n.id), n.subnet.str(), n.vni);
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
  ChangeNotice notice(impl_->network_listeners);
  ChangeNotice endpoint_notice(impl_->endpoint_listeners);
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  const Network n = self.find_network(name_or_id);
  // Nodes' load-balancer addresses do not keep a network (as in Docker).
  bool remote_endpoints = false;
  self.remote_endpoints.for_each([&](const RemoteEndpoints::Entry& r) {
    if (!remote_endpoints && r.endpoint->network_id() == n.id)
      remote_endpoints = !is_node_lb_endpoint(RemoteEndpoints::endpoint(r, nullptr));
  });
  if (!self.endpoints_of(n.id).empty() || remote_endpoints)
    conflict("error while removing network: network " + n.name + " id " + n.id + " has active endpoints");
  if (std::any_of(self.reserved.begin(), self.reserved.end(),
                  [&](const auto& r) { return r.network_id == n.id && !Impl::is_node_lb_reservation(r); }))
    conflict("error while removing network: network " + n.name + " id " + n.id + " is in use by a service");
  // The record goes first: a crash after the write leaves a namespace the
  // state does not know, which the next start removes; a failed write
  // leaves everything as it was.
  auto allocator = self.addresses.extract(n.id);
  const auto reserved_before = self.reserved;
  const bool had_lb_address = self.node_lb_reservation(n.id) != nullptr;
  std::erase_if(self.reserved, [&](const auto& r) { return r.network_id == n.id; });
  self.networks.erase(n.id);
  auto restore = [&] {
    self.networks.emplace(n.id, n);
    self.addresses.insert(std::move(allocator));
    self.reserved = reserved_before;
  };
  try {
    self.persist();
  } catch (const std::exception& e) {
    restore();
    throw ApiError(ApiError::Kind::Internal, "cannot remove network " + n.name +
                                                 ": cannot record it in the state file: " + e.what() +
                                                 "; the network is unchanged");
  }
  try {
    dp::remove_overlay(self.node, self.layout(n));
  } catch (const std::exception& e) {
    restore();
    self.reconcile_network(n);  // puts back whatever was deleted before the error
    self.persist_or_log("a failed network removal");
    throw ApiError(ApiError::Kind::Internal, "cannot remove network " + n.name + ": " + e.what());
  }
  self.pool.release(n.subnet);
  if (self.cluster) {
    if (had_lb_address) self.cluster->withdraw_endpoint(node_lb_endpoint_id(self.config.node_name, n.id));
    self.cluster->withdraw_network(n.id);
  }
  self.node_lb_waiting.erase(n.id);
  if (had_lb_address) endpoint_notice.fire();
  notice.fire();
  spdlog::info("removed network {} ({})", n.name, short_id(n.id));
}

Endpoint NetworkManager::connect(const AttachRequest& request) {
  // Looked up before the lock: the service manager calls the network
  // manager with its own lock held, never the other way round.
  std::optional<Service> service;
  if (request.service) {
    if (auto* directory = impl_->services.load()) service = directory->find(*request.service);
    if (!service) not_found("service " + *request.service + " not found");
  }
  ChangeNotice done(impl_->local_change_listeners);
  ChangeNotice notice(impl_->endpoint_listeners);
  std::unique_lock lock(impl_->mutex);
  auto& self = *impl_;
  const Network network = self.find_network(request.network);
  if (service && std::find(service->network_ids.begin(), service->network_ids.end(), network.id) ==
                     service->network_ids.end())
    bad_request("service " + service->name + " is not on network " + network.name);
  std::string why;
  auto ns = self.open_request_netns(request.netns, &why);
  if (!ns) not_found("network namespace " + request.netns + " not found: " + why);
  const std::string name = request.name.value_or(default_endpoint_name(request.netns));
  names::validate_aliases(request.aliases);
  // Checked again after a wait for a donation, which releases the lock.
  const auto check_unique = [&] {
    if (auto* existing = self.endpoint_in(network.id, request.netns, ns))
      conflict("namespace " + request.netns + " is already attached to network " + network.name + " (endpoint " +
               existing->name + ", " + existing->ip.str() + ")");
    if (self.endpoint_named(network.id, name))
      conflict("endpoint with name " + name + " already exists in network " + network.name);
  };
  check_unique();

  ipam::Ipv4 ip;
  try {
    if (request.ip) {
      auto parsed = ipam::Ipv4::parse(*request.ip);
      if (!parsed) bad_request("invalid IPv4 address \"" + *request.ip + "\"");
      self.addresses.at(network.id).allocate(*parsed);
      ip = *parsed;
    } else {
      ip = self.with_donations(lock, network_space(network.id), 1, [&] {
        auto it = self.addresses.find(network.id);
        if (it == self.addresses.end()) not_found("network " + network.name + " was removed");
        return it->second.allocate();
      });
      try {
        check_unique();
      } catch (...) {
        self.addresses.at(network.id).release(ip);
        throw;
      }
    }
  } catch (const ipam::IpamError& e) {
    throw from_ipam(e);
  }
  auto& allocator = self.addresses.at(network.id);

  Endpoint e{.id = random_id(),
             .name = name,
             .network_id = network.id,
             .network_name = network.name,
             .netns = request.netns,
             .ifname = {},
             .ip = ip,
             .prefix_len = network.subnet.prefix,
             .mac = dp::MacAddress::from_ipv4(ip),
             .node = self.config.node_name,
             .service_id = service ? service->id : std::string{},
             .backend_state = BackendState::active,
             .drain_until = {},
             .aliases = request.aliases};
  const auto failed = [&](const std::string& why) {
    return ApiError(ApiError::Kind::Internal,
                    "cannot attach " + request.netns + " to network " + network.name + ": " + why);
  };
  // Write-ahead: the address, MAC and veth name are on disk before the kernel
  // has them, so whatever a crash leaves is found and rolled back at start.
  self.attaching.emplace(e.id, e);
  try {
    self.persist_intent();
  } catch (const std::exception& err) {
    self.attaching.erase(e.id);
    allocator.release(ip);
    throw failed(std::string("cannot record it in the state file: ") + err.what() + "; nothing was changed");
  }
  try {
    e.ifname = dp::attach_endpoint(self.layout(network), self.layout(e), *ns);
  } catch (const std::exception& err) {
    self.roll_back_attach(e.id);
    self.persist_or_log("a failed attach");
    throw failed(err.what());
  }
  self.attaching.erase(e.id);
  self.endpoints.emplace(e.id, e);
  try {
    self.persist();
  } catch (const std::exception& err) {
    // On disk it is still "attaching": rolled back here, or at the next start.
    self.endpoints.erase(e.id);
    self.attaching.emplace(e.id, e);
    self.roll_back_attach(e.id);
    self.persist_or_log("a failed attach");
    throw failed(std::string("cannot record it in the state file: ") + err.what() + "; nothing was changed");
  }
  if (self.cluster) self.cluster->publish_endpoint(e);
  notice.fire();
  done.fire();
  spdlog::info("attached {} to {} as {} ({}){}", e.netns, network.name, e.ip.str(), e.ifname,
               service ? ", a backend of service " + service->name : "");
  return e;
}

void NetworkManager::disconnect(const DetachRequest& request) {
  ChangeNotice done(impl_->local_change_listeners);
  ChangeNotice notice(impl_->endpoint_listeners);
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  const Network network = self.find_network(request.network);
  if (request.drain_seconds && *request.drain_seconds > kMaxDrainSeconds)
    bad_request("drain time " + std::to_string(*request.drain_seconds) + "s is too long: at most " +
                std::to_string(kMaxDrainSeconds) + "s");
  // A namespace that is gone can still be detached by the name it had.
  const auto ns = self.open_request_netns(request.netns);
  Endpoint* found = self.endpoint_in(network.id, request.netns, ns);
  if (!found) not_found("no endpoint of namespace " + request.netns + " on network " + network.name);
  const Endpoint e = *found;
  const std::string what = "detach " + request.netns + " from network " + network.name;
  // Only a service backend has connections to drain; anything else goes now.
  if (request.drain_seconds && *request.drain_seconds > 0 && !e.service_id.empty()) {
    self.start_drain(e, *request.drain_seconds, what);
    notice.fire();
    done.fire();
    return;
  }
  self.detach_now(e, network, what);
  notice.fire();
  done.fire();
  spdlog::info("detached {} from {}", e.netns, network.name);
}

std::vector<Endpoint> NetworkManager::list_endpoints() {
  std::vector<Endpoint> result;
  {
    std::lock_guard lock(impl_->mutex);
    result.reserve(impl_->endpoints.size() + impl_->remote_endpoints.size());
    for (const auto& [id, e] : impl_->endpoints) result.push_back(e);
    impl_->remote_endpoints.for_each([&](const RemoteEndpoints::Entry& r) {
      result.push_back(impl_->remote_endpoint(r));
    });
    for (auto& e : impl_->node_lb_endpoints()) result.push_back(std::move(e));
  }
  // Sorted without the lock: the cluster's thread applies remote changes
  // under it, and with 100 000 endpoints a sort takes tens of ms.
  std::sort(result.begin(), result.end(), [](const auto& a, const auto& b) {
    return std::tie(a.network_name, a.node, a.name) < std::tie(b.network_name, b.node, b.name);
  });
  return result;
}

std::shared_ptr<const EndpointSnapshot> NetworkManager::shared_endpoints() {
  auto& self = *impl_;
  std::lock_guard build(self.snapshot_mutex);
  // Read before the endpoints: a change that lands meanwhile bumps it after,
  // so this snapshot is never taken for one that has the change when it has not.
  const std::uint64_t version = self.endpoints_version.load(std::memory_order_acquire);
  if (self.endpoint_snapshot && self.endpoint_snapshot->version == version) return self.endpoint_snapshot;
  // Dropped first: its readers keep it as long as they need it, but the
  // cache need not keep it through the build.
  self.endpoint_snapshot.reset();
  auto snapshot = std::make_shared<EndpointSnapshot>();
  snapshot->version = version;
  auto& all = snapshot->endpoints;
  {
    std::lock_guard lock(self.mutex);
    all.reserve(self.endpoints.size() + self.remote_endpoints.size());
    for (const auto& [id, e] : self.endpoints) all.push_back(PackedEndpoint::make(e));
    // Other nodes' endpoints are the very records the manager holds: a
    // pointer each, not a copy. The network's name here stands in for the
    // record's; they are held with it (apply_remote_endpoint, a network's
    // arrival), so a copy is made only if one was not.
    const std::string* last_network_id = nullptr;
    const std::string* network_name = nullptr;
    self.remote_endpoints.for_each([&](const RemoteEndpoints::Entry& r) {
      const auto& network_id = r.endpoint->network_id();
      if (&network_id != last_network_id) {
        auto n = self.networks.find(network_id);
        network_name = n == self.networks.end() ? nullptr : &n->second.name;
        last_network_id = &network_id;
      }
      const std::string_view shown =
          network_name ? std::string_view{*network_name} : r.endpoint->record_network_name();
      if (r.endpoint->network_name() != shown)
        all.push_back(r.endpoint->with_network_name(shown));
      else
        all.push_back(self.remote_endpoints.shared(r));
    });
    for (const auto& e : self.node_lb_endpoints()) all.push_back(PackedEndpoint::make(e));
  }
  // In list_endpoints()' order, sorted without the lock.
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    if (const int c = a->network_name().compare(b->network_name()); c != 0) return c < 0;
    if (const int c = a->node().compare(b->node()); c != 0) return c < 0;
    return a->name() < b->name();
  });
  self.endpoint_snapshot = snapshot;
  return snapshot;
}

std::vector<Endpoint> NetworkManager::list_backends() {
  std::lock_guard lock(impl_->mutex);
  std::vector<Endpoint> result;
  for (const auto& [id, e] : impl_->endpoints)
    if (!e.service_id.empty()) result.push_back(e);
  result.reserve(result.size() + impl_->remote_endpoints.size());
  impl_->remote_endpoints.for_each([&](const RemoteEndpoints::Entry& r) {
    if (!r.endpoint->service_id().empty()) result.push_back(RemoteEndpoints::backend(r));
  });
  // Node load-balancer addresses are never backends.
  return result;
}

std::vector<Endpoint> NetworkManager::backends_of(const std::string& service_id) {
  std::vector<Endpoint> result;
  if (service_id.empty()) return result;
  std::lock_guard lock(impl_->mutex);
  for (const auto& [id, e] : impl_->endpoints)
    if (e.service_id == service_id) result.push_back(e);
  impl_->remote_endpoints.for_each([&](const RemoteEndpoints::Entry& r) {
    if (r.endpoint->service_id() == service_id) result.push_back(impl_->remote_endpoint(r));
  });
  return result;
}

// --- cluster side ---------------------------------------------------------

void NetworkManager::attach_cluster(ClusterLink* link) {
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  self.cluster = link;
  // From now on only ranges from the table count; the cluster layer hands
  // this node's ranges back through set_owned() right after.
  self.pool.set_owned({});
  self.vni_owned = {};
  for (auto& [id, allocator] : self.addresses) allocator.remove_owned(allocator.owned());
}

void NetworkManager::detach_cluster() {
  ChangeNotice notice(impl_->endpoint_listeners);
  notice.fire();
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  self.cluster = nullptr;
  self.remote_endpoints.for_each([&](const RemoteEndpoints::Entry& r) {
    if (auto n = self.networks.find(r.endpoint->network_id()); n != self.networks.end()) {
      try {
        dp::unprogram_remote_endpoint(self.layout(n->second), {r.endpoint->ip(), r.endpoint->mac(), r.vtep});
      } catch (const std::exception& e) {
        spdlog::warn("leaving: cannot remove entries of endpoint {}: {}", RemoteEndpoints::name(r), e.what());
      }
    }
  });
  self.remote_endpoints.clear();
  self.early_ownership.clear();
  self.pool.set_owned(ipam::RangeSet(ipam::Range{self.pool.pool().first(), self.pool.pool().last()}));
  self.vni_owned = ipam::RangeSet(kVniRange);
  for (auto& [id, allocator] : self.addresses)
    allocator.add_owned(ipam::RangeSet(ipam::host_range(allocator.subnet())));
}

bool NetworkManager::has_networks() {
  std::lock_guard lock(impl_->mutex);
  return !impl_->networks.empty();
}

std::vector<Network> NetworkManager::local_networks() {
  std::lock_guard lock(impl_->mutex);
  std::vector<Network> result;
  for (const auto& [id, n] : impl_->networks)
    if (n.node == impl_->config.node_name) result.push_back(n);
  return result;
}

std::vector<Endpoint> NetworkManager::local_endpoints() {
  std::lock_guard lock(impl_->mutex);
  std::vector<Endpoint> result;
  for (const auto& [id, e] : impl_->endpoints) result.push_back(e);
  for (auto& e : impl_->node_lb_endpoints()) result.push_back(std::move(e));
  return result;
}

std::string NetworkManager::advertise_addr() const { return impl_->config.advertise_addr; }

ipam::Cidr NetworkManager::address_pool() const { return impl_->pool.pool(); }

void NetworkManager::apply_remote_network(const Network& network) {
  // Networks change what the DNS serves; the service manager (the load
  // balancer's view) listens to endpoints, node load-balancer addresses included.
  ChangeNotice notice(impl_->network_listeners);
  ChangeNotice endpoint_notice(impl_->endpoint_listeners);
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  if (self.networks.count(network.id)) return;
  notice.fire();
  endpoint_notice.fire();  // the load balancer's view gains the network
  try {
    self.pool.reserve(network.subnet);
  } catch (const ipam::IpamError& e) {
    // Only explicit subnets chosen on both sides of a partition can collide.
    spdlog::warn("network {} from {}: {}", network.name, network.node, e.what());
  }
  auto allocator = self.make_allocator(network.subnet, network.id);
  allocator.allocate(network.gateway);
  try {
    dp::ensure_overlay(self.node, self.layout(network));
  } catch (const std::exception& e) {
    spdlog::error("network {} from {}: cannot create its devices: {}", network.name, network.node, e.what());
  }
  const auto& known = self.networks.emplace(network.id, network).first->second;
  self.addresses.emplace(network.id, std::move(allocator));
  self.remote_endpoints.name_network(network.id, &known.name);
  self.remote_endpoints.for_each([&](const RemoteEndpoints::Entry& r) {
    if (r.endpoint->network_id() == network.id) self.realise_remote_endpoint(r);
  });
  self.persist_or_log("a network from the cluster");
  self.ensure_node_lb_address(network.id);
  spdlog::info("network {} ({}) from {}: subnet {} vni {}", network.name, short_id(network.id), network.node,
               network.subnet.str(), network.vni);
}

void NetworkManager::forget_remote_network(const std::string& network_id) {
  ChangeNotice networks_notice(impl_->network_listeners);
  ChangeNotice notice(impl_->endpoint_listeners);
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  auto it = self.networks.find(network_id);
  if (it == self.networks.end()) return;
  networks_notice.fire();
  const Network n = it->second;
  for (auto* e : self.endpoints_of(n.id)) {
    spdlog::warn("network {} was removed elsewhere: detaching its endpoint {}", n.name, e->name);
    dp::detach_endpoint(self.layout(n), self.layout(*e));
  }
  std::erase_if(self.endpoints, [&](const auto& kv) { return kv.second.network_id == n.id; });
  self.withdraw_node_lb_endpoint(n.id);
  std::erase_if(self.reserved, [&](const auto& r) { return r.network_id == n.id; });
  dp::remove_overlay(self.node, self.layout(n));
  self.networks.erase(n.id);
  self.remote_endpoints.name_network(n.id, nullptr);
  self.addresses.erase(n.id);
  try {
    self.pool.release(n.subnet);
  } catch (const ipam::IpamError&) {
    // It was never reserved here (see apply_remote_network).
  }
  self.persist_or_log("a network removed in the cluster");
  notice.fire();
  spdlog::info("network {} ({}) removed by {}", n.name, short_id(n.id), n.node);
}

void NetworkManager::Impl::realise_remote_endpoint(const RemoteEndpoints::Entry& r) {
  auto n = networks.find(r.endpoint->network_id());
  if (n == networks.end()) return;  // programmed when its network arrives
  if (!r.reserved_here) {
    auto& allocator = addresses.at(n->first);
    // Only an explicit --ip elsewhere can land in our ranges; never hand it out.
    if (!allocator.is_allocated(r.endpoint->ip())) {
      try {
        allocator.allocate(r.endpoint->ip());
        remote_endpoints.set_reserved_here(r, true);
      } catch (const ipam::IpamError&) {
      }
    }
  }
  try {
    dp::program_remote_endpoint(layout(n->second), {r.endpoint->ip(), r.endpoint->mac(), r.vtep});
  } catch (const std::exception& e) {
    spdlog::error("endpoint {} on {}: cannot program it: {}", RemoteEndpoints::name(r), r.endpoint->node(), e.what());
  }
}

void NetworkManager::apply_remote_endpoint(const Endpoint& endpoint, ipam::Ipv4 vtep) {
  ChangeNotice notice(impl_->endpoint_listeners);
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  if (endpoint.node == self.config.node_name) return;
  notice.fire();
  // Held with the network's name here, which stands in for the record's in
  // listings (and the snapshots share the record as it is).
  const auto network = self.networks.find(endpoint.network_id);
  const std::string* network_name = network == self.networks.end() ? nullptr : &network->second.name;
  if (const auto old = self.remote_endpoints.find(endpoint.id)) {
    if (old->endpoint->ip() == endpoint.ip && old->vtep == vtep) {
      // Same place; what may have changed is its service or backend state.
      self.remote_endpoints.put(endpoint, vtep, network_name);
      return;
    }
    // Moved or re-addressed: the old entries must go first.
    if (auto n = self.networks.find(old->endpoint->network_id()); n != self.networks.end())
      dp::unprogram_remote_endpoint(self.layout(n->second), {old->endpoint->ip(), old->endpoint->mac(), old->vtep});
  }
  self.realise_remote_endpoint(self.remote_endpoints.put(endpoint, vtep, network_name).first);
  spdlog::debug("endpoint {} {} on {} via {}", endpoint.name, endpoint.ip.str(), endpoint.node, vtep.str());
}

void NetworkManager::forget_remote_endpoint(const std::string& endpoint_id) {
  ChangeNotice notice(impl_->endpoint_listeners);
  std::lock_guard lock(impl_->mutex);
  auto& self = *impl_;
  const auto found = self.remote_endpoints.find(endpoint_id);
  if (!found) return;
  notice.fire();
  const auto& r = *found;
  if (auto n = self.networks.find(r.endpoint->network_id()); n != self.networks.end()) {
    try {
      dp::unprogram_remote_endpoint(self.layout(n->second), {r.endpoint->ip(), r.endpoint->mac(), r.vtep});
    } catch (const std::exception& e) {
      spdlog::error("endpoint {}: cannot remove its entries: {}", RemoteEndpoints::name(r), e.what());
    }
    if (r.reserved_here) self.addresses.at(n->first).release(r.endpoint->ip());
  }
  self.remote_endpoints.erase(endpoint_id);
}

void NetworkManager::Impl::set_owned(const std::string& space, const ipam::RangeSet& owned) {
  if (space == kPoolSpace) {
    pool.set_owned(owned);
  } else if (space == kVniSpace) {
    vni_owned = owned;
  } else if (space.starts_with(kNetworkSpacePrefix)) {
    auto it = addresses.find(space.substr(4));
    if (it == addresses.end()) {
      early_ownership[space] = owned;
    } else {
      it->second.remove_owned(it->second.owned());
      it->second.add_owned(owned);
    }
  }
}

ipam::RangeSet NetworkManager::Impl::free_ranges(const std::string& space) const {
  if (space == kPoolSpace) return pool.free_ranges();
  if (space == kVniSpace) return free_vnis();
  if (space.starts_with(kNetworkSpacePrefix))
    if (auto it = addresses.find(space.substr(4)); it != addresses.end()) return it->second.free_ranges();
  return {};
}

void NetworkManager::set_owned(const std::string& space, const ipam::RangeSet& owned) {
  ChangeNotice notice(impl_->endpoint_listeners);
  {
    std::lock_guard lock(impl_->mutex);
    impl_->set_owned(space, owned);
    // A donation this node's load-balancer address may have waited for.
    if (space.starts_with(kNetworkSpacePrefix) &&
        impl_->ensure_node_lb_address(space.substr(kNetworkSpacePrefix.size())))
      notice.fire();
  }
  impl_->ranges_changed.notify_all();
}

void NetworkManager::give_away(const std::string& space,
                               const std::function<ipam::RangeSet(const ipam::RangeSet& free)>& give) {
  std::lock_guard lock(impl_->mutex);
  impl_->set_owned(space, give(impl_->free_ranges(space)));
}

}  // namespace weft::control::network
