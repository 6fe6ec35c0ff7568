#include "dataplane/lb/nft_load_balancer.h"

#include <arpa/inet.h>

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace weft::dataplane::lb {
namespace {

using nlohmann::json;

std::uint32_t parse_ipv4(const std::string& text) {
  in_addr addr{};
  if (::inet_pton(AF_INET, text.c_str(), &addr) != 1) throw nft::NftError("bad address in table: " + text);
  return ntohl(addr.s_addr);
}

Protocol parse_proto(const json& j) {
  if (j.is_string()) return j.get<std::string>() == "udp" ? Protocol::udp : Protocol::tcp;
  return j.get<int>() == 17 ? Protocol::udp : Protocol::tcp;
}

// A map element's key, unwrapping {"elem": {"val": ...}} (elements with a
// counter) into the plain key.
const json& element_key(const json& key) {
  if (key.is_object() && key.contains("elem")) return key["elem"]["val"];
  return key;
}

}  // namespace

struct NftLoadBalancer::Impl {
  struct Service {
    std::vector<std::uint32_t> slots;              // active backend ids, as slots 0..n-1 hold them
    std::map<std::uint32_t, Backend> backends;     // every backend the service has
  };

  Impl(const NetnsHandle& network_ns, const NftOptions& options)
      : ns(nft::duplicate(network_ns)),
        opt(options),
        ctx(nft::duplicate(network_ns)),
        writer(network_ns),
        addresses(network_ns, options.bridge) {}

  NetnsHandle ns;
  NftOptions opt;
  nft::NftContext ctx;          // the table, pick chains, listings
  nft::NftElementWriter writer;  // element changes
  nft::VipRoutes addresses;  // local routes: the VIPs (and SNAT address) the bridge owns
  std::map<Frontend, std::uint32_t> frontends;
  std::map<std::uint32_t, std::uint32_t> vip_refs;  // VIP -> frontends using it
  std::map<std::uint32_t, Service> services;
  std::map<std::uint32_t, std::uint32_t> backend_owner;  // backend id -> service id
  std::set<std::uint32_t> pick_chains;
  std::string last_commands;
  std::size_t last_operations = 0;
  // A change being planned: owners and chains it adds, applied to the model
  // only once the kernel took the transaction (no copy of the whole model).
  std::map<std::uint32_t, std::optional<std::uint32_t>> pending_owners;
  std::vector<std::uint32_t> pending_chains;

  std::optional<std::uint32_t> owner_of(std::uint32_t backend_id) const {
    if (auto p = pending_owners.find(backend_id); p != pending_owners.end()) return p->second;
    if (auto o = backend_owner.find(backend_id); o != backend_owner.end()) return o->second;
    return std::nullopt;
  }
  void commit_plan() {
    for (const auto& [id, owner] : pending_owners) {
      if (owner) backend_owner[id] = *owner;
      else backend_owner.erase(id);
    }
    pending_owners.clear();
    pending_chains.clear();
  }
  void abort_plan() {
    for (auto n : pending_chains) pick_chains.erase(n);
    pending_owners.clear();
    pending_chains.clear();
  }

  nft::Commands commands() const { return nft::Commands(opt.table); }

  // The new pick chains first (libnftables: they have rules), then the
  // elements as one transaction. A chain made stays in the model even if
  // the elements then fail: the kernel has it, unreferenced until a
  // service's svc_pick element names it.
  void apply(const nft::Commands& c, const std::string& what) {
    last_commands = c.text();
    last_operations = c.operations();
    if (c.empty()) return;
    if (const std::string chains = c.chains_text(); !chains.empty()) {
      ctx.run(chains, what + " (pick chains)");
      pending_chains.clear();
    }
    writer.send(c, what);
  }

  void check_service_id(std::uint32_t id) const {
    if (id >= opt.limits.max_services)
      throw std::invalid_argument(fmt::format("service id {} out of range (max {})", id, opt.limits.max_services));
  }

  // Brings the service's slots in line with its active backends, moving as
  // few slots as it can: a backend that leaves gives its slot to the last
  // one, a new one is appended. Returns the new slot list.
  std::vector<std::uint32_t> plan_slots(nft::Commands& c, std::uint32_t service_id, const Service& s) {
    std::vector<std::uint32_t> next = s.slots;
    auto is_active = [&](std::uint32_t id) {
      auto it = s.backends.find(id);
      return it != s.backends.end() && it->second.state == BackendState::active;
    };
    for (std::size_t i = 0; i < next.size();) {
      if (is_active(next[i])) {
        ++i;
        continue;
      }
      next[i] = next.back();
      next.pop_back();
    }
    for (const auto& [id, backend] : s.backends)
      if (backend.state == BackendState::active && std::find(next.begin(), next.end(), id) == next.end())
        next.push_back(id);
    if (next.size() > opt.limits.max_backends_per_service)
      throw std::invalid_argument(fmt::format("service {} has {} active backends (max {})", service_id, next.size(),
                                              opt.limits.max_backends_per_service));

    const std::size_t common = std::min(next.size(), s.slots.size());
    for (std::size_t i = 0; i < common; ++i) {
      if (next[i] == s.slots[i]) continue;
      c.delete_slot(service_id, static_cast<std::uint32_t>(i));
      c.add_slot(service_id, static_cast<std::uint32_t>(i), next[i]);
    }
    for (std::size_t i = common; i < s.slots.size(); ++i) c.delete_slot(service_id, static_cast<std::uint32_t>(i));
    for (std::size_t i = common; i < next.size(); ++i)
      c.add_slot(service_id, static_cast<std::uint32_t>(i), next[i]);
    if (next.size() != s.slots.size()) {
      if (!s.slots.empty()) c.delete_pick(service_id);
      if (!next.empty()) {
        const auto n = static_cast<std::uint32_t>(next.size());
        if (pick_chains.insert(n).second) {
          c.add_pick_chain(n);
          pending_chains.push_back(n);
        }
        c.set_pick(service_id, n);
      }
    }
    return next;
  }

  // The new backend list of one service, planned into `c`. Returns the ids
  // whose flows must be reset once the transaction is in.
  std::vector<std::uint32_t> plan_backends(nft::Commands& c, std::uint32_t service_id,
                                           std::span<const Backend> wanted, Service& s) {
    std::map<std::uint32_t, Backend> next;
    for (const auto& b : wanted) {
      if (b.id == 0 || b.id >= opt.limits.max_backends)
        throw std::invalid_argument(fmt::format("backend id {} out of range (1..{})", b.id, opt.limits.max_backends - 1));
      if (b.state != BackendState::active && b.state != BackendState::draining && b.state != BackendState::dead)
        throw std::invalid_argument(fmt::format("backend {}: unknown state", b.id));
      const auto owner = owner_of(b.id);
      if (owner && *owner != service_id)
        throw std::invalid_argument(fmt::format("backend {} belongs to service {}", b.id, *owner));
      if (!next.emplace(b.id, b).second) throw std::invalid_argument(fmt::format("backend {} listed twice", b.id));
    }
    std::vector<std::uint32_t> reset;
    for (const auto& [id, old] : s.backends) {
      auto it = next.find(id);
      if (it == next.end() || (it->second.state == BackendState::dead && old.state != BackendState::dead))
        reset.push_back(id);
    }
    Service planned{s.slots, next};
    planned.slots = plan_slots(c, service_id, planned);
    // backend_svc holds the service of exactly the backends without a slot.
    auto sorted = [](std::vector<std::uint32_t> ids) {
      std::sort(ids.begin(), ids.end());
      return ids;
    };
    const auto slotted_before = sorted(s.slots), slotted_after = sorted(planned.slots);
    auto in = [](const std::vector<std::uint32_t>& ids, std::uint32_t id) {
      return std::binary_search(ids.begin(), ids.end(), id);
    };
    for (const auto& [id, b] : next) {
      auto old = s.backends.find(id);
      const bool existed = old != s.backends.end();
      if (!existed || old->second.ip != b.ip) {
        if (existed) c.delete_backend(id);
        c.add_backend(id, b.ip);
      }
      const bool recorded = existed && !in(slotted_before, id), record = !in(slotted_after, id);
      if (recorded && !record) c.delete_owner(id);
      if (record && !recorded) c.add_owner(id, service_id);
    }
    for (const auto& [id, old] : s.backends) {
      if (next.count(id)) continue;
      c.delete_backend(id);
      if (!in(slotted_before, id)) c.delete_owner(id);
    }
    s = std::move(planned);
    return reset;
  }

  void plan_owners(std::uint32_t service_id, const std::map<std::uint32_t, Backend>& before, const Service& after) {
    for (const auto& [id, b] : before)
      if (!after.backends.count(id)) pending_owners[id] = std::nullopt;
    for (const auto& [id, b] : after.backends)
      if (!before.count(id)) pending_owners[id] = service_id;
  }

  void reset_flows(const std::vector<std::uint32_t>& backend_ids) {
    for (auto id : backend_ids)
      if (!nft::delete_conntrack_by_mark(ns, id))
        spdlog::warn("nft lb: could not delete the conntrack entries of backend {}", id);
  }

  void load(const std::string& listing) {
    const json doc = json::parse(listing);
    bool marker = false;
    std::map<std::uint32_t, std::uint32_t> pick_size;
    std::map<std::uint32_t, std::map<std::uint32_t, std::uint32_t>> slots;
    std::map<std::uint32_t, std::uint32_t> backend_ip;
    for (const auto& item : doc.at("nftables")) {
      if (item.contains("chain")) {
        const std::string name = item["chain"].at("name");
        if (name.starts_with("pick_")) pick_chains.insert(static_cast<std::uint32_t>(std::stoul(name.substr(5))));
        continue;
      }
      const json* set = item.contains("set") ? &item["set"] : item.contains("map") ? &item["map"] : nullptr;
      if (!set) continue;
      const std::string name = set->at("name");
      if (name == nft::kLayoutMarker) marker = true;
      if (!set->contains("elem")) continue;
      for (const auto& e : (*set)["elem"]) {
        if (name == "fe_port") {
          const auto& k = element_key(e[0])["concat"];
          frontends[Frontend{parse_ipv4(k[0]), k[2].get<std::uint16_t>(), parse_proto(k[1])}] = e[1];
        } else if (name == "fe_any") {
          const auto& k = element_key(e[0])["concat"];
          frontends[Frontend{parse_ipv4(k[0]), 0, parse_proto(k[1])}] = e[1];
        } else if (name == "svc_pick") {
          const std::string target = e[1]["goto"]["target"];
          pick_size[element_key(e[0])] = static_cast<std::uint32_t>(std::stoul(target.substr(5)));
        } else if (name == "slots") {
          const auto& k = element_key(e[0])["concat"];
          slots[k[0]][k[1]] = e[1];
        } else if (name == "backend_addr") {
          backend_ip[element_key(e[0])] = parse_ipv4(e[1]);
        } else if (name == "backend_svc") {
          backend_owner[element_key(e[0])] = e[1];
        }
      }
    }
    if (!marker) throw nft::NftError("table " + opt.table + " has another layout");
    for (const auto& [f, svc] : frontends) {
      ++vip_refs[f.vip];
      services[svc];
    }
    auto ip_of = [&](std::uint32_t id) { return backend_ip.count(id) ? backend_ip[id] : 0; };
    // backend_svc: the backends without a slot (draining, or dead after
    // their flush); the others' service is the key of their slot.
    for (const auto& [id, svc] : backend_owner)
      services[svc].backends[id] = {.id = id, .ip = ip_of(id), .mac = {}, .state = BackendState::draining};
    for (const auto& [svc, n] : pick_size) {
      auto& s = services[svc];
      for (std::uint32_t i = 0; i < n; ++i) {
        auto it = slots[svc].find(i);
        // A half-written service (cannot happen with one transaction per
        // change) would be rewritten by the next set_backends.
        if (it == slots[svc].end()) break;
        const std::uint32_t id = it->second;
        s.slots.push_back(id);
        s.backends[id] = {.id = id, .ip = ip_of(id), .mac = {}, .state = BackendState::active};
        backend_owner[id] = svc;
      }
    }
  }
};

NftLoadBalancer::NftLoadBalancer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NftLoadBalancer::NftLoadBalancer(NftLoadBalancer&&) noexcept = default;
NftLoadBalancer& NftLoadBalancer::operator=(NftLoadBalancer&&) noexcept = default;
NftLoadBalancer::~NftLoadBalancer() = default;

NftLoadBalancer NftLoadBalancer::open(const NetnsHandle& network_ns, const NftOptions& options) {
  auto impl = std::make_unique<Impl>(network_ns, options);
  nft::enable_forwarding(network_ns, options.bridge);
  bool reused = false;
  try {
    impl->load(impl->ctx.list_json("table ip " + options.table));
    impl->ctx.run(nft::replace_snat_rule(options.table, options.snat_ip), "set the SNAT rule");
    reused = true;
  } catch (const std::exception& e) {
    // Absent, of another layout, or unreadable: start clean (one
    // transaction; conntrack, and so established flows, stay).
    spdlog::debug("nft lb: new table {} ({})", options.table, e.what());
  }
  if (!reused) {
    impl = std::make_unique<Impl>(network_ns, options);
    impl->ctx.run(nft::create_table(options.table, options.limits, options.snat_ip), "create table " + options.table);
  }
  // The table is the record: the bridge holds exactly its VIPs (and the SNAT
  // address, when there is one).
  std::set<std::uint32_t> wanted;
  for (const auto& [vip, refs] : impl->vip_refs) wanted.insert(vip);
  if (options.snat_ip) wanted.insert(options.snat_ip);
  const auto present = impl->addresses.list();
  for (auto ip : present)
    if (!wanted.count(ip)) impl->addresses.remove(ip);
  for (auto ip : wanted)
    if (!present.count(ip)) impl->addresses.add(ip);
  try {
    impl->ctx.run(nft::replace_snat_mac_table(options.table, options.bridge, options.snat_ip),
                  "set the SNAT address's MAC rule");
  } catch (const nft::NftError& e) {
    // Without a SNAT address nothing needs the netdev table: a kernel
    // without that family still balances to local backends.
    if (options.snat_ip) throw;
    spdlog::debug("nft lb: netdev table {} not removed: {}", options.table, e.what());
  }
  nft::reconcile_snat_mac(network_ns, options.bridge, options.snat_ip);
  return NftLoadBalancer(std::move(impl));
}

void NftLoadBalancer::remove(const NetnsHandle& network_ns, const NftOptions& options) {
  nft::NftContext ctx(nft::duplicate(network_ns));
  ctx.run(fmt::format("add table ip {0}\ndelete table ip {0}\n", options.table), "delete table " + options.table);
  try {
    ctx.run(nft::replace_snat_mac_table(options.table, options.bridge, 0), "delete netdev table " + options.table);
  } catch (const nft::NftError& e) {
    spdlog::debug("nft lb: netdev table {} not removed: {}", options.table, e.what());
  }
  nft::VipRoutes addresses(network_ns, options.bridge);
  for (auto ip : addresses.list()) addresses.remove(ip);
  nft::reconcile_snat_mac(network_ns, options.bridge, 0);
}

void NftLoadBalancer::upsert_service(const Frontend& frontend, std::uint32_t service_id) {
  const std::pair<Frontend, std::uint32_t> one{frontend, service_id};
  upsert_services(std::span(&one, 1));
}

void NftLoadBalancer::upsert_services(std::span<const std::pair<Frontend, std::uint32_t>> list) {
  auto& m = *impl_;
  auto c = m.commands();
  std::map<Frontend, std::uint32_t> changed;  // planned, applied after the kernel took them
  std::map<std::uint32_t, std::uint32_t> new_refs;
  std::vector<std::uint32_t> new_vips;
  std::size_t added = 0;
  for (const auto& [f, id] : list) {
    m.check_service_id(id);
    if (f.vip == 0) throw std::invalid_argument("frontend without a VIP");
    if (f.proto != Protocol::tcp && f.proto != Protocol::udp) throw std::invalid_argument("frontend protocol");
    if (changed.count(f)) throw std::invalid_argument("a frontend listed twice");
    auto it = m.frontends.find(f);
    if (it != m.frontends.end()) {
      if (it->second == id) continue;
      c.delete_frontend(f);
    } else {
      if (m.frontends.size() + ++added > m.opt.limits.max_frontends)
        throw std::length_error(fmt::format("more than {} frontends", m.opt.limits.max_frontends));
      if (!m.vip_refs.count(f.vip) && new_refs[f.vip]++ == 0) {
        c.add_vip(f.vip);
        new_vips.push_back(f.vip);
      } else if (m.vip_refs.count(f.vip)) {
        ++new_refs[f.vip];
      }
    }
    c.add_frontend(f, id);
    changed[f] = id;
  }
  m.apply(c, "add frontends");
  for (const auto& [f, id] : changed) {
    m.frontends[f] = id;
    m.services[id];
  }
  for (const auto& [vip, refs] : new_refs) m.vip_refs[vip] += refs;
  // After the table: a crash in between leaves a VIP the next open() adds.
  for (auto vip : new_vips) m.addresses.add(vip);
}

void NftLoadBalancer::remove_service(const Frontend& frontend) {
  auto& m = *impl_;
  auto it = m.frontends.find(frontend);
  if (it == m.frontends.end()) return;
  const std::uint32_t id = it->second;
  const bool last = std::count_if(m.frontends.begin(), m.frontends.end(),
                                  [&](const auto& kv) { return kv.second == id; }) == 1;
  if (last) return remove_service(id);
  auto c = m.commands();
  c.delete_frontend(frontend);
  const bool vip_gone = m.vip_refs[frontend.vip] == 1;
  if (vip_gone) {
    m.addresses.remove(frontend.vip);
    c.delete_vip(frontend.vip);
  }
  m.apply(c, "remove frontend");
  m.frontends.erase(frontend);
  if (vip_gone) m.vip_refs.erase(frontend.vip); else --m.vip_refs[frontend.vip];
}

void NftLoadBalancer::remove_service(std::uint32_t service_id) {
  auto& m = *impl_;
  auto c = m.commands();
  std::vector<std::uint32_t> gone_vips;
  auto vip_refs = m.vip_refs;
  for (const auto& [f, id] : m.frontends) {
    if (id != service_id) continue;
    c.delete_frontend(f);
    if (--vip_refs[f.vip] == 0) {
      c.delete_vip(f.vip);
      gone_vips.push_back(f.vip);
      vip_refs.erase(f.vip);
    }
  }
  std::vector<std::uint32_t> reset;
  auto sit = m.services.find(service_id);
  try {
    if (sit != m.services.end()) {
      Impl::Service emptied = sit->second;
      reset = m.plan_backends(c, service_id, {}, emptied);
      m.plan_owners(service_id, sit->second.backends, emptied);
    }
    for (auto vip : gone_vips) m.addresses.remove(vip);
    m.apply(c, "remove service");
  } catch (...) {
    m.abort_plan();
    throw;
  }
  m.commit_plan();
  std::erase_if(m.frontends, [&](const auto& kv) { return kv.second == service_id; });
  m.vip_refs = std::move(vip_refs);
  m.services.erase(service_id);
  m.reset_flows(reset);
}

void NftLoadBalancer::set_backends(std::uint32_t service_id, std::span<const Backend> backends) {
  const ServiceBackends one{service_id, {backends.begin(), backends.end()}};
  set_backends(std::span(&one, 1));
}

void NftLoadBalancer::set_backends(std::span<const ServiceBackends> list) {
  auto& m = *impl_;
  auto c = m.commands();
  // Planned on copies: the model changes only once the kernel took it.
  std::map<std::uint32_t, Impl::Service> planned;
  std::vector<std::uint32_t> reset;
  try {
    for (const auto& sb : list) {
      m.check_service_id(sb.service_id);
      auto [it, fresh] = planned.try_emplace(sb.service_id);
      if (!fresh) throw std::invalid_argument(fmt::format("service {} listed twice", sb.service_id));
      auto cur = m.services.find(sb.service_id);
      if (cur != m.services.end()) it->second = cur->second;
      const auto before = it->second.backends;
      auto r = m.plan_backends(c, sb.service_id, sb.backends, it->second);
      reset.insert(reset.end(), r.begin(), r.end());
      m.plan_owners(sb.service_id, before, it->second);
    }
    m.apply(c, "set backends");
  } catch (...) {
    m.abort_plan();
    throw;
  }
  m.commit_plan();
  for (auto& [id, s] : planned) m.services[id] = std::move(s);
  m.reset_flows(reset);
}

void NftLoadBalancer::set_backend_state(std::uint32_t backend_id, BackendState state) {
  auto& m = *impl_;
  auto owner = m.backend_owner.find(backend_id);
  if (owner == m.backend_owner.end()) throw std::out_of_range(fmt::format("no backend {}", backend_id));
  const auto& s = m.services.at(owner->second);
  ServiceBackends sb{owner->second, {}};
  for (const auto& [id, b] : s.backends) {
    sb.backends.push_back(b);
    if (id == backend_id) sb.backends.back().state = state;
  }
  set_backends(std::span(&sb, 1));
}

std::optional<LookupResult> NftLoadBalancer::lookup(std::uint32_t, std::uint32_t, std::uint16_t, std::uint16_t,
                                                    Protocol) const {
  return std::nullopt;
}

std::vector<BackendCounters> NftLoadBalancer::counters(std::uint32_t service_id) const {
  auto& m = *impl_;
  std::vector<BackendCounters> out;
  auto sit = m.services.find(service_id);
  if (sit == m.services.end()) return out;
  for (const auto& [id, b] : sit->second.backends) out.push_back({.backend_id = id});
  const json doc = json::parse(m.ctx.list_json(fmt::format("map ip {} backend_addr", m.opt.table)));
  for (const auto& item : doc.at("nftables")) {
    if (!item.contains("map") || !item["map"].contains("elem")) continue;
    for (const auto& e : item["map"]["elem"]) {
      if (!e[0].is_object() || !e[0].contains("elem")) continue;
      const std::uint32_t id = e[0]["elem"]["val"];
      for (auto& c : out)
        if (c.backend_id == id && e[0]["elem"].contains("counter"))
          c.connections = e[0]["elem"]["counter"].value("packets", std::uint64_t{0});
    }
  }
  return out;
}

std::map<Frontend, std::uint32_t> NftLoadBalancer::frontends() const { return impl_->frontends; }

std::vector<Backend> NftLoadBalancer::backends(std::uint32_t service_id) const {
  std::vector<Backend> out;
  auto it = impl_->services.find(service_id);
  if (it != impl_->services.end())
    for (const auto& [id, b] : it->second.backends) out.push_back(b);
  return out;
}

std::set<std::uint32_t> NftLoadBalancer::service_ids() const {
  std::set<std::uint32_t> out;
  for (const auto& [id, s] : impl_->services) out.insert(id);
  return out;
}

const std::string& NftLoadBalancer::last_commands() const { return impl_->last_commands; }
std::size_t NftLoadBalancer::last_operations() const { return impl_->last_operations; }

}  // namespace weft::dataplane::lb
