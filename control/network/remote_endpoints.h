// Endpoints of other nodes as the network manager holds them: each once,
// packed (control/model/packed_endpoint.h), and shared with the endpoint
// snapshots, which point at these same records. The cluster's tables
// already hold every record as text; what the manager needs of one is what
// its kernel entries need (address, MAC, the hosting node's VTEP, network)
// and, for listings, the rest of the record.
//
// A flat store: the records in chunks of 64 (PackedEndpointChunk: 64 bytes
// a record, its names, namespace, drain time and aliases in the chunk's
// arena; the VTEP and the reservation flag beside it), and an
// open-addressing index from the id (a model id packed into 32 bytes, in
// the record) to the record's place. A snapshot holds the chunks
// its records are in; a change to a chunk that a snapshot holds copies the
// chunk first (copy-on-write), so the snapshot's records never change. At
// 100 000 remote endpoints (10 000 services x 10 backends) a full
// `Endpoint` in a map keyed by its 64-character id cost ~880 bytes each,
// a map of shared packed records ~400; here 140, 156 with a snapshot of
// them (bench_remote_store).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "control/model/model.h"
#include "control/model/packed_endpoint.h"
#include "dataplane/address.h"

namespace weft::control::network {

class RemoteEndpoints {
 public:
  // One endpoint held, as it is now: valid until the store next changes
  // (put, erase, name_network, clear; set_reserved_here keeps it).
  struct Entry {
    const PackedEndpoint* endpoint = nullptr;  // the record (never null)
    dataplane::Ipv4 vtep{};                    // the underlay address of the node hosting it
    bool reserved_here = false;                // its address was marked used in our allocator
    std::uint32_t slot = 0;                    // its place in the store
  };

  RemoteEndpoints() = default;
  ~RemoteEndpoints() { clear(); }
  RemoteEndpoints(const RemoteEndpoints&) = delete;
  RemoteEndpoints& operator=(const RemoteEndpoints&) = delete;

  std::size_t size() const { return live_; }
  // Distinct network, node and service ids held (for tests).
  std::size_t interned() const { return interned_.size(); }
  std::optional<Entry> find(const std::string& id) const;
  // Records `endpoint` hosted at `vtep`, replacing what was held under its
  // id (reserved_here is kept). True when the id is new. `network_name`:
  // its network's name here, when the network is known (nullptr: the
  // record's own), which the record is held with, so that the endpoint
  // snapshots can share it as it is.
  std::pair<Entry, bool> put(const Endpoint& endpoint, dataplane::Ipv4 vtep,
                             const std::string* network_name = nullptr);
  void set_reserved_here(const Entry& entry, bool reserved);
  // The network `network_id` is now known here by `name` (nullptr: no
  // longer known): its endpoints are held with that name (their records'
  // own when nullptr).
  void name_network(const std::string& network_id, const std::string* name);
  void erase(const std::string& id);
  void clear();

  // The entry's record, shared: it keeps the record's chunk, unchanged,
  // for as long as it is held.
  std::shared_ptr<const PackedEndpoint> shared(const Entry& entry) const;

  // The name from an entry's details, without unpacking the rest.
  static std::string name(const Entry& entry) { return std::string(entry.endpoint->name()); }
  // What the load balancer needs of an entry: id, network, address, MAC,
  // node, service and backend state (the drain time while draining).
  static Endpoint backend(const Entry& entry);
  // The whole Endpoint again. `network_name`: the network's, when it is
  // known here (nullptr: the record's own).
  static Endpoint endpoint(const Entry& entry, const std::string* network_name);

  template <class F>
  void for_each(F&& f) const {
    for (std::uint32_t slot = 0; slot < slots_; ++slot)
      if (chunks_[slot / kChunk]->records.used(slot % kChunk)) f(entry(slot));
  }

  // Heap bytes of the index, the chunks and the places beside them, for
  // benchmarks (strings interned not counted).
  std::size_t bytes() const;

 private:
  static constexpr std::size_t kChunk = PackedEndpointChunk::kSize;
  // Index cells: the place (low 24 bits) and 8 bits of the id's hash.
  static constexpr std::uint32_t kEmpty = 0xffffffff, kErased = 0xfffffffe;
  static constexpr std::uint32_t kMaxSlots = 0xfffffe;  // 0xfffffe, 0xffffff: the markers' low bits
  // The records, and what only the store reads of them: snapshots point at
  // `records` alone, so the store writes `vtep` and `reserved` in place
  // even while one holds the chunk (a copy made later carries them on).
  struct Chunk {
    PackedEndpointChunk records;
    std::array<dataplane::Ipv4, kChunk> vtep{};
    std::uint64_t reserved = 0;  // a bit a place: reserved_here
    static_assert(kChunk <= 64);
  };

  Entry entry(std::uint32_t slot) const;
  const PackedEndpoint& record(std::uint32_t slot) const {
    return chunks_[slot / kChunk]->records.at(slot % kChunk);
  }
  // The chunk holding `slot`, copied first if a snapshot holds it too.
  Chunk& writable(std::uint32_t slot);
  void set_place(std::uint32_t slot, dataplane::Ipv4 vtep, bool reserved);
  // The index cell of `key`, or npos.
  std::size_t cell_of(const PackedEndpoint::IdKey& key, std::size_t hash) const;
  void insert_cell(std::uint32_t slot, std::size_t hash);
  void make_room();
  void rehash(std::size_t cells);
  std::uint32_t take_slot();
  // Puts a record at `slot`, releasing the interned ids of what was there.
  void write(std::uint32_t slot, const Endpoint& endpoint, std::string_view network_name);
  // The interned origin of an endpoint of `e`'s network and node, listed
  // as `network_name`.
  SharedOrigin origin_of(const Endpoint& e, std::string_view network_name);
  // Drops `held`, and with it the origin and its strings when nothing else
  // holds them.
  void release(SharedOrigin held);
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::vector<std::shared_ptr<Chunk>> chunks_;
  std::uint32_t slots_ = 0;           // places made (in chunks_)
  std::vector<std::uint32_t> free_;   // places emptied, to fill first
  std::vector<std::uint32_t> index_;  // open addressing, linear probing; a power of two cells
  std::size_t live_ = 0;
  std::size_t erased_ = 0;  // kErased cells
  StringInterner interned_;
  // By network id, node, network name listed and the record's, viewing the
  // origin's own strings. A few per network.
  using OriginKey = std::tuple<std::string_view, std::string_view, std::string_view, std::string_view>;
  std::map<OriginKey, SharedOrigin> origins_;
  std::size_t sweep_origins_at_ = 64;  // bounded: origins of released snapshots go at the next sweep
};

}  // namespace weft::control::network
