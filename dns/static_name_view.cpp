#include "dns/static_name_view.h"

#include <algorithm>
#include <cctype>

namespace weft::dns {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void lower_all(std::vector<Service>& services, std::vector<Endpoint>& endpoints) {
  for (auto& s : services) {
    s.name = lower(s.name);
    for (auto& p : s.ports) {
      p.name = lower(p.name);
      p.protocol = lower(p.protocol);
    }
  }
  for (auto& e : endpoints) {
    e.name = lower(e.name);
    for (auto& a : e.aliases) a = lower(a);
  }
}

// `_<port>._<proto>.<service>` split into its three parts.
bool split_srv(std::string_view name, std::string_view& port, std::string_view& proto, std::string_view& service) {
  if (!name.starts_with('_')) return false;
  auto dot1 = name.find('.');
  if (dot1 == std::string_view::npos || dot1 + 1 >= name.size() || name[dot1 + 1] != '_') return false;
  auto dot2 = name.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || dot2 + 1 >= name.size()) return false;
  port = name.substr(1, dot1 - 1);
  proto = name.substr(dot1 + 2, dot2 - dot1 - 2);
  service = name.substr(dot2 + 1);
  return !port.empty() && !proto.empty();
}

bool port_matches(const ServicePort& p, std::string_view port, std::string_view proto) {
  if (p.protocol != proto) return false;
  return (!p.name.empty() && p.name == port) || std::to_string(p.port) == port;
}

}  // namespace

void StaticNameView::set_network(const std::string& network, std::vector<Service> services,
                                 std::vector<Endpoint> endpoints) {
  lower_all(services, endpoints);
  std::lock_guard lock(mutex_);
  networks_[lower(network)] = Network{std::move(services), std::move(endpoints)};
  rotation_.clear();
  rebuild_index();
}

void StaticNameView::remove_network(const std::string& network) {
  std::lock_guard lock(mutex_);
  networks_.erase(lower(network));
  rotation_.clear();
  rebuild_index();
}

void StaticNameView::rebuild_index() {
  index_.clear();
  for (const auto& [net_name, net] : networks_) {
    std::set<std::string> locals;
    for (const auto& s : net.services) {
      locals.insert(s.name);
      locals.insert("tasks." + s.name);
    }
    for (const auto& e : net.endpoints) {
      locals.insert(e.name);
      locals.insert(e.aliases.begin(), e.aliases.end());
    }
    for (const auto& local : locals) {
      if (local.starts_with('_')) continue;  // answered by the scan, as SRV names are
      auto addresses = addresses_in(net, local);
      index_[local].hits.push_back(Hit{&net_name, false, addresses});
      index_[local + "." + net_name].hits.push_back(Hit{&net_name, true, std::move(addresses)});
    }
  }
  // The scan's order: network by network, the name itself before the
  // suffixed form.
  for (auto& [name, entry] : index_)
    std::stable_sort(entry.hits.begin(), entry.hits.end(), [](const Hit& a, const Hit& b) {
      return *a.network != *b.network ? *a.network < *b.network : a.suffix < b.suffix;
    });
}

const std::set<std::string>* StaticNameView::seen_by(std::string_view context) const {
  auto c = contexts_.find(context);
  return c == contexts_.end() ? nullptr : &c->second;
}

void StaticNameView::set_context(const std::string& context, std::set<std::string> networks) {
  std::set<std::string> lowered;
  for (const auto& n : networks) lowered.insert(lower(n));
  std::lock_guard lock(mutex_);
  contexts_[context] = std::move(lowered);
}

void StaticNameView::remove_context(const std::string& context) {
  std::lock_guard lock(mutex_);
  contexts_.erase(context);
}

std::vector<std::pair<const std::string*, std::string>> StaticNameView::candidates(std::string_view context,
                                                                                   std::string_view name,
                                                                                   bool all_networks) const {
  std::vector<std::pair<const std::string*, std::string>> out;
  const std::set<std::string>* seen = nullptr;
  if (!all_networks) {
    auto c = contexts_.find(context);
    if (c == contexts_.end()) return out;
    seen = &c->second;
  }
  for (const auto& [net_name, net] : networks_) {
    if (seen && !seen->contains(net_name)) continue;
    out.emplace_back(&net_name, std::string(name));
    if (name.size() > net_name.size() + 1 && name.ends_with(net_name) &&
        name[name.size() - net_name.size() - 1] == '.') {
      out.emplace_back(&net_name, std::string(name.substr(0, name.size() - net_name.size() - 1)));
    }
  }
  return out;
}

bool StaticNameView::network_owns(const Network& net, std::string_view name) {
  std::string_view port, proto, srv_service;
  const bool srv = split_srv(name, port, proto, srv_service);
  for (const auto& s : net.services) {
    if (name == s.name) return true;
    if (name.starts_with("tasks.") && name.substr(6) == s.name) return true;
    if (srv && srv_service == s.name) return true;
  }
  for (const auto& e : net.endpoints) {
    if (name == e.name) return true;
    if (std::find(e.aliases.begin(), e.aliases.end(), name) != e.aliases.end()) return true;
  }
  return false;
}

Ownership StaticNameView::owns(std::string_view context, std::string_view name) const {
  std::lock_guard lock(mutex_);
  if (!name.starts_with('_')) {
    auto found = index_.find(name);
    if (found == index_.end()) return Ownership::not_ours;
    if (const auto* seen = seen_by(context))
      for (const auto& hit : found->second.hits)
        if (seen->contains(*hit.network)) return Ownership::visible;
    return Ownership::hidden;
  }
  for (const auto& [net, local] : candidates(context, name, false))
    if (network_owns(networks_.find(*net)->second, local)) return Ownership::visible;
  for (const auto& [net, local] : candidates(context, name, true))
    if (network_owns(networks_.find(*net)->second, local)) return Ownership::hidden;
  return Ownership::not_ours;
}

std::vector<Ipv4> StaticNameView::rotated(std::string_view context, std::string_view name,
                                          std::vector<Ipv4> addresses) const {
  if (addresses.size() < 2) return addresses;
  rotation_key_.assign(context);
  rotation_key_ += '|';
  rotation_key_ += name;
  auto at = rotation_.find(rotation_key_);
  if (at == rotation_.end()) at = rotation_.emplace(rotation_key_, 0).first;
  auto& turn = at->second;
  std::rotate(addresses.begin(), addresses.begin() + static_cast<std::ptrdiff_t>(turn % addresses.size()),
              addresses.end());
  ++turn;
  return addresses;
}

std::vector<Ipv4> StaticNameView::addresses_in(const Network& net, std::string_view local) {
  std::vector<Ipv4> found;
  auto add = [&found](Ipv4 a) {
    if (std::find(found.begin(), found.end(), a) == found.end()) found.push_back(a);
  };
  for (const auto& s : net.services) {
    if (local == s.name) {
      if (s.mode == EndpointMode::vip)
        add(s.vip);
      else
        for (auto b : s.backends) add(b);
    } else if (local.starts_with("tasks.") && local.substr(6) == s.name) {
      for (auto b : s.backends) add(b);
    }
  }
  for (const auto& e : net.endpoints)
    if (local == e.name || std::find(e.aliases.begin(), e.aliases.end(), local) != e.aliases.end()) add(e.address);
  return found;
}

Ownership StaticNameView::resolve_indexed(std::string_view context, std::string_view name,
                                          std::vector<Ipv4>& out) const {
  out.clear();
  auto found = index_.find(name);
  if (found == index_.end()) return Ownership::not_ours;
  const auto* seen = seen_by(context);
  bool visible = false;
  if (seen)
    for (const auto& hit : found->second.hits) {
      if (!seen->contains(*hit.network)) continue;
      visible = true;
      for (auto a : hit.addresses)
        if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
    }
  if (!visible) return Ownership::hidden;
  if (out.size() > 1) {
    const uint64_t turn = found->second.turn++;
    std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(turn % out.size()), out.end());
  }
  return Ownership::visible;
}

Ownership StaticNameView::resolve_a(std::string_view context, std::string_view name, std::vector<Ipv4>& out) const {
  if (name.starts_with('_')) return NameView::resolve_a(context, name, out);
  std::lock_guard lock(mutex_);
  return resolve_indexed(context, name, out);
}

std::vector<Ipv4> StaticNameView::lookup_a(std::string_view context, std::string_view name) const {
  std::lock_guard lock(mutex_);
  std::vector<Ipv4> found;
  if (!name.starts_with('_')) {
    resolve_indexed(context, name, found);
    return found;
  }
  auto add = [&found](Ipv4 a) {
    if (std::find(found.begin(), found.end(), a) == found.end()) found.push_back(a);
  };
  for (const auto& [net_name, local] : candidates(context, name, false))
    for (auto a : addresses_in(networks_.find(*net_name)->second, local)) add(a);
  return rotated(context, name, std::move(found));
}

std::optional<std::string> StaticNameView::lookup_ptr(std::string_view context, Ipv4 address) const {
  std::lock_guard lock(mutex_);
  auto c = contexts_.find(context);
  if (c == contexts_.end()) return std::nullopt;
  for (const auto& net_name : c->second) {
    auto n = networks_.find(net_name);
    if (n == networks_.end()) continue;
    for (const auto& e : n->second.endpoints)
      if (e.address == address) return e.name + "." + net_name;
  }
  for (const auto& net_name : c->second) {
    auto n = networks_.find(net_name);
    if (n == networks_.end()) continue;
    for (const auto& s : n->second.services) {
      if (s.mode == EndpointMode::vip && s.vip == address) return s.name + "." + net_name;
      if (std::find(s.backends.begin(), s.backends.end(), address) != s.backends.end())
        return s.name + "." + net_name;
    }
  }
  return std::nullopt;
}

std::vector<SrvRecord> StaticNameView::lookup_srv(std::string_view context, std::string_view name) const {
  std::string_view port, proto, service;
  if (!split_srv(name, port, proto, service)) return {};
  std::lock_guard lock(mutex_);
  std::vector<SrvRecord> found;
  for (const auto& [net_name, local] : candidates(context, service, false)) {
    const auto& net = networks_.find(*net_name)->second;
    for (const auto& s : net.services) {
      if (local != s.name) continue;
      for (const auto& p : s.ports)
        if (port_matches(p, port, proto)) found.push_back(SrvRecord{0, 0, p.port, s.name + "." + *net_name});
    }
  }
  return found;
}

}  // namespace weft::dns
