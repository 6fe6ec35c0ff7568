#include "control/network/remote_endpoints.h"

#include <cstring>
#include <stdexcept>
#include <string_view>

namespace weft::control::network {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case too: it would not come back the same
}

// Fields as a length (LEB128) and the bytes: any byte may be in a field.
void put_field(std::string& out, std::string_view field) {
  std::size_t n = field.size();
  do {
    auto byte = static_cast<std::uint8_t>(n & 0x7f);
    n >>= 7;
    if (n) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (n);
  out.append(field);
}

class FieldReader {
 public:
  explicit FieldReader(std::string_view in) : in_(in) {}
  bool done() const { return pos_ >= in_.size(); }
  std::string_view next() {
    std::size_t n = 0;
    int shift = 0;
    for (;;) {
      if (pos_ >= in_.size() || shift > 56) throw std::logic_error("remote endpoint details are corrupt");
      const auto byte = static_cast<std::uint8_t>(in_[pos_++]);
      n |= static_cast<std::size_t>(byte & 0x7f) << shift;
      shift += 7;
      if (!(byte & 0x80)) break;
    }
    if (n > in_.size() - pos_) throw std::logic_error("remote endpoint details are corrupt");
    auto field = in_.substr(pos_, n);
    pos_ += n;
    return field;
  }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

std::string pack_details(const Endpoint& e) {
  std::string out;
  put_field(out, e.name);
  put_field(out, e.network_name);
  put_field(out, e.netns);
  put_field(out, e.ifname);
  put_field(out, e.drain_until);
  for (const auto& alias : e.aliases) put_field(out, alias);
  out.shrink_to_fit();
  return out;
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

const std::string* RemoteEndpoints::acquire(const std::string& s) {
  auto [it, fresh] = interned_.try_emplace(s, 0);
  ++it->second;
  return &it->first;
}

void RemoteEndpoints::release(const std::string* s) {
  if (!s) return;
  auto it = interned_.find(*s);
  if (it != interned_.end() && --it->second == 0) interned_.erase(it);
}

void RemoteEndpoints::release_all(Entry& entry) {
  release(entry.network_id);
  release(entry.node);
  release(entry.service_id);
  entry.network_id = entry.node = entry.service_id = nullptr;
}

RemoteEndpoints::Entry* RemoteEndpoints::find(const std::string& id) {
  auto it = entries_.find(key_of(id));
  return it == entries_.end() ? nullptr : &it->second;
}

std::pair<RemoteEndpoints::Entry*, bool> RemoteEndpoints::put(const Endpoint& endpoint, dataplane::Ipv4 vtep) {
  auto [it, fresh] = entries_.try_emplace(key_of(endpoint.id));
  Entry& entry = it->second;
  // Acquired before the old ones go, so a string both name stays interned.
  const std::string* network_id = acquire(endpoint.network_id);
  const std::string* node = acquire(endpoint.node);
  const std::string* service_id = acquire(endpoint.service_id);
  release_all(entry);
  entry.network_id = network_id;
  entry.node = node;
  entry.service_id = service_id;
  entry.details = pack_details(endpoint);
  entry.ip = endpoint.ip;
  entry.mac = endpoint.mac;
  entry.prefix_len = endpoint.prefix_len;
  entry.backend_state = endpoint.backend_state;
  entry.vtep = vtep;
  return {&entry, fresh};
}

void RemoteEndpoints::erase(const std::string& id) {
  auto it = entries_.find(key_of(id));
  if (it == entries_.end()) return;
  release_all(it->second);
  entries_.erase(it);
}

void RemoteEndpoints::clear() {
  for (auto& [key, entry] : entries_) release_all(entry);
  entries_.clear();
  interned_.clear();
}

std::string RemoteEndpoints::name(const Entry& entry) { return std::string(FieldReader(entry.details).next()); }

Endpoint RemoteEndpoints::backend(const Key& key, const Entry& entry) {
  Endpoint e;
  e.id = id_of(key);
  e.network_id = *entry.network_id;
  e.ip = entry.ip;
  e.prefix_len = entry.prefix_len;
  e.mac = entry.mac;
  e.node = *entry.node;
  e.service_id = *entry.service_id;
  e.backend_state = entry.backend_state;
  if (entry.backend_state == BackendState::draining) {
    FieldReader details(entry.details);
    for (int skipped = 0; skipped < 4; ++skipped) details.next();  // name, network name, netns, ifname
    e.drain_until = details.next();
  }
  return e;
}

Endpoint RemoteEndpoints::endpoint(const Key& key, const Entry& entry, const std::string* network_name) {
  Endpoint e = backend(key, entry);
  FieldReader details(entry.details);
  e.name = details.next();
  e.network_name = details.next();
  if (network_name) e.network_name = *network_name;
  e.netns = details.next();
  e.ifname = details.next();
  e.drain_until = details.next();
  while (!details.done()) e.aliases.emplace_back(details.next());
  return e;
}

}  // namespace weft::control::network
