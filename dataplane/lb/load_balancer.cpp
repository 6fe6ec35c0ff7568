#include "dataplane/lb/load_balancer.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <cstddef>
#include <cstring>
#include <map>
#include <optional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

#include "dataplane/lb/conntrack_table.h"
#include "dataplane/unique_fd.h"

extern "C" {
#include "ebpf/lb_abi.h"
#include "ebpf/lb_hash.h"
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "lb_tc.skel.h"
#pragma GCC diagnostic pop

namespace weft::dataplane::lb {
namespace {

constexpr const char* kMapNames[] = {
    "lb_vips",     "lb_vip_filter",       "lb_services",  "lb_maglev", "lb_maglev_index",
    "lb_backends", "lb_backend_counters", "lb_conntrack", "lb_config", "lb_stats", "lb_rev_nat",
    "lb_rev_nat_slots", "lb_ct_tags"};

// Pinned maps of this ABI version, or of the ones before it that this one
// takes over as they are (see LB_ABI_VERSION_ADOPTABLE in ebpf/lb_abi.h).
bool abi_version_usable(std::uint32_t version) {
  return version == 0 ||
         (version >= LB_ABI_VERSION_ADOPTABLE_OLDEST && version <= LB_ABI_VERSION);
}

// Maps of ABI versions before 8 whose pins this build replaces, their
// content taken over (see LB_ABI_VERSION in ebpf/lb_abi.h): the LRU hash
// conntrack (flows copied into the table) and lb_stats (one counter more
// now; the counts are added). While the takeover runs they are pinned
// under kSetAsideSuffix, so a start cut short finds them there again.
constexpr const char* kReplacedMapNames[] = {"lb_conntrack", "lb_stats"};
constexpr const char* kSetAsideSuffix = "_abi7";

// A conntrack value of ABI versions 5 to 7 (the key kept its layout).
struct LegacyCtValue {
  std::uint64_t last_seen_ns;
  std::uint32_t backend_id;
  std::uint32_t nat_addr;
  std::uint32_t service_id;
  std::uint32_t frontend_epoch;
  std::uint32_t syn_seq;
  std::uint8_t flags;
  std::uint8_t pad;
  std::uint16_t syn_len;
};
static_assert(sizeof(LegacyCtValue) == 32);

std::uint32_t maglev_pool_slots(const Limits& limits) {
  if (limits.maglev_pool_slots != 0) return limits.maglev_pool_slots;
  const std::uint64_t slots = static_cast<std::uint64_t>(limits.max_services) *
                              std::min<std::uint32_t>(limits.maglev_table_size, 1021);
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(slots, LB_MAGLEV_SIZE_MASK));
}

// lb_vip_filter's size: 32 bits per possible VIP address (at most ~3% of
// other addresses then pass it and pay the lb_vips lookup), a power of two.
std::uint32_t vip_filter_log2_bits(std::uint32_t max_frontends) {
  const std::uint64_t wanted = 32ULL * (static_cast<std::uint64_t>(max_frontends) + 1);
  std::uint32_t log2 = 12;  // 512 bytes at least
  while (log2 < 26 && (1ULL << log2) < wanted) ++log2;
  return log2;
}

// lb_rev_nat_slots' size (ebpf/lb_abi.h): at least two slots per backend
// IP, so that few IPs share one (and so ask lb_rev_nat); a power of two.
// The IPs of one /16 never share one (the hash is a bijection on the two
// octets that vary there).
std::uint32_t rev_nat_slots_log2(std::uint32_t max_backends) {
  const std::uint64_t wanted = 2ULL * max_backends;
  std::uint32_t log2 = 6;
  while (log2 < 30 && (1ULL << log2) < wanted) ++log2;
  return log2;
}

// Our tc filters on clsact; fixed so that a restarted agent replaces its own
// filters instead of stacking new ones.
constexpr std::uint32_t kTcHandle = 0x77ef;
constexpr std::uint32_t kTcPriority = 1;

int libbpf_log(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof line, format, args);
  std::string_view text(line, n > 0 ? std::min<std::size_t>(n, sizeof line - 1) : 0);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  if (text.starts_with("libbpf: ")) text.remove_prefix(8);
  // Netlink's extended acks for expected outcomes (clsact already there, no
  // filter to detach) come as warnings; our own errors carry the errno.
  if (level == LIBBPF_WARN && text.find("Kernel error message") == std::string_view::npos) {
    spdlog::warn("libbpf: {}", text);
  } else {
    spdlog::debug("libbpf: {}", text);
  }
  return 0;
}

void install_libbpf_log() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(libbpf_log); });
}

lb_service_key service_key(const Frontend& frontend) {
  lb_service_key key{};
  key.vip = htonl(frontend.vip);
  key.port = htons(frontend.port);
  key.proto = static_cast<std::uint8_t>(frontend.proto);
  return key;
}

Frontend frontend_of(const lb_service_key& key) {
  return Frontend{ntohl(key.vip), ntohs(key.port), static_cast<Protocol>(key.proto)};
}

std::uint64_t ns(std::chrono::nanoseconds d) { return static_cast<std::uint64_t>(d.count()); }

// Conntrack's `seen` compares modulo 2^32 units (lb_abi.h): longer timeouts
// are cut to what it can tell (~24 days).
std::uint64_t ct_timeout_ns(std::chrono::nanoseconds d) {
  return std::min<std::uint64_t>(ns(d), LB_CT_MAX_TIMEOUT_NS - (std::uint64_t{1} << LB_CT_SEEN_SHIFT));
}

void check_pinned(const std::filesystem::path& path, const char* name, std::uint32_t max_entries,
                  std::optional<std::uint32_t> map_flags = std::nullopt) {
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd) {
    if (errno == ENOENT) return;
    throw BpfError(errno, std::string("open pinned map ") + path.string());
  }
  bpf_map_info info{};
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) {
    throw BpfError(errno, std::string("get info of pinned map ") + name);
  }
  if (info.max_entries != max_entries) {
    throw BpfError(EINVAL, std::string("pinned map ") + name + " has " +
                               std::to_string(info.max_entries) + " entries, asked for " +
                               std::to_string(max_entries) + " (remove the pins to resize)");
  }
  if (map_flags && info.map_flags != *map_flags) {
    throw BpfError(EINVAL, std::string("pinned map ") + name + " has map flags " +
                               std::to_string(info.map_flags) + ", asked for " +
                               std::to_string(*map_flags) +
                               " (per-CPU LRU lists or not; remove the pins to change)");
  }
}

// Maps pinned by another ABI version may not even load (libbpf refuses a
// pinned map whose value size changed), so their version is checked first
// (lb_config keeps the place of its first fields across versions for this),
// and the Maglev size with it: the pool's size follows from it.
std::uint32_t check_pinned_config(const std::filesystem::path& pin_dir, const Limits& limits) {
  UniqueFd fd(bpf_obj_get((pin_dir / "lb_config").c_str()));
  if (!fd) return 0;
  bpf_map_info info{};
  std::uint32_t info_len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &info_len) != 0) {
    throw BpfError(errno, "get info of pinned map lb_config");
  }
  if (info.value_size < offsetof(lb_config, abi_version) + sizeof(std::uint32_t)) {
    throw BpfError(EINVAL, "pinned map lb_config under " + pin_dir.string() +
                               " is not weft's (remove the pins)");
  }
  std::vector<std::uint8_t> value(std::max<std::size_t>(info.value_size, sizeof(lb_config)));
  std::uint32_t zero = 0;
  if (bpf_map_lookup_elem(fd.get(), &zero, value.data()) != 0) {
    throw BpfError(errno, "read pinned map lb_config");
  }
  lb_config existing{};
  std::memcpy(&existing, value.data(), sizeof existing);
  if (!abi_version_usable(existing.abi_version)) {
    throw BpfError(EINVAL, "maps pinned under " + pin_dir.string() + " are of ABI version " +
                               std::to_string(existing.abi_version) + ", this build uses " +
                               std::to_string(LB_ABI_VERSION) + " (remove the pins)");
  }
  if (existing.abi_version != 0 && existing.maglev_size != limits.maglev_table_size) {
    throw BpfError(EINVAL, "Maglev tables pinned under " + pin_dir.string() + " have up to " +
                               std::to_string(existing.maglev_size) + " slots, asked for " +
                               std::to_string(limits.maglev_table_size) + " (remove the pins)");
  }
  return existing.abi_version;
}

// Pins `name` under its set-aside name instead (kReplacedMapNames), unless
// that is done already.
void set_aside(const std::filesystem::path& pin_dir, const char* name) {
  const std::filesystem::path path = pin_dir / name;
  const std::filesystem::path aside = pin_dir / (std::string(name) + kSetAsideSuffix);
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd) {
    if (errno == ENOENT) return;
    throw BpfError(errno, "open pinned map " + path.string());
  }
  if (bpf_obj_pin(fd.get(), aside.c_str()) != 0 && errno != EEXIST) {
    throw BpfError(errno, "pin " + aside.string());
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw BpfError(errno, "unpin " + path.string());
}

// A BPF_F_MMAPABLE array mapped into our memory.
class MappedArray {
 public:
  MappedArray(int fd, std::size_t bytes, const char* name) : len_(bytes) {
    void* mem = mmap(nullptr, len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED) throw BpfError(errno, std::string("mmap map ") + name);
    mem_ = mem;
  }
  MappedArray(const MappedArray&) = delete;
  MappedArray& operator=(const MappedArray&) = delete;
  ~MappedArray() { munmap(mem_, len_); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(mem_);
  }

 private:
  void* mem_ = nullptr;
  std::size_t len_ = 0;
};

// A BPF_F_MMAPABLE array whose pages are mapped only while written. The
// kernel maps the whole range of an mmap of a BPF array at once (its pages
// count in our RSS from then on), so the Maglev pool, sized for every
// service at its largest table, would sit in RSS in full from start; and
// mapped once written, the tables of 10 000 services put ~84 MB of the
// map's own kernel memory into the agent's RSS for nothing. Instead its
// address range is reserved, a chunk is mapped when a write first reaches
// it, and unmap_all() gives the chunks back once the writes are done
// (reads in between go through the bpf syscall). The owner is one thread
// (see LoadBalancer), so no pointer into a chunk outlives its mapping.
class LazyMappedArray {
 public:
  static constexpr std::size_t kChunkBytes = std::size_t{1} << 18;  // 256 KiB

  LazyMappedArray(int fd, std::size_t bytes, const char* name)
      : fd_(fd), name_(name), len_(page_align(bytes)), mapped_((len_ + kChunkBytes - 1) / kChunkBytes) {
    void* mem = mmap(nullptr, len_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) throw BpfError(errno, std::string("reserve address space for map ") + name);
    mem_ = static_cast<std::byte*>(mem);
  }
  LazyMappedArray(const LazyMappedArray&) = delete;
  LazyMappedArray& operator=(const LazyMappedArray&) = delete;
  ~LazyMappedArray() { munmap(mem_, len_); }

  template <typename T>
  T* as() const {
    return reinterpret_cast<T*>(mem_);
  }
  // Maps the chunks holding bytes [offset, offset + bytes); throws when the
  // kernel refuses (nothing of the range is then promised).
  void ensure_mapped(std::size_t offset, std::size_t bytes) {
    if (bytes == 0) return;
    const std::size_t last = std::min(offset + bytes - 1, len_ - 1) / kChunkBytes;
    for (std::size_t chunk = offset / kChunkBytes; chunk <= last; ++chunk) {
      if (mapped_[chunk]) continue;
      const std::size_t start = chunk * kChunkBytes;
      const std::size_t n = std::min(kChunkBytes, len_ - start);
      void* at = mmap(mem_ + start, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd_,
                      static_cast<off_t>(start));
      if (at == MAP_FAILED) {
        const int err = errno;
        // MAP_FIXED may have replaced the reservation before failing.
        mmap(mem_ + start, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
        throw BpfError(err, std::string("mmap map ") + name_);
      }
      mapped_[chunk] = true;
    }
  }
  // Puts the reservation back over every mapped chunk: the map's pages
  // leave our RSS, the kernel keeps them.
  void unmap_all() noexcept {
    for (std::size_t chunk = 0; chunk < mapped_.size(); ++chunk) {
      if (!mapped_[chunk]) continue;
      const std::size_t start = chunk * kChunkBytes;
      const std::size_t n = std::min(kChunkBytes, len_ - start);
      void* at = mmap(mem_ + start, n, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
      // Should the kernel refuse, the chunk stays mapped and in use as before.
      if (at != MAP_FAILED) mapped_[chunk] = false;
    }
  }
  std::size_t mapped_bytes() const {
    std::size_t total = 0;
    for (std::size_t chunk = 0; chunk < mapped_.size(); ++chunk) {
      if (mapped_[chunk]) total += std::min(kChunkBytes, len_ - chunk * kChunkBytes);
    }
    return total;
  }

 private:
  static std::size_t page_align(std::size_t bytes) {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    return (bytes + page - 1) / page * page;
  }

  int fd_;
  const char* name_;
  std::byte* mem_ = nullptr;
  std::size_t len_ = 0;
  std::vector<bool> mapped_;
};

// lb_rev_nat_slots (ebpf/lb_abi.h) through mmap, and which backend IPs (in
// lb_rev_nat) land on each slot: how many, and the XOR of them, which is
// that IP when there is one, so no list per slot is kept.
class RevNatSlots {
 public:
  RevNatSlots(int fd, std::uint32_t log2_slots)
      : shift_(32 - log2_slots),
        slots_(1u << log2_slots),
        mem_(fd, static_cast<std::size_t>(slots_) * sizeof(std::uint64_t), "lb_rev_nat_slots"),
        members_(slots_, 0),
        members_xor_(slots_, 0) {}

  std::uint32_t index(std::uint32_t ip) const { return lb_rev_nat_slot_index(ip, shift_); }
  std::uint32_t size() const { return slots_; }
  std::uint64_t get(std::uint32_t slot) const {
    return std::atomic_ref<std::uint64_t>(mem_.as<std::uint64_t>()[slot])
        .load(std::memory_order_acquire);
  }
  // One store: a program reads IP and VIP of one write.
  void set(std::uint32_t slot, std::uint64_t value) {
    if (get(slot) == value) return;
    std::atomic_ref<std::uint64_t>(mem_.as<std::uint64_t>()[slot])
        .store(value, std::memory_order_release);
  }
  void add(std::uint32_t ip) {
    const std::uint32_t slot = index(ip);
    ++members_[slot];
    members_xor_[slot] ^= ip;
  }
  void remove(std::uint32_t ip) {
    const std::uint32_t slot = index(ip);
    --members_[slot];
    members_xor_[slot] ^= ip;
  }
  std::uint32_t members(std::uint32_t slot) const { return members_[slot]; }
  std::uint32_t sole_member(std::uint32_t slot) const { return members_xor_[slot]; }

 private:
  std::uint32_t shift_;
  std::uint32_t slots_;
  MappedArray mem_;
  std::vector<std::uint32_t> members_;
  std::vector<std::uint32_t> members_xor_;
};

// The Maglev table pool (lb_maglev) and its index (lb_maglev_index), see
// ebpf/lb_abi.h: runs of slots handed out first-fit; a run given back is
// retired, and becomes free only after an RCU grace period, when no program
// that read the old descriptor can still be reading the run.
class MaglevPool {
 public:
  MaglevPool(int pool_fd, std::uint32_t slots, int index_fd, std::uint32_t services)
      : slots_(slots),
        services_(services),
        pool_(pool_fd, static_cast<std::size_t>(slots) * sizeof(lb_maglev_slot), "lb_maglev"),
        index_(index_fd, static_cast<std::size_t>(services) * sizeof(std::uint64_t),
               "lb_maglev_index") {
    free_.emplace(0, slots);
  }

  std::uint64_t ref(std::uint32_t service) const {
    return std::atomic_ref<std::uint64_t>(index_.as<std::uint64_t>()[service])
        .load(std::memory_order_acquire);
  }
  // Publishes a table: everything written to its run before is seen by a
  // program that reads this descriptor.
  void set_ref(std::uint32_t service, std::uint64_t value) {
    std::atomic_ref<std::uint64_t>(index_.as<std::uint64_t>()[service])
        .store(value, std::memory_order_release);
  }
  // The run [base, base + len) mapped for writing, until unmap().
  lb_maglev_slot* writable(std::uint32_t base, std::uint32_t len) {
    pool_.ensure_mapped(static_cast<std::size_t>(base) * sizeof(lb_maglev_slot),
                        static_cast<std::size_t>(len) * sizeof(lb_maglev_slot));
    return pool_.as<lb_maglev_slot>() + base;
  }
  std::uint32_t size() const { return slots_; }

  // Slots that free() and a grace period can give.
  std::uint64_t available() const { return free_slots_total() + retired_total_; }

  std::uint32_t allocate(std::uint32_t len) {
    if (auto base = first_fit(len)) return mapped(*base, len);
    if (!retired_.empty()) {
      wait_for_readers();
      for (auto [base, n] : retired_) give_back(base, n);
      retired_.clear();
      retired_total_ = 0;
      if (auto base = first_fit(len)) return mapped(*base, len);
    }
    throw BpfError(ENOSPC, "Maglev table pool full: no run of " + std::to_string(len) +
                               " free slots in " + std::to_string(slots_) +
                               " (raise the pool size)");
  }
  void retire(std::uint32_t base, std::uint32_t len) {
    retired_.emplace_back(base, len);
    retired_total_ += len;
  }
  // A run found in use in the pinned index (restart).
  void claim(std::uint32_t service, std::uint32_t base, std::uint32_t len) {
    auto it = free_.upper_bound(base);
    if (len == 0 || it == free_.begin() || base + static_cast<std::uint64_t>(len) > slots_) {
      throw BpfError(EINVAL, "Maglev table of service " + std::to_string(service) +
                                 " lies outside the pool or overlaps another");
    }
    --it;
    const auto [free_base, free_len] = *it;
    if (base + static_cast<std::uint64_t>(len) > free_base + static_cast<std::uint64_t>(free_len)) {
      throw BpfError(EINVAL, "Maglev table of service " + std::to_string(service) +
                                 " overlaps another");
    }
    free_.erase(it);
    if (base > free_base) free_.emplace(free_base, base - free_base);
    if (base + len < free_base + free_len) free_.emplace(base + len, free_base + free_len - base - len);
  }
  // Bytes of the pool mapped into this process.
  std::size_t mapped_bytes() const { return pool_.mapped_bytes(); }
  // Ends a round of writes: the pool's pages leave this process's RSS.
  void unmap() noexcept { pool_.unmap_all(); }

 private:
  // A run just taken from the free list, mapped; given back when it cannot be.
  std::uint32_t mapped(std::uint32_t base, std::uint32_t len) {
    try {
      pool_.ensure_mapped(static_cast<std::size_t>(base) * sizeof(lb_maglev_slot),
                          static_cast<std::size_t>(len) * sizeof(lb_maglev_slot));
    } catch (...) {
      give_back(base, len);
      throw;
    }
    return base;
  }
  std::optional<std::uint32_t> first_fit(std::uint32_t len) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < len) continue;
      const auto [base, n] = *it;
      free_.erase(it);
      if (n > len) free_.emplace(base + len, n - len);
      return base;
    }
    return std::nullopt;
  }
  void give_back(std::uint32_t base, std::uint32_t len) {
    auto next = free_.lower_bound(base);
    if (next != free_.end() && base + len == next->first) {
      len += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == base) {
        prev->second += len;
        return;
      }
    }
    free_.emplace(base, len);
  }
  std::uint64_t free_slots_total() const {
    std::uint64_t total = 0;
    for (const auto& [base, n] : free_) total += n;
    return total;
  }
  // tc programs run inside RCU read-side sections: once a grace period has
  // passed, none still holds a descriptor read before the runs retired.
  static void wait_for_readers() {
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0) {
      throw BpfError(errno, "membarrier (wait for an RCU grace period)");
    }
  }

  std::uint32_t slots_;
  std::uint32_t services_;
  LazyMappedArray pool_;
  MappedArray index_;
  std::map<std::uint32_t, std::uint32_t> free_;  // base -> length
  std::vector<std::pair<std::uint32_t, std::uint32_t>> retired_;
  std::uint64_t retired_total_ = 0;
};

}  // namespace

Mac mac_from_ip(std::uint32_t ip) {
  return Mac{0x02,
             0x42,
             static_cast<std::uint8_t>(ip >> 24),
             static_cast<std::uint8_t>(ip >> 16),
             static_cast<std::uint8_t>(ip >> 8),
             static_cast<std::uint8_t>(ip)};
}

struct LoadBalancer::Impl {
  struct SkelDeleter {
    void operator()(lb_tc* skel) const { lb_tc__destroy(skel); }
  };
  struct ServiceState {
    std::uint32_t frontends = 0;
    std::vector<std::uint32_t> backends;       // owned, any state but free
    std::vector<std::uint32_t> active_in_table;  // sorted
    // (VIP (network order), its frontends here), by VIP: usually one, in a
    // 32-byte block where a map took a 48-byte header and a 48-byte node.
    std::vector<std::pair<std::uint32_t, std::uint32_t>> vips;
  };
  static std::uint32_t& vip_count(ServiceState& service, std::uint32_t vip) {
    auto it = std::lower_bound(service.vips.begin(), service.vips.end(), vip,
                               [](const auto& entry, std::uint32_t v) { return entry.first < v; });
    if (it == service.vips.end() || it->first != vip) it = service.vips.insert(it, {vip, 0});
    return it->second;
  }
  // A backend IP's entry of lb_rev_nat as written, and the backend ids
  // (any state but free) with that IP: usually one, more when an address
  // comes back as a new backend or an endpoint serves several services.
  // The others than the first are in rev_nat_more, so that the usual entry
  // is 12 bytes in a 32-byte node (100 000 backend IPs: 3.2 MB less than
  // with a vector in every entry).
  struct RevNat {
    lb_rev_nat_value value{};
    std::uint32_t first_id = 0;
  };
  struct Plan {
    std::uint32_t service_id = 0;
    std::vector<std::uint32_t> listed;  // sorted
    std::vector<std::uint32_t> active;  // sorted
  };

  std::filesystem::path pin_dir;
  Limits limits;
  std::unique_ptr<lb_tc, SkelDeleter> skel;
  int ncpus = 1;
  int vips_fd = -1, services_fd = -1, maglev_fd = -1, maglev_index_fd = -1, backends_fd = -1,
      counters_fd = -1,
      conntrack_fd = -1, config_fd = -1, stats_fd = -1, rev_nat_fd = -1;
  std::uint32_t ct_buckets = 0;  // lb_conntrack's size
  int ct_tags_fd = -1;

  std::map<Frontend, std::uint32_t> frontends;
  std::unordered_map<std::uint32_t, std::uint32_t> vip_refs;  // VIP -> frontends on it
  std::unordered_map<std::uint32_t, ServiceState> services;
  std::vector<lb_backend> backends;  // mirror of lb_backends
  std::unordered_map<std::uint32_t, RevNat> rev_nat;  // backend IP (network order) -> lb_rev_nat
  // Backend ids with that IP besides RevNat::first_id; no entry: none.
  std::unordered_map<std::uint32_t, std::vector<std::uint32_t>> rev_nat_more;
  std::unique_ptr<RevNatSlots> rev_nat_slots;
  std::unique_ptr<MaglevPool> pool;
  Timeouts timeouts;
  std::uint32_t frontend_epoch = 0;  // lb_config.frontend_epoch, see lb_abi.h
  int vip_filter_fd = -1;
  std::uint32_t vip_filter_shift = 32;
  std::vector<std::uint64_t> vip_filter;  // mirror of lb_vip_filter
  std::unordered_map<std::uint32_t, std::uint32_t> vip_filter_refs;  // bit -> addresses on it

  void update(int fd, const char* name, const void* key, const void* value) {
    if (bpf_map_update_elem(fd, key, value, BPF_ANY) != 0) {
      throw BpfError(errno, std::string("update map ") + name);
    }
  }
  void erase(int fd, const char* name, const void* key) {
    if (bpf_map_delete_elem(fd, key) != 0 && errno != ENOENT) {
      throw BpfError(errno, std::string("delete from map ") + name);
    }
  }

  // An address's bit in lb_vip_filter: set before the address goes into
  // lb_vips, cleared after it left, so the filter never hides a VIP.
  void filter_add(std::uint32_t addr_net) {
    const std::uint32_t bit = lb_vip_filter_bit(addr_net, vip_filter_shift);
    if (vip_filter_refs[bit]++ > 0) return;
    write_filter_word(bit >> 6, vip_filter[bit >> 6] | (1ULL << (bit & 63)));
  }
  void filter_remove(std::uint32_t addr_net) {
    const std::uint32_t bit = lb_vip_filter_bit(addr_net, vip_filter_shift);
    auto it = vip_filter_refs.find(bit);
    if (it == vip_filter_refs.end() || --it->second > 0) return;
    vip_filter_refs.erase(it);
    write_filter_word(bit >> 6, vip_filter[bit >> 6] & ~(1ULL << (bit & 63)));
  }
  void write_filter_word(std::uint32_t word, std::uint64_t value) {
    update(vip_filter_fd, "lb_vip_filter", &word, &value);
    vip_filter[word] = value;
  }
  // The whole filter from the addresses in lb_vips (after load_state).
  void rebuild_filter() {
    vip_filter.assign(vip_filter.size(), 0);
    vip_filter_refs.clear();
    auto set = [&](std::uint32_t addr_net) {
      const std::uint32_t bit = lb_vip_filter_bit(addr_net, vip_filter_shift);
      vip_filter_refs[bit]++;
      vip_filter[bit >> 6] |= 1ULL << (bit & 63);
    };
    set(htonl(LB_HAIRPIN_ADDR_HOST));
    for (const auto& [vip, refs] : vip_refs) set(vip);
    std::vector<std::uint32_t> keys(vip_filter.size());
    for (std::uint32_t i = 0; i < keys.size(); ++i) keys[i] = i;
    std::uint32_t count = static_cast<std::uint32_t>(keys.size());
    bpf_map_batch_opts opts{};
    opts.sz = sizeof opts;
    if (bpf_map_update_batch(vip_filter_fd, keys.data(), vip_filter.data(), &count, &opts) != 0) {
      throw BpfError(errno, "write map lb_vip_filter");
    }
  }

  // A frontend was added, moved or removed (and is in lb_services): tracked
  // flows check their frontend again on their next packet.
  void frontends_changed() {
    ++frontend_epoch;
    write_config(timeouts);
  }

  // The maps set aside from an older ABI version (kReplacedMapNames): their
  // flows and counts are copied into this version's maps, before any of
  // this build's programs is attached, and their pins go. Copying again
  // after a start cut short writes the same entries again.
  void take_over_set_aside() {
    const std::filesystem::path old_ct = pin_dir / (std::string("lb_conntrack") + kSetAsideSuffix);
    if (UniqueFd fd(bpf_obj_get(old_ct.c_str())); fd) {
      ConntrackTable table(conntrack_fd, ct_tags_fd, ct_buckets);
      lb_ct_key key{}, next{};
      std::uint64_t copied = 0, lost = 0;
      bool first = true;
      while (bpf_map_get_next_key(fd.get(), first ? nullptr : &key, &next) == 0) {
        first = false;
        key = next;
        LegacyCtValue old{};
        if (bpf_map_lookup_elem(fd.get(), &key, &old) != 0) continue;  // evicted meanwhile
        lb_ct_value value{};
        value.seen = static_cast<std::uint32_t>(old.last_seen_ns >> LB_CT_SEEN_SHIFT);
        value.backend_id = old.backend_id;
        value.nat_addr = old.nat_addr;
        value.service_id = old.service_id;
        value.frontend_epoch = old.frontend_epoch;
        value.syn_seq = old.syn_seq;
        value.flags = old.flags;
        value.syn_len = old.syn_len;
        if (table.insert(key, value)) {
          ++copied;
        } else {
          ++lost;
        }
      }
      spdlog::info("load balancer: {} conntrack entries taken over ({} lost to full buckets)", copied,
                   lost);
      if (::unlink(old_ct.c_str()) != 0 && errno != ENOENT) throw BpfError(errno, "unpin " + old_ct.string());
    }
    const std::filesystem::path old_stats = pin_dir / (std::string("lb_stats") + kSetAsideSuffix);
    if (UniqueFd fd(bpf_obj_get(old_stats.c_str())); fd) {
      bpf_map_info info{};
      std::uint32_t len = sizeof info;
      if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) throw BpfError(errno, "get info of map lb_stats");
      std::vector<std::uint64_t> old(static_cast<std::size_t>(ncpus)), now(old.size());
      for (std::uint32_t stat = 0; stat < std::min<std::uint32_t>(info.max_entries, LB_STAT_MAX); ++stat) {
        if (bpf_map_lookup_elem(fd.get(), &stat, old.data()) != 0) continue;
        if (bpf_map_lookup_elem(stats_fd, &stat, now.data()) != 0) continue;
        for (std::size_t cpu = 0; cpu < old.size(); ++cpu) now[cpu] += old[cpu];
        update(stats_fd, "lb_stats", &stat, now.data());
      }
      if (::unlink(old_stats.c_str()) != 0 && errno != ENOENT) {
        throw BpfError(errno, "unpin " + old_stats.string());
      }
    }
  }

  void write_config(const Timeouts& t) {
    timeouts = t;
    lb_config cfg{};
    cfg.tcp_syn_timeout_ns = ct_timeout_ns(t.tcp_syn);
    cfg.tcp_established_timeout_ns = ct_timeout_ns(t.tcp_established);
    cfg.tcp_closing_timeout_ns = ct_timeout_ns(t.tcp_closing);
    cfg.udp_timeout_ns = ct_timeout_ns(t.udp);
    cfg.maglev_size = limits.maglev_table_size;
    cfg.abi_version = LB_ABI_VERSION;
    cfg.frontend_epoch = frontend_epoch;
    cfg.vip_filter_shift = vip_filter_shift;
    std::uint32_t zero = 0;
    update(config_fd, "lb_config", &zero, &cfg);
  }

  // lb_rev_nat (ebpf/conntrack.h): the VIP a backend IP's replies come
  // from. Written before a table or a frontend can send a flow to the
  // address through a VIP it did not have (a flow made while its backend's
  // IP maps to no VIP or to several keeps a REPLY entry, so its replies are
  // found either way), changed or removed after a VIP went. Backends marked
  // dead keep their entry while their service is there, for the replies of
  // flows not yet told; one no longer listed is brought up to date the
  // next time its id or address changes (its entry can only name a VIP of
  // its service's, and a reply is reverse-NATed only for a flow balanced to
  // that very backend).
  void rev_nat_track(std::uint32_t ip, std::uint32_t id) {
    RevNat& r = rev_nat[ip];
    if (r.first_id == id) return;
    if (r.first_id == 0) {
      r.first_id = id;
      return;
    }
    std::vector<std::uint32_t>& more = rev_nat_more[ip];
    if (std::find(more.begin(), more.end(), id) == more.end()) more.push_back(id);
  }
  void rev_nat_untrack(std::uint32_t ip, std::uint32_t id) {
    auto it = rev_nat.find(ip);
    if (it == rev_nat.end()) return;
    RevNat& r = it->second;
    auto more = rev_nat_more.find(ip);
    if (r.first_id == id) {
      r.first_id = 0;
      if (more != rev_nat_more.end()) {
        r.first_id = more->second.back();
        more->second.pop_back();
      }
    } else if (more != rev_nat_more.end()) {
      more->second.erase(std::remove(more->second.begin(), more->second.end(), id), more->second.end());
    }
    if (more != rev_nat_more.end() && more->second.empty()) rev_nat_more.erase(more);
  }
  // Calls f with every backend id tracked for `ip` (the first, then the rest).
  template <typename F>
  void for_each_rev_nat_id(std::uint32_t ip, const RevNat& r, F&& f) const {
    f(r.first_id);
    auto more = rev_nat_more.find(ip);
    if (more == rev_nat_more.end()) return;
    for (std::uint32_t id : more->second) f(id);
  }
  lb_rev_nat_value rev_nat_wanted(std::uint32_t ip, const RevNat& r) const {
    // Streamed (no allocation: an agent's start computes ~100 000): the
    // first VIP, whether there are others, the least, and whether the one
    // written so far is among them.
    std::uint32_t first = 0, least = 0;
    bool several = false, has_current = false;
    auto add_vips_of = [&](std::uint32_t id) {
      if (id == 0 || id >= backends.size()) return;
      const lb_backend& b = backends[id];
      if (b.state == LB_BACKEND_FREE || b.ip != ip) return;
      auto service = services.find(b.service_id);
      if (service == services.end()) return;
      for (const auto& [vip, count] : service->second.vips) {
        if (first == 0) {
          first = least = vip;
        } else if (vip != first) {
          several = true;
          least = std::min(least, vip);
        }
        if (vip == r.value.vip) has_current = true;
      }
    };
    for_each_rev_nat_id(ip, r, add_vips_of);
    lb_rev_nat_value value{};
    value.vip = first;
    if (several) {
      // The one it had stays, for the flows made before (unpaired).
      value.flags = LB_REV_NAT_F_AMBIGUOUS;
      value.vip = has_current ? r.value.vip : least;
    }
    return value;
  }
  static bool ambiguous(const lb_rev_nat_value& value) {
    return (value.flags & LB_REV_NAT_F_AMBIGUOUS) != 0;
  }
  // The flags a backend with this IP carries (LB_BACKEND_F_PAIRED while the
  // IP is ambiguous in lb_rev_nat as written).
  std::uint8_t backend_flags_for(std::uint32_t ip) const {
    auto it = rev_nat.find(ip);
    return it != rev_nat.end() && ambiguous(it->second.value) ? LB_BACKEND_F_PAIRED : 0;
  }
  // Gives every backend with this IP the flags `paired` asks for.
  void mark_backends(const RevNat& r, std::uint32_t ip, bool paired) {
    auto mark = [&](std::uint32_t id) {
      if (id == 0 || id >= backends.size()) return;
      lb_backend value = backends[id];
      if (value.state == LB_BACKEND_FREE || value.ip != ip) return;
      const std::uint8_t flags = paired ? LB_BACKEND_F_PAIRED : 0;
      if (value.flags == flags) return;
      value.flags = flags;
      write_backend(id, value);
    };
    for_each_rev_nat_id(ip, r, mark);
  }
  // lb_rev_nat's entry for `ip` as written: its slot's members follow
  // (an IP is a member while it has an entry).
  void set_rev_nat_value(std::uint32_t ip, RevNat& r, const lb_rev_nat_value& value) {
    const bool was = r.value.vip != 0, is = value.vip != 0;
    r.value = value;
    if (was && !is) rev_nat_slots->remove(ip);
    if (!was && is) rev_nat_slots->add(ip);
  }
  // What a slot says, from its members' lb_rev_nat entries as written.
  std::uint64_t rev_nat_slot_wanted(std::uint32_t slot) const {
    const std::uint32_t members = rev_nat_slots->members(slot);
    if (members == 0) return 0;
    if (members > 1) return LB_REV_NAT_SLOT_ASK;
    const std::uint32_t ip = rev_nat_slots->sole_member(slot);
    auto it = rev_nat.find(ip);
    if (it == rev_nat.end() || it->second.value.vip == 0 || ambiguous(it->second.value)) {
      return LB_REV_NAT_SLOT_ASK;
    }
    return lb_rev_nat_slot(ip, it->second.value.vip);
  }
  // Every slot as its members want it, at the end of load_state: a map
  // new to these pins (taken over from version 6 or 5), or slots left
  // asking by an agent killed in the middle of a change.
  void rebuild_rev_nat_slots() {
    for (std::uint32_t slot = 0; slot < rev_nat_slots->size(); ++slot) {
      rev_nat_slots->set(slot, rev_nat_slot_wanted(slot));
    }
  }

  // Brings lb_rev_nat (and the backends' LB_BACKEND_F_PAIRED, and
  // lb_rev_nat_slots) up to date for these IPs. A backend is marked before
  // its IP turns ambiguous, and unmarked after it no longer is: a flow made
  // unpaired can always be found from lb_rev_nat's VIP. The slot of an IP
  // whose entry changes asks lb_rev_nat while it changes, and says what it
  // says after.
  void sync_rev_nat(std::vector<std::uint32_t> ips) {
    std::sort(ips.begin(), ips.end());
    ips.erase(std::unique(ips.begin(), ips.end()), ips.end());
    std::vector<std::uint32_t> put_keys, erase_keys, unmark, slots;
    std::vector<lb_rev_nat_value> put_values;
    for (std::uint32_t ip : ips) {
      auto it = rev_nat.find(ip);
      if (it == rev_nat.end()) continue;
      RevNat& r = it->second;
      const lb_rev_nat_value wanted = rev_nat_wanted(ip, r);
      if (wanted.vip == r.value.vip && wanted.flags == r.value.flags) {
        if (wanted.vip == 0 && r.first_id == 0) rev_nat.erase(it);
        continue;
      }
      if (ambiguous(wanted) && !ambiguous(r.value)) mark_backends(r, ip, true);
      if (!ambiguous(wanted) && ambiguous(r.value)) unmark.push_back(ip);
      slots.push_back(rev_nat_slots->index(ip));
      if (wanted.vip == 0) {
        erase_keys.push_back(ip);
        continue;
      }
      put_keys.push_back(ip);
      put_values.push_back(wanted);
    }
    for (std::uint32_t slot : slots) rev_nat_slots->set(slot, LB_REV_NAT_SLOT_ASK);
    for (std::uint32_t ip : erase_keys) {
      erase(rev_nat_fd, "lb_rev_nat", &ip);
      set_rev_nat_value(ip, rev_nat[ip], lb_rev_nat_value{});
    }
    if (!put_keys.empty()) {
      bpf_map_batch_opts batch{};
      batch.sz = sizeof batch;
      std::uint32_t count = static_cast<std::uint32_t>(put_keys.size());
      const int err =
          bpf_map_update_batch(rev_nat_fd, put_keys.data(), put_values.data(), &count, &batch);
      for (std::uint32_t i = 0; i < count && i < put_keys.size(); ++i) {
        set_rev_nat_value(put_keys[i], rev_nat[put_keys[i]], put_values[i]);
      }
      // The slots asked stay so: lb_rev_nat answers for them.
      if (err != 0) throw BpfError(errno, "update map lb_rev_nat");
    }
    for (std::uint32_t slot : slots) rev_nat_slots->set(slot, rev_nat_slot_wanted(slot));
    for (std::uint32_t ip : unmark) {
      auto it = rev_nat.find(ip);
      if (it == rev_nat.end()) continue;
      mark_backends(it->second, ip, false);
      if (it->second.value.vip == 0 && it->second.first_id == 0) rev_nat.erase(it);
    }
    for (std::uint32_t ip : ips) {
      auto it = rev_nat.find(ip);
      if (it != rev_nat.end() && it->second.value.vip == 0 && it->second.first_id == 0) rev_nat.erase(it);
    }
  }
  std::vector<std::uint32_t> service_ips(std::uint32_t service_id) const {
    std::vector<std::uint32_t> ips;
    auto it = services.find(service_id);
    if (it == services.end()) return ips;
    for (std::uint32_t id : it->second.backends) ips.push_back(backends[id].ip);
    return ips;
  }
  // A frontend on `vip` was added to (before it is written) or removed from
  // (after) a service.
  void add_service_vip(std::uint32_t service_id, std::uint32_t vip) {
    if (vip_count(services[service_id], vip)++ == 0) sync_rev_nat(service_ips(service_id));
  }
  void remove_service_vip(std::uint32_t service_id, std::uint32_t vip) {
    auto service = services.find(service_id);
    if (service == services.end()) return;
    auto& vips = service->second.vips;
    auto it = std::find_if(vips.begin(), vips.end(), [vip](const auto& entry) { return entry.first == vip; });
    if (it == vips.end() || --it->second > 0) return;
    service->second.vips.erase(it);
    sync_rev_nat(service_ips(service_id));
  }

  // Rebuilds the in-memory index from maps left by an earlier process.
  void load_state() {
    backends.assign(limits.max_backends, lb_backend{});
    for (std::uint32_t id = 1; id < limits.max_backends; ++id) {
      if (bpf_map_lookup_elem(backends_fd, &id, &backends[id]) != 0) {
        throw BpfError(errno, "read map lb_backends");
      }
      const lb_backend& b = backends[id];
      if (b.state == LB_BACKEND_FREE) continue;
      rev_nat_track(b.ip, id);
      ServiceState& service = services[b.service_id];
      service.backends.push_back(id);
      if (b.state == LB_BACKEND_ACTIVE) service.active_in_table.push_back(id);
    }
    for (std::uint32_t id = 0; id < limits.max_services; ++id) {
      const std::uint64_t ref = pool->ref(id);
      if (lb_maglev_ref_size(ref) != 0) {
        pool->claim(id, lb_maglev_ref_base(ref), lb_maglev_ref_size(ref));
      }
    }
    lb_service_key key{}, next{};
    lb_service_key* prev = nullptr;
    while (bpf_map_get_next_key(services_fd, prev, &next) == 0) {
      lb_service_value value{};
      if (bpf_map_lookup_elem(services_fd, &next, &value) == 0) {
        frontends[frontend_of(next)] = value.service_id;
        services[value.service_id].frontends++;
        vip_count(services[value.service_id], next.vip)++;
        vip_refs[next.vip]++;
      }
      key = next;
      prev = &key;
    }
    // lb_rev_nat as left (empty when taken over from version 5), then as
    // the backends and frontends want it.
    std::uint32_t ip_key = 0, ip_next = 0;
    std::uint32_t* ip_prev = nullptr;
    std::vector<std::uint32_t> ips;
    while (bpf_map_get_next_key(rev_nat_fd, ip_prev, &ip_next) == 0) {
      lb_rev_nat_value value{};
      if (bpf_map_lookup_elem(rev_nat_fd, &ip_next, &value) == 0) {
        set_rev_nat_value(ip_next, rev_nat[ip_next], value);
      }
      ip_key = ip_next;
      ip_prev = &ip_key;
    }
    for (const auto& [ip, r] : rev_nat) ips.push_back(ip);
    sync_rev_nat(std::move(ips));
    // Marks as lb_rev_nat says (an agent killed between the two writes, or
    // maps of version 5, whose backends have none).
    for (const auto& [ip, r] : rev_nat) mark_backends(r, ip, ambiguous(r.value));
    // Slots as lb_rev_nat says (new when taken over from version 6 or 5;
    // a slot left asking by an agent killed mid-change).
    rebuild_rev_nat_slots();
  }

  void check_service_id(std::uint32_t service_id) const {
    if (service_id >= limits.max_services) {
      throw std::invalid_argument("service id " + std::to_string(service_id) +
                                  " out of range (max services " +
                                  std::to_string(limits.max_services) + ")");
    }
  }
  void check_backend_id(std::uint32_t id) const {
    if (id == 0 || id >= limits.max_backends) {
      throw std::invalid_argument("backend id " + std::to_string(id) + " out of range 1.." +
                                  std::to_string(limits.max_backends - 1));
    }
  }

  void write_backend(std::uint32_t id, const lb_backend& value) {
    update(backends_fd, "lb_backends", &id, &value);
    backends[id] = value;
  }

  // Checks one service's list; nothing is written before all lists pass.
  Plan plan(const ServiceBackends& entry, std::unordered_map<std::uint32_t, std::uint32_t>& claimed) {
    check_service_id(entry.service_id);
    Plan p;
    p.service_id = entry.service_id;
    for (const Backend& b : entry.backends) {
      check_backend_id(b.id);
      if (b.ip == 0) throw std::invalid_argument("backend " + std::to_string(b.id) + " has no IP");
      const lb_backend& current = backends[b.id];
      std::uint32_t owner = current.service_id;
      bool owned = current.state != LB_BACKEND_FREE && current.state != LB_BACKEND_DEAD;
      if (auto it = claimed.find(b.id); it != claimed.end()) {
        owner = it->second;
        owned = true;
      }
      if (owned && owner != entry.service_id) {
        throw std::invalid_argument("backend " + std::to_string(b.id) + " belongs to service " +
                                    std::to_string(owner));
      }
      p.listed.push_back(b.id);
      if (b.state == BackendState::active) p.active.push_back(b.id);
    }
    std::sort(p.listed.begin(), p.listed.end());
    std::sort(p.active.begin(), p.active.end());
    if (std::adjacent_find(p.listed.begin(), p.listed.end()) != p.listed.end()) {
      throw std::invalid_argument("duplicate backend id in service " +
                                  std::to_string(entry.service_id));
    }
    for (std::uint32_t id : p.listed) claimed[id] = entry.service_id;
    return p;
  }

  // New and changed backends are written before any table refers to them;
  // tables change next (a service's first table is inserted with the others
  // in one batch: each insertion into the outer map waits for an RCU grace
  // period, one batch waits once); backends no longer listed are marked
  // dead last.
  void set_backends(std::span<const ServiceBackends> entries) {
    struct UnmapPoolAfter {
      MaglevPool& pool;
      ~UnmapPoolAfter() { pool.unmap(); }
    } unmap_after{*pool};
    std::vector<Plan> plans;
    std::unordered_map<std::uint32_t, std::uint32_t> claimed;
    std::set<std::uint32_t> seen_services;
    for (const ServiceBackends& entry : entries) {
      if (!seen_services.insert(entry.service_id).second) {
        throw std::invalid_argument("service " + std::to_string(entry.service_id) +
                                    " listed twice");
      }
      plans.push_back(plan(entry, claimed));
    }
    check_pool(plans);

    std::vector<std::uint32_t> backend_keys, counter_keys;
    std::vector<lb_backend> backend_values;
    for (const ServiceBackends& entry : entries) {
      for (const Backend& b : entry.backends) {
        lb_backend value{};
        value.ip = htonl(b.ip);
        std::memcpy(value.mac, b.mac.data(), sizeof value.mac);
        value.state = static_cast<std::uint8_t>(b.state);
        value.flags = backend_flags_for(value.ip);
        value.service_id = entry.service_id;
        const lb_backend& current = backends[b.id];
        if (std::memcmp(&current, &value, sizeof value) == 0) continue;
        if (current.state != LB_BACKEND_FREE && current.service_id != entry.service_id) {
          // A dead backend's id taken over by another service.
          auto& previous = services[current.service_id].backends;
          previous.erase(std::remove(previous.begin(), previous.end(), b.id), previous.end());
        }
        bool reused = current.state == LB_BACKEND_FREE || current.state == LB_BACKEND_DEAD ||
                      current.ip != value.ip;
        if (reused && b.state != BackendState::dead) counter_keys.push_back(b.id);
        backend_keys.push_back(b.id);
        backend_values.push_back(value);
      }
    }
    // One syscall per map for them all (an agent's start writes ~100 000).
    bpf_map_batch_opts batch{};
    batch.sz = sizeof batch;
    if (!counter_keys.empty()) {
      std::vector<lb_counters> zeros(counter_keys.size() * static_cast<std::size_t>(ncpus));
      std::uint32_t count = static_cast<std::uint32_t>(counter_keys.size());
      if (bpf_map_update_batch(counters_fd, counter_keys.data(), zeros.data(), &count, &batch) != 0) {
        throw BpfError(errno, "update map lb_backend_counters");
      }
    }
    if (!backend_keys.empty()) {
      std::uint32_t count = static_cast<std::uint32_t>(backend_keys.size());
      int err = bpf_map_update_batch(backends_fd, backend_keys.data(), backend_values.data(),
                                     &count, &batch);
      std::vector<std::uint32_t> changed_ips;
      for (std::uint32_t i = 0; i < count && i < backend_keys.size(); ++i) {
        const std::uint32_t id = backend_keys[i];
        const lb_backend& before = backends[id];
        if (before.state != LB_BACKEND_FREE && before.ip != backend_values[i].ip) {
          rev_nat_untrack(before.ip, id);
          changed_ips.push_back(before.ip);
        }
        rev_nat_track(backend_values[i].ip, id);
        changed_ips.push_back(backend_values[i].ip);
        backends[id] = backend_values[i];
      }
      if (err != 0) throw BpfError(errno, "update map lb_backends");
      sync_rev_nat(std::move(changed_ips));  // before any table sends a flow there
    }

    for (const Plan& p : plans) {
      ServiceState& service = services[p.service_id];
      if (p.active == service.active_in_table) continue;
      write_table(p.service_id, p.active);
    }
    for (const Plan& p : plans) services[p.service_id].active_in_table = p.active;

    for (const Plan& p : plans) {
      ServiceState& service = services[p.service_id];
      for (std::uint32_t id : service.backends) {
        if (std::binary_search(p.listed.begin(), p.listed.end(), id)) continue;
        lb_backend value = backends[id];
        if (value.state != LB_BACKEND_DEAD && value.service_id == p.service_id) {
          value.state = LB_BACKEND_DEAD;
          write_backend(id, value);
        }
      }
      service.backends = p.listed;
    }
  }

  // The table size each changed service will have; throws before anything
  // is written when the pool cannot hold the new tables.
  void check_pool(const std::vector<Plan>& plans) {
    std::uint64_t needed = 0;
    for (const Plan& p : plans) {
      auto it = services.find(p.service_id);
      if (it != services.end() && p.active == it->second.active_in_table) continue;
      const std::uint32_t current = lb_maglev_ref_size(pool->ref(p.service_id));
      const std::uint32_t size =
          maglev_table_size_for(p.active.size(), current, limits.maglev_table_size);
      if (size != current) needed += size;
    }
    if (needed > pool->available()) {
      throw BpfError(ENOSPC, "Maglev table pool full: " + std::to_string(needed) +
                                 " slots needed, " + std::to_string(pool->available()) +
                                 " available of " + std::to_string(pool->size()) +
                                 " (raise the pool size)");
    }
  }

  // Builds a service's table and publishes it: in place (the column not in
  // use, then the descriptor) while its size stays, else in a new run.
  void write_table(std::uint32_t service_id, const std::vector<std::uint32_t>& active) {
    const std::uint64_t ref = pool->ref(service_id);
    const std::uint32_t current = lb_maglev_ref_size(ref);
    const std::uint32_t size =
        maglev_table_size_for(active.size(), current, limits.maglev_table_size);
    if (size == 0) {
      pool->set_ref(service_id, 0);
      if (current != 0) pool->retire(lb_maglev_ref_base(ref), current);
      return;
    }
    const std::vector<std::uint32_t> table = build_maglev_table(active, size);
    if (size == current) {
      const std::uint32_t base = lb_maglev_ref_base(ref);
      const std::uint32_t next = lb_maglev_ref_gen(ref) ^ 1u;
      lb_maglev_slot* run = pool->writable(base, size);
      for (std::uint32_t i = 0; i < size; ++i) run[i].backend[next] = table[i];
      pool->set_ref(service_id, lb_maglev_ref(base, size, next));
      return;
    }
    const std::uint32_t base = pool->allocate(size);
    lb_maglev_slot* run = pool->writable(base, size);
    for (std::uint32_t i = 0; i < size; ++i) run[i].backend[0] = table[i];
    pool->set_ref(service_id, lb_maglev_ref(base, size, 0));
    if (current != 0) pool->retire(lb_maglev_ref_base(ref), current);
  }

  void set_backends(std::uint32_t service_id, std::span<const Backend> list) {
    ServiceBackends entry{service_id, std::vector<Backend>(list.begin(), list.end())};
    set_backends(std::span<const ServiceBackends>(&entry, 1));
  }

  void drop_service(std::uint32_t service_id) {
    auto it = services.find(service_id);
    if (it == services.end()) return;
    std::vector<std::uint32_t> ips = service_ips(service_id);
    set_backends(service_id, std::span<const Backend>{});
    services.erase(service_id);
    sync_rev_nat(std::move(ips));
  }
};

LoadBalancer::LoadBalancer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LoadBalancer::LoadBalancer(LoadBalancer&&) noexcept = default;
LoadBalancer& LoadBalancer::operator=(LoadBalancer&&) noexcept = default;
LoadBalancer::~LoadBalancer() = default;

LoadBalancer LoadBalancer::open(const std::filesystem::path& pin_dir, const Limits& limits,
                                const Timeouts& timeouts) {
  install_libbpf_log();
  if (!is_prime(limits.maglev_table_size)) {
    throw std::invalid_argument("Maglev table size " + std::to_string(limits.maglev_table_size) +
                                " is not a prime");
  }
  if (limits.max_services == 0 || limits.max_frontends == 0 || limits.max_backends < 2 ||
      limits.conntrack_entries == 0) {
    throw std::invalid_argument("load balancer limits must be positive");
  }
  std::error_code ec;
  std::filesystem::create_directories(pin_dir, ec);
  if (ec) throw BpfError(ec.value(), "create pin dir " + pin_dir.string());

  const std::uint32_t pool_slots = maglev_pool_slots(limits);
  const std::uint32_t filter_log2 = vip_filter_log2_bits(limits.max_frontends);
  const std::uint32_t filter_words = (1u << filter_log2) / 64;
  const std::pair<const char*, std::uint32_t> sizes[] = {
      {"lb_vips", limits.max_frontends + 1},      {"lb_services", limits.max_frontends},
      {"lb_vip_filter", filter_words},
      {"lb_maglev", pool_slots},              {"lb_maglev_index", limits.max_services},
      {"lb_backends", limits.max_backends},
      {"lb_backend_counters", limits.max_backends},
      {"lb_conntrack", conntrack_buckets(limits.conntrack_entries)},
      {"lb_ct_tags", conntrack_buckets(limits.conntrack_entries)},
      {"lb_rev_nat", limits.max_backends},
      {"lb_rev_nat_slots", 1u << rev_nat_slots_log2(limits.max_backends)}};
  const std::uint32_t pinned_version = check_pinned_config(pin_dir, limits);
  if (pinned_version != 0 && pinned_version < LB_ABI_VERSION) {
    for (const char* name : kReplacedMapNames) set_aside(pin_dir, name);
  }
  for (const auto& [name, size] : sizes) check_pinned(pin_dir / name, name, size);

  auto impl = std::make_unique<Impl>();
  impl->pin_dir = pin_dir;
  impl->limits = limits;
  const std::string pin_root = pin_dir.string();
  bpf_object_open_opts opts{};
  opts.sz = sizeof opts;
  opts.pin_root_path = pin_root.c_str();
  impl->skel.reset(lb_tc__open_opts(&opts));
  if (!impl->skel) throw BpfError(errno, "open BPF object lb_tc");
  lb_tc* skel = impl->skel.get();

  auto set_size = [](bpf_map* map, std::uint32_t size) {
    if (int err = bpf_map__set_max_entries(map, size); err != 0) {
      throw BpfError(err, std::string("size map ") + bpf_map__name(map));
    }
  };
  set_size(skel->maps.lb_vips, limits.max_frontends + 1);  // + the hairpin address
  set_size(skel->maps.lb_services, limits.max_frontends);
  set_size(skel->maps.lb_vip_filter, filter_words);
  impl->vip_filter_shift = 32 - filter_log2;
  impl->vip_filter.assign(filter_words, 0);
  set_size(skel->maps.lb_maglev, pool_slots);
  set_size(skel->maps.lb_maglev_index, limits.max_services);
  set_size(skel->maps.lb_backends, limits.max_backends);
  set_size(skel->maps.lb_backend_counters, limits.max_backends);
  set_size(skel->maps.lb_rev_nat, limits.max_backends);  // one entry per backend IP at most
  const std::uint32_t slots_log2 = rev_nat_slots_log2(limits.max_backends);
  set_size(skel->maps.lb_rev_nat_slots, 1u << slots_log2);
  skel->rodata->lb_rev_nat_slot_shift = 32 - slots_log2;
  impl->ct_buckets = conntrack_buckets(limits.conntrack_entries);
  set_size(skel->maps.lb_conntrack, impl->ct_buckets);
  set_size(skel->maps.lb_ct_tags, impl->ct_buckets);
  skel->rodata->lb_ct_buckets = impl->ct_buckets;
  if (int err = lb_tc__load(skel); err != 0) {
    throw BpfError(err, "load BPF object lb_tc (pin dir " + pin_root + ")");
  }

  impl->ncpus = libbpf_num_possible_cpus();
  if (impl->ncpus <= 0) throw BpfError(-impl->ncpus, "count possible CPUs");
  impl->vips_fd = bpf_map__fd(skel->maps.lb_vips);
  impl->services_fd = bpf_map__fd(skel->maps.lb_services);
  impl->vip_filter_fd = bpf_map__fd(skel->maps.lb_vip_filter);
  impl->maglev_fd = bpf_map__fd(skel->maps.lb_maglev);
  impl->maglev_index_fd = bpf_map__fd(skel->maps.lb_maglev_index);
  impl->pool = std::make_unique<MaglevPool>(impl->maglev_fd, pool_slots, impl->maglev_index_fd,
                                            limits.max_services);
  impl->backends_fd = bpf_map__fd(skel->maps.lb_backends);
  impl->counters_fd = bpf_map__fd(skel->maps.lb_backend_counters);
  impl->conntrack_fd = bpf_map__fd(skel->maps.lb_conntrack);
  impl->ct_tags_fd = bpf_map__fd(skel->maps.lb_ct_tags);
  impl->config_fd = bpf_map__fd(skel->maps.lb_config);
  impl->stats_fd = bpf_map__fd(skel->maps.lb_stats);
  impl->rev_nat_fd = bpf_map__fd(skel->maps.lb_rev_nat);
  impl->rev_nat_slots =
      std::make_unique<RevNatSlots>(bpf_map__fd(skel->maps.lb_rev_nat_slots), slots_log2);
  {
    lb_config existing{};
    std::uint32_t zero = 0;
    if (bpf_map_lookup_elem(impl->config_fd, &zero, &existing) != 0) {
      throw BpfError(errno, "read map lb_config");
    }
    if (!abi_version_usable(existing.abi_version)) {
      throw BpfError(EINVAL, "maps pinned under " + pin_root + " are of ABI version " +
                                 std::to_string(existing.abi_version) + ", this build uses " +
                                 std::to_string(LB_ABI_VERSION) + " (remove the pins)");
    }
    if (existing.abi_version != 0 && existing.maglev_size != limits.maglev_table_size) {
      throw BpfError(EINVAL, "Maglev tables pinned under " + pin_root + " have " +
                                 std::to_string(existing.maglev_size) + " slots, asked for " +
                                 std::to_string(limits.maglev_table_size) + " (remove the pins)");
    }
    impl->frontend_epoch = existing.frontend_epoch;  // never reused by a restart
    if (existing.abi_version != 0 && existing.abi_version < LB_ABI_VERSION) {
      spdlog::info("load balancer: maps pinned under {} are of ABI version {}: taken over as version {} "
                   "(conntrack flows copied into the table)",
                   pin_root, existing.abi_version, LB_ABI_VERSION);
    }
  }
  impl->take_over_set_aside();
  impl->write_config(timeouts);
  {
    // The hairpin address answers in lb_vips like a VIP (see lb_abi.h).
    std::uint32_t hairpin = htonl(LB_HAIRPIN_ADDR_HOST);
    lb_vip_value value{};
    value.flags = LB_VIP_F_HAIRPIN;
    impl->update(impl->vips_fd, "lb_vips", &hairpin, &value);
  }
  impl->load_state();
  impl->rebuild_filter();
  return LoadBalancer(std::move(impl));
}

void LoadBalancer::remove_pins(const std::filesystem::path& pin_dir) {
  for (const char* name : kMapNames) {
    std::filesystem::path path = pin_dir / name;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      throw BpfError(errno, "unpin " + path.string());
    }
  }
  for (const char* name : kReplacedMapNames) {
    std::filesystem::path path = pin_dir / (std::string(name) + kSetAsideSuffix);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      throw BpfError(errno, "unpin " + path.string());
    }
  }
  if (::rmdir(pin_dir.c_str()) != 0 && errno != ENOENT) {
    throw BpfError(errno, "remove pin dir " + pin_dir.string());
  }
}

const Limits& LoadBalancer::limits() const { return impl_->limits; }

void LoadBalancer::set_timeouts(const Timeouts& timeouts) { impl_->write_config(timeouts); }

void LoadBalancer::upsert_service(const Frontend& frontend, std::uint32_t service_id) {
  Impl& s = *impl_;
  s.check_service_id(service_id);
  if (frontend.vip == 0 || frontend.vip == LB_HAIRPIN_ADDR_HOST) {
    throw std::invalid_argument("service VIP cannot be 0.0.0.0 or the hairpin address");
  }
  if (frontend.proto != Protocol::tcp && frontend.proto != Protocol::udp) {
    throw std::invalid_argument("service protocol must be tcp or udp");
  }
  auto it = s.frontends.find(frontend);
  if (it != s.frontends.end() && it->second == service_id) return;
  lb_service_key key = service_key(frontend);
  const bool new_vip = !s.vip_refs.contains(key.vip);
  if (new_vip) {
    s.filter_add(key.vip);
    lb_vip_value vip{};
    vip.frontends = 1;
    s.update(s.vips_fd, "lb_vips", &key.vip, &vip);
  }
  lb_service_value value{};
  value.service_id = service_id;
  s.add_service_vip(service_id, key.vip);  // replies find their flows before one is made
  try {
    s.update(s.services_fd, "lb_services", &key, &value);
  } catch (...) {
    s.remove_service_vip(service_id, key.vip);
    throw;
  }
  // Tracked flows need checking again only where this frontend takes over
  // from another: a moved one, or a port of a wildcard frontend. A flow
  // whose frontend went earlier was stamped before that removal's epoch.
  const bool moved = it != s.frontends.end();
  const bool shadows_wildcard =
      frontend.port != 0 && s.frontends.contains(Frontend{frontend.vip, 0, frontend.proto});
  if (moved || shadows_wildcard) s.frontends_changed();
  if (it != s.frontends.end()) {
    const std::uint32_t old_service = it->second;
    it->second = service_id;
    s.remove_service_vip(old_service, key.vip);
    if (--s.services[old_service].frontends == 0) s.drop_service(old_service);
  } else {
    s.frontends.emplace(frontend, service_id);
    s.vip_refs[key.vip]++;
  }
  s.services[service_id].frontends++;
}

void LoadBalancer::remove_service(const Frontend& frontend) {
  Impl& s = *impl_;
  auto it = s.frontends.find(frontend);
  if (it == s.frontends.end()) return;
  const std::uint32_t service_id = it->second;
  lb_service_key key = service_key(frontend);
  s.erase(s.services_fd, "lb_services", &key);
  s.frontends.erase(it);
  s.remove_service_vip(service_id, key.vip);
  if (--s.vip_refs[key.vip] == 0) {
    s.erase(s.vips_fd, "lb_vips", &key.vip);
    s.vip_refs.erase(key.vip);
    s.filter_remove(key.vip);
  }
  s.frontends_changed();
  if (--s.services[service_id].frontends == 0) s.drop_service(service_id);
}

void LoadBalancer::remove_service(std::uint32_t service_id) {
  Impl& s = *impl_;
  std::vector<Frontend> mine;
  for (const auto& [frontend, id] : s.frontends) {
    if (id == service_id) mine.push_back(frontend);
  }
  for (const Frontend& frontend : mine) remove_service(frontend);
  s.drop_service(service_id);
}

void LoadBalancer::set_backends(std::uint32_t service_id, std::span<const Backend> backends) {
  impl_->set_backends(service_id, backends);
}

void LoadBalancer::set_backends(std::span<const ServiceBackends> services) {
  impl_->set_backends(services);
}

void LoadBalancer::set_backend_state(std::uint32_t backend_id, BackendState state) {
  Impl& s = *impl_;
  s.check_backend_id(backend_id);
  const lb_backend& current = s.backends[backend_id];
  if (current.state == LB_BACKEND_FREE) {
    throw std::invalid_argument("backend " + std::to_string(backend_id) + " is not in use");
  }
  const std::uint32_t service_id = current.service_id;
  std::vector<Backend> list;
  for (std::uint32_t id : s.services[service_id].backends) {
    const lb_backend& b = s.backends[id];
    Backend backend;
    backend.id = id;
    backend.ip = ntohl(b.ip);
    std::memcpy(backend.mac.data(), b.mac, backend.mac.size());
    backend.state = id == backend_id ? state : static_cast<BackendState>(b.state);
    list.push_back(backend);
  }
  s.set_backends(service_id, list);
}

std::optional<LookupResult> LoadBalancer::lookup(std::uint32_t service_id, std::uint32_t src_ip,
                                                 std::uint16_t src_port, std::uint16_t dst_port,
                                                 Protocol proto) const {
  const Impl& s = *impl_;
  s.check_service_id(service_id);
  const std::uint64_t ref = s.pool->ref(service_id);
  const std::uint32_t size = lb_maglev_ref_size(ref);
  if (size == 0) return std::nullopt;
  std::uint32_t slot = lb_flow_hash(htonl(src_ip), htons(src_port), htons(dst_port),
                                    static_cast<std::uint8_t>(proto)) %
                       size;
  // The pool is mapped only while written (see LazyMappedArray).
  const std::uint32_t key = lb_maglev_ref_base(ref) + slot;
  lb_maglev_slot entry{};
  if (bpf_map_lookup_elem(s.maglev_fd, &key, &entry) != 0) {
    throw BpfError(errno, "read map lb_maglev");
  }
  std::uint32_t backend_id = entry.backend[lb_maglev_ref_gen(ref)];
  if (backend_id == LB_NO_BACKEND || backend_id >= s.limits.max_backends) return std::nullopt;
  return LookupResult{backend_id, ntohl(s.backends[backend_id].ip)};
}

std::vector<BackendCounters> LoadBalancer::counters(std::uint32_t service_id) const {
  const Impl& s = *impl_;
  std::vector<BackendCounters> result;
  auto it = s.services.find(service_id);
  if (it == s.services.end()) return result;
  std::vector<lb_counters> per_cpu(static_cast<std::size_t>(s.ncpus));
  for (std::uint32_t id : it->second.backends) {
    if (bpf_map_lookup_elem(s.counters_fd, &id, per_cpu.data()) != 0) {
      throw BpfError(errno, "read map lb_backend_counters");
    }
    BackendCounters sum;
    sum.backend_id = id;
    for (const lb_counters& c : per_cpu) {
      sum.connections += c.connections;
      sum.packets += c.packets;
      sum.bytes += c.bytes;
    }
    result.push_back(sum);
  }
  return result;
}

std::vector<std::uint64_t> LoadBalancer::connections_by_backend() const {
  const Impl& s = *impl_;
  const std::size_t ncpus = static_cast<std::size_t>(s.ncpus);
  std::vector<std::uint64_t> result(s.limits.max_backends, 0);
  constexpr std::uint32_t kChunk = 4096;
  std::vector<std::uint32_t> keys(kChunk);
  std::vector<lb_counters> values(kChunk * ncpus);
  bpf_map_batch_opts batch{};
  batch.sz = sizeof batch;
  std::uint32_t next = 0;
  bool first = true;
  for (;;) {
    std::uint32_t count = kChunk;
    const int err = bpf_map_lookup_batch(s.counters_fd, first ? nullptr : &next, &next, keys.data(), values.data(),
                                         &count, &batch);
    if (err != 0 && errno != ENOENT) throw BpfError(errno, "read map lb_backend_counters (batch)");
    first = false;
    for (std::uint32_t i = 0; i < count && i < kChunk; ++i) {
      if (keys[i] >= result.size()) continue;
      std::uint64_t sum = 0;
      for (std::size_t cpu = 0; cpu < ncpus; ++cpu) sum += values[i * ncpus + cpu].connections;
      result[keys[i]] = sum;
    }
    if (err != 0 || count == 0) break;  // ENOENT: the map's end
  }
  return result;
}

std::map<Frontend, std::uint32_t> LoadBalancer::frontends() const { return impl_->frontends; }

std::set<std::uint32_t> LoadBalancer::service_ids() const {
  std::set<std::uint32_t> ids;
  for (const auto& [id, service] : impl_->services) {
    if (service.frontends > 0 || !service.backends.empty()) ids.insert(id);
  }
  return ids;
}

std::vector<std::uint64_t> LoadBalancer::stats() const {
  const Impl& s = *impl_;
  std::vector<std::uint64_t> result(LB_STAT_MAX, 0);
  std::vector<std::uint64_t> per_cpu(static_cast<std::size_t>(s.ncpus));
  for (std::uint32_t stat = 0; stat < LB_STAT_MAX; ++stat) {
    if (bpf_map_lookup_elem(s.stats_fd, &stat, per_cpu.data()) != 0) {
      throw BpfError(errno, "read map lb_stats");
    }
    for (std::uint64_t v : per_cpu) result[stat] += v;
  }
  return result;
}

GcResult LoadBalancer::gc(std::uint64_t now_ns) {
  Impl& s = *impl_;
  lb_config cfg{};
  std::uint32_t zero = 0;
  if (bpf_map_lookup_elem(s.config_fd, &zero, &cfg) != 0) {
    throw BpfError(errno, "read map lb_config");
  }
  auto timeout = [&](std::uint8_t proto, std::uint8_t flags) -> std::uint64_t {
    if (proto != IPPROTO_TCP) return cfg.udp_timeout_ns;
    if ((flags & LB_CT_F_RST) ||
        (flags & (LB_CT_F_FIN_ORIG | LB_CT_F_FIN_REPLY)) == (LB_CT_F_FIN_ORIG | LB_CT_F_FIN_REPLY)) {
      return cfg.tcp_closing_timeout_ns;
    }
    if (!(flags & LB_CT_F_SEEN_REPLY)) return cfg.tcp_syn_timeout_ns;
    return cfg.tcp_established_timeout_ns;
  };
  // As lb_ct_partner_key in ebpf/conntrack.h.
  auto partner_of = [](const lb_ct_key& key, std::uint32_t nat_addr, std::uint8_t flags) {
    const bool hairpin = flags & LB_CT_F_HAIRPIN;
    lb_ct_key partner{};
    if (key.dir == LB_CT_DIR_ORIGINAL) {
      partner.saddr = nat_addr;
      partner.daddr = hairpin ? htonl(LB_HAIRPIN_ADDR_HOST) : key.saddr;
      partner.dir = LB_CT_DIR_REPLY;
    } else {
      partner.saddr = hairpin ? key.saddr : key.daddr;
      partner.daddr = nat_addr;
      partner.dir = LB_CT_DIR_ORIGINAL;
    }
    partner.sport = key.dport;
    partner.dport = key.sport;
    partner.proto = key.proto;
    return partner;
  };

  GcResult result;
  result.capacity = s.limits.conntrack_entries;
  const auto now = static_cast<std::uint32_t>(now_ns >> LB_CT_SEEN_SHIFT);
  // As lb_ct_expired_at in ebpf/conntrack.h (`seen` a moment ahead of
  // `now`, stamped by a packet meanwhile, is not expired).
  auto expired_at = [&](std::uint32_t seen, std::uint8_t proto, std::uint8_t flags) {
    const auto age = static_cast<std::int32_t>(now - seen);
    return age >= 0 && static_cast<std::uint64_t>(age) >= (timeout(proto, flags) >> LB_CT_SEEN_SHIFT);
  };
  auto newer = [](std::uint32_t a, std::uint32_t b) {
    return static_cast<std::int32_t>(a - b) > 0 ? a : b;
  };

  // One pass over the table through mmap, no syscall per entry, a window
  // of buckets at a time (what is mapped counts in our RSS: see
  // conntrack_table.h). A paired flow (LB_CT_F_PAIRED, ebpf/conntrack.h)
  // is as alive as its most recent direction, and a state change seen in
  // one direction holds for both: an entry that looks expired goes only if
  // its partner does too, and then both go (the partner, visited later, is
  // empty by then); a partner outside the window is looked up through a
  // small window of its own. Every entry is ended by a compare-and-clear of
  // what was read, so one that a packet stamped or a CPU rewrote meanwhile
  // stays. Torn ways (a write raced by another CPU's, never found by a
  // lookup) are cleared too.
  const std::uint32_t align = ConntrackTable::window_alignment();
  const std::uint32_t step = align * 32;  // 16 384 buckets, 3 MB with 4 KiB pages
  auto window_of = [&](std::uint32_t first, std::uint32_t size) {
    return std::min(size, s.ct_buckets - first);
  };
  std::uint64_t live = 0;
  for (std::uint32_t first = 0; first < s.ct_buckets; first += step) {
    ConntrackTable table(s.conntrack_fd, s.ct_tags_fd, s.ct_buckets, first, window_of(first, step));
    for (std::uint32_t bucket = first; bucket < first + table.count(); ++bucket) {
      for (std::uint32_t way = 0; way < LB_CT_WAYS; ++way) {
        const ConntrackSnapshot snap = ConntrackTable::read(table.way(bucket, way));
        if (snap.state == ConntrackSnapshot::State::empty) continue;
        if (snap.state == ConntrackSnapshot::State::torn) {
          table.end_if_unchanged(bucket, way, snap.stamp);
          continue;
        }
        ++live;
        const lb_ct_value& value = snap.value;
        if (!expired_at(value.seen, snap.key.proto, value.flags)) continue;
        const bool paired = snap.key.dir == LB_CT_DIR_REPLY || (value.flags & LB_CT_F_PAIRED);
        std::uint32_t other_bucket = 0, other_way = 0;
        ConntrackSnapshot partner;
        std::optional<ConntrackTable> near;  // the partner's window, when not this one
        ConntrackTable* other = nullptr;
        if (paired) {
          const lb_ct_key partner_key = partner_of(snap.key, value.nat_addr, value.flags);
          if (table.find(partner_key, &other_bucket, &other_way)) {
            other = &table;
          } else {
            std::uint32_t places[LB_CT_CHOICES];
            ConntrackTable::choices(partner_key, s.ct_buckets, places);
            for (const std::uint32_t place : places) {
              if (table.holds(place)) continue;
              const std::uint32_t start = place / align * align;
              near.emplace(s.conntrack_fd, s.ct_tags_fd, s.ct_buckets, start, window_of(start, align));
              if (near->find(partner_key, &other_bucket, &other_way)) {
                other = &*near;
                break;
              }
            }
          }
          if (other) partner = ConntrackTable::read(other->way(other_bucket, other_way));
          if (partner.state == ConntrackSnapshot::State::live &&
              !expired_at(newer(value.seen, partner.value.seen), snap.key.proto,
                          value.flags | partner.value.flags)) {
            continue;
          }
        }
        if (table.end_if_unchanged(bucket, way, snap.stamp)) ++result.expired;
        if (partner.state == ConntrackSnapshot::State::live &&
            other->end_if_unchanged(other_bucket, other_way, partner.stamp)) {
          ++result.expired;
          // Counted as live when visited before; ended now, so not visited after.
          if (other_bucket < bucket || (other_bucket == bucket && other_way < way)) continue;
          ++live;
        }
      }
    }
  }
  result.entries = live - std::min<std::uint64_t>(live, result.expired);
  return result;
}

std::uint64_t LoadBalancer::monotonic_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

namespace {

bpf_tc_hook tc_hook(int ifindex, bpf_tc_attach_point point) {
  bpf_tc_hook hook{};
  hook.sz = sizeof hook;
  hook.ifindex = ifindex;
  hook.attach_point = point;
  return hook;
}

bpf_tc_opts tc_opts(int prog_fd, std::uint32_t flags) {
  bpf_tc_opts opts{};
  opts.sz = sizeof opts;
  opts.handle = kTcHandle;
  opts.priority = kTcPriority;
  opts.prog_fd = prog_fd;
  opts.flags = flags;
  return opts;
}

// 0, or a negative errno other than "already gone".
int detach_one(int ifindex, bpf_tc_attach_point point) {
  bpf_tc_hook hook = tc_hook(ifindex, point);
  bpf_tc_opts opts = tc_opts(0, 0);
  int err = bpf_tc_detach(&hook, &opts);
  if (err == -ENOENT || err == -ENODEV || err == -EINVAL) return 0;
  return err;
}

}  // namespace

// Egress first: replacing the programs of an earlier build in place, the
// new reply path (which finds flows of either build) is there before the
// new flow path makes flows the old reply path could not find (ABI 5's
// programs look replies up by REPLY entry only).
TcAttachment LoadBalancer::attach(int ifindex) {
  bpf_tc_hook hook = tc_hook(ifindex, BPF_TC_EGRESS);
  int err = bpf_tc_hook_create(&hook);
  if (err != 0 && err != -EEXIST) {
    throw BpfError(err, "create clsact qdisc on ifindex " + std::to_string(ifindex));
  }
  bpf_tc_opts egress = tc_opts(to_endpoint_prog_fd(), BPF_TC_F_REPLACE);
  err = bpf_tc_attach(&hook, &egress);
  if (err != 0) {
    throw BpfError(err, "attach lb_to_endpoint to ifindex " + std::to_string(ifindex));
  }
  TcAttachment attachment(ifindex);  // detaches egress if ingress fails
  hook.attach_point = BPF_TC_INGRESS;
  bpf_tc_opts ingress = tc_opts(from_endpoint_prog_fd(), BPF_TC_F_REPLACE);
  err = bpf_tc_attach(&hook, &ingress);
  if (err != 0) {
    throw BpfError(err, "attach lb_from_endpoint to ifindex " + std::to_string(ifindex));
  }
  return attachment;
}

void LoadBalancer::detach(int ifindex) {
  int err = detach_one(ifindex, BPF_TC_INGRESS);
  int err_egress = detach_one(ifindex, BPF_TC_EGRESS);
  if (err != 0) throw BpfError(err, "detach lb_from_endpoint from ifindex " + std::to_string(ifindex));
  if (err_egress != 0) {
    throw BpfError(err_egress, "detach lb_to_endpoint from ifindex " + std::to_string(ifindex));
  }
}

TcAttachment::TcAttachment(TcAttachment&& other) noexcept
    : ifindex_(std::exchange(other.ifindex_, 0)) {}

TcAttachment& TcAttachment::operator=(TcAttachment&& other) noexcept {
  if (this != &other) {
    TcAttachment old(std::exchange(ifindex_, std::exchange(other.ifindex_, 0)));
  }
  return *this;
}

TcAttachment::~TcAttachment() {
  if (ifindex_ <= 0) return;
  try {
    LoadBalancer::detach(ifindex_);
  } catch (const std::exception& e) {
    spdlog::warn("load balancer: {}", e.what());
  }
}

int LoadBalancer::from_endpoint_prog_fd() const {
  return bpf_program__fd(impl_->skel->progs.lb_from_endpoint);
}

int LoadBalancer::to_endpoint_prog_fd() const {
  return bpf_program__fd(impl_->skel->progs.lb_to_endpoint);
}

int LoadBalancer::map_fd(const char* name) const {
  bpf_map* map = bpf_object__find_map_by_name(impl_->skel->obj, name);
  if (!map) throw std::invalid_argument(std::string("no map ") + name);
  return bpf_map__fd(map);
}

}  // namespace weft::dataplane::lb
