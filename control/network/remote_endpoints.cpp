#include "control/network/remote_endpoints.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>

namespace weft::control::network {

namespace {

std::uint32_t tag_of(std::size_t hash) { return static_cast<std::uint32_t>(hash >> 56) << 24; }

}  // namespace

RemoteEndpoints::Entry RemoteEndpoints::entry(std::uint32_t slot) const {
  const Chunk& chunk = *chunks_[slot / kChunk];
  const std::size_t i = slot % kChunk;
  return Entry{&chunk.records.at(i), chunk.vtep[i], ((chunk.reserved >> i) & 1) != 0, slot};
}

void RemoteEndpoints::set_place(std::uint32_t slot, dataplane::Ipv4 vtep, bool reserved) {
  Chunk& chunk = *chunks_[slot / kChunk];
  const std::size_t i = slot % kChunk;
  chunk.vtep[i] = vtep;
  chunk.reserved = (chunk.reserved & ~(std::uint64_t{1} << i)) | (std::uint64_t{reserved} << i);
}

RemoteEndpoints::Chunk& RemoteEndpoints::writable(std::uint32_t slot) {
  auto& chunk = chunks_[slot / kChunk];
  if (chunk.use_count() > 1) {
    chunk = std::make_shared<Chunk>(*chunk);
  } else {
    // The last snapshot that held it may have let go on another thread:
    // its reads happen before our writes.
    std::atomic_thread_fence(std::memory_order_acquire);
  }
  return *chunk;
}

std::size_t RemoteEndpoints::cell_of(const PackedEndpoint::IdKey& key, std::size_t hash) const {
  if (index_.empty()) return npos;
  const std::size_t mask = index_.size() - 1;
  const std::uint32_t tag = tag_of(hash);
  for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
    const std::uint32_t cell = index_[i];
    if (cell == kEmpty) return npos;
    if (cell != kErased && (cell & 0xff000000) == tag && record(cell & 0xffffff).has_id(key)) return i;
  }
}

void RemoteEndpoints::insert_cell(std::uint32_t slot, std::size_t hash) {
  const std::size_t mask = index_.size() - 1;
  for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
    if (index_[i] == kEmpty || index_[i] == kErased) {
      if (index_[i] == kErased) --erased_;
      index_[i] = tag_of(hash) | slot;
      return;
    }
  }
}

void RemoteEndpoints::make_room() {
  // At most 4/5 of the cells used (erased ones count: they lengthen
  // probes); rebuilt at most 3/4 full, so a rebuild is not soon followed
  // by another.
  if ((live_ + erased_ + 1) * 5 <= index_.size() * 4) return;
  std::size_t cells = 16;
  while ((live_ + 1) * 4 > cells * 3) cells *= 2;
  rehash(cells);
}

void RemoteEndpoints::rehash(std::size_t cells) {
  std::vector<std::uint32_t> old(cells, kEmpty);
  old.swap(index_);
  erased_ = 0;
  for (const std::uint32_t cell : old)
    if (cell != kEmpty && cell != kErased) insert_cell(cell & 0xffffff, record(cell & 0xffffff).id_hash());
}

std::uint32_t RemoteEndpoints::take_slot() {
  if (!free_.empty()) {
    const std::uint32_t slot = free_.back();
    free_.pop_back();
    return slot;
  }
  if (slots_ >= kMaxSlots) throw std::length_error("too many remote endpoints");
  const std::uint32_t slot = slots_;
  if (slot % kChunk == 0) chunks_.push_back(std::make_shared<Chunk>());
  ++slots_;
  return slot;
}

SharedOrigin RemoteEndpoints::origin_of(const Endpoint& e, std::string_view network_name) {
  if (auto it = origins_.find(OriginKey{e.network_id, e.node, network_name, e.network_name}); it != origins_.end())
    return it->second;
  if (origins_.size() >= sweep_origins_at_) {
    std::erase_if(origins_, [](const auto& kv) { return kv.second.use_count() == 1; });
    sweep_origins_at_ = std::max<std::size_t>(64, 2 * origins_.size());
  }
  auto origin = SharedOrigin::make(EndpointOrigin{interned_.get(e.network_id), interned_.get(e.node),
                                                  std::string(network_name), e.network_name});
  origins_.emplace(OriginKey{*origin->network_id, *origin->node, origin->network_name, origin->record_network_name},
                   origin);
  return origin;
}

void RemoteEndpoints::release(SharedOrigin held) {
  if (!held) return;
  // Held by the map and by `held` only: it goes, and then its strings may.
  if (held.use_count() != 2) return;
  auto it = origins_.find(OriginKey{*held->network_id, *held->node, held->network_name, held->record_network_name});
  if (it == origins_.end() || it->second.get() != held.get()) return;
  auto network_id = held->network_id, node = held->node;
  origins_.erase(it);
  held.reset();
  interned_.release(std::move(network_id));
  interned_.release(std::move(node));
}

void RemoteEndpoints::write(std::uint32_t slot, const Endpoint& endpoint, std::string_view network_name) {
  const std::size_t i = slot % kChunk;
  const auto origin = origin_of(endpoint, network_name);
  const auto service_id = interned_.get(endpoint.service_id);
  // A new record at an empty place of a chunk a snapshot holds goes in
  // without copying the chunk when its arena has room: the snapshot never
  // reads that place, and nothing it reads moves.
  auto& held = chunks_[slot / kChunk];
  if (held.use_count() > 1 && held->records.set(i, endpoint, origin, service_id, true)) return;
  PackedEndpointChunk& chunk = writable(slot).records;
  // Kept through the change, so what both name stays interned.
  SharedOrigin old_origin;
  PackedEndpoint::SharedString old_service_id;
  if (chunk.used(i)) {
    old_origin = chunk.at(i).origin();
    old_service_id = chunk.at(i).shared_service_id();
  }
  chunk.set(i, endpoint, origin, service_id);
  release(std::move(old_origin));
  interned_.release(std::move(old_service_id));
}

std::optional<RemoteEndpoints::Entry> RemoteEndpoints::find(const std::string& id) const {
  const auto key = PackedEndpoint::IdKey::of(id);
  const std::size_t cell = cell_of(key, key.hash());
  if (cell == npos) return std::nullopt;
  return entry(index_[cell] & 0xffffff);
}

std::pair<RemoteEndpoints::Entry, bool> RemoteEndpoints::put(const Endpoint& endpoint, dataplane::Ipv4 vtep,
                                                             const std::string* network_name) {
  make_room();
  const auto key = PackedEndpoint::IdKey::of(endpoint.id);
  const std::size_t hash = key.hash();
  const std::size_t cell = cell_of(key, hash);
  const bool fresh = cell == npos;
  const std::uint32_t slot = fresh ? take_slot() : index_[cell] & 0xffffff;
  try {
    write(slot, endpoint, network_name ? std::string_view{*network_name} : std::string_view{endpoint.network_name});
  } catch (...) {
    if (fresh) free_.push_back(slot);
    throw;
  }
  if (fresh) {
    insert_cell(slot, hash);
    ++live_;
  }
  set_place(slot, vtep, !fresh && entry(slot).reserved_here);
  return {entry(slot), fresh};
}

void RemoteEndpoints::set_reserved_here(const Entry& entry, bool reserved) {
  set_place(entry.slot, entry.vtep, reserved);
}

void RemoteEndpoints::name_network(const std::string& network_id, const std::string* name) {
  for (std::uint32_t slot = 0; slot < slots_; ++slot) {
    if (!chunks_[slot / kChunk]->records.used(slot % kChunk)) continue;
    const PackedEndpoint& r = record(slot);
    if (r.network_id() != network_id) continue;
    const std::string_view wanted = name ? std::string_view{*name} : r.record_network_name();
    if (r.network_name() == wanted) continue;
    Endpoint e = r.unpack();  // a copy: the chunk may be copied or its arena moved
    e.network_name = r.record_network_name();
    const std::string listed(wanted);
    write(slot, e, listed);
  }
}

void RemoteEndpoints::erase(const std::string& id) {
  const auto key = PackedEndpoint::IdKey::of(id);
  const std::size_t cell = cell_of(key, key.hash());
  if (cell == npos) return;
  const std::uint32_t slot = index_[cell] & 0xffffff;
  PackedEndpointChunk& chunk = writable(slot).records;
  SharedOrigin old_origin = chunk.at(slot % kChunk).origin();
  PackedEndpoint::SharedString old_service_id = chunk.at(slot % kChunk).shared_service_id();
  chunk.clear(slot % kChunk);
  release(std::move(old_origin));
  interned_.release(std::move(old_service_id));
  index_[cell] = kErased;
  ++erased_;
  --live_;
  set_place(slot, {}, false);
  free_.push_back(slot);
}

void RemoteEndpoints::clear() {
  chunks_.clear();
  slots_ = 0;
  free_.clear();
  index_.clear();
  index_.shrink_to_fit();
  live_ = 0;
  erased_ = 0;
  origins_.clear();
  interned_.clear();
}

std::shared_ptr<const PackedEndpoint> RemoteEndpoints::shared(const Entry& entry) const {
  const auto& chunk = chunks_[entry.slot / kChunk];
  return std::shared_ptr<const PackedEndpoint>(chunk, &chunk->records.at(entry.slot % kChunk));
}

std::size_t RemoteEndpoints::bytes() const {
  std::size_t n = chunks_.capacity() * sizeof(chunks_[0]) + free_.capacity() * sizeof(std::uint32_t) +
                  index_.capacity() * sizeof(std::uint32_t);
  for (const auto& chunk : chunks_) n += sizeof(Chunk) + chunk->records.arena_bytes();
  return n;
}

Endpoint RemoteEndpoints::backend(const Entry& entry) {
  const PackedEndpoint& p = *entry.endpoint;
  Endpoint e;
  e.id = p.id();
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

Endpoint RemoteEndpoints::endpoint(const Entry& entry, const std::string* network_name) {
  Endpoint e = entry.endpoint->unpack();
  e.network_name = network_name ? *network_name : std::string(entry.endpoint->record_network_name());
  return e;
}

}  // namespace weft::control::network
