#include "control/discovery/cluster_name_view.h"

#include <algorithm>
#include <functional>
#include <string>
#include <unordered_map>

namespace weft::control::discovery {
namespace {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// What the responder can put on the wire as a name: letters, digits, '-',
// '_' and dots between labels of 1..63, 253 in all.
bool dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
    if (++label > 63) return false;
  }
  return label != 0;
}

dns::Ipv4 to_dns(dataplane::Ipv4 ip) { return dns::Ipv4(ip.value); }

const char* proto_name(PortProtocol p) { return p == PortProtocol::udp ? "udp" : "tcp"; }

}  // namespace

struct ClusterNameView::Index {
  // What one name means on one network.
  struct Answer {
    uint32_t network = 0;
    std::vector<dns::Ipv4> addresses;
    std::vector<dns::SrvRecord> srv;
  };
  struct Name {
    std::vector<Answer> answers;
    bool service = false;  // a service's name: `_<port>._<proto>.` under it is ours too
    mutable std::atomic<uint64_t> turn{0};  // rotation; the index is shared, the counter is its only state
  };
  struct Ptr {
    uint32_t network = 0;
    std::string target;
  };

  std::unordered_map<std::string, std::unique_ptr<Name>, StringHash, std::equal_to<>> names;
  std::unordered_map<uint32_t, std::vector<Ptr>> ptr;
  // Context -> sorted network numbers it sees.
  std::unordered_map<std::string, std::vector<uint32_t>, StringHash, std::equal_to<>> contexts;
  std::size_t skipped = 0;

  const Name* find(std::string_view name) const {
    auto it = names.find(name);
    return it == names.end() ? nullptr : it->second.get();
  }
  // `_<port>._<proto>.<service>` for a port the service does not publish:
  // still under a name weft owns, so answered (empty), never forwarded.
  const Name* srv_parent(std::string_view name) const {
    if (!name.starts_with('_')) return nullptr;
    const auto dot1 = name.find('.');
    if (dot1 == std::string_view::npos || dot1 + 1 >= name.size() || name[dot1 + 1] != '_') return nullptr;
    const auto dot2 = name.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos) return nullptr;
    const Name* parent = find(name.substr(dot2 + 1));
    return parent && parent->service ? parent : nullptr;
  }
  const std::vector<uint32_t>* seen_by(std::string_view context) const {
    auto it = contexts.find(context);
    return it == contexts.end() ? nullptr : &it->second;
  }
  static bool sees(const std::vector<uint32_t>* seen, uint32_t network) {
    return seen && std::binary_search(seen->begin(), seen->end(), network);
  }

  Answer& answer(const std::string& name, uint32_t network) {
    auto& slot = names[name];
    if (!slot) slot = std::make_unique<Name>();
    for (auto& a : slot->answers)
      if (a.network == network) return a;
    slot->answers.push_back(Answer{network, {}, {}});
    return slot->answers.back();
  }
  // The name alone and with its network's name as a suffix.
  void add_address(const std::string& name, const std::string& network_name, uint32_t network, dns::Ipv4 address) {
    for (const auto& n : {name, name + "." + network_name}) {
      auto& a = answer(n, network);
      if (std::find(a.addresses.begin(), a.addresses.end(), address) == a.addresses.end()) a.addresses.push_back(address);
    }
  }
  // An owned name without records yet (a VIP service before its VIP, a
  // dnsrr service without active backends): NOERROR/empty, not forwarded.
  void add_owned(const std::string& name, const std::string& network_name, uint32_t network) {
    answer(name, network);
    answer(name + "." + network_name, network);
  }
};

ClusterNameView::ClusterNameView() : index_(std::make_shared<const Index>()) {}
ClusterNameView::~ClusterNameView() = default;

void ClusterNameView::publish(const Snapshot& snapshot) {
  auto index = std::make_shared<Index>();
  std::unordered_map<std::string, uint32_t> network_number;
  std::vector<std::string> network_names;
  for (const auto& n : snapshot.networks) {
    const std::string name = lower(n.name);
    if (!dns_name(name)) {
      ++index->skipped;
      continue;
    }
    network_number.emplace(n.id, static_cast<uint32_t>(network_names.size()));
    network_names.push_back(name);
  }
  auto number_of = [&](const std::string& id) -> const uint32_t* {
    auto it = network_number.find(id);
    return it == network_number.end() ? nullptr : &it->second;
  };
  // A name and its network suffix must both stay a DNS name.
  auto usable = [&](const std::string& name, uint32_t network) {
    if (dns_name(name) && dns_name(name + "." + network_names[network])) return true;
    ++index->skipped;
    return false;
  };

  // Endpoints first: their PTR names win over a service's for one address.
  std::unordered_map<std::string, std::vector<const EndpointRecord*>> backends;  // service id -> active backends
  for (const auto& e : snapshot.endpoints) {
    const uint32_t* net = number_of(e.network_id);
    if (!net) continue;
    if (!e.service_id.empty() && e.state == BackendState::active) backends[e.service_id].push_back(&e);
    const std::string name = lower(e.name);
    if (!name.empty() && usable(name, *net)) {
      index->add_address(name, network_names[*net], *net, to_dns(e.ip));
      index->ptr[e.ip.value].push_back({*net, name + "." + network_names[*net]});
    }
    for (const auto& alias : e.aliases) {
      const std::string a = lower(alias);
      if (usable(a, *net)) index->add_address(a, network_names[*net], *net, to_dns(e.ip));
    }
  }

  for (const auto& svc : snapshot.services) {
    const std::string name = lower(svc.name);
    const auto found = backends.find(svc.id);
    for (const auto& network_id : svc.network_ids) {
      const uint32_t* net = number_of(network_id);
      if (!net || !usable("tasks." + name, *net)) continue;
      const std::string& net_name = network_names[*net];
      const std::string qualified = name + "." + net_name;
      index->add_owned(name, net_name, *net);
      index->names[name]->service = true;
      index->names[qualified]->service = true;
      index->add_owned("tasks." + name, net_name, *net);
      std::vector<dns::Ipv4> active;
      if (found != backends.end())
        for (const auto* b : found->second)
          if (b->network_id == network_id) active.push_back(to_dns(b->ip));
      for (auto ip : active) index->add_address("tasks." + name, net_name, *net, ip);
      if (svc.mode == EndpointMode::dnsrr) {
        for (auto ip : active) index->add_address(name, net_name, *net, ip);
      } else {
        for (const auto& [vip_network, vip] : svc.vips) {
          if (vip_network != network_id) continue;
          index->add_address(name, net_name, *net, to_dns(vip));
          index->ptr[vip.value].push_back({*net, qualified});
        }
      }
      // A backend without a name of its own answers PTR as its service.
      if (found != backends.end())
        for (const auto* b : found->second)
          if (b->network_id == network_id && b->name.empty()) index->ptr[b->ip.value].push_back({*net, qualified});
      for (const auto& port : svc.ports) {
        const std::string srv = "_" + std::to_string(port.port) + "._" + proto_name(port.protocol) + "." + name;
        if (!usable(srv, *net)) continue;
        for (const auto& n : {srv, srv + "." + net_name})
          index->answer(n, *net).srv.push_back(dns::SrvRecord{0, 0, port.port, qualified});
      }
    }
  }

  for (const auto& [context, network_ids] : snapshot.contexts) {
    auto& seen = index->contexts[context];
    for (const auto& id : network_ids)
      if (const uint32_t* net = number_of(id)) seen.push_back(*net);
    std::sort(seen.begin(), seen.end());
  }
  index_.store(std::move(index));
}

ClusterNameView::Counts ClusterNameView::counts() const {
  auto index = index_.load();
  return Counts{index->names.size(), index->ptr.size(), index->contexts.size(), index->skipped};
}

dns::Ownership ClusterNameView::owns(std::string_view context, std::string_view name) const {
  auto index = index_.load();
  const auto* entry = index->find(name);
  if (!entry) entry = index->srv_parent(name);
  if (!entry) return dns::Ownership::not_ours;
  const auto* seen = index->seen_by(context);
  for (const auto& a : entry->answers)
    if (Index::sees(seen, a.network)) return dns::Ownership::visible;
  return dns::Ownership::hidden;
}

std::vector<dns::Ipv4> ClusterNameView::lookup_a(std::string_view context, std::string_view name) const {
  auto index = index_.load();
  const auto* entry = index->find(name);
  if (!entry) return {};
  const auto* seen = index->seen_by(context);
  std::vector<dns::Ipv4> out;
  for (const auto& a : entry->answers) {
    if (!Index::sees(seen, a.network)) continue;
    for (auto ip : a.addresses)
      if (std::find(out.begin(), out.end(), ip) == out.end()) out.push_back(ip);
  }
  if (out.size() > 1) {
    const uint64_t turn = entry->turn.fetch_add(1, std::memory_order_relaxed);
    std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(turn % out.size()), out.end());
  }
  return out;
}

dns::Ownership ClusterNameView::resolve_a(std::string_view context, std::string_view name,
                                          std::vector<dns::Ipv4>& out) const {
  out.clear();
  auto index = index_.load();
  const auto* entry = index->find(name);
  if (!entry) return index->srv_parent(name) ? owns(context, name) : dns::Ownership::not_ours;
  const auto* seen = index->seen_by(context);
  bool visible = false;
  for (const auto& a : entry->answers) {
    if (!Index::sees(seen, a.network)) continue;
    visible = true;
    for (auto ip : a.addresses)
      if (std::find(out.begin(), out.end(), ip) == out.end()) out.push_back(ip);
  }
  if (!visible) return dns::Ownership::hidden;
  if (out.size() > 1) {
    const uint64_t turn = entry->turn.fetch_add(1, std::memory_order_relaxed);
    std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(turn % out.size()), out.end());
  }
  return dns::Ownership::visible;
}

std::optional<std::string> ClusterNameView::lookup_ptr(std::string_view context, dns::Ipv4 address) const {
  auto index = index_.load();
  auto it = index->ptr.find(address.to_uint());
  if (it == index->ptr.end()) return std::nullopt;
  const auto* seen = index->seen_by(context);
  for (const auto& p : it->second)
    if (Index::sees(seen, p.network)) return p.target;
  return std::nullopt;
}

std::vector<dns::SrvRecord> ClusterNameView::lookup_srv(std::string_view context, std::string_view name) const {
  auto index = index_.load();
  const auto* entry = index->find(name);
  if (!entry) return {};
  const auto* seen = index->seen_by(context);
  std::vector<dns::SrvRecord> out;
  for (const auto& a : entry->answers)
    if (Index::sees(seen, a.network)) out.insert(out.end(), a.srv.begin(), a.srv.end());
  return out;
}

}  // namespace weft::control::discovery
