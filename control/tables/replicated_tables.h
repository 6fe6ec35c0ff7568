// Tables every node holds a copy of (networks, endpoints, services, address
// ranges), replicated over gossip the way Docker's NetworkDB does it, with
// its known bugs designed out:
//  - every entry has an owner node and a Lamport time; the higher time wins,
//    ties go to the greater owner name, so all copies converge;
//  - deletes are tombstones, reaped after a configurable time, so a late
//    broadcast cannot resurrect a deleted entry; cluster-wide objects
//    (networks, services, ranges) keep theirs far longer (days, bounded in
//    number), because a node away past that time brings back, with its own
//    stale copy, what was deleted while it was gone;
//  - a node's entries are withdrawn only when the node is confirmed dead,
//    never on suspicion; a node that comes back republishes its own entries
//    with fresh times;
//  - applying a change never waits on anyone.
#pragma once

#include <bitset>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/tables/packed_value.h"
#include "control/tables/slot_key.h"

namespace weft::control::tables {

struct TableEntry {
  std::string table;
  std::string key;
  std::string owner;       // node name
  std::uint64_t lamport = 0;
  bool deleted = false;    // tombstone
  std::string value;       // the table's own encoding (JSON text)
  // (On the wire and on disk: control/cluster/weft_messages.h.)

  bool operator==(const TableEntry&) const = default;
};

// True when `incoming` should replace `current`.
bool supersedes(const TableEntry& incoming, const TableEntry& current);

class ReplicatedTables;

// An entry as held, without decoding its value: what for_each() hands out.
// Valid during the call only. Converts to a TableEntry (value decoded). The
// value is packed with a context the tables keep (packed_value.h): its
// table's and owner's exemplar, its owner, the ids it names, its key.
struct EntryView {
  const std::string& table;  // interned by the tables, as owner
  std::string key;  // (held packed: slot_key.h)
  const std::string& owner;
  std::uint64_t lamport = 0;
  bool deleted = false;
  const PackedValue& packed_value;
  const ReplicatedTables* held_by = nullptr;

  std::string value() const;
  std::size_t value_size() const { return packed_value.size(); }
  TableEntry entry() const { return {table, key, owner, lamport, deleted, value()}; }
  operator TableEntry() const { return entry(); }  // NOLINT: a view of one
};

class ReplicatedTables {
 public:
  using Clock = std::chrono::steady_clock;
  // Called for each change to the live view: `now` is nullopt for a removal
  // (tombstone or withdrawal), `before` is nullopt for a new key.
  using Listener = std::function<void(const std::optional<TableEntry>& before, const std::optional<TableEntry>& now)>;

  // `node_scoped_tables`: tables whose entries live and die with their owner
  // node (endpoints); entries of other tables (networks, address ranges)
  // outlive it.
  // `tombstone_lifetime`: how long deletes of node-scoped entries are kept
  // (their owner republishes them with fresh times when it comes back);
  // `cluster_tombstone_lifetime`: the other tables', which nothing else
  // protects from a returning node's stale copy; at most
  // `max_cluster_tombstones` of them per table, oldest reaped first.
  explicit ReplicatedTables(std::string local_node, std::set<std::string> node_scoped_tables = {},
                            std::chrono::seconds tombstone_lifetime = std::chrono::minutes(30),
                            std::chrono::seconds cluster_tombstone_lifetime = kDefaultClusterTombstoneLifetime,
                            std::size_t max_cluster_tombstones = kDefaultMaxClusterTombstones);

  // Not copyable: slots point into the copy's own interned names. Moving
  // keeps the nodes of both sets, so it keeps them valid.
  ReplicatedTables(const ReplicatedTables&) = delete;
  ReplicatedTables& operator=(const ReplicatedTables&) = delete;
  ReplicatedTables(ReplicatedTables&&) = default;
  ReplicatedTables& operator=(ReplicatedTables&&) = default;

  static constexpr std::chrono::seconds kDefaultClusterTombstoneLifetime = std::chrono::hours(24 * 7);
  static constexpr std::size_t kDefaultMaxClusterTombstones = 100000;

  const std::string& local_node() const { return local_node_; }
  std::uint64_t clock() const { return clock_; }
  // Entries held, tombstones included.
  std::size_t size() const { return slots_.size(); }

  // Local writes; the returned entry is what to broadcast.
  TableEntry put(const std::string& table, const std::string& key, const std::string& value);
  std::optional<TableEntry> remove(const std::string& table, const std::string& key);

  // A remote entry; true when it changed this copy (and so is worth
  // rebroadcasting).
  bool apply(const TableEntry& entry, Clock::time_point now = Clock::now());
  // Anti-entropy: apply every entry of a peer's snapshot.
  std::size_t merge(const std::vector<TableEntry>& entries, Clock::time_point now = Clock::now());

  std::optional<TableEntry> get(const std::string& table, const std::string& key) const;
  // Live entries of one table.
  std::vector<TableEntry> entries(const std::string& table) const;
  // Live entries per table (tables without any are absent); no copies.
  std::map<std::string, std::size_t> live_counts() const;
  // Everything, tombstones included: what a push/pull sends.
  std::vector<TableEntry> snapshot() const;
  // Calls `f` on every entry, tombstones included, in key order (no copies;
  // a value is decoded only when asked for).
  void for_each(const std::function<void(const EntryView&)>& f) const;
  // The same over one table.
  void for_each(const std::string& table, const std::function<void(const EntryView&)>& f) const;
  // Everything of one table, tombstones included.
  std::vector<TableEntry> table_snapshot(const std::string& table) const;
  // Everything whose current version was written by one of `owners`.
  std::vector<TableEntry> snapshot(const std::set<std::string>& owners) const;
  // A digest of the whole copy: equal digests mean equal copies.
  std::uint64_t digest() const;
  // One digest per owner over the entries it wrote last. A slot that differs
  // between two copies makes the digests of both its versions' owners
  // differ, so anti-entropy need only exchange those owners' entries.
  std::map<std::string, std::uint64_t> owner_digests() const;
  // What this copy has that `theirs` (a peer's snapshot) lacks or holds an
  // older version of: the repair to send back after a digest mismatch.
  // With `owners`, only entries written by one of them are considered (the
  // peer sent just those owners' entries).
  std::vector<TableEntry> newer_than(const std::vector<TableEntry>& theirs,
                                     const std::set<std::string>* owners = nullptr) const;

  // Anti-entropy in bounded pieces: an owner's entries are split into
  // buckets by hash(table, key), so two copies that differ in a few entries
  // of a big owner exchange only those buckets, and a sync message carries
  // whole buckets under a byte budget. (256: a bucket of an owner with
  // 100 000 endpoints holds ~400 entries, ~180 KB; an owner's bucket
  // digests stay ~5 KB.)
  static constexpr std::uint32_t kBuckets = 256;
  static std::uint32_t bucket_of(const std::string& table, const std::string& key);
  struct BucketDigest {
    std::uint64_t digest = 0;
    std::uint64_t entries = 0;  // how many
    std::uint64_t bytes = 0;    // of tables, keys, owners and values: what sending them costs
    bool operator==(const BucketDigest&) const = default;
  };
  // Per owner in `owners`, the digest of each non-empty bucket of the entries
  // it wrote last (an owner without entries here is absent).
  std::map<std::string, std::map<std::uint32_t, BucketDigest>> bucket_digests(const std::set<std::string>& owners) const;
  using Key = std::pair<std::string, std::string>;  // table, key
  using Scope = std::pair<std::string, std::uint32_t>;  // owner, bucket
  // The keys (in key order) of the entries in each of `scopes`.
  std::map<Scope, std::vector<Key>> scope_keys(const std::set<Scope>& scopes) const;
  // newer_than() over one sync's scope: the entries of the buckets
  // `buckets[owner]` of each owner, with keys in (after, upto] (nullopt:
  // unbounded).
  using BucketSet = std::bitset<kBuckets>;
  std::vector<TableEntry> newer_than(const std::vector<TableEntry>& theirs,
                                     const std::map<std::string, BucketSet>& buckets, const std::optional<Key>& after,
                                     const std::optional<Key>& upto) const;
  // The current version of a slot, tombstones included (a copy: values are
  // held packed).
  std::optional<TableEntry> find(const std::string& table, const std::string& key) const;

  // The node is confirmed dead (or removed): its entries in node-scoped tables
  // leave the live view here; entries it published before now are ignored if they arrive
  // late, newer ones (after it comes back) are accepted.
  void withdraw_node(const std::string& node);
  // The newest Lamport time of `node`'s entries withdrawn here (0: none);
  // entries of that node at or below it are refused.
  std::uint64_t withdrawn_mark(const std::string& node) const;
  // Gives this node's live entries in node-scoped tables new Lamport times, returning them for a
  // broadcast: used when the node (re)joins so peers that withdrew them take
  // them back.
  std::vector<TableEntry> republish_own();

  std::size_t reap_tombstones(Clock::time_point now = Clock::now());

  void subscribe(Listener listener) { listeners_.push_back(std::move(listener)); }

  // What the entries take, by part, in bytes asked of the allocator (its
  // rounding and headers not counted): for the benches and tests.
  struct MemoryUse {
    std::size_t entries = 0;
    std::size_t slots = 0;      // the slots and the index over them
    std::size_t keys = 0;       // keys held apart from their slot
    std::size_t values = 0;     // the packed values
    std::size_t exemplars = 0;  // the per-(table, owner) dictionaries
    std::size_t ids = 0;        // the ids values name, each once
  };
  MemoryUse memory_use() const;

 private:
  friend struct EntryView;
  // Each entry once, ordered by its table and key (a map keyed by a copy of
  // them held the key twice: ~140 bytes an entry, 16 MB at 110 000); its
  // key an id packed in 32 bytes when it is one (slot_key.h); table and
  // owner names interned (a few distinct ones); the value packed
  // (packed_value.h) with its table's and owner's exemplar and the ids it
  // names as dictionary (below): ~450 bytes of endpoint JSON held in ~60.
  // ~208 bytes an entry in all at 110 000 (bench_tables_mem). A slot's
  // table and key never change once it is in the set; the rest does, hence
  // mutable. Derived from its key, so its first fields sit in the key's
  // tail padding: 88 bytes a slot, a std::set node of 120.
  struct Slot : SlotKey {
    Slot(std::string_view key, const std::string* table, std::uint32_t bucket)
        : SlotKey(key), bucket(static_cast<std::uint8_t>(bucket)), table(table) {}
    const SlotKey& key() const { return *this; }

    std::uint8_t bucket = 0;  // bucket_of(table, key), kept: anti-entropy asks it of every slot
    mutable bool deleted = false;  // tombstone
    const std::string* table = nullptr;  // in names_
    mutable const std::string* owner = nullptr;  // in names_
    mutable std::uint64_t lamport = 0;
    mutable Clock::time_point deleted_at{};
    mutable PackedValue value;
  };
  static_assert(kBuckets <= 256, "Slot::bucket is a byte");
  static_assert(sizeof(Slot) <= 88, "a slot's fields fit in its key's tail padding");
  EntryView view(const Slot& slot) const;
  TableEntry entry(const Slot& slot) const { return view(slot).entry(); }
  // The first value of each (table, owner) held here, a prefix of it: the
  // dictionary the values of that table and owner are packed with (an
  // endpoint record repeats most of another of the same node: its network,
  // its node's VTEP, the shape of its names). Immutable while a slot of
  // that table and owner exists (the values were packed with it); pruned
  // with the names.
  using NamePair = std::pair<const std::string*, const std::string*>;  // table, owner; in names_
  static constexpr std::size_t kMaxExemplar = 1024;
  void make_exemplar(const std::string* table, const std::string* owner, std::string_view value);
  std::string_view exemplar_of(const std::string* table, const std::string* owner) const;
  // Ids (64 hex digits) a value names other than its key (an endpoint its
  // service and its network), each held once while values name it, with
  // the number of values that do: in the dictionary of the values naming
  // it, where deflate refers to it in a few bytes instead of ~50. A value
  // keeps their indexes in its header (4 bytes each).
  static constexpr std::size_t kMaxIdsNamed = 8;
  struct IdUse {
    std::uint32_t index = 0;
    std::uint32_t values = 0;
  };
  std::string named_ids_header(std::string_view value, std::string_view key);
  void release_ids(std::string_view header);
  // The dictionary a value of `table` and `owner` with `header` and `key`
  // is packed with (a buffer of the thread's, valid until the next call).
  const std::string& context(const std::string* table, const std::string* owner, std::string_view header,
                             std::string_view key) const;
  std::string value_of(const EntryView& view) const;
  using KeyView = std::pair<std::string_view, std::string_view>;  // table, key
  // By table, then key, as the texts order (SlotKey keeps their order).
  struct SlotOrder {
    using is_transparent = void;
    static std::string_view table(const Slot& s) { return *s.table; }
    static std::string_view table(const Key& k) { return k.first; }
    static std::string_view table(const KeyView& k) { return k.first; }
    static const SlotKey& key(const Slot& s) { return s.key(); }
    static std::string_view key(const Key& k) { return k.second; }
    static std::string_view key(const KeyView& k) { return k.second; }
    static int compare(const SlotKey& a, const SlotKey& b) { return a.compare(b); }
    static int compare(const SlotKey& a, std::string_view b) { return a.compare(b); }
    static int compare(std::string_view a, const SlotKey& b) { return -b.compare(a); }
    static int compare(std::string_view a, std::string_view b) { return a.compare(b); }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      if (const int c = table(a).compare(table(b)); c != 0) return c < 0;
      return compare(key(a), key(b)) < 0;
    }
  };
  using Slots = std::set<Slot, SlotOrder>;
  const std::string* intern(const std::string& name);
  // Drops the names no slot refers to any more (owners of reaped or
  // withdrawn entries), so the set stays bounded by what is held.
  void prune_names();
  void store(const TableEntry& entry, Clock::time_point now);
  void notify(const std::optional<TableEntry>& before, const std::optional<TableEntry>& now);

  bool node_scoped(const std::string& table) const { return node_scoped_tables_.count(table) != 0; }

  std::string local_node_;
  std::set<std::string> node_scoped_tables_;
  std::chrono::seconds tombstone_lifetime_;
  std::chrono::seconds cluster_tombstone_lifetime_;
  std::size_t max_cluster_tombstones_;
  std::uint64_t clock_ = 0;
  std::set<std::string, std::less<>> names_;  // table and owner names, interned
  std::map<NamePair, std::string> exemplars_;
  std::map<SlotKey::IdBytes, IdUse> ids_;
  std::vector<const SlotKey::IdBytes*> id_at_;  // index -> id (in ids_), nullptr: free
  std::vector<std::uint32_t> free_ids_;         // free indexes in id_at_
  Slots slots_;
  std::map<std::string, std::uint64_t> withdrawn_up_to_;  // node -> Lamport time
  std::vector<Listener> listeners_;
};

}  // namespace weft::control::tables
