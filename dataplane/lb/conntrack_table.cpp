#include "dataplane/lb/conntrack_table.h"

#include <bpf/bpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>

#include "dataplane/lb/bpf_error.h"

namespace weft::dataplane::lb {
namespace {

static_assert(offsetof(lb_ct_entry, check) % 8 == 0 && sizeof(lb_ct_entry) % 8 == 0,
              "check and seen form one aligned 64-bit word in every way");
static_assert(offsetof(lb_ct_entry, value) + offsetof(lb_ct_value, seen) ==
              offsetof(lb_ct_entry, check) + 4);

// The entry's check and seen as one word, read and written as the
// programs' 32-bit halves are (hence may_alias).
using AliasedWord = std::uint64_t __attribute__((may_alias));

AliasedWord* stamp_of(lb_ct_entry& entry) { return reinterpret_cast<AliasedWord*>(&entry.check); }

std::uint32_t check_of(std::uint64_t stamp) { return static_cast<std::uint32_t>(stamp); }
std::uint32_t seen_of(std::uint64_t stamp) { return static_cast<std::uint32_t>(stamp >> 32); }

}  // namespace

std::uint32_t conntrack_buckets(std::uint32_t entries) {
  const std::uint64_t ways = std::uint64_t{entries} * 2;
  const std::uint64_t buckets = (ways + LB_CT_WAYS - 1) / LB_CT_WAYS;
  return static_cast<std::uint32_t>(buckets == 0 ? 1 : buckets);
}

std::uint32_t conntrack_key_hash(const lb_ct_key& key) {
  std::uint32_t word[4];
  static_assert(sizeof word == sizeof key);
  std::memcpy(word, &key, sizeof word);
  return lb_ct_hash(word[0], word[1], word[2], word[3]);
}

ConntrackTable::ConntrackTable(int fd, int tags_fd, std::uint32_t buckets)
    : ConntrackTable(fd, tags_fd, buckets, 0, buckets) {}

std::uint32_t ConntrackTable::window_alignment() {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t table = page / std::gcd(page, sizeof(lb_ct_bucket));
  const std::size_t tags = page / std::gcd(page, std::size_t{LB_CT_TAGS_STRIDE});
  return static_cast<std::uint32_t>(std::lcm(table, tags));
}

void ConntrackTable::choices(const lb_ct_key& key, std::uint32_t buckets, std::uint32_t out[LB_CT_CHOICES]) {
  const std::uint32_t hash = conntrack_key_hash(key);
  out[0] = lb_ct_bucket_index(hash, buckets);
  out[1] = lb_ct_bucket_index(lb_ct_hash2(hash), buckets);
}

ConntrackTable::ConntrackTable(int fd, int tags_fd, std::uint32_t buckets, std::uint32_t first,
                               std::uint32_t count)
    : buckets_(buckets), first_(first), count_(count) {
  static_assert(sizeof(std::uint32_t) == LB_CT_WAYS, "a tag byte per way, a __u32 per bucket");
  static_assert(LB_CT_TAGS_STRIDE == (sizeof(std::uint32_t) + 7) / 8 * 8, "an ARRAY element's size");
  if (first % window_alignment() != 0 || first > buckets || count > buckets - first) {
    throw std::invalid_argument("conntrack window " + std::to_string(first) + "+" + std::to_string(count) +
                                " of " + std::to_string(buckets) + " buckets");
  }
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  bytes_ = (std::size_t{count} * sizeof(lb_ct_bucket) + page - 1) / page * page;
  tag_bytes_ = (std::size_t{count} * LB_CT_TAGS_STRIDE + page - 1) / page * page;
  if (bytes_ == 0) bytes_ = page;
  if (tag_bytes_ == 0) tag_bytes_ = page;
  void* mem = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                   static_cast<off_t>(std::size_t{first} * sizeof(lb_ct_bucket)));
  if (mem == MAP_FAILED) throw BpfError(errno, "mmap map lb_conntrack");
  table_ = static_cast<lb_ct_bucket*>(mem);
  mem = mmap(nullptr, tag_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, tags_fd,
             static_cast<off_t>(std::size_t{first} * LB_CT_TAGS_STRIDE));
  if (mem == MAP_FAILED) {
    const int err = errno;
    munmap(table_, bytes_);
    throw BpfError(err, "mmap map lb_ct_tags");
  }
  tags_ = static_cast<std::uint8_t*>(mem);
}

namespace {

std::uint32_t buckets_of(int fd) {
  bpf_map_info info{};
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) throw BpfError(errno, "get info of map lb_conntrack");
  if (info.value_size != sizeof(lb_ct_bucket)) {
    throw BpfError(EINVAL, "map lb_conntrack is not a table of " + std::to_string(sizeof(lb_ct_bucket)) +
                               "-byte buckets (ABI version 8)");
  }
  return info.max_entries;
}

}  // namespace

ConntrackTable::ConntrackTable(int fd, int tags_fd) : ConntrackTable(fd, tags_fd, buckets_of(fd)) {}

ConntrackTable::~ConntrackTable() {
  munmap(table_, bytes_);
  munmap(tags_, tag_bytes_);
}

ConntrackSnapshot ConntrackTable::read(const lb_ct_entry& entry) {
  ConntrackSnapshot snap;
  lb_ct_entry& way = const_cast<lb_ct_entry&>(entry);
  snap.stamp = __atomic_load_n(stamp_of(way), __ATOMIC_ACQUIRE);
  if (check_of(snap.stamp) == 0) return snap;
  std::memcpy(&snap.key, &entry.key, sizeof snap.key);
  std::memcpy(&snap.value, &entry.value, sizeof snap.value);
  std::atomic_thread_fence(std::memory_order_acquire);
  snap.value.seen = seen_of(snap.stamp);
  const std::uint32_t check = lb_ct_check(conntrack_key_hash(snap.key), snap.value.backend_id,
                                          snap.value.nat_addr, snap.value.service_id);
  // Fields read before or after a writer's check store disagree with it.
  const bool same = check_of(__atomic_load_n(stamp_of(way), __ATOMIC_ACQUIRE)) == check_of(snap.stamp);
  snap.state = check == check_of(snap.stamp) && same ? ConntrackSnapshot::State::live
                                                     : ConntrackSnapshot::State::torn;
  return snap;
}

// A program takes a free way by setting its tag (ebpf/conntrack.h), so
// none takes this one before the tag is cleared, but for a full bucket's
// victim (taken without a claim, its tag stored after its check). So the
// tag is cleared by a compare-and-swap from the tag read before the way's
// swap: a victim's writer that took the way in between keeps its tag
// (unless it is the same byte: 1 in 255, as a program's clear). A tag read
// before the swap is the ended entry's: a writer that changed it since
// changed the check too, and the swap fails.
bool ConntrackTable::end_if_unchanged(std::uint32_t bucket, std::uint32_t way, std::uint64_t stamp) {
  std::uint8_t* const tag_byte = tag(bucket, way);
  std::uint8_t held = __atomic_load_n(tag_byte, __ATOMIC_ACQUIRE);
  if (!__atomic_compare_exchange_n(stamp_of(this->way(bucket, way)), &stamp, std::uint64_t{0},
                                   false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    return false;
  }
  // x86 makes this byte's locked swap atomic with the programs' swaps of
  // the 32-bit tag word around it.
  __atomic_compare_exchange_n(tag_byte, &held, std::uint8_t{0}, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
  return true;
}

bool ConntrackTable::find(const lb_ct_key& key, std::uint32_t* bucket, std::uint32_t* way) const {
  std::uint32_t places[LB_CT_CHOICES];
  choices(key, buckets_, places);
  for (const std::uint32_t index : places) {
    if (!holds(index)) continue;
    for (std::uint32_t w = 0; w < LB_CT_WAYS; ++w) {
      const lb_ct_entry& entry = this->way(index, w);
      if (std::memcmp(&entry.key, &key, sizeof key) != 0) continue;
      if (read(entry).state == ConntrackSnapshot::State::live) {
        *bucket = index;
        *way = w;
        return true;
      }
    }
  }
  return false;
}

// As lb_ct_insert in ebpf/conntrack.h.
bool ConntrackTable::insert(const lb_ct_key& key, const lb_ct_value& value) {
  if (first_ != 0 || count_ != buckets_) throw std::logic_error("ConntrackTable::insert on a window");
  const std::uint32_t hash = conntrack_key_hash(key);
  const std::uint32_t choices[LB_CT_CHOICES] = {lb_ct_bucket_index(hash, buckets_),
                                                lb_ct_bucket_index(lb_ct_hash2(hash), buckets_)};
  std::uint32_t victim_bucket = 0, victim_way = 0;
  bool found = find(key, &victim_bucket, &victim_way);
  if (!found) {
    int most_free = 0;
    for (const std::uint32_t index : choices) {
      int free = 0;
      std::uint32_t first_free = 0;
      for (std::uint32_t w = LB_CT_WAYS; w-- > 0;) {
        if (__atomic_load_n(tag(index, w), __ATOMIC_ACQUIRE) == 0) {
          ++free;
          first_free = w;
        }
      }
      if (free > most_free) {
        most_free = free;
        victim_bucket = index;
        victim_way = first_free;
        found = true;
      }
    }
  }
  if (!found) {
    std::int32_t oldest_age = 0;
    for (const std::uint32_t index : choices) {
      for (std::uint32_t w = 0; w < LB_CT_WAYS; ++w) {
        const ConntrackSnapshot snap = read(this->way(index, w));
        const auto age = static_cast<std::int32_t>(value.seen - snap.value.seen);
        if (snap.state != ConntrackSnapshot::State::live || age > oldest_age) {
          victim_bucket = index;
          victim_way = w;
          found = true;
          if (snap.state != ConntrackSnapshot::State::live) break;
          oldest_age = age;
        }
      }
    }
  }
  if (!found) return false;
  lb_ct_entry& victim = this->way(victim_bucket, victim_way);
  std::memcpy(&victim.key, &key, sizeof key);
  std::memcpy(&victim.value, &value, sizeof value);
  const std::uint32_t check = lb_ct_check(hash, value.backend_id, value.nat_addr, value.service_id);
  __atomic_store_n(stamp_of(victim), std::uint64_t{check} | std::uint64_t{value.seen} << 32,
                   __ATOMIC_RELEASE);
  __atomic_store_n(tag(victim_bucket, victim_way), lb_ct_tag(hash),
                   __ATOMIC_RELEASE);
  return true;
}

}  // namespace weft::dataplane::lb
