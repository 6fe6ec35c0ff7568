// The conntrack table (ebpf/conntrack.h: buckets of LB_CT_WAYS entries in
// the mmapable ARRAY lb_conntrack) seen from user space through mmap: no
// syscall per entry. The programs write it at the same time, so every read
// is a snapshot checked against the entry's check word, and an entry is
// only ever ended by an atomic compare-and-clear of its check and `seen`
// (one aligned 64-bit word): a way a CPU rewrote or a flow a packet
// stamped since the snapshot is left alone.
//
// A table maps all of lb_conntrack, or a window of its buckets: the kernel
// maps every page of an mmapable ARRAY at mmap time, so the process's RSS
// counts what it maps while mapped (~100 MB at a 1M-flow limit); the
// collector walks window by window to keep that small.
#ifndef WEFT_DATAPLANE_LB_CONNTRACK_TABLE_H
#define WEFT_DATAPLANE_LB_CONNTRACK_TABLE_H

#include <cstddef>
#include <cstdint>

extern "C" {
#include "ebpf/lb_abi.h"
}

namespace weft::dataplane::lb {

// Buckets for a conntrack limit of `entries` flows: twice as many ways as
// flows, so that at the limit a bucket of LB_CT_WAYS holds ~2 flows on
// average and a new flow rarely finds its bucket full (then the bucket's
// least recently seen flow loses its entry, counted as LB_STAT_CT_EVICTED).
std::uint32_t conntrack_buckets(std::uint32_t entries);

// A consistent copy of one way.
struct ConntrackSnapshot {
  enum class State { empty, torn, live };
  State state = State::empty;
  lb_ct_key key{};
  lb_ct_value value{};
  std::uint64_t stamp = 0;  // check | seen << 32 as read: what end_if_unchanged compares
};

class ConntrackTable {
 public:
  // Maps `buckets` buckets of lb_conntrack (`fd`) and their tags
  // (lb_ct_tags, `tags_fd`) for the object's life.
  ConntrackTable(int fd, int tags_fd, std::uint32_t buckets);
  // The same, sized from lb_conntrack's max_entries (say, a pinned map of
  // a running agent).
  ConntrackTable(int fd, int tags_fd);
  // Only buckets first .. first + count - 1 of the `buckets` (first a
  // multiple of window_alignment()).
  ConntrackTable(int fd, int tags_fd, std::uint32_t buckets, std::uint32_t first, std::uint32_t count);
  ConntrackTable(const ConntrackTable&) = delete;
  ConntrackTable& operator=(const ConntrackTable&) = delete;
  ~ConntrackTable();

  // Buckets a window starts at a multiple of: its table and tags start on
  // a page (512 with 4 KiB pages).
  static std::uint32_t window_alignment();
  // The two buckets of `key` in a table of `buckets` (lb_ct_place_of).
  static void choices(const lb_ct_key& key, std::uint32_t buckets, std::uint32_t out[LB_CT_CHOICES]);

  std::uint32_t buckets() const { return buckets_; }
  std::uint32_t first() const { return first_; }
  std::uint32_t count() const { return count_; }
  bool holds(std::uint32_t bucket) const { return bucket >= first_ && bucket - first_ < count_; }
  // `bucket` must be one this table holds.
  lb_ct_entry& way(std::uint32_t bucket, std::uint32_t way) const {
    return table_[bucket - first_].way[way];
  }

  static ConntrackSnapshot read(const lb_ct_entry& entry);
  // Clears the entry if its check and `seen` are still `stamp`, and then
  // frees its way's tag.
  bool end_if_unchanged(std::uint32_t bucket, std::uint32_t way, std::uint64_t stamp);

  // The bucket and way of the live entry of `key`, if any, among the
  // key's buckets this table holds.
  bool find(const lb_ct_key& key, std::uint32_t* bucket, std::uint32_t* way) const;
  // Writes an entry as the programs do (the way of the same key, else an
  // empty one, else the least recently seen); for taking over the flows of
  // older maps before any program of this build runs. False when the
  // bucket's live flows are all more recent than this one. Needs the
  // whole table (std::logic_error on a window).
  bool insert(const lb_ct_key& key, const lb_ct_value& value);

 private:
  std::uint8_t* tag(std::uint32_t bucket, std::uint32_t way) const {
    return tags_ + std::size_t{bucket - first_} * LB_CT_TAGS_STRIDE + way;
  }

  lb_ct_bucket* table_ = nullptr;
  std::size_t bytes_ = 0;
  std::uint8_t* tags_ = nullptr;  // LB_CT_WAYS a bucket, LB_CT_TAGS_STRIDE bytes apart
  std::size_t tag_bytes_ = 0;
  std::uint32_t buckets_ = 0;
  std::uint32_t first_ = 0, count_ = 0;
};

std::uint32_t conntrack_key_hash(const lb_ct_key& key);

}  // namespace weft::dataplane::lb

#endif
