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

// Lengths as LEB128: any byte may be in a field.
void put_length(std::string& out, std::size_t n) {
  do {
    auto byte = static_cast<std::uint8_t>(n & 0x7f);
    n >>= 7;
    if (n) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (n);
}

void put_field(std::string& out, std::string_view field) {
  put_length(out, field.size());
  out.append(field);
}

// A length at `p`, and where what it measures starts; no bound: the
// block's own bytes are trusted (made by details_block below).
std::size_t read_length(const char*& p) {
  std::size_t n = 0;
  int shift = 0;
  for (;;) {
    const auto byte = static_cast<std::uint8_t>(*p++);
    n |= static_cast<std::size_t>(byte & 0x7f) << shift;
    shift += 7;
    if (!(byte & 0x80)) return n;
    if (shift > 56) throw std::logic_error("packed endpoint details are corrupt");
  }
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
bool pack_id(std::string_view id, std::array<std::uint8_t, 32>& out) {
  if (id.size() != 64) return false;
  for (std::size_t i = 0; i < 32; ++i) {
    const int hi = hex_value(id[2 * i]), lo = hex_value(id[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return true;
}

constexpr std::string_view kRunNetns = "/run/netns/";

bool netns_in_run(const Endpoint& e) { return std::string_view{e.netns}.starts_with(kRunNetns); }
bool prefix_fits(const Endpoint& e) { return e.prefix_len >= 0 && e.prefix_len <= 255; }
bool mac_derived(const Endpoint& e) { return e.mac == dataplane::MacAddress::from_ipv4(e.ip); }

// The details block: its length, then the fields.
std::string details_block(const Endpoint& e, bool id_packed) {
  std::string fields;
  put_field(fields, id_packed ? std::string_view{} : std::string_view{e.id});
  put_field(fields, e.name);
  put_field(fields, netns_in_run(e) ? std::string_view{e.netns}.substr(kRunNetns.size()) : std::string_view{e.netns});
  put_field(fields, e.ifname);
  put_field(fields, e.drain_until);
  std::string_view prefix, mac;
  std::int32_t prefix_len = e.prefix_len;
  if (!prefix_fits(e)) prefix = {reinterpret_cast<const char*>(&prefix_len), sizeof prefix_len};
  if (!mac_derived(e)) mac = {reinterpret_cast<const char*>(e.mac.bytes.data()), e.mac.bytes.size()};
  put_field(fields, prefix);
  put_field(fields, mac);
  for (const auto& alias : e.aliases) put_field(fields, alias);
  std::string out;
  out.reserve(fields.size() + 10);
  put_length(out, fields.size());
  out.append(fields);
  return out;
}

}  // namespace

PackedEndpoint::PackedEndpoint(const Endpoint& e, SharedString network_id, SharedString node,
                               SharedString service_id) {
  if (!network_id || !node) throw std::logic_error("packed endpoint without its shared ids");
  assign(e,
         SharedOrigin::make(EndpointOrigin{std::move(network_id), std::move(node), e.network_name, e.network_name}),
         std::move(service_id));
  const std::string block = details_block(e, id_packed_);
  char* own = new char[block.size()];
  std::memcpy(own, block.data(), block.size());
  details_ = own;
  owns_details_ = true;
}

PackedEndpoint::~PackedEndpoint() {
  if (owns_details_) delete[] details_;
}

void PackedEndpoint::assign(const Endpoint& e, SharedOrigin origin, SharedString service_id) {
  if (!origin || !origin->network_id || !origin->node || !service_id)
    throw std::logic_error("packed endpoint without its shared ids");
  origin_ = std::move(origin);
  service_id_ = std::move(service_id);
  ip_ = e.ip;
  prefix_in_details_ = !prefix_fits(e);
  prefix_len_ = prefix_in_details_ ? 0 : static_cast<std::uint8_t>(e.prefix_len);
  mac_in_details_ = !mac_derived(e);
  backend_state_ = e.backend_state;
  id_packed_ = pack_id(e.id, id_);
  if (!id_packed_) id_ = {};
  netns_in_run_ = netns_in_run(e);
}

std::shared_ptr<const PackedEndpoint> PackedEndpoint::make(const Endpoint& e) {
  return std::make_shared<const PackedEndpoint>(e, SharedText::make(e.network_id), SharedText::make(e.node),
                                                SharedText::make(e.service_id));
}

PackedEndpoint::IdKey PackedEndpoint::IdKey::of(std::string_view id) {
  IdKey key;
  key.is_packed = pack_id(id, key.packed);
  if (!key.is_packed) {
    key.packed = {};
    key.other = id;
  }
  return key;
}

std::size_t PackedEndpoint::IdKey::hash() const {
  if (!is_packed) return std::hash<std::string_view>{}(other);
  std::size_t h;
  std::memcpy(&h, packed.data(), sizeof h);  // a model id is random: its first bytes are a hash
  return h;
}

bool PackedEndpoint::has_id(const IdKey& key) const {
  if (key.is_packed != id_packed_) return false;
  return key.is_packed ? id_ == key.packed : field(kOtherId) == key.other;
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
  std::memcpy(&h, id_.data(), sizeof h);
  return h;
}

std::string_view PackedEndpoint::details() const {
  if (!details_) throw std::logic_error("an empty place read as an endpoint");
  const char* p = details_;
  const std::size_t n = read_length(p);
  return {p, n};
}

std::size_t PackedEndpoint::block_bytes() const {
  const char* p = details_;
  const std::size_t n = read_length(p);
  return static_cast<std::size_t>(p - details_) + n;
}

std::size_t PackedEndpoint::own_bytes() const {
  return sizeof(*this) + (owns_details_ && details_ ? block_bytes() : 0);
}

std::string_view PackedEndpoint::field(Field f) const {
  FieldReader reader(details());
  for (int i = 0; i < f; ++i) reader.next();
  return reader.next();
}

int PackedEndpoint::prefix_len() const {
  if (!prefix_in_details_) return prefix_len_;
  const auto bytes = field(kPrefixLen);
  std::int32_t n = 0;
  if (bytes.size() != sizeof n) throw std::logic_error("packed endpoint details are corrupt");
  std::memcpy(&n, bytes.data(), sizeof n);
  return n;
}

dataplane::MacAddress PackedEndpoint::mac() const {
  if (!mac_in_details_) return dataplane::MacAddress::from_ipv4(ip_);
  const auto bytes = field(kMac);
  dataplane::MacAddress mac;
  if (bytes.size() != mac.bytes.size()) throw std::logic_error("packed endpoint details are corrupt");
  std::memcpy(mac.bytes.data(), bytes.data(), mac.bytes.size());
  return mac;
}

std::string PackedEndpoint::netns() const {
  const auto stored = field(kNetns);
  if (!netns_in_run_) return std::string(stored);
  std::string netns;
  netns.reserve(kRunNetns.size() + stored.size());
  netns.append(kRunNetns).append(stored);
  return netns;
}

std::vector<std::string> PackedEndpoint::aliases() const {
  std::vector<std::string> out;
  FieldReader reader(details());
  for (int i = 0; i < kFields; ++i) reader.next();
  while (!reader.done()) out.emplace_back(reader.next());
  return out;
}

Endpoint PackedEndpoint::unpack() const {
  Endpoint e;
  e.id = id();
  FieldReader reader(details());
  reader.next();  // the id, when not packed
  e.name = reader.next();
  e.network_id = network_id();
  e.network_name = network_name();
  const auto netns = reader.next();
  if (netns_in_run_) e.netns.append(kRunNetns);
  e.netns.append(netns);
  e.ifname = reader.next();
  e.ip = ip_;
  e.prefix_len = prefix_len();
  e.mac = mac();
  e.node = node();
  e.service_id = *service_id_;
  e.backend_state = backend_state_;
  e.drain_until = reader.next();
  reader.next();  // the prefix length, when not in the record
  reader.next();  // the MAC, when not Docker's
  while (!reader.done()) e.aliases.emplace_back(reader.next());
  return e;
}

std::shared_ptr<const PackedEndpoint> PackedEndpoint::with_network_name(std::string_view network_name) const {
  auto renamed = std::make_shared<PackedEndpoint>(unpack(), origin_->network_id, origin_->node, service_id_);
  renamed->origin_ = SharedOrigin::make(
      EndpointOrigin{origin_->network_id, origin_->node, std::string(network_name), origin_->record_network_name});
  return renamed;
}

PackedEndpointChunk::PackedEndpointChunk(const PackedEndpointChunk& other) {
  std::size_t live = 0;
  for (std::size_t i = 0; i < kSize; ++i)
    if (other.used(i)) live += other.records_[i].block_bytes();
  arena_.reserve(live);
  for (std::size_t i = 0; i < kSize; ++i) {
    if (!other.used(i)) continue;
    const PackedEndpoint& from = other.records_[i];
    PackedEndpoint& to = records_[i];
    to.id_ = from.id_;
    to.origin_ = from.origin_;
    to.service_id_ = from.service_id_;
    to.ip_ = from.ip_;
    to.prefix_len_ = from.prefix_len_;
    to.prefix_in_details_ = from.prefix_in_details_;
    to.mac_in_details_ = from.mac_in_details_;
    to.backend_state_ = from.backend_state_;
    to.id_packed_ = from.id_packed_;
    to.netns_in_run_ = from.netns_in_run_;
    to.details_ = append({from.details_, from.block_bytes()});
  }
}

bool PackedEndpointChunk::set(std::size_t i, const Endpoint& e, const SharedOrigin& origin,
                              const PackedEndpoint::SharedString& service_id, bool shared) {
  if (shared && used(i)) return false;
  PackedEndpoint& r = records_[i];
  // Made before anything changes: a bad record leaves the place as it was.
  PackedEndpoint fresh;
  fresh.assign(e, origin, service_id);
  const std::string block = details_block(e, fresh.id_packed_);
  if (shared && arena_.size() + block.size() > arena_.capacity()) return false;
  clear(i);
  r.id_ = fresh.id_;
  r.origin_ = std::move(fresh.origin_);
  r.service_id_ = std::move(fresh.service_id_);
  r.ip_ = fresh.ip_;
  r.prefix_len_ = fresh.prefix_len_;
  r.prefix_in_details_ = fresh.prefix_in_details_;
  r.mac_in_details_ = fresh.mac_in_details_;
  r.backend_state_ = fresh.backend_state_;
  r.id_packed_ = fresh.id_packed_;
  r.netns_in_run_ = fresh.netns_in_run_;
  r.details_ = append(block);
  return true;
}

void PackedEndpointChunk::clear(std::size_t i) {
  PackedEndpoint& r = records_[i];
  if (!r.details_) return;
  r.details_ = nullptr;  // its block is garbage until the arena is compacted
  r.origin_.reset();
  r.service_id_.reset();
}

const char* PackedEndpointChunk::append(std::string_view block) {
  if (arena_.size() + block.size() > arena_.capacity()) compact(block.size());
  const std::size_t at = arena_.size();
  arena_.insert(arena_.end(), block.begin(), block.end());  // within capacity: nothing moves
  return arena_.data() + at;
}

void PackedEndpointChunk::compact(std::size_t extra) {
  // Into a new arena, garbage left behind, with room for the empty places
  // at the average block's size (a chunk being filled grows once or twice,
  // and new records go in while snapshots hold it: RemoteEndpoints) and
  // a little more for replacements.
  std::size_t live = 0, places = 1;
  for (std::size_t i = 0; i < kSize; ++i)
    if (used(i)) {
      live += records_[i].block_bytes();
      ++places;
    }
  const std::size_t need = live + extra;
  const std::size_t empty = places < kSize ? kSize - places : 0;
  std::vector<char> arena;
  arena.reserve(need + need / places * empty + need / 16 + 64);
  for (std::size_t i = 0; i < kSize; ++i) {
    if (!used(i)) continue;
    PackedEndpoint& r = records_[i];
    const std::size_t at = arena.size();
    arena.insert(arena.end(), r.details_, r.details_ + r.block_bytes());
    r.details_ = arena.data() + at;
  }
  arena_ = std::move(arena);
}

PackedEndpoint::SharedString StringInterner::get(std::string_view s) {
  if (auto it = strings_.find(s); it != strings_.end()) return it->second;
  if (strings_.size() >= sweep_at_) {
    sweep();
    sweep_at_ = std::max<std::size_t>(64, 2 * strings_.size());
  }
  auto shared = SharedText::make(s);
  strings_.emplace(*shared, shared);
  return shared;
}

void StringInterner::release(std::string_view s) {
  // Only the interner's own reference left: nothing names it any more.
  if (auto it = strings_.find(s); it != strings_.end() && it->second.use_count() == 1) strings_.erase(it);
}

void StringInterner::release(PackedEndpoint::SharedString held) {
  // Held by the interner and by `held` only.
  if (!held || held.use_count() != 2) return;
  if (auto it = strings_.find(*held); it != strings_.end() && it->second.get() == held.get()) strings_.erase(it);
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
