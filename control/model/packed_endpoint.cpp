#include "control/model/packed_endpoint.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace weft::control {

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
      if (pos_ >= in_.size() || shift > 56) throw std::logic_error("packed endpoint details are corrupt");
      const auto byte = static_cast<std::uint8_t>(in_[pos_++]);
      n |= static_cast<std::size_t>(byte & 0x7f) << shift;
      shift += 7;
      if (!(byte & 0x80)) break;
    }
    if (n > in_.size() - pos_) throw std::logic_error("packed endpoint details are corrupt");
    auto field = in_.substr(pos_, n);
    pos_ += n;
    return field;
  }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

// A model id's 32 bytes; false for any other shape.
bool pack_id(const std::string& id, std::array<std::uint8_t, 32>& out) {
  if (id.size() != 64) return false;
  for (std::size_t i = 0; i < 32; ++i) {
    const int hi = hex_value(id[2 * i]), lo = hex_value(id[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return true;
}

std::string details_of(const Endpoint& e, bool id_packed) {
  std::string out;
  put_field(out, id_packed ? std::string_view{} : std::string_view{e.id});
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

PackedEndpoint::PackedEndpoint(const Endpoint& e, SharedString network_id, SharedString node,
                               SharedString service_id)
    : network_id_(std::move(network_id)),
      node_(std::move(node)),
      service_id_(std::move(service_id)),
      ip_(e.ip),
      prefix_len_(e.prefix_len),
      mac_(e.mac),
      backend_state_(e.backend_state) {
  if (!network_id_ || !node_ || !service_id_) throw std::logic_error("packed endpoint without its shared ids");
  id_packed_ = pack_id(e.id, id_);
  if (!id_packed_) id_ = {};
  details_ = details_of(e, id_packed_);
}

std::shared_ptr<const PackedEndpoint> PackedEndpoint::make(const Endpoint& e) {
  return std::make_shared<const PackedEndpoint>(e, std::make_shared<const std::string>(e.network_id),
                                                std::make_shared<const std::string>(e.node),
                                                std::make_shared<const std::string>(e.service_id));
}

std::string PackedEndpoint::id() const {
  if (!id_packed_) return std::string(field(kOtherId));
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string id(64, '0');
  for (std::size_t i = 0; i < 32; ++i) {
    id[2 * i] = kDigits[id_[i] >> 4];
    id[2 * i + 1] = kDigits[id_[i] & 0xf];
  }
  return id;
}

int PackedEndpoint::compare_id(const PackedEndpoint& other) const {
  // Lower-case hex digits sort as the bytes they spell.
  if (id_packed_ && other.id_packed_) return std::memcmp(id_.data(), other.id_.data(), id_.size());
  const auto mine = id(), theirs = other.id();
  return mine.compare(theirs);
}

std::size_t PackedEndpoint::id_hash() const {
  if (!id_packed_) return std::hash<std::string_view>{}(field(kOtherId));
  std::size_t h;
  std::memcpy(&h, id_.data(), sizeof h);  // a model id is random: its first bytes are a hash
  return h;
}

std::string_view PackedEndpoint::field(Field f) const {
  FieldReader reader(details_);
  for (int i = 0; i < f; ++i) reader.next();
  return reader.next();
}

std::vector<std::string> PackedEndpoint::aliases() const {
  std::vector<std::string> out;
  FieldReader reader(details_);
  for (int i = 0; i < kFields; ++i) reader.next();
  while (!reader.done()) out.emplace_back(reader.next());
  return out;
}

Endpoint PackedEndpoint::unpack() const {
  Endpoint e;
  e.id = id();
  FieldReader reader(details_);
  reader.next();  // the id, when not packed
  e.name = reader.next();
  e.network_id = *network_id_;
  e.network_name = reader.next();
  e.netns = reader.next();
  e.ifname = reader.next();
  e.ip = ip_;
  e.prefix_len = prefix_len_;
  e.mac = mac_;
  e.node = *node_;
  e.service_id = *service_id_;
  e.backend_state = backend_state_;
  e.drain_until = reader.next();
  while (!reader.done()) e.aliases.emplace_back(reader.next());
  return e;
}

std::shared_ptr<const PackedEndpoint> PackedEndpoint::with_network_name(std::string_view network_name) const {
  Endpoint e = unpack();
  e.network_name = network_name;
  return std::make_shared<const PackedEndpoint>(e, network_id_, node_, service_id_);
}

PackedEndpoint::SharedString StringInterner::get(const std::string& s) {
  if (auto it = strings_.find(s); it != strings_.end()) return it->second;
  if (strings_.size() >= sweep_at_) {
    sweep();
    sweep_at_ = std::max<std::size_t>(64, 2 * strings_.size());
  }
  auto shared = std::make_shared<const std::string>(s);
  strings_.emplace(*shared, shared);
  return shared;
}

void StringInterner::release(const std::string& s) {
  // Only the interner's own reference left: nothing names it any more.
  if (auto it = strings_.find(s); it != strings_.end() && it->second.use_count() == 1) strings_.erase(it);
}

void StringInterner::sweep() {
  std::erase_if(strings_, [](const auto& kv) { return kv.second.use_count() == 1; });
}

}  // namespace weft::control

namespace weft::control {

std::shared_ptr<EndpointSnapshot> EndpointSnapshot::of(const std::vector<Endpoint>& endpoints,
                                                       std::uint64_t version) {
  auto snapshot = std::make_shared<EndpointSnapshot>();
  snapshot->version = version;
  snapshot->endpoints.reserve(endpoints.size());
  for (const auto& e : endpoints) snapshot->endpoints.push_back(PackedEndpoint::make(e));
  return snapshot;
}

}  // namespace weft::control
