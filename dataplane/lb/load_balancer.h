// The eBPF service load balancer, user-space side: loads the tc programs of
// ebpf/lb_tc.bpf.c, keeps their maps pinned under a pin dir (so a restarted
// agent finds conntrack and tables as it left them), and programs services,
// backends and Maglev tables into them. Also answers "which backend gets this
// flow" from the very table the programs use, reads counters and collects
// expired conntrack entries.
//
// Addresses and ports in this API are in host byte order.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "dataplane/lb/bpf_error.h"
#include "dataplane/lb/maglev.h"

namespace weft::dataplane::lb {

using Mac = std::array<std::uint8_t, 6>;

// weft's MAC for an IPv4 address: 02:42:<address bytes>.
Mac mac_from_ip(std::uint32_t ip);

enum class Protocol : std::uint8_t { tcp = 6, udp = 17 };

enum class BackendState : std::uint8_t {
  active = 1,    // in the Maglev table: gets new flows
  draining = 2,  // out of the table; its open flows go on
  dead = 3,      // its open TCP flows get a RST on their next packet
};

// What clients connect to. port 0 stands for every port of the VIP (Docker's
// VIP mode forwards them all); an exact port wins over 0.
struct Frontend {
  std::uint32_t vip = 0;
  std::uint16_t port = 0;
  Protocol proto = Protocol::tcp;
  auto operator<=>(const Frontend&) const = default;
};

struct Backend {
  std::uint32_t id = 0;  // 1 .. max_backends-1, owned by one service at a time
  std::uint32_t ip = 0;
  Mac mac{};
  BackendState state = BackendState::active;
};

struct ServiceBackends {
  std::uint32_t service_id = 0;
  std::vector<Backend> backends;
};

struct Limits {
  std::uint32_t max_services = 1024;    // service ids are 0 .. max_services-1
  std::uint32_t max_frontends = 4096;   // VIP:port:proto entries
  std::uint32_t max_backends = 65536;   // backend ids are 1 .. max_backends-1
  std::uint32_t conntrack_entries = 262144;  // one per flow (two when paired: ebpf/conntrack.h)
  // No longer means anything (ignored): it chose per-CPU LRU lists for the
  // LRU hash conntrack of ABI versions before 8; conntrack is a
  // set-associative table since (ebpf/conntrack.h), the same for every
  // CPU. Still accepted, so that whatever sets it keeps working.
  bool conntrack_lru_per_cpu = false;
  // The largest Maglev table (a prime); each service's is sized for its
  // backends (maglev_table_size_for), ~1021 slots for 10.
  std::uint32_t maglev_table_size = kDefaultMaglevTableSize;
  // Slots of the pool all tables live in (8 bytes each); 0: max_services x
  // min(maglev_table_size, 1021), room for every service with 10 backends.
  std::uint32_t maglev_pool_slots = 0;
};

struct Timeouts {
  std::chrono::nanoseconds tcp_syn = std::chrono::seconds(60);
  std::chrono::nanoseconds tcp_established = std::chrono::hours(6);
  std::chrono::nanoseconds tcp_closing = std::chrono::seconds(10);
  std::chrono::nanoseconds udp = std::chrono::seconds(60);
};

struct BackendCounters {
  std::uint32_t backend_id = 0;
  std::uint64_t connections = 0;
  std::uint64_t packets = 0;  // client -> backend
  std::uint64_t bytes = 0;
};

struct LookupResult {
  std::uint32_t backend_id = 0;
  std::uint32_t ip = 0;
};

struct GcResult {
  std::uint64_t expired = 0;   // entries deleted
  std::uint64_t entries = 0;   // entries left
  std::uint64_t capacity = 0;  // conntrack map size
};

// Program attachment at tc (clsact) on one interface: lb_from_endpoint on
// ingress, lb_to_endpoint on egress. Detaches when destroyed, unless
// released (an agent that restarts leaves its endpoints' programs in place;
// the filters keep the programs and maps alive meanwhile).
class TcAttachment {
 public:
  TcAttachment() = default;
  explicit TcAttachment(int ifindex) : ifindex_(ifindex) {}
  TcAttachment(TcAttachment&& other) noexcept;
  TcAttachment& operator=(TcAttachment&& other) noexcept;
  TcAttachment(const TcAttachment&) = delete;
  TcAttachment& operator=(const TcAttachment&) = delete;
  ~TcAttachment();

  int ifindex() const { return ifindex_; }
  void release() { ifindex_ = 0; }

 private:
  int ifindex_ = 0;
};

// Not thread-safe: one owner (the agent's data-plane thread) drives it.
class LoadBalancer {
 public:
  // Loads the programs and creates the maps under pin_dir (on a bpffs), or
  // reuses the maps pinned there. Limits must equal those of maps already
  // pinned (BpfError EINVAL naming the map otherwise). Programs are not
  // pinned: the tc filters hold the running ones, and attach() of a new
  // instance replaces them in place (same handle and priority).
  // The Maglev table size must match too.
  static LoadBalancer open(const std::filesystem::path& pin_dir, const Limits& limits,
                           const Timeouts& timeouts = {});
  // Unpins every map under pin_dir and removes the dir. Programs still
  // attached keep their maps until detached.
  static void remove_pins(const std::filesystem::path& pin_dir);

  LoadBalancer(LoadBalancer&&) noexcept;
  LoadBalancer& operator=(LoadBalancer&&) noexcept;
  ~LoadBalancer();

  const Limits& limits() const;
  void set_timeouts(const Timeouts& timeouts);

  // Adds or moves a frontend to a service.
  void upsert_service(const Frontend& frontend, std::uint32_t service_id);
  // Removes a frontend; the last one of a service takes its table along and
  // marks its backends dead.
  void remove_service(const Frontend& frontend);
  // Removes every frontend of the service, its table and its backends.
  void remove_service(std::uint32_t service_id);

  // The full backend list of a service: new ones are written before the
  // Maglev table changes, backends no longer listed are marked dead after
  // it. The table is rebuilt only when the set of active backends changes,
  // and written into the table pool through mmap (mapped for the write
  // only: see LazyMappedArray), no syscall per slot. A full pool
  // (BpfError ENOSPC) is found before anything is written.
  void set_backends(std::uint32_t service_id, std::span<const Backend> backends);
  // The same for many services at once (an agent's start).
  void set_backends(std::span<const ServiceBackends> services);
  // Drain (draining), fail (dead) or re-activate one backend.
  void set_backend_state(std::uint32_t backend_id, BackendState state);

  // The backend a new flow gets, from the table in the kernel.
  std::optional<LookupResult> lookup(std::uint32_t service_id, std::uint32_t src_ip,
                                     std::uint16_t src_port, std::uint16_t dst_port,
                                     Protocol proto) const;
  // Per-backend counters of the service, summed over CPUs.
  std::vector<BackendCounters> counters(std::uint32_t service_id) const;
  // Connections of every backend id (index), summed over CPUs: the whole
  // counter map read in a few batch syscalls (for /metrics, where one
  // lookup per backend would cost 100 000 syscalls at 10 000 services).
  std::vector<std::uint64_t> connections_by_backend() const;
  // Global event counters indexed by enum lb_stat (ebpf/lb_abi.h).
  std::vector<std::uint64_t> stats() const;

  // What the maps hold (after open(): what an earlier process left), so an
  // agent can find services it no longer knows: every frontend, and every
  // service with a frontend or a backend not yet freed (dead ones too).
  std::map<Frontend, std::uint32_t> frontends() const;
  std::set<std::uint32_t> service_ids() const;

  // Deletes conntrack entries idle past their timeout at `now_ns`
  // (CLOCK_MONOTONIC; the programs stamp entries with its coarse variant).
  GcResult gc(std::uint64_t now_ns);
  static std::uint64_t monotonic_now_ns();

  TcAttachment attach(int ifindex);
  static void detach(int ifindex);

  int from_endpoint_prog_fd() const;
  int to_endpoint_prog_fd() const;
  int map_fd(const char* name) const;  // for tests and tools

 private:
  struct Impl;
  explicit LoadBalancer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::dataplane::lb
