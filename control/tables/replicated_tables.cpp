#include "control/tables/replicated_tables.h"

#include <algorithm>
#include <tuple>

namespace weft::control::tables {

bool supersedes(const TableEntry& incoming, const TableEntry& current) {
  return std::tie(incoming.lamport, incoming.owner) > std::tie(current.lamport, current.owner);
}

namespace {
// A version's Lamport time and owner: what supersedes() compares.
struct Stamp {
  std::uint64_t lamport;
  std::string_view owner;
  bool operator>(const Stamp& other) const { return std::tie(lamport, owner) > std::tie(other.lamport, other.owner); }
};
Stamp stamp(const TableEntry& e) { return {e.lamport, e.owner}; }
template <class Slot>  // ReplicatedTables::Slot
Stamp stamp(const Slot& s) {
  return {s.lamport, *s.owner};
}

// supersedes() with either side as held.
template <class A, class B>
bool newer(const A& incoming, const B& current) {
  return stamp(incoming) > stamp(current);
}
}  // namespace

ReplicatedTables::ReplicatedTables(std::string local_node, std::set<std::string> node_scoped_tables,
                                   std::chrono::seconds tombstone_lifetime,
                                   std::chrono::seconds cluster_tombstone_lifetime,
                                   std::size_t max_cluster_tombstones)
    : local_node_(std::move(local_node)),
      node_scoped_tables_(std::move(node_scoped_tables)),
      tombstone_lifetime_(tombstone_lifetime),
      cluster_tombstone_lifetime_(cluster_tombstone_lifetime),
      max_cluster_tombstones_(max_cluster_tombstones) {}

void ReplicatedTables::notify(const std::optional<TableEntry>& before, const std::optional<TableEntry>& now) {
  if (!before && !now) return;
  for (const auto& listener : listeners_) listener(before, now);
}

const std::string* ReplicatedTables::intern(const std::string& name) {
  auto it = names_.find(name);
  if (it == names_.end()) it = names_.insert(name).first;
  return &*it;
}

void ReplicatedTables::prune_names() {
  std::set<const std::string*> used;
  std::set<NamePair> used_pairs;
  for (const auto& slot : slots_) {
    used.insert(slot.table);
    used.insert(slot.owner);
    used_pairs.emplace(slot.table, slot.owner);
  }
  // First the exemplars: their keys point into names_.
  for (auto it = exemplars_.begin(); it != exemplars_.end();)
    it = used_pairs.count(it->first) ? std::next(it) : exemplars_.erase(it);
  used.insert(&*names_.emplace(local_node_).first);
  for (auto it = names_.begin(); it != names_.end();) it = used.count(&*it) ? std::next(it) : names_.erase(it);
}

void ReplicatedTables::make_exemplar(const std::string* table, const std::string* owner, std::string_view value) {
  if (!exemplars_.count({table, owner})) exemplars_.emplace(NamePair{table, owner}, value.substr(0, kMaxExemplar));
}

std::string_view ReplicatedTables::exemplar_of(const std::string* table, const std::string* owner) const {
  auto it = exemplars_.find({table, owner});
  // Every slot's pair has one (made when its value was packed, pruned only
  // when no slot has that pair).
  return it == exemplars_.end() ? std::string_view() : std::string_view(it->second);
}

namespace {
bool lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
}  // namespace

std::string ReplicatedTables::named_ids_header(std::string_view value, std::string_view key) {
  std::string header;
  std::vector<std::string_view> named;
  for (std::size_t i = 0; i < value.size() && named.size() < kMaxIdsNamed;) {
    if (!lower_hex(value[i])) {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < value.size() && lower_hex(value[end])) ++end;
    const auto run = value.substr(i, end - i);  // a whole run: not part of a longer one
    i = end;
    if (run.size() != SlotKey::kHexDigits || run == key || std::find(named.begin(), named.end(), run) != named.end())
      continue;
    named.push_back(run);
    auto [it, fresh] = ids_.try_emplace(*SlotKey::pack_id(run));
    if (fresh) {
      if (free_ids_.empty()) {
        it->second.index = static_cast<std::uint32_t>(id_at_.size());
        id_at_.push_back(nullptr);
      } else {
        it->second.index = free_ids_.back();
        free_ids_.pop_back();
      }
      id_at_[it->second.index] = &it->first;
    }
    ++it->second.values;
    for (int b = 0; b < 4; ++b) header.push_back(static_cast<char>(it->second.index >> (8 * b)));
  }
  return header;
}

namespace {
std::uint32_t id_index(std::string_view header, std::size_t i) {
  std::uint32_t index = 0;
  for (int b = 0; b < 4; ++b) index |= std::uint32_t{static_cast<unsigned char>(header[4 * i + b])} << (8 * b);
  return index;
}
}  // namespace

void ReplicatedTables::release_ids(std::string_view header) {
  for (std::size_t i = 0; i < header.size() / 4; ++i) {
    const auto index = id_index(header, i);
    auto it = ids_.find(*id_at_.at(index));
    if (--it->second.values) continue;
    id_at_[index] = nullptr;
    free_ids_.push_back(index);
    ids_.erase(it);
  }
  if (ids_.empty()) {  // (and their memory)
    decltype(id_at_)().swap(id_at_);
    decltype(free_ids_)().swap(free_ids_);
  }
}

const std::string& ReplicatedTables::context(const std::string* table, const std::string* owner,
                                             std::string_view header, std::string_view key) const {
  thread_local std::string context;
  context.assign(exemplar_of(table, owner));
  context.append(*owner);
  SlotKey::Buffer buffer;
  for (std::size_t i = 0; i < header.size() / 4; ++i) context.append(SlotKey::unpack_id(*id_at_.at(id_index(header, i)), buffer));
  context.append(key);
  return context;
}

std::string ReplicatedTables::value_of(const EntryView& view) const {
  const auto& v = view.packed_value;
  if (!v.packed()) return v.text();
  return v.text({context(&view.table, &view.owner, v.header(), view.key)});
}

std::string EntryView::value() const { return held_by->value_of(*this); }

EntryView ReplicatedTables::view(const Slot& slot) const {
  return {*slot.table, slot.key().str(), *slot.owner, slot.lamport, slot.deleted, slot.value, this};
}

void ReplicatedTables::store(const TableEntry& entry, Clock::time_point now) {
  auto it = slots_.find(KeyView{entry.table, entry.key});
  std::optional<TableEntry> before;
  if (it == slots_.end()) {
    it = slots_.emplace(entry.key, intern(entry.table), bucket_of(entry.table, entry.key)).first;
  } else if (!it->deleted && !listeners_.empty()) {
    before = this->entry(*it);
  }
  // The same table and key: the order holds.
  it->owner = intern(entry.owner);
  it->lamport = entry.lamport;
  it->deleted = entry.deleted;
  // value_of() decodes with the same context.
  make_exemplar(it->table, it->owner, entry.value);
  const auto header = named_ids_header(entry.value, entry.key);
  auto packed = PackedValue::pack(entry.value, {context(it->table, it->owner, header, entry.key)}, header);
  if (!packed.packed()) release_ids(header);  // held as it is: names nothing
  release_ids(it->value.header());
  it->value = std::move(packed);
  it->deleted_at = entry.deleted ? now : Clock::time_point{};
  notify(before, entry.deleted ? std::nullopt : std::optional<TableEntry>(entry));
}

TableEntry ReplicatedTables::put(const std::string& table, const std::string& key, const std::string& value) {
  TableEntry entry{.table = table, .key = key, .owner = local_node_, .lamport = ++clock_, .deleted = false, .value = value};
  store(entry, Clock::now());
  return entry;
}

std::optional<TableEntry> ReplicatedTables::remove(const std::string& table, const std::string& key) {
  auto it = slots_.find(KeyView{table, key});
  if (it == slots_.end() || it->deleted) return std::nullopt;
  TableEntry tombstone = entry(*it);
  tombstone.owner = local_node_;
  tombstone.lamport = ++clock_;
  tombstone.deleted = true;
  store(tombstone, Clock::now());
  return tombstone;
}

bool ReplicatedTables::apply(const TableEntry& entry, Clock::time_point now) {
  if (entry.table.empty() || entry.key.empty()) return false;
  clock_ = std::max(clock_, entry.lamport);
  if (auto w = withdrawn_up_to_.find(entry.owner);
      w != withdrawn_up_to_.end() && node_scoped(entry.table) && entry.lamport <= w->second)
    return false;  // a late copy of what a dead node had published
  auto it = slots_.find(KeyView{entry.table, entry.key});
  if (it != slots_.end() && !newer(entry, *it)) return false;
  store(entry, now);
  return true;
}

std::size_t ReplicatedTables::merge(const std::vector<TableEntry>& entries, Clock::time_point now) {
  std::size_t changed = 0;
  for (const auto& e : entries) changed += apply(e, now) ? 1 : 0;
  return changed;
}

std::optional<TableEntry> ReplicatedTables::get(const std::string& table, const std::string& key) const {
  auto it = slots_.find(KeyView{table, key});
  if (it == slots_.end() || it->deleted) return std::nullopt;
  return entry(*it);
}

std::vector<TableEntry> ReplicatedTables::entries(const std::string& table) const {
  std::vector<TableEntry> result;
  for (auto it = slots_.lower_bound(KeyView{table, {}}); it != slots_.end() && *it->table == table; ++it)
    if (!it->deleted) result.push_back(entry(*it));
  return result;
}

std::map<std::string, std::size_t> ReplicatedTables::live_counts() const {
  std::map<std::string, std::size_t> counts;
  for (const auto& slot : slots_)
    if (!slot.deleted) ++counts[*slot.table];
  return counts;
}

std::vector<TableEntry> ReplicatedTables::snapshot() const {
  std::vector<TableEntry> result;
  result.reserve(slots_.size());
  for (const auto& slot : slots_) result.push_back(entry(slot));
  return result;
}

void ReplicatedTables::for_each(const std::function<void(const EntryView&)>& f) const {
  for (const auto& slot : slots_) f(view(slot));
}

void ReplicatedTables::for_each(const std::string& table, const std::function<void(const EntryView&)>& f) const {
  for (auto it = slots_.lower_bound(KeyView{table, {}}); it != slots_.end() && *it->table == table; ++it) f(view(*it));
}

std::vector<TableEntry> ReplicatedTables::table_snapshot(const std::string& table) const {
  std::vector<TableEntry> result;
  for (auto it = slots_.lower_bound(KeyView{table, {}}); it != slots_.end() && *it->table == table; ++it)
    result.push_back(entry(*it));
  return result;
}

namespace {
// FNV-1a over (table, key, owner, lamport, deleted) of each entry, in key order.
class Fnv1a {
 public:
  void mix(std::string_view bytes) {
    for (unsigned char c : bytes) {
      h_ ^= c;
      h_ *= 1099511628211ull;
    }
    h_ ^= 0xff;
    h_ *= 1099511628211ull;
  }
  void mix_entry(std::string_view table, std::string_view key, std::string_view owner, std::uint64_t lamport,
                 bool deleted) {
    mix(table);
    mix(key);
    mix(owner);
    mix(std::to_string(lamport));
    mix(deleted ? "d" : "l");
  }
  std::uint64_t value() const { return h_; }

 private:
  std::uint64_t h_ = 1469598103934665603ull;
};

// mix_entry() over a slot as held (its key unpacked on the stack).
template <class Slot>
void mix_slot(Fnv1a& h, const Slot& slot) {
  SlotKey::Buffer buffer;
  h.mix_entry(*slot.table, slot.key().text(buffer), *slot.owner, slot.lamport, slot.deleted);
}

}  // namespace

std::vector<TableEntry> ReplicatedTables::snapshot(const std::set<std::string>& owners) const {
  std::vector<TableEntry> result;
  for (const auto& slot : slots_)
    if (owners.count(*slot.owner)) result.push_back(entry(slot));
  return result;
}

std::uint64_t ReplicatedTables::digest() const {
  Fnv1a h;
  for (const auto& slot : slots_) mix_slot(h, slot);
  return h.value();
}

std::map<std::string, std::uint64_t> ReplicatedTables::owner_digests() const {
  std::map<std::string, Fnv1a> by_owner;
  for (const auto& slot : slots_) mix_slot(by_owner[*slot.owner], slot);
  std::map<std::string, std::uint64_t> result;
  for (const auto& [owner, h] : by_owner) result[owner] = h.value();
  return result;
}

std::vector<TableEntry> ReplicatedTables::newer_than(const std::vector<TableEntry>& theirs,
                                                     const std::set<std::string>* owners) const {
  std::map<KeyView, const TableEntry*> index;
  for (const auto& e : theirs) index[KeyView{e.table, e.key}] = &e;
  std::vector<TableEntry> result;
  for (const auto& slot : slots_) {
    if (owners && !owners->count(*slot.owner)) continue;
    SlotKey::Buffer buffer;
    auto it = index.find(KeyView{*slot.table, slot.key().text(buffer)});
    if (it == index.end() || newer(slot, *it->second)) result.push_back(entry(slot));
  }
  return result;
}

std::vector<TableEntry> ReplicatedTables::newer_than(const std::vector<TableEntry>& theirs,
                                                     const std::map<std::string, BucketSet>& buckets,
                                                     const std::optional<Key>& after,
                                                     const std::optional<Key>& upto) const {
  std::map<KeyView, const TableEntry*> index;
  for (const auto& e : theirs) index[KeyView{e.table, e.key}] = &e;
  std::vector<TableEntry> result;
  auto it = after ? slots_.upper_bound(*after) : slots_.begin();
  const auto end = upto ? slots_.upper_bound(*upto) : slots_.end();
  for (; it != end; ++it) {
    const Slot& slot = *it;
    auto owner = buckets.find(*slot.owner);
    if (owner == buckets.end() || !owner->second.test(slot.bucket)) continue;
    SlotKey::Buffer buffer;
    auto theirs_it = index.find(KeyView{*slot.table, slot.key().text(buffer)});
    if (theirs_it == index.end() || newer(slot, *theirs_it->second)) result.push_back(entry(slot));
  }
  return result;
}

std::uint32_t ReplicatedTables::bucket_of(const std::string& table, const std::string& key) {
  // FNV-1a: the same on every node and every build (std::hash is not).
  Fnv1a h;
  h.mix(table);
  h.mix(key);
  return static_cast<std::uint32_t>(h.value() % kBuckets);
}

std::map<std::string, std::map<std::uint32_t, ReplicatedTables::BucketDigest>> ReplicatedTables::bucket_digests(
    const std::set<std::string>& owners) const {
  std::map<std::string, std::map<std::uint32_t, Fnv1a>> hashes;
  std::map<std::string, std::map<std::uint32_t, BucketDigest>> result;
  for (const auto& slot : slots_) {
    const std::string& owner = *slot.owner;
    if (!owners.count(owner)) continue;
    const std::uint32_t bucket = slot.bucket;
    mix_slot(hashes[owner][bucket], slot);
    auto& d = result[owner][bucket];
    ++d.entries;
    d.bytes += slot.table->size() + slot.key().size() + owner.size() + slot.value.size();
  }
  for (auto& [owner, buckets] : result)
    for (auto& [bucket, d] : buckets) d.digest = hashes[owner][bucket].value();
  return result;
}

std::map<ReplicatedTables::Scope, std::vector<ReplicatedTables::Key>> ReplicatedTables::scope_keys(
    const std::set<Scope>& scopes) const {
  std::set<std::string> owners;
  for (const auto& [owner, bucket] : scopes) owners.insert(owner);
  std::map<Scope, std::vector<Key>> result;
  for (const auto& slot : slots_) {
    if (!owners.count(*slot.owner)) continue;
    Scope scope{*slot.owner, slot.bucket};
    if (scopes.count(scope)) result[scope].emplace_back(*slot.table, slot.key().str());
  }
  return result;
}

std::optional<TableEntry> ReplicatedTables::find(const std::string& table, const std::string& key) const {
  auto it = slots_.find(KeyView{table, key});
  if (it == slots_.end()) return std::nullopt;
  return entry(*it);
}

void ReplicatedTables::withdraw_node(const std::string& node) {
  if (node == local_node_) return;
  std::uint64_t newest = 0;
  for (auto it = slots_.begin(); it != slots_.end();) {
    if (*it->owner != node || !node_scoped(*it->table)) {
      ++it;
      continue;
    }
    newest = std::max(newest, it->lamport);
    std::optional<TableEntry> before;
    if (!it->deleted && !listeners_.empty()) before = entry(*it);
    release_ids(it->value.header());
    it = slots_.erase(it);
    notify(before, std::nullopt);
  }
  auto& mark = withdrawn_up_to_[node];
  mark = std::max(mark, newest);
  prune_names();
}

std::uint64_t ReplicatedTables::withdrawn_mark(const std::string& node) const {
  auto it = withdrawn_up_to_.find(node);
  return it == withdrawn_up_to_.end() ? 0 : it->second;
}

std::vector<TableEntry> ReplicatedTables::republish_own() {
  std::vector<TableEntry> result;
  for (const auto& slot : slots_) {
    // Only what peers withdraw needs republishing; bumping a network's time
    // could outrank a delete this node has not heard of yet.
    if (*slot.owner != local_node_ || slot.deleted || !node_scoped(*slot.table)) continue;
    slot.lamport = ++clock_;
    result.push_back(entry(slot));
  }
  return result;
}

std::size_t ReplicatedTables::reap_tombstones(Clock::time_point now) {
  std::size_t reaped = 0;
  // The cluster-wide tables' tombstones left after their lifetime, per table,
  // oldest first: beyond the bound, the oldest go.
  std::map<std::string, std::vector<Slots::iterator>> kept;
  for (auto it = slots_.begin(); it != slots_.end();) {
    if (!it->deleted) {
      ++it;
      continue;
    }
    const bool node_entry = node_scoped(*it->table);
    if (now - it->deleted_at >= (node_entry ? tombstone_lifetime_ : cluster_tombstone_lifetime_)) {
      release_ids(it->value.header());
      it = slots_.erase(it);
      ++reaped;
      continue;
    }
    if (!node_entry) kept[*it->table].push_back(it);
    ++it;
  }
  for (auto& [table, tombstones] : kept) {
    if (tombstones.size() <= max_cluster_tombstones_) continue;
    const auto excess = static_cast<std::ptrdiff_t>(tombstones.size() - max_cluster_tombstones_);
    std::nth_element(tombstones.begin(), tombstones.begin() + excess, tombstones.end(),
                     [](const auto& a, const auto& b) { return a->deleted_at < b->deleted_at; });
    for (auto it = tombstones.begin(); it != tombstones.begin() + excess; ++it) {
      release_ids((*it)->value.header());
      slots_.erase(*it);
    }
    reaped += static_cast<std::size_t>(excess);
  }
  if (reaped) prune_names();
  return reaped;
}

ReplicatedTables::MemoryUse ReplicatedTables::memory_use() const {
  MemoryUse use;
  // A std::set node: three pointers and the colour before the slot.
  constexpr std::size_t kNodeHeader = 32;
  for (const auto& slot : slots_) {
    ++use.entries;
    use.slots += kNodeHeader + sizeof(Slot);
    use.keys += slot.key().heap_bytes();
    use.values += slot.value.held_bytes();
  }
  for (const auto& [pair, text] : exemplars_) use.exemplars += kNodeHeader + sizeof(*exemplars_.begin()) + text.capacity() + 1;
  use.ids = ids_.size() * (kNodeHeader + sizeof(*ids_.begin())) + id_at_.capacity() * sizeof(id_at_[0]) +
            free_ids_.capacity() * sizeof(free_ids_[0]);
  return use;
}

}  // namespace weft::control::tables
