#include "control/services/service_dataplane.h"

#include <sched.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "control/services/lb_id_map.h"
#include "dataplane/lb/ebpf_service_backend.h"
#include "ebpf/lb_abi.h"
#include "dataplane/lb/nft_load_balancer.h"
#include "dataplane/netlink.h"
#include "dataplane/netns.h"

namespace weft::control::services {
namespace {

namespace lb = dataplane::lb;
using Clock = std::chrono::steady_clock;

// Warnings that may repeat on every apply (a service the kernel refuses, a
// veth not there yet): the first of a kind is logged, then one line per
// interval saying how many were left out. Bounded: at most kMaxKeys kinds
// are remembered.
class LogLimiter {
 public:
  void warn(const std::string& key, const std::string& message) {
    const auto now = Clock::now();
    if (seen_.size() >= kMaxKeys && !seen_.contains(key)) seen_.clear();
    auto [it, fresh] = seen_.try_emplace(key, Entry{now, 0});
    if (fresh) {
      spdlog::warn("{}", message);
      return;
    }
    if (now - it->second.last < kInterval) {
      ++it->second.suppressed;
      return;
    }
    if (it->second.suppressed > 0) {
      spdlog::warn("{} ({} more like it in the last {}s)", message, it->second.suppressed,
                   std::chrono::duration_cast<std::chrono::seconds>(now - it->second.last).count());
    } else {
      spdlog::warn("{}", message);
    }
    it->second = Entry{now, 0};
  }
  // The condition ended: the next occurrence is logged at once.
  void clear(const std::string& key) { seen_.erase(key); }

 private:
  struct Entry {
    Clock::time_point last;
    std::uint64_t suppressed = 0;
  };
  static constexpr std::size_t kMaxKeys = 4096;
  static constexpr auto kInterval = std::chrono::seconds(30);
  std::map<std::string, Entry> seen_;
};

bool same_backends(const std::vector<lb::Backend>& a, const std::vector<lb::Backend>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const lb::Backend& x, const lb::Backend& y) {
    return x.id == y.id && x.ip == y.ip && x.mac == y.mac && x.state == y.state;
  });
}

std::string short_id(const std::string& id) { return id.substr(0, 12); }

// The load balancer's maps are pinned there: an earlier agent used eBPF.
bool pins_present(const std::filesystem::path& pin_dir) {
  std::error_code ec;
  return std::filesystem::exists(pin_dir / "lb_config", ec);
}

// Attaches the programs to the loopback of a namespace made for the purpose
// (on a thread of its own, which the namespace dies with): the proof that
// the kernel lets this agent put them on veths, without touching any.
void test_attach(lb::LoadBalancer& balancer) {
  std::string error;
  std::thread probe([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      error = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    try {
      lb::TcAttachment attachment = balancer.attach(1);  // detached again on destruction
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  probe.join();
  if (!error.empty()) throw std::runtime_error("test attach at tc: " + error);
}

}  // namespace

std::optional<LbKind> parse_lb_kind(std::string_view text) {
  if (text == "ebpf") return LbKind::ebpf;
  if (text == "nftables") return LbKind::nftables;
  if (text == "auto") return LbKind::automatic;
  return std::nullopt;
}

struct ServiceDataplane::Impl {
  // One load-balancer service as last programmed. Its network as an index
  // into network_names and its frontends (usually two) in a sorted vector:
  // 10 000 services held ~1.9 MB less than with a 64-char string and a set
  // each.
  struct Applied {
    std::uint32_t network = 0;  // network_names' index; 0: found in the maps, network unknown (eBPF)
    std::vector<lb::Frontend> frontends;  // sorted
    std::optional<std::vector<lb::Backend>> backends;  // nullopt: unknown (found in the kernel)
  };
  // What one load-balancer service must be.
  struct Target {
    std::string network_id;
    std::set<lb::Frontend> frontends;
    std::vector<lb::Backend> backends;  // by id
  };
  struct Attached {
    std::string network_id;
    std::filesystem::path netns;
    std::string ifname;
  };
  struct NftNetwork {
    std::filesystem::path netns;
    std::string bridge;
    std::uint32_t snat_ip = 0;
    dataplane::NetnsHandle handle;
    lb::NftLoadBalancer balancer;
  };

  Impl(ServiceDataplaneOptions o, LbIdMap map) : options(std::move(o)), ids(std::move(map)) {}

  ServiceDataplaneOptions options;
  LbIdMap ids;
  std::optional<lb::EbpfServiceBackend> ebpf;  // set: eBPF; unset: nftables
  std::map<std::string, NftNetwork> nft;  // by network id
  std::map<std::uint32_t, Applied> applied;
  // The network ids Applied::network names; [0] is "" (unknown). Compacted
  // when most are no longer named (compact_networks), so churn stays bounded.
  std::vector<std::string> network_names{std::string()};
  std::map<std::string, std::uint32_t, std::less<>> network_index;

  std::uint32_t intern_network(const std::string& network_id) {
    if (network_id.empty()) return 0;
    auto it = network_index.find(network_id);
    if (it != network_index.end()) return it->second;
    network_names.push_back(network_id);
    const auto index = static_cast<std::uint32_t>(network_names.size() - 1);
    network_index.emplace(network_id, index);
    return index;
  }
  // Checked: an index that compaction failed to renumber would name another
  // network or none; it throws (the driver logs a failed apply) instead of
  // reading past the names, which only a sanitized build would see.
  const std::string& network_of(const Applied& a) const { return network_names.at(a.network); }
  void compact_networks() {
    std::vector<std::uint32_t> remap(network_names.size(), 0);
    for (const auto& [id, a] : applied) remap[a.network] = 1;
    remap[0] = 0;  // "unknown" stays index 0, whether or not a service names it
    std::size_t live = 0;
    for (std::size_t i = 1; i < remap.size(); ++i) live += remap[i];
    if (network_names.size() <= 2 * live + 1) return;  // networks are few: cheap, and run often enough to be tested
    std::vector<std::string> names{std::string()};
    network_index.clear();
    for (std::size_t i = 1; i < remap.size(); ++i) {
      if (remap[i] == 0) continue;
      remap[i] = static_cast<std::uint32_t>(names.size());
      network_index.emplace(network_names[i], remap[i]);
      names.push_back(std::move(network_names[i]));
    }
    network_names = std::move(names);
    for (auto& [id, a] : applied) a.network = remap[a.network];
  }
  static bool has_frontend(const Applied& a, const lb::Frontend& f) {
    return std::binary_search(a.frontends.begin(), a.frontends.end(), f);
  }
  static void add_frontend(Applied& a, const lb::Frontend& f) {
    auto it = std::lower_bound(a.frontends.begin(), a.frontends.end(), f);
    if (it == a.frontends.end() || *it != f) a.frontends.insert(it, f);
  }
  std::map<std::string, Attached> attached;  // by endpoint id
  bool ebpf_state_loaded = false;
  std::set<std::string> no_snat_logged;
  ConntrackFill fill;
  LogLimiter log;
  // weft_lb_connections_total must never go down, but a service's sum over
  // its current backends does when a backend goes or its counter restarts
  // (a reused id). So each service keeps what its gone backends had counted
  // (as last read), plus each current backend's last reading. Connections a
  // backend took after the last read and before it went are not counted.
  struct ConnectionHistory {
    std::uint64_t retired = 0;
    // (backend id, its count as last read), by id: 16 bytes each where a map
    // node took 64 (10 000 services x 10 backends: ~4.8 MB less once scraped).
    std::vector<std::pair<std::uint32_t, std::uint64_t>> last;
    std::uint64_t scrape = 0;  // the last scrape that found the service programmed
    bool settled = false;      // within a scrape: `last` is this scrape's
  };
  std::map<std::string, ConnectionHistory> connection_history;  // by service id
  std::uint64_t scrapes = 0;
  mutable std::mutex mutex;

  std::string_view kind() const { return ebpf ? "ebpf" : "nftables"; }

  // The data path that carries a network's services; nullptr when it is not
  // open (nftables: the network's namespace or table failed).
  lb::ServiceBackend* backend_for(const std::string& network_id);

  lb::NftOptions nft_options(const LbNetwork& network) const {
    lb::NftOptions o;
    o.bridge = network.bridge.empty() ? "br0" : network.bridge;
    o.snat_ip = network.node_lb_address.value;
    o.limits.max_services = options.limits.max_services;
    o.limits.max_frontends = options.limits.max_frontends;
    o.limits.max_backends = options.limits.max_backends;
    return o;
  }

  std::map<std::uint32_t, Target> targets_of(const LbView& view, const std::map<std::string, const LbNetwork*>& nets,
                                             bool& complete);
  void sync_nft_networks(const std::map<std::string, const LbNetwork*>& nets, bool& complete);
  void load_ebpf_state();
  void program(std::uint32_t id, const Target& target, bool& complete);
  void remove_unwanted(const std::map<std::uint32_t, Target>& targets,
                       const std::map<std::string, const LbNetwork*>& nets, bool& complete);
  void release_unused_ids(const std::map<std::uint32_t, Target>& targets);
  void drop_nft_networks(const std::map<std::string, const LbNetwork*>& nets);
  void sync_attachments(const LbView& view, const std::map<std::string, const LbNetwork*>& nets, bool& complete);
  bool apply(const LbView& view);
};

lb::ServiceBackend* ServiceDataplane::Impl::backend_for(const std::string& network_id) {
  if (ebpf) return &*ebpf;
  auto it = nft.find(network_id);
  return it == nft.end() ? nullptr : &it->second.balancer;
}

std::map<std::uint32_t, ServiceDataplane::Impl::Target> ServiceDataplane::Impl::targets_of(
    const LbView& view, const std::map<std::string, const LbNetwork*>& nets, bool& complete) {
  // The wanted services by key, then their backends.
  struct Wanted {
    std::uint32_t vip = 0;
    std::vector<const PackedEndpoint*> endpoints;
  };
  std::map<LbServiceKey, Wanted> wanted;
  std::map<std::uint32_t, LbServiceKey> vip_owner;  // eBPF keys frontends by VIP alone, in every network
  for (const Service& service : view.services) {
    if (service.mode != EndpointMode::vip) continue;
    for (const ServiceVip& vip : service.vips) {
      if (!nets.contains(vip.network_id) || vip.addr.value == 0) continue;
      LbServiceKey key{service.id, vip.network_id};
      auto [it, fresh] = vip_owner.try_emplace(vip.addr.value, key);
      if (ebpf && !fresh && it->second != key) {
        log.warn("vip-clash " + vip.addr.str(),
                 fmt::format("service {} on network {}: VIP {} is also service {}'s; left out", short_id(service.id),
                             short_id(vip.network_id), vip.addr.str(), short_id(it->second.service_id)));
        continue;
      }
      wanted[key].vip = vip.addr.value;
    }
  }
  // nftables without an address of this node in the network cannot SNAT
  // balanced flows to it: a remote backend's replies would not come back
  // here, so only local backends (those with a veth here) are used rather
  // than black-holing the flows given to remote ones.
  std::set<std::string> local;
  for (const LbAttachPoint& point : view.attach_points) local.insert(point.endpoint_id);
  // An endpoint listed twice would make its service's list invalid. Views
  // of the ids: 100 000 string copies in a std::set were ~13 MB per apply.
  struct IdHash {
    std::size_t operator()(const PackedEndpoint* e) const { return e->id_hash(); }
  };
  struct SameId {
    bool operator()(const PackedEndpoint* a, const PackedEndpoint* b) const { return a->compare_id(*b) == 0; }
  };
  std::unordered_set<const PackedEndpoint*, IdHash, SameId> seen;
  const auto backends = view.backend_source();  // held while `wanted` points into it
  seen.reserve(backends->endpoints.size());
  for (const auto& packed : backends->endpoints) {
    const PackedEndpoint& endpoint = *packed;
    if (endpoint.service_id().empty() || endpoint.ip().value == 0 || !seen.insert(&endpoint).second) continue;
    auto it = wanted.find(LbServiceKey{endpoint.service_id(), endpoint.network_id()});
    if (it == wanted.end()) continue;
    if (!ebpf && nets.at(endpoint.network_id())->node_lb_address.value == 0 && !local.contains(endpoint.id()))
      continue;
    it->second.endpoints.push_back(&endpoint);
  }

  std::map<std::uint32_t, Target> targets;
  for (const auto& [key, w] : wanted) {
    auto id = ids.assign_service(key);
    if (!id) {
      complete = false;
      log.warn("service-ids-full", fmt::format("service {} on network {}: no load-balancer service id left "
                                               "(--lb-max-services {}); not balanced",
                                               short_id(key.service_id), short_id(key.network_id),
                                               options.limits.max_services));
      continue;
    }
    Target& t = targets[*id];
    t.network_id = key.network_id;
    for (lb::Protocol proto : {lb::Protocol::tcp, lb::Protocol::udp}) t.frontends.insert({w.vip, 0, proto});
    for (const PackedEndpoint* endpoint : w.endpoints) {
      auto backend_id = ids.assign_backend(endpoint->id());
      if (!backend_id) {
        complete = false;
        log.warn("backend-ids-full", fmt::format("endpoint {}: no load-balancer backend id left (--lb-max-backends "
                                                 "{}); not a backend",
                                                 short_id(endpoint->id()), options.limits.max_backends));
        continue;
      }
      const bool no_mac = endpoint->mac() == dataplane::MacAddress{};
      t.backends.push_back(lb::Backend{
          .id = *backend_id,
          .ip = endpoint->ip().value,
          .mac = no_mac ? lb::mac_from_ip(endpoint->ip().value) : endpoint->mac().bytes,
          .state = endpoint->backend_state() == BackendState::draining ? lb::BackendState::draining
                                                                       : lb::BackendState::active});
    }
    std::sort(t.backends.begin(), t.backends.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  }
  return targets;
}

// nftables: a load balancer per network namespace, opened when the network
// appears (its table then tells what an earlier agent left) and opened
// again when this node's address in the network changes.
void ServiceDataplane::Impl::sync_nft_networks(const std::map<std::string, const LbNetwork*>& nets, bool& complete) {
  for (const auto& [network_id, network] : nets) {
    const lb::NftOptions o = nft_options(*network);
    auto it = nft.find(network_id);
    if (it != nft.end() && it->second.netns == network->netns && it->second.bridge == o.bridge &&
        it->second.snat_ip == o.snat_ip) {
      continue;
    }
    try {
      auto handle = dataplane::NetnsHandle::open(network->netns.string());
      auto balancer = lb::NftLoadBalancer::open(handle, o);
      if (it != nft.end()) nft.erase(it);
      for (const auto& [frontend, id] : balancer.frontends()) {
        Applied& a = applied[id];
        a.network = intern_network(network_id);
        add_frontend(a, frontend);
      }
      for (std::uint32_t id : balancer.service_ids()) {
        Applied& a = applied[id];
        a.network = intern_network(network_id);
        a.backends.reset();  // the table does not keep MACs: set them once
      }
      nft.emplace(network_id, NftNetwork{network->netns, o.bridge, o.snat_ip, std::move(handle), std::move(balancer)});
      log.clear("nft-open " + network_id);
      if (o.snat_ip == 0 && no_snat_logged.insert(network_id).second) {
        spdlog::info("network {}: no address of this node for the nftables load balancer's SNAT: only backends on "
                     "this node are reachable through its VIPs",
                     short_id(network_id));
      }
    } catch (const std::exception& e) {
      complete = false;
      log.warn("nft-open " + network_id,
               fmt::format("network {}: cannot open the nftables load balancer in {}: {}", short_id(network_id),
                           network->netns.string(), e.what()));
    }
  }
}

// eBPF, once after open: the services an earlier agent left in the maps
// become "applied" with unknown backends, so the first apply() sets every
// wanted one once and removes those no longer wanted.
void ServiceDataplane::Impl::load_ebpf_state() {
  if (!ebpf || ebpf_state_loaded) return;
  for (const auto& [frontend, id] : ebpf->ebpf().frontends()) add_frontend(applied[id], frontend);
  for (std::uint32_t id : ebpf->ebpf().service_ids()) applied[id].backends.reset();
  ebpf_state_loaded = true;
}

void ServiceDataplane::Impl::program(std::uint32_t id, const Target& target, bool& complete) {
  lb::ServiceBackend* backend = backend_for(target.network_id);
  if (backend == nullptr) {
    complete = false;  // its network's load balancer did not open; logged there
    return;
  }
  auto [it, fresh] = applied.try_emplace(id);
  Applied& a = it->second;
  if (fresh) a.backends.emplace();  // new to the kernel too: nothing to set when it has no backends
  const std::string key = fmt::format("service {}", id);
  try {
    // New frontends before old ones go: a service losing its last frontend
    // would take its backends along.
    for (const lb::Frontend& f : target.frontends) {
      if (has_frontend(a, f)) continue;
      backend->upsert_service(f, id);
      add_frontend(a, f);
    }
    for (auto f = a.frontends.begin(); f != a.frontends.end();) {
      if (target.frontends.contains(*f)) {
        ++f;
        continue;
      }
      backend->remove_service(*f);
      f = a.frontends.erase(f);
    }
    a.network = intern_network(target.network_id);
    if (!a.backends || !same_backends(*a.backends, target.backends)) {
      backend->set_backends(id, target.backends);
      a.backends = target.backends;
    }
    log.clear(key);
  } catch (const std::exception& e) {
    complete = false;
    const auto k = ids.service_key(id);
    log.warn(key, fmt::format("service {} on network {} (load-balancer service {}): not programmed, retried later: {}",
                              k ? short_id(k->service_id) : "?", k ? short_id(k->network_id) : "?", id, e.what()));
  }
}

void ServiceDataplane::Impl::remove_unwanted(const std::map<std::uint32_t, Target>& targets,
                                             const std::map<std::string, const LbNetwork*>& nets, bool& complete) {
  for (auto it = applied.begin(); it != applied.end();) {
    if (targets.contains(it->first)) {
      ++it;
      continue;
    }
    const std::uint32_t id = it->first;
    lb::ServiceBackend* backend = backend_for(network_of(it->second));
    if (!backend && nets.contains(network_of(it->second))) {
      // nftables: the network's table did not open (logged), so the
      // service may still be in it: keep its id until it can be removed.
      complete = false;
      ++it;
      continue;
    }
    try {
      // nftables without its network's table: the table went with the
      // network (or goes with it below), and the service with it.
      if (backend) backend->remove_service(id);
      it = applied.erase(it);
      ids.release_service(id);
    } catch (const std::exception& e) {
      complete = false;
      log.warn(fmt::format("remove {}", id),
               fmt::format("load-balancer service {}: not removed, retried later: {}", id, e.what()));
      ++it;
    }
  }
}

// Ids neither wanted nor in the kernel go back to the pool.
void ServiceDataplane::Impl::release_unused_ids(const std::map<std::uint32_t, Target>& targets) {
  std::vector<std::uint32_t> services;
  ids.for_each_service([&](std::uint32_t id) {
    if (!targets.contains(id) && !applied.contains(id)) services.push_back(id);
  });
  for (std::uint32_t id : services) ids.release_service(id);

  // By id (ids are below max_backends): a bit each, not a set node each
  // (100 000 backends: 5 MB per apply).
  std::vector<bool> in_use;
  auto use = [&in_use](std::uint32_t id) {
    if (id >= in_use.size()) in_use.resize(std::size_t{id} + 1);
    in_use[id] = true;
  };
  for (const auto& [id, t] : targets)
    for (const auto& b : t.backends) use(b.id);
  for (const auto& [id, a] : applied)
    if (a.backends)
      for (const auto& b : *a.backends) use(b.id);
  std::vector<std::uint32_t> backends;
  ids.for_each_backend([&](std::uint32_t id) {
    if (id >= in_use.size() || !in_use[id]) backends.push_back(id);
  });
  for (std::uint32_t id : backends) ids.release_backend(id);
}

void ServiceDataplane::Impl::drop_nft_networks(const std::map<std::string, const LbNetwork*>& nets) {
  for (auto it = nft.begin(); it != nft.end();) {
    if (nets.contains(it->first)) {
      ++it;
      continue;
    }
    try {
      // Usually the namespace is gone with its network; if not, the table
      // and its VIP routes go.
      LbNetwork gone;
      gone.bridge = it->second.bridge;
      lb::NftLoadBalancer::remove(it->second.handle, nft_options(gone));
    } catch (const std::exception& e) {
      spdlog::debug("network {}: nftables load balancer not removed: {}", short_id(it->first), e.what());
    }
    no_snat_logged.erase(it->first);
    it = nft.erase(it);
  }
}

void ServiceDataplane::Impl::sync_attachments(const LbView& view, const std::map<std::string, const LbNetwork*>& nets,
                                              bool& complete) {
  if (!ebpf) return;
  std::map<std::string, Attached> wanted;
  for (const LbAttachPoint& point : view.attach_points) {
    auto net = nets.find(point.network_id);
    if (net == nets.end() || point.host_ifname.empty()) continue;
    wanted[point.endpoint_id] = Attached{point.network_id, net->second->netns, point.host_ifname};
  }
  // Gone ones first: a veth name can come back for another endpoint.
  for (auto it = attached.begin(); it != attached.end();) {
    auto w = wanted.find(it->first);
    if (w != wanted.end() && w->second.netns == it->second.netns && w->second.ifname == it->second.ifname) {
      ++it;
      continue;
    }
    try {
      std::optional<dataplane::NetnsHandle> ns;
      try {
        ns.emplace(dataplane::NetnsHandle::open(it->second.netns.string()));
      } catch (const std::system_error&) {
        // The namespace is gone, and the veth with it.
      }
      if (ns) {
        dataplane::NetnsGuard inside(*ns);
        dataplane::NetlinkSocket links;
        if (auto link = links.find_link(it->second.ifname)) lb::LoadBalancer::detach(link->ifindex);
      }
      it = attached.erase(it);
    } catch (const std::exception& e) {
      complete = false;
      log.warn("detach " + it->first, fmt::format("endpoint {}: load-balancer programs not detached from {}: {}",
                                                  short_id(it->first), it->second.ifname, e.what()));
      ++it;
    }
  }
  for (const auto& [endpoint_id, point] : wanted) {
    if (attached.contains(endpoint_id)) continue;
    try {
      auto ns = dataplane::NetnsHandle::open(point.netns.string());
      dataplane::NetnsGuard inside(ns);
      dataplane::NetlinkSocket links;
      auto link = links.find_link(point.ifname);
      if (!link) throw std::runtime_error("no interface " + point.ifname + " (yet)");
      // Released: the programs stay while the agent is down, and the next
      // agent's attach() replaces them in place.
      ebpf->ebpf().attach(link->ifindex).release();
      attached.emplace(endpoint_id, point);
      log.clear("attach " + endpoint_id);
    } catch (const std::exception& e) {
      complete = false;
      log.warn("attach " + endpoint_id, fmt::format("endpoint {}: load-balancer programs not attached to {}, retried "
                                                    "later: {}",
                                                    short_id(endpoint_id), point.ifname, e.what()));
    }
  }
}

bool ServiceDataplane::Impl::apply(const LbView& view) {
  bool complete = true;
  std::map<std::string, const LbNetwork*> nets;
  for (const LbNetwork& network : view.networks) nets.emplace(network.network_id, &network);

  if (!ebpf) sync_nft_networks(nets, complete);
  load_ebpf_state();
  auto targets = targets_of(view, nets, complete);
  // Write-ahead: the ids are on disk before any map holds them.
  try {
    ids.save();
    log.clear("ids");
  } catch (const std::exception& e) {
    log.warn("ids", fmt::format("load balancer not changed: cannot write its ids: {}", e.what()));
    return false;
  }
  for (const auto& [id, target] : targets) program(id, target, complete);
  remove_unwanted(targets, nets, complete);
  release_unused_ids(targets);
  compact_networks();
  if (!ebpf) drop_nft_networks(nets);
  sync_attachments(view, nets, complete);
  try {
    ids.save();
  } catch (const std::exception& e) {
    // Only releases are unsaved: the file keeps ids no longer used, which
    // the next apply() releases again.
    complete = false;
    log.warn("ids", fmt::format("cannot write the load balancer's ids: {}", e.what()));
  }
  return complete;
}

ServiceDataplane ServiceDataplane::open(const ServiceDataplaneOptions& options) {
  auto ids = LbIdMap::load(id_map_path(options.state_dir),
                           LbIdMap::Bounds{options.limits.max_services, options.limits.max_backends});
  auto impl = std::make_unique<Impl>(options, std::move(ids));

  auto open_ebpf = [&] {
    auto balancer = lb::LoadBalancer::open(options.pin_dir, options.limits, options.timeouts);
    test_attach(balancer);
    impl->ebpf.emplace(std::move(balancer));
  };
  switch (options.kind) {
    case LbKind::ebpf:
      open_ebpf();
      spdlog::info("service load balancer: eBPF (--lb-backend ebpf), maps pinned in {}", options.pin_dir.string());
      break;
    case LbKind::nftables:
      spdlog::info("service load balancer: nftables (--lb-backend nftables)");
      break;
    case LbKind::automatic: {
      const bool pinned = pins_present(options.pin_dir);
      try {
        open_ebpf();
        spdlog::info("service load balancer: eBPF (auto: its programs load and attach), maps pinned in {}",
                     options.pin_dir.string());
      } catch (const std::exception& e) {
        if (!pinned) {
          // Maps this attempt may have pinned (the programs loaded but would
          // not attach) would stop the next start's fallback.
          try {
            lb::LoadBalancer::remove_pins(options.pin_dir);
          } catch (const std::exception& cleanup) {
            spdlog::debug("eBPF load balancer: pins not removed: {}", cleanup.what());
          }
        } else {
          throw std::runtime_error(fmt::format(
              "eBPF load balancer: {}; {} holds maps of an earlier run, whose programs may still be on endpoints, "
              "so auto does not fall back to nftables: fix the cause (or remove the pins) or pass --lb-backend",
              e.what(), options.pin_dir.string()));
        }
        spdlog::warn("service load balancer: nftables (auto: eBPF unavailable: {})", e.what());
      }
      break;
    }
  }
  return ServiceDataplane(std::move(impl));
}

std::filesystem::path ServiceDataplane::id_map_path(const std::filesystem::path& state_dir) {
  return state_dir / "lb" / "ids.json";
}

ServiceDataplane::ServiceDataplane(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ServiceDataplane::ServiceDataplane(ServiceDataplane&&) noexcept = default;
ServiceDataplane& ServiceDataplane::operator=(ServiceDataplane&&) noexcept = default;
ServiceDataplane::~ServiceDataplane() = default;

bool ServiceDataplane::apply(const LbView& view) {
  std::lock_guard lock(impl_->mutex);
  return impl_->apply(view);
}

std::optional<ConntrackFill> ServiceDataplane::collect_garbage() {
  std::lock_guard lock(impl_->mutex);
  if (!impl_->ebpf) return std::nullopt;
  const lb::GcResult r = impl_->ebpf->ebpf().gc(lb::LoadBalancer::monotonic_now_ns());
  impl_->fill.entries = r.entries;
  impl_->fill.capacity = r.capacity;
  impl_->fill.expired += r.expired;
  return impl_->fill;
}

LbMetrics ServiceDataplane::metrics() const {
  std::lock_guard lock(impl_->mutex);
  LbMetrics m;
  // eBPF: the whole counter map in a few batch reads, then per backend.
  std::vector<std::uint64_t> by_backend;
  if (impl_->ebpf) {
    try {
      by_backend = impl_->ebpf->ebpf().connections_by_backend();
    } catch (const std::exception&) {
      // Per service below, as service inspect reads them.
    }
  }
  // This read's count per backend, each tagged with its service's history
  // (a service may be programmed on several networks: its backends' counts
  // add up), in one buffer sorted by service: 100 000 backends take 2.4 MB
  // in one block given back after the scrape, where a map node each took
  // ~8 MB of small blocks that the heap kept.
  using History = Impl::ConnectionHistory;
  struct Reading {
    History* history;
    std::uint32_t backend;
    std::uint64_t count;
  };
  std::vector<Reading> readings;
  std::size_t backend_total = 0;
  for (const auto& [number, applied] : impl_->applied)
    if (applied.backends) backend_total += applied.backends->size();
  readings.reserve(backend_total);
  const std::uint64_t scrape = ++impl_->scrapes;
  LbServiceKey key;  // its buffers reused for every service
  for (const auto& [number, applied] : impl_->applied) {
    if (!impl_->ids.service_key_into(number, key)) continue;
    auto it = impl_->connection_history.find(key.service_id);
    if (it == impl_->connection_history.end()) it = impl_->connection_history.emplace(key.service_id, History{}).first;
    History* history = &it->second;
    history->scrape = scrape;
    if (!by_backend.empty() && applied.backends) {
      for (const lb::Backend& b : *applied.backends)
        if (b.id < by_backend.size()) readings.push_back({history, b.id, by_backend[b.id]});
      continue;
    }
    lb::ServiceBackend* backend = impl_->backend_for(impl_->network_of(applied));
    if (!backend) continue;
    try {
      for (const lb::BackendCounters& c : backend->counters(number))
        readings.push_back({history, c.backend_id, c.connections});
    } catch (const std::exception&) {
      // A map read failing here is no reason to fail the scrape.
    }
  }
  std::sort(readings.begin(), readings.end(), [](const Reading& a, const Reading& b) {
    return std::tie(a.history, a.backend) < std::tie(b.history, b.backend);
  });
  // Each service's reading against its last one (both by backend id).
  std::vector<std::pair<std::uint32_t, std::uint64_t>> counts;
  auto settle = [&counts](History& history, const Reading* begin, const Reading* end) {
    counts.clear();
    for (const Reading* r = begin; r != end; ++r) {
      if (!counts.empty() && counts.back().first == r->backend)
        counts.back().second += r->count;
      else
        counts.emplace_back(r->backend, r->count);
    }
    auto now = counts.begin();
    for (const auto& [id, last] : history.last) {
      while (now != counts.end() && now->first < id) ++now;
      if (now == counts.end() || now->first != id || now->second < last) history.retired += last;  // gone, or restarted
    }
    history.last.assign(counts.begin(), counts.end());
    history.settled = true;
  };
  for (std::size_t i = 0; i < readings.size();) {
    std::size_t j = i;
    while (j < readings.size() && readings[j].history == readings[i].history) ++j;
    settle(*readings[i].history, readings.data() + i, readings.data() + j);
    i = j;
  }
  for (auto it = impl_->connection_history.begin(); it != impl_->connection_history.end();) {
    History& history = it->second;
    // Services no longer programmed here are no longer reported.
    if (history.scrape != scrape) {
      it = impl_->connection_history.erase(it);
      continue;
    }
    if (!history.settled) settle(history, nullptr, nullptr);
    history.settled = false;
    std::uint64_t sum = history.retired;
    for (const auto& [id, count] : history.last) sum += count;
    m.connections.emplace_hint(m.connections.end(), it->first, sum);
    ++it;
  }
  if (impl_->ebpf) {
    lb::LoadBalancer& lb = impl_->ebpf->ebpf();
    try {
      const std::vector<std::uint64_t> stats = lb.stats();
      const std::pair<lb_stat, const char*> kDrops[] = {{LB_STAT_DROP_FRAGMENT, "fragment"},
                                                        {LB_STAT_DROP_IP_OPTIONS, "ip_options"},
                                                        {LB_STAT_DROP_NO_BACKEND, "no_backend"},
                                                        {LB_STAT_DROP_OTHER, "other"}};
      for (const auto& [stat, reason] : kDrops)
        if (static_cast<std::size_t>(stat) < stats.size()) m.drops[reason] = stats[stat];
    } catch (const std::exception&) {
    }
    const auto& limits = impl_->options.limits;
    m.maps.push_back({"lb_vips", lb.frontends().size(), limits.max_frontends});
    m.maps.push_back({"lb_services", impl_->applied.size(), limits.max_services});
    m.maps.push_back({"lb_backends", impl_->ids.backend_count(), limits.max_backends});
    m.maps.push_back({"lb_conntrack", impl_->fill.entries, impl_->fill.capacity});
  }
  return m;
}

ConntrackFill ServiceDataplane::conntrack_fill() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->fill;
}

std::string_view ServiceDataplane::kind() const { return impl_->kind(); }

std::optional<std::string> ServiceDataplane::lookup(const std::string& service_id, const std::string& network_id,
                                                    dataplane::Ipv4 src, std::uint16_t sport, std::uint16_t dport,
                                                    PortProtocol proto) {
  std::lock_guard lock(impl_->mutex);
  if (!impl_->ebpf) return std::nullopt;  // nftables draws at random per connection
  auto id = impl_->ids.service(LbServiceKey{service_id, network_id});
  if (!id || !impl_->applied.contains(*id)) return std::string();
  auto result = impl_->ebpf->lookup(*id, src.value, sport, dport, static_cast<lb::Protocol>(proto));
  if (!result) return std::string();
  return impl_->ids.endpoint_of(result->backend_id).value_or(std::string());
}

std::map<std::string, BackendCounters> ServiceDataplane::counters(const std::string& service_id,
                                                                  const std::string& network_id) {
  std::lock_guard lock(impl_->mutex);
  std::map<std::string, BackendCounters> out;
  auto id = impl_->ids.service(LbServiceKey{service_id, network_id});
  if (!id || !impl_->applied.contains(*id)) return out;
  lb::ServiceBackend* backend = impl_->backend_for(network_id);
  if (!backend) return out;
  for (const lb::BackendCounters& c : backend->counters(*id)) {
    const auto endpoint = impl_->ids.endpoint_of(c.backend_id);
    if (!endpoint) continue;  // dead, its endpoint gone
    out[*endpoint] = BackendCounters{.connections = c.connections, .packets = c.packets, .bytes = c.bytes};
  }
  return out;
}

std::optional<std::uint32_t> ServiceDataplane::service_number(const std::string& service_id,
                                                              const std::string& network_id) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->ids.service(LbServiceKey{service_id, network_id});
}

std::optional<std::uint32_t> ServiceDataplane::backend_number(const std::string& endpoint_id) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->ids.backend(endpoint_id);
}

}  // namespace weft::control::services
