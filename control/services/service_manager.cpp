#include "control/services/service_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <limits>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "control/model/ids.h"
#include "control/model/names.h"
#include "control/model/record_json.h"
#include "control/network/state_file.h"
#include "control/services/service_spec.h"
#include "control/services/service_store.h"

namespace weft::control::services {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kVipOwnerPrefix = "service:";

[[noreturn]] void bad_request(const std::string& message) { throw ApiError(ApiError::Kind::BadRequest, message); }
[[noreturn]] void not_found(const std::string& message) { throw ApiError(ApiError::Kind::NotFound, message); }
[[noreturn]] void conflict(const std::string& message) { throw ApiError(ApiError::Kind::Conflict, message); }

bool on_network(const Service& s, const std::string& network_id) {
  return std::find(s.network_ids.begin(), s.network_ids.end(), network_id) != s.network_ids.end();
}

}  // namespace

std::string vip_owner(const std::string& service_id) { return kVipOwnerPrefix + service_id; }

struct ServiceManager::Impl {
  Impl(ServiceManagerConfig c, ServiceNetworks& n) : config(std::move(c)), networks(n) {}

  // Durable (fsync'ed): a service whose create was answered survives a crash.
  void persist(const Service& s) { store.write(s); }

  void load() {
    for (auto& [id, s] : store.load()) local.emplace(id, std::make_shared<const Service>(std::move(s)));
  }

  // Docker's order: full id, then exact name, then unique id prefix.
  const Service* find(const std::string& ref) const {
    if (auto it = local.find(ref); it != local.end()) return it->second.get();
    if (auto it = remote.find(ref); it != remote.end()) return it->second.get();
    std::vector<const Service*> by_name, by_prefix;
    auto scan = [&](const ServiceMap& services) {
      for (const auto& [id, s] : services) {
        if (s->name == ref) by_name.push_back(s.get());
        if (id.starts_with(ref)) by_prefix.push_back(s.get());
      }
    };
    scan(local);
    scan(remote);
    if (by_name.size() == 1) return by_name.front();
    if (by_name.size() > 1)
      conflict("service name \"" + ref + "\" is ambiguous (" + std::to_string(by_name.size()) +
               " services have it): use the service ID");
    if (by_prefix.size() == 1) return by_prefix.front();
    if (by_prefix.size() > 1) conflict("service ID prefix \"" + ref + "\" is ambiguous");
    return nullptr;
  }

  static void validate_ref(const std::string& ref) {
    if (ref.empty()) bad_request("service name or id is required");
    names::validate_text("service name or id", ref, names::kMaxNetworkRef);
  }

  const Service& get(const std::string& ref) const {
    validate_ref(ref);
    const Service* s = find(ref);
    if (!s) not_found("service " + ref + " not found");
    return *s;
  }

  bool name_taken(const std::string& name) const {
    auto same = [&](const auto& kv) { return kv.second->name == name; };
    return std::any_of(local.begin(), local.end(), same) || std::any_of(remote.begin(), remote.end(), same);
  }

  void release_vips(const Service& s) {
    for (const auto& vip : s.vips) networks.release_address(vip.network_id, vip.addr);
  }

  // A local service goes: its record first (a crash after the write leaves
  // reservations without an owner, which the next reconcile releases).
  void remove_local(const Service& s, bool must_persist) {
    local.erase(s.id);
    snapshot.reset();
    try {
      store.remove(s.id);
    } catch (const std::exception& e) {
      if (must_persist) {
        local.emplace(s.id, std::make_shared<const Service>(s));
        snapshot.reset();
        throw ApiError(ApiError::Kind::Internal, "cannot remove service " + s.name +
                                                     ": cannot record it in the state file: " + e.what() +
                                                     "; the service is unchanged");
      }
      // Removed in the cluster already: the next start finds the tombstone.
      spdlog::error("service {} was removed in the cluster but the state file cannot say so: {}", s.name, e.what());
    }
    release_vips(s);
  }

  std::vector<std::function<void()>> listeners_copy() {
    std::lock_guard lock(listeners_mutex);
    return listeners;
  }
  void notify() {
    for (const auto& listener : listeners_copy()) {
      try {
        listener();
      } catch (const std::exception& e) {
        spdlog::error("a service change listener failed: {}", e.what());
      }
    }
  }

  ServiceDetail detail(const Service& s, const std::vector<Endpoint>& endpoints) const {
    std::vector<const Endpoint*> backends;
    for (const auto& e : endpoints)
      if (e.service_id == s.id) backends.push_back(&e);
    return detail(s, backends);
  }
  // `backends`: the service's (list_services groups them once, rather than
  // scanning every endpoint per service: 10 000 services x 100 000
  // endpoints were 10^9 comparisons per list, and the event watcher lists
  // every 0.5 s while the tables change).
  static ServiceDetail detail(const Service& s, const std::vector<const Endpoint*>& backends) {
    ServiceDetail d{.service = s, .backends = {}};
    d.backends.reserve(backends.size());
    for (const Endpoint* endpoint : backends) {
      const Endpoint& e = *endpoint;
      d.backends.push_back(ServiceBackendInfo{.endpoint_id = e.id,
                                              .endpoint_name = e.name,
                                              .network_id = e.network_id,
                                              .ip = e.ip,
                                              .node = e.node,
                                              .state = e.backend_state,
                                              .counters = std::nullopt});
    }
    sort_backends(d);
    return d;
  }
  static ServiceDetail detail(const Service& s, const std::vector<const PackedEndpoint*>& backends) {
    ServiceDetail d{.service = s, .backends = {}};
    d.backends.reserve(backends.size());
    for (const PackedEndpoint* endpoint : backends) {
      const PackedEndpoint& e = *endpoint;
      d.backends.push_back(ServiceBackendInfo{.endpoint_id = e.id(),
                                              .endpoint_name = std::string(e.name()),
                                              .network_id = e.network_id(),
                                              .ip = e.ip(),
                                              .node = e.node(),
                                              .state = e.backend_state(),
                                              .counters = std::nullopt});
    }
    sort_backends(d);
    return d;
  }
  static void sort_backends(ServiceDetail& d) {
    std::sort(d.backends.begin(), d.backends.end(), [](const auto& a, const auto& b) {
      return std::tie(a.network_id, a.node, a.endpoint_name) < std::tie(b.network_id, b.node, b.endpoint_name);
    });
  }

  // Counters come from the load balancer, asked without any lock held.
  static void add_counters(ServiceDetail& d, LbQuery* lb) {
    if (!lb) return;
    std::map<std::string, std::map<std::string, BackendCounters>> by_network;
    for (const auto& network_id : d.service.network_ids) {
      try {
        by_network[network_id] = lb->counters(d.service.id, network_id);
      } catch (const std::exception& e) {
        spdlog::warn("service {}: cannot read the load balancer's counters: {}", d.service.name, e.what());
      }
    }
    for (auto& b : d.backends) {
      auto& counters = by_network[b.network_id];
      auto it = counters.find(b.endpoint_id);
      b.counters = it == counters.end() ? BackendCounters{} : it->second;
    }
  }

  // One running task per slot counts, whatever holds it twice for a moment.
  static void count_running(ServiceDetail& d, const std::vector<TaskRecord>& tasks) {
    std::set<std::uint64_t> slots;
    for (const auto& t : tasks)
      if (t.service_id == d.service.id && t.state == "running" && t.slot <= d.service.replicas) slots.insert(t.slot);
    d.running_tasks = slots.size();
  }

  ServiceManagerConfig config;
  ServiceStore store{config.state_dir};
  ServiceNetworks& networks;
  std::mutex mutex;
  // Each service immutable, shared with the lists below: a change replaces
  // the service's pointer (copy on write per service).
  using ServiceMap = std::map<std::string, std::shared_ptr<const Service>>;
  ServiceMap local;   // created here, by id
  ServiceMap remote;  // other nodes', by id
  // Every service (local, then remote) as one immutable list that readers
  // share (the load balancer's view per apply, the DNS per sync, the tasks)
  // until the next change: each change drops it under `mutex`, the next
  // reader builds it once, from pointers. Before, each reader copied every
  // service.
  std::shared_ptr<const ServiceList::List> snapshot;
  std::shared_ptr<const ServiceList::List> all_services() {
    if (!snapshot) {
      auto list = std::make_shared<ServiceList::List>();
      list->reserve(local.size() + remote.size());
      for (const auto& [id, s] : local) list->push_back(s);
      for (const auto& [id, s] : remote) list->push_back(s);
      snapshot = std::move(list);
    }
    return snapshot;
  }
  ServiceClusterLink* cluster = nullptr;
  std::atomic<LbQuery*> lb{nullptr};
  std::atomic<TaskView*> task_view{nullptr};
  std::mutex listeners_mutex;
  std::vector<std::function<void()>> listeners;
};

ServiceManager::ServiceManager(ServiceManagerConfig config, ServiceNetworks& networks)
    : impl_(std::make_shared<Impl>(std::move(config), networks)) {
  wire();
}

ServiceManager::ServiceManager(ServiceManagerConfig config, network::NetworkManager& networks)
    : adapter_(std::make_unique<NetworkManagerNetworks>(networks)),
      impl_(std::make_shared<Impl>(std::move(config), *adapter_)) {
  wire();
}

void ServiceManager::wire() {
  impl_->networks.set_service_directory(this);
  impl_->networks.on_endpoints_changed([weak = std::weak_ptr<Impl>(impl_)] {
    if (auto impl = weak.lock()) impl->notify();
  });
}

ServiceManager::~ServiceManager() { impl_->networks.set_service_directory(nullptr); }

void ServiceManager::reconcile() {
  {
    std::lock_guard lock(impl_->mutex);
    auto& self = *impl_;
    self.local.clear();
    self.snapshot.reset();
    self.load();
    self.snapshot.reset();
    std::set<std::pair<std::string, std::uint32_t>> recorded;
    for (const auto& [id, s] : self.local)
      for (const auto& vip : s->vips) recorded.insert({vip.network_id, vip.addr.value});
    std::size_t released = 0;
    for (const auto& r : self.networks.reservations()) {
      if (!r.owner.starts_with(kVipOwnerPrefix)) continue;
      const auto id = r.owner.substr(std::string_view(kVipOwnerPrefix).size());
      if (self.local.count(id) && recorded.count({r.network_id, r.ip.value})) {
        recorded.erase({r.network_id, r.ip.value});
        continue;
      }
      spdlog::info("releasing {} of network {}: reserved for service {}, which was never recorded (a crash)",
                   r.ip.str(), short_id(r.network_id), short_id(id));
      self.networks.release_address(r.network_id, r.ip);
      ++released;
    }
    for (const auto& [network_id, ip] : recorded)
      spdlog::warn("a service's virtual IP {} of network {} has no reservation (its network is gone?)",
                   dataplane::Ipv4{ip}.str(), short_id(network_id));
    spdlog::info("reconciled {} services ({} virtual IPs of unrecorded services released)", self.local.size(),
                 released);
  }
  impl_->notify();
}

void ServiceManager::set_load_balancer(LbQuery* lb) { impl_->lb = lb; }

void ServiceManager::set_task_view(TaskView* tasks) { impl_->task_view = tasks; }

std::vector<Service> ServiceManager::services() {
  const auto list = shared_services();
  std::vector<Service> result;
  result.reserve(list->size());
  for (const auto& s : *list) result.push_back(*s);
  return result;
}

std::shared_ptr<const ServiceList::List> ServiceManager::shared_services() {
  std::lock_guard lock(impl_->mutex);
  return impl_->all_services();
}

// Any node may update any service: the update is a new version of the
// service's record, written by this node; where two updates cross, the
// cluster's table (Lamport time) decides and every copy takes its winner.
Service ServiceManager::update_service(const std::string& name_or_id, const ServiceUpdate& update) {
  Service s;
  {
    std::lock_guard lock(impl_->mutex);
    auto& self = *impl_;
    s = self.get(name_or_id);
    if (update.replicas) {
      if (s.command.empty())
        bad_request("service " + s.name + " runs no tasks (it was created without a command): nothing to scale");
      check_replicas(*update.replicas);
      s.replicas = *update.replicas;
    }
    ++s.version;
    if (auto it = self.local.find(s.id); it != self.local.end()) {
      const auto before = it->second;
      it->second = std::make_shared<const Service>(s);
      self.snapshot.reset();
      try {
        self.persist(s);
      } catch (const std::exception& e) {
        it->second = before;
        self.snapshot.reset();
        throw ApiError(ApiError::Kind::Internal, "cannot update service " + s.name +
                                                     ": cannot record it in the state file: " + e.what() +
                                                     "; the service is unchanged");
      }
    } else {
      self.remote[s.id] = std::make_shared<const Service>(s);
      self.snapshot.reset();
    }
    if (self.cluster) self.cluster->publish_service(s);
  }
  spdlog::info("updated service {} ({}): {} replicas", s.name, short_id(s.id), s.replicas);
  impl_->notify();
  return s;
}

std::vector<TaskRecord> ServiceManager::list_tasks(const std::string& name_or_id) {
  Service s;
  {
    std::lock_guard lock(impl_->mutex);
    s = impl_->get(name_or_id);
  }
  std::vector<TaskRecord> result;
  if (auto* view = impl_->task_view.load())
    for (auto& t : view->tasks())
      if (t.service_id == s.id) result.push_back(std::move(t));
  std::sort(result.begin(), result.end(),
            [](const auto& a, const auto& b) { return std::tie(a.slot, a.node) < std::tie(b.slot, b.node); });
  return result;
}

std::string ServiceManager::task_logs(const std::string& name_or_id, std::uint64_t max_bytes) {
  Service s;
  {
    std::lock_guard lock(impl_->mutex);
    s = impl_->get(name_or_id);
  }
  auto* view = impl_->task_view.load();
  return view ? view->logs(s.id, max_bytes) : std::string{};
}

std::vector<TaskLog> ServiceManager::task_logs_by_slot(const std::string& name_or_id, std::uint64_t max_bytes) {
  Service s;
  {
    std::lock_guard lock(impl_->mutex);
    s = impl_->get(name_or_id);
  }
  auto* view = impl_->task_view.load();
  return view ? view->logs_by_slot(s.id, max_bytes) : std::vector<TaskLog>{};
}

void ServiceManager::on_change(std::function<void()> listener) {
  std::lock_guard lock(impl_->listeners_mutex);
  impl_->listeners.push_back(std::move(listener));
}

LbView ServiceManager::lb_view() {
  LbView view;
  view.services = ServiceList(shared_services());
  // Not list_endpoints(): a sorted copy of every endpoint with all its
  // strings, 59 MB at 100 000 backends, per apply. The shared snapshot when
  // the networks have one (built once per change, read by all).
  view.all_endpoints = impl_->networks.shared_endpoints();
  if (!view.all_endpoints) view.backends = impl_->networks.list_backends();
  const auto topology = impl_->networks.local_topology();
  for (const auto& n : topology.networks)
    view.networks.push_back(LbNetwork{.network_id = n.network_id,
                                      .netns = n.netns,
                                      .bridge = n.bridge,
                                      .subnet = n.subnet,
                                      .gateway = n.gateway,
                                      .node_lb_address = n.node_lb_address});
  for (const auto& v : topology.veths)
    view.attach_points.push_back(
        LbAttachPoint{.endpoint_id = v.endpoint_id, .network_id = v.network_id, .host_ifname = v.host_ifname});
  return view;
}

Service ServiceManager::create_service(const ServiceSpec& spec) {
  const auto checked = check_spec(spec);
  std::vector<Network> networks;
  for (const auto& ref : checked.networks) {
    auto n = impl_->networks.get_network(ref);
    if (std::none_of(networks.begin(), networks.end(), [&](const auto& m) { return m.id == n.id; }))
      networks.push_back(std::move(n));
  }
  auto& self = *impl_;
  const auto check_name_free = [&] {
    if (self.name_taken(checked.name)) conflict("service with name " + checked.name + " already exists");
  };
  {
    std::lock_guard lock(self.mutex);
    check_name_free();
  }
  Service s{.id = random_id(),
            .name = checked.name,
            .mode = checked.mode,
            .ports = checked.ports,
            .network_ids = {},
            .vips = {},
            .created = now_rfc3339(),
            .node = self.config.node_name,
            .command = checked.command,
            .replicas = checked.replicas,
            .restart_condition = checked.restart_condition,
            .version = 0};
  for (const auto& n : networks) s.network_ids.push_back(n.id);
  // Write-ahead: each VIP is reserved on disk, naming this service, before
  // the service is; a crash in between leaves a reservation reconcile
  // releases. Reserved without this manager's lock: a reservation may wait
  // for a peer's donation, which the cluster's thread brings in, and that
  // thread may be waiting for this lock to hand over a remote service.
  try {
    if (s.mode == EndpointMode::vip)
      for (const auto& n : networks)
        s.vips.push_back(ServiceVip{.network_id = n.id,
                                    .addr = self.networks.reserve_address(n.id, vip_owner(s.id)),
                                    .prefix_len = n.subnet.prefix});
  } catch (...) {
    self.release_vips(s);
    throw;
  }
  {
    std::lock_guard lock(self.mutex);
    try {
      check_name_free();  // again: the lock was released meanwhile
      self.local.emplace(s.id, std::make_shared<const Service>(s));
      self.snapshot.reset();
      try {
        self.persist(s);
      } catch (const std::exception& e) {
        self.local.erase(s.id);
        self.snapshot.reset();
        throw ApiError(ApiError::Kind::Internal, "cannot create service " + s.name +
                                                     ": cannot record it in the state file: " + e.what() +
                                                     "; nothing was created");
      }
    } catch (...) {
      self.release_vips(s);
      throw;
    }
    if (self.cluster) self.cluster->publish_service(s);
  }
  std::string vips;
  for (const auto& v : s.vips) {
    vips += ' ';
    vips += v.addr.str();
  }
  spdlog::info("created service {} ({}), mode {}{}", s.name, short_id(s.id), endpoint_mode_name(s.mode),
               vips.empty() ? "" : ", virtual IPs" + vips);
  impl_->notify();
  return s;
}

// Every service within the bound: none is past it.
std::vector<ServiceDetail> ServiceManager::list_services() {
  return list_services_for_page(std::numeric_limits<std::size_t>::max());
}

// The first max_with_backends whole; of the rest only those with tasks,
// without backends, counters and running tasks.
std::vector<ServiceDetail> ServiceManager::list_services_for_page(std::size_t max_with_backends) {
  // The shared records, sorted; a service is copied only into the result.
  std::vector<std::shared_ptr<const Service>> services;
  {
    std::lock_guard lock(impl_->mutex);
    services.reserve(impl_->local.size() + impl_->remote.size());
    for (const auto& [id, s] : impl_->local) services.push_back(s);
    for (const auto& [id, s] : impl_->remote) services.push_back(s);
  }
  std::sort(services.begin(), services.end(),
            [](const auto& a, const auto& b) { return std::tie(a->name, a->id) < std::tie(b->name, b->id); });
  const std::size_t detailed = std::min(max_with_backends, services.size());
  std::unordered_set<std::string_view> wanted;
  if (detailed < services.size())
    for (std::size_t i = 0; i < detailed; ++i) wanted.insert(services[i]->id);
  // The shared snapshot when there is one: `service ls`, the event watcher
  // and the observe poller call this often, and a copy of every endpoint
  // each time is what it would cost otherwise.
  auto shared = impl_->networks.shared_endpoints();
  if (!shared) shared = EndpointSnapshot::of(impl_->networks.list_endpoints());
  std::unordered_map<std::string_view, std::vector<const PackedEndpoint*>> by_service;
  for (const auto& e : shared->endpoints)
    if (!e->service_id().empty() && (detailed == services.size() || wanted.contains(e->service_id())))
      by_service[e->service_id()].push_back(e.get());
  std::vector<ServiceDetail> result;
  result.reserve(detailed);
  const auto tasks = impl_->task_view.load() ? impl_->task_view.load()->tasks() : std::vector<TaskRecord>{};
  static const std::vector<const PackedEndpoint*> no_backends;
  for (std::size_t i = 0; i < services.size(); ++i) {
    const Service& s = *services[i];
    if (i >= detailed) {
      if (!s.command.empty()) result.push_back(ServiceDetail{.service = s, .backends = {}});
      continue;
    }
    const auto it = by_service.find(s.id);
    result.push_back(Impl::detail(s, it == by_service.end() ? no_backends : it->second));
    Impl::add_counters(result.back(), impl_->lb.load());
    Impl::count_running(result.back(), tasks);
  }
  return result;
}

ServiceDetail ServiceManager::get_service(const std::string& name_or_id) {
  Service s;
  {
    std::lock_guard lock(impl_->mutex);
    s = impl_->get(name_or_id);
  }
  auto d = impl_->detail(s, impl_->networks.backends_of(s.id));
  Impl::add_counters(d, impl_->lb.load());
  if (auto* view = impl_->task_view.load()) Impl::count_running(d, view->tasks());
  return d;
}

void ServiceManager::remove_service(const std::string& name_or_id) {
  {
    std::lock_guard lock(impl_->mutex);
    auto& self = *impl_;
    const Service s = self.get(name_or_id);
    if (self.local.count(s.id)) {
      self.remove_local(s, true);
    } else {
      // Another node's: the tombstone reaches it, and it releases the VIPs.
      self.remote.erase(s.id);
      self.snapshot.reset();
    }
    if (self.cluster) self.cluster->withdraw_service(s.id);
    spdlog::info("removed service {} ({})", s.name, short_id(s.id));
  }
  impl_->notify();
}

LbLookupResult ServiceManager::lookup(const LbLookupRequest& request) {
  const auto args = check_lookup(request);
  Service s;
  {
    std::lock_guard lock(impl_->mutex);
    s = impl_->get(request.service);
  }
  std::string network_id;
  if (request.network) {
    const auto n = impl_->networks.get_network(*request.network);
    if (!on_network(s, n.id)) bad_request("service " + s.name + " is not on network " + n.name);
    network_id = n.id;
  } else if (s.network_ids.size() == 1) {
    network_id = s.network_ids.front();
  } else {
    std::string names;
    for (const auto& id : s.network_ids) {
      std::string name = short_id(id);
      try {
        name = impl_->networks.get_network(id).name;
      } catch (const ApiError&) {
      }
      names += (names.empty() ? "" : ", ") + name;
    }
    bad_request("service " + s.name + " is on several networks (" + names + "): name one with --network");
  }
  auto vip = std::find_if(s.vips.begin(), s.vips.end(), [&](const auto& v) { return v.network_id == network_id; });
  if (vip == s.vips.end()) bad_request("service " + s.name + " has no virtual IP (endpoint mode dnsrr)");
  LbQuery* lb = impl_->lb.load();
  if (!lb) throw ApiError(ApiError::Kind::Internal, "no load balancer on this node");
  LbLookupResult result{.service_id = s.id,
                        .network_id = network_id,
                        .vip = vip->addr,
                        .backend_endpoint_id = {},
                        .backend_ip = {},
                        .lb_backend = std::string(lb->kind()),
                        .deterministic = true};
  const auto chosen = lb->lookup(s.id, network_id, args.src, args.sport, args.dport, args.proto);
  if (!chosen) {
    result.deterministic = false;
    return result;
  }
  result.backend_endpoint_id = *chosen;
  if (!chosen->empty()) {
    auto find_ip = [&](const std::vector<Endpoint>& endpoints) {
      for (const auto& e : endpoints)
        if (e.id == *chosen) result.backend_ip = e.ip;
    };
    find_ip(impl_->networks.backends_of(s.id));
    // Moved to another service since the load balancer's last apply.
    if (result.backend_ip == dataplane::Ipv4{}) find_ip(impl_->networks.list_endpoints());
  }
  return result;
}

std::optional<Service> ServiceManager::find(const std::string& name_or_id) {
  Impl::validate_ref(name_or_id);
  std::lock_guard lock(impl_->mutex);
  const Service* s = impl_->find(name_or_id);
  return s ? std::optional(*s) : std::nullopt;
}

// --- cluster side ---------------------------------------------------------------

void ServiceManager::attach_cluster(ServiceClusterLink* link) {
  std::lock_guard lock(impl_->mutex);
  impl_->cluster = link;
}

void ServiceManager::detach_cluster() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->cluster = nullptr;
    impl_->remote.clear();
    impl_->snapshot.reset();
  }
  impl_->notify();
}

std::vector<Service> ServiceManager::local_services() {
  std::lock_guard lock(impl_->mutex);
  std::vector<Service> result;
  for (const auto& [id, s] : impl_->local) result.push_back(*s);
  return result;
}

void ServiceManager::apply_remote_service(const Service& service) {
  {
    std::lock_guard lock(impl_->mutex);
    if (auto it = impl_->local.find(service.id); it != impl_->local.end()) {
      // Ours, updated on another node (our own writes never come back: the
      // table only reports changes). The table decided: take its version.
      const Service& current = *it->second;
      if (current.command == service.command && current.replicas == service.replicas &&
          current.restart_condition == service.restart_condition && current.version == service.version)
        return;
      auto updated = std::make_shared<Service>(current);
      auto& mine = *updated;
      it->second = updated;
      mine.command = service.command;
      mine.replicas = service.replicas;
      mine.restart_condition = service.restart_condition;
      mine.version = service.version;
      impl_->snapshot.reset();
      try {
        impl_->persist(mine);
      } catch (const std::exception& e) {
        spdlog::error("service {}: cannot record an update from the cluster: {}", mine.name, e.what());
      }
    } else {
      impl_->remote[service.id] = std::make_shared<const Service>(service);
      impl_->snapshot.reset();
    }
  }
  impl_->notify();
}

void ServiceManager::forget_service(const std::string& service_id) {
  {
    std::lock_guard lock(impl_->mutex);
    auto& self = *impl_;
    if (auto it = self.local.find(service_id); it != self.local.end()) {
      const Service s = *it->second;
      self.remove_local(s, false);
      spdlog::info("service {} ({}) was removed in the cluster; released its virtual IPs", s.name, short_id(s.id));
    } else if (!self.remote.erase(service_id)) {
      return;
    }
    self.snapshot.reset();
  }
  impl_->notify();
}

}  // namespace weft::control::services
