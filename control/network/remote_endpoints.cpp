#include "control/network/remote_endpoints.h"

#include <array>
#include <cstring>

namespace weft::control::network {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case too: it would not come back the same
}

}  // namespace

RemoteEndpoints::Key RemoteEndpoints::key_of(const std::string& id) {
  Key key;
  if (id.size() == 64) {
    bool hex = true;
    for (std::size_t i = 0; i < 32 && hex; ++i) {
      const int hi = hex_value(id[2 * i]), lo = hex_value(id[2 * i + 1]);
      if (hi < 0 || lo < 0) hex = false;
      else key.packed[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    if (hex) return key;
    key.packed = {};
  }
  key.other = id;
  return key;
}

std::string RemoteEndpoints::id_of(const Key& key) {
  if (!key.other.empty()) return key.other;
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string id(64, '0');
  for (std::size_t i = 0; i < 32; ++i) {
    id[2 * i] = kDigits[key.packed[i] >> 4];
    id[2 * i + 1] = kDigits[key.packed[i] & 0xf];
  }
  return id;
}

std::size_t RemoteEndpoints::KeyHash::operator()(const Key& key) const {
  if (!key.other.empty()) return std::hash<std::string>{}(key.other);
  std::size_t h;
  std::memcpy(&h, key.packed.data(), sizeof h);  // a model id is random: its first bytes are a hash
  return h;
}

void RemoteEndpoints::release(Entry& entry) {
  if (!entry.endpoint) return;
  // Copies: the interner may free the strings the record names.
  const std::array<std::string, 4> names{entry.endpoint->network_id(), entry.endpoint->node(),
                                         entry.endpoint->service_id(), *entry.record_network_name};
  entry.endpoint.reset();
  entry.record_network_name.reset();
  for (const auto& name : names) interned_.release(name);
}

RemoteEndpoints::Entry* RemoteEndpoints::find(const std::string& id) {
  auto it = entries_.find(key_of(id));
  return it == entries_.end() ? nullptr : &it->second;
}

std::pair<RemoteEndpoints::Entry*, bool> RemoteEndpoints::put(const Endpoint& endpoint, dataplane::Ipv4 vtep,
                                                              const std::string* network_name) {
  auto [it, fresh] = entries_.try_emplace(key_of(endpoint.id));
  Entry& entry = it->second;
  // Made before the old record goes, so a string both name stays interned.
  auto record_network_name = interned_.get(endpoint.network_name);
  std::shared_ptr<const PackedEndpoint> packed;
  if (network_name && *network_name != endpoint.network_name) {
    Endpoint named = endpoint;
    named.network_name = *network_name;
    packed = std::make_shared<const PackedEndpoint>(named, interned_.get(endpoint.network_id),
                                                    interned_.get(endpoint.node), interned_.get(endpoint.service_id));
  } else {
    packed = std::make_shared<const PackedEndpoint>(endpoint, interned_.get(endpoint.network_id),
                                                    interned_.get(endpoint.node), interned_.get(endpoint.service_id));
  }
  release(entry);
  entry.endpoint = std::move(packed);
  entry.record_network_name = std::move(record_network_name);
  entry.vtep = vtep;
  return {&entry, fresh};
}

void RemoteEndpoints::name_network(const std::string& network_id, const std::string* name) {
  for (auto& [key, entry] : entries_) {
    if (entry.endpoint->network_id() != network_id) continue;
    const std::string& wanted = name ? *name : *entry.record_network_name;
    if (entry.endpoint->network_name() != wanted) entry.endpoint = entry.endpoint->with_network_name(wanted);
  }
}

void RemoteEndpoints::erase(const std::string& id) {
  auto it = entries_.find(key_of(id));
  if (it == entries_.end()) return;
  release(it->second);
  entries_.erase(it);
}

void RemoteEndpoints::clear() {
  entries_.clear();
  interned_.clear();
}

Endpoint RemoteEndpoints::backend(const Key& key, const Entry& entry) {
  const PackedEndpoint& p = *entry.endpoint;
  Endpoint e;
  e.id = id_of(key);
  e.network_id = p.network_id();
  e.ip = p.ip();
  e.prefix_len = p.prefix_len();
  e.mac = p.mac();
  e.node = p.node();
  e.service_id = p.service_id();
  e.backend_state = p.backend_state();
  if (p.backend_state() == BackendState::draining) e.drain_until = p.drain_until();
  return e;
}

Endpoint RemoteEndpoints::endpoint(const Key&, const Entry& entry, const std::string* network_name) {
  Endpoint e = entry.endpoint->unpack();
  e.network_name = network_name ? *network_name : *entry.record_network_name;
  return e;
}

}  // namespace weft::control::network
