// Numbers given to ids (LbIdMap's service and backend ids), held both ways
// in little more than the ids' own bytes. Ids of the model's shape (hex
// digits) come packed into N bytes and sit in a slot indexed by their
// number; an open-addressing index of numbers finds them by key. Ids of any
// other shape are kept as strings in two small maps.
//
// At 100 000 backends this holds ~4 MB where a hash-map node per id (packed
// key, value, next pointer, bucket) and a vector of references took ~8.5 MB:
// no per-entry allocation, no pointer per entry.
//
// Not thread-safe; numbers are 1 .. 2^32-1 (0 is "none").
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weft::control::services {

template <std::size_t N>
class PackedIdTable {
 public:
  using Packed = std::array<std::uint8_t, N>;

  std::size_t size() const { return packed_count_ + other_ids_.size(); }

  std::optional<std::uint32_t> find(const Packed& key) const {
    if (index_.empty()) return std::nullopt;
    const std::size_t mask = index_.size() - 1;
    for (std::size_t i = hash(key) & mask;; i = (i + 1) & mask) {
      const std::uint32_t number = index_[i];
      if (number == 0) return std::nullopt;
      if (*packed_at(number) == key) return number;
    }
  }
  std::optional<std::uint32_t> find_other(const std::string& key) const {
    auto it = other_ids_.find(key);
    if (it == other_ids_.end()) return std::nullopt;
    return it->second;
  }

  bool contains(std::uint32_t number) const { return kind(number) != Kind::free; }
  // The key of `number` when it was given to a packed key (else nullptr).
  const Packed* packed_at(std::uint32_t number) const {
    return kind(number) == Kind::packed ? &chunks_[number / kChunk]->keys[number % kChunk] : nullptr;
  }
  // The key of `number` when it was given to another key (else nullptr).
  const std::string* other_at(std::uint32_t number) const {
    if (kind(number) != Kind::other) return nullptr;
    auto it = other_by_number_.find(number);
    return it == other_by_number_.end() ? nullptr : it->second;
  }

  // Gives `number` (free) to `key` (without one); false when either is taken.
  bool insert(std::uint32_t number, const Packed& key) {
    if (number == 0 || contains(number) || find(key)) return false;
    if ((packed_count_ + 1) * 4 > index_.size() * 3) grow_index();
    Chunk& chunk = chunk_for(number);
    chunk.keys[number % kChunk] = key;
    chunk.kind[number % kChunk] = Kind::packed;
    place(number);
    ++packed_count_;
    return true;
  }
  bool insert_other(std::uint32_t number, const std::string& key) {
    if (number == 0 || contains(number) || other_ids_.contains(key)) return false;
    const auto node = other_ids_.emplace(key, number).first;
    other_by_number_.emplace(number, &node->first);
    chunk_for(number).kind[number % kChunk] = Kind::other;
    return true;
  }

  void erase(std::uint32_t number) {
    switch (kind(number)) {
      case Kind::free:
        return;
      case Kind::packed:
        unplace(number);
        --packed_count_;
        break;
      case Kind::other: {
        auto it = other_by_number_.find(number);
        if (it != other_by_number_.end()) {
          const std::string key = *it->second;  // a copy: the key erased by is the erased node's own
          other_by_number_.erase(it);
          other_ids_.erase(key);
        }
        break;
      }
    }
    chunks_[number / kChunk]->kind[number % kChunk] = Kind::free;
  }

  // f(number) for every number given, in ascending order.
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t c = 0; c < chunks_.size(); ++c) {
      if (!chunks_[c]) continue;
      for (std::size_t i = 0; i < kChunk; ++i)
        if (chunks_[c]->kind[i] != Kind::free) f(static_cast<std::uint32_t>(c * kChunk + i));
    }
  }

 private:
  enum class Kind : std::uint8_t { free, packed, other };
  // Slots come in chunks, so growing never copies them all (and never holds
  // twice their bytes) and a table of n numbers holds at most one chunk more.
  static constexpr std::size_t kChunk = 1024;
  struct Chunk {
    std::array<Packed, kChunk> keys{};
    std::array<Kind, kChunk> kind{};
  };

  static std::size_t hash(const Packed& key) {
    // Every byte counts: ids made by tools and tests share long prefixes.
    return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(key.data()), N));
  }
  Kind kind(std::uint32_t number) const {
    const std::size_t c = number / kChunk;
    return c < chunks_.size() && chunks_[c] ? chunks_[c]->kind[number % kChunk] : Kind::free;
  }
  Chunk& chunk_for(std::uint32_t number) {
    const std::size_t c = number / kChunk;
    if (c >= chunks_.size()) chunks_.resize(c + 1);
    if (!chunks_[c]) chunks_[c] = std::make_unique<Chunk>();
    return *chunks_[c];
  }
  // Linear probing in a power-of-two table at most 3/4 full.
  void place(std::uint32_t number) {
    const std::size_t mask = index_.size() - 1;
    std::size_t i = hash(*packed_at(number)) & mask;
    while (index_[i] != 0) i = (i + 1) & mask;
    index_[i] = number;
  }
  void grow_index() {
    std::vector<std::uint32_t> old(std::max<std::size_t>(64, index_.size() * 2), 0);
    old.swap(index_);
    for (std::uint32_t number : old)
      if (number != 0) place(number);
  }
  // Removes `number` from the index, moving back the entries after it that
  // its slot would have stopped a probe for (no tombstones).
  void unplace(std::uint32_t number) {
    const std::size_t mask = index_.size() - 1;
    std::size_t i = hash(*packed_at(number)) & mask;
    while (index_[i] != number) i = (i + 1) & mask;
    for (std::size_t j = (i + 1) & mask; index_[j] != 0; j = (j + 1) & mask) {
      const std::size_t home = hash(*packed_at(index_[j])) & mask;
      // index_[j] may fill the hole at i unless its home lies cyclically in (i, j].
      const bool home_between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (home_between) continue;
      index_[i] = index_[j];
      i = j;
    }
    index_[i] = 0;
  }

  std::vector<std::unique_ptr<Chunk>> chunks_;
  std::vector<std::uint32_t> index_;  // numbers of packed keys; 0: empty
  std::size_t packed_count_ = 0;
  std::map<std::string, std::uint32_t> other_ids_;
  std::map<std::uint32_t, const std::string*> other_by_number_;  // keys of other_ids_
};

}  // namespace weft::control::services
