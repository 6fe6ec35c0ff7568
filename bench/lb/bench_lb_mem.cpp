// bench_lb_mem: memory of the eBPF load balancer at scale. One process (this
// one, fresh) opens a LoadBalancer, programs N services x M backends
// (lb_scale.h), writes conntrack entries into the table through mmap, and
// reports after each step its RSS (anonymous, file, shared) and every map's
// size: memlock from fdinfo (what the kernel charges) and key+value x
// max_entries from the map info (the payload alone).
//
//   bench_lb_mem [--services 10000] [--backends 10] [--conntrack-entries 1000000]
//                [--conntrack-capacity N]
//
// --conntrack-entries counts conntrack entries (one per flow since ABI 6,
// whose backends sit behind one VIP each, as here; two per flow before);
// the conntrack limit (Limits::conntrack_entries) defaults to the next power
// of two, and the table (ABI 8) has twice as many ways as that.
// Needs root; everything it makes lives in a private mount namespace.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <string>

#include "bench/lb/lb_scale.h"
#include "bench/lb/private_scratch.h"
#include "dataplane/lb/ebpf_service_backend.h"
#include "tests/unit/lb_packets.h"

extern "C" {
#include "ebpf/lb_abi.h"
}

namespace dlb = weft::dataplane::lb;
using namespace weft::bench::lb;

namespace {

struct Options {
  std::uint32_t services = 10000;
  std::uint32_t backends = 10;
  std::uint32_t conntrack_entries = 1000000;
  std::uint32_t conntrack_capacity = 0;  // 0: next power of two >= entries
};

constexpr const char* kMaps[] = {"lb_vips",      "lb_vip_filter", "lb_services",         "lb_maglev",
                                 "lb_maglev_index", "lb_backends", "lb_backend_counters", "lb_conntrack",
                                 "lb_config",    "lb_stats",       "lb_rev_nat",  "lb_rev_nat_slots",
                                 "lb_ct_tags"};

double mb(std::uint64_t bytes) { return static_cast<double>(bytes) / 1e6; }

void print_rss(const char* step) {
  std::printf("  %-34s RSS %6.1f MB (anon %6.1f, file %6.1f, shmem %6.1f), peak %6.1f MB\n", step,
              static_cast<double>(proc_status_kb("VmRSS")) / 1e3,
              static_cast<double>(proc_status_kb("RssAnon")) / 1e3,
              static_cast<double>(proc_status_kb("RssFile")) / 1e3,
              static_cast<double>(proc_status_kb("RssShmem")) / 1e3,
              static_cast<double>(proc_status_kb("VmHWM")) / 1e3);
  // What the process's own structures hold (malloc's blocks in use),
  // without the free space the heap keeps.
  const struct mallinfo2 heap = mallinfo2();
  std::printf("  %-34s heap in use %6.1f MB\n", "", static_cast<double>(heap.uordblks + heap.hblkhd) / 1e6);
  std::fflush(stdout);
}

void print_maps(dlb::LoadBalancer& balancer) {
  std::uint64_t memlock_total = 0, payload_total = 0;
  std::printf("  %-20s %10s %6s %6s %12s %12s\n", "map", "entries", "key", "value", "payload MB", "memlock MB");
  for (const char* name : kMaps) {
    const int fd = balancer.map_fd(name);
    bpf_map_info info{};
    std::uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) throw dlb::BpfError(errno, std::string("map info ") + name);
    std::uint64_t value_size = info.value_size;
    // Per-CPU maps keep a value per possible CPU.
    if (info.type == BPF_MAP_TYPE_PERCPU_ARRAY || info.type == BPF_MAP_TYPE_PERCPU_HASH) {
      value_size *= static_cast<std::uint64_t>(libbpf_num_possible_cpus());
    }
    // Arrays store no keys.
    const bool array = info.type == BPF_MAP_TYPE_ARRAY || info.type == BPF_MAP_TYPE_PERCPU_ARRAY;
    const std::uint64_t payload = ((array ? 0 : info.key_size) + value_size) * info.max_entries;
    const std::uint64_t memlock = fdinfo_memlock(fd);
    payload_total += payload;
    memlock_total += memlock;
    std::printf("  %-20s %10u %6u %6u %12.1f %12.1f\n", name, info.max_entries, info.key_size, info.value_size,
                mb(payload), mb(memlock));
  }
  std::printf("  %-20s %10s %6s %6s %12.1f %12.1f\n", "all maps", "", "", "", mb(payload_total), mb(memlock_total));
}

// A data packet of filled flow 0 must be a conntrack hit: proves the
// entries are in the format the program reads.
void check_filled_flow(dlb::LoadBalancer& balancer, const ServiceLoad& load) {
  using namespace weft::lbtest;
  const FlowId flow = conntrack_flow(load, 0);
  Tcp data;
  data.saddr = flow.client_ip;
  data.daddr = load.frontends[flow.service_index].first.vip;
  data.sport = flow.client_port;
  data.dport = load.frontends[flow.service_index].first.port;
  data.flags = kAck;
  data.payload = "x";
  Bytes in = tcp_packet(data);
  std::vector<std::uint8_t> out(in.size() + 64);
  const auto before = balancer.stats();
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = out.data(),
              .data_size_in = static_cast<std::uint32_t>(in.size()),
              .data_size_out = static_cast<std::uint32_t>(out.size()), .repeat = 1);
  if (bpf_prog_test_run_opts(balancer.from_endpoint_prog_fd(), &opts) != 0) {
    throw dlb::BpfError(errno, "BPF_PROG_TEST_RUN");
  }
  const auto after = balancer.stats();
  if (after[LB_STAT_CT_HIT] != before[LB_STAT_CT_HIT] + 1 || after[LB_STAT_NEW_FLOW] != before[LB_STAT_NEW_FLOW]) {
    throw std::runtime_error("a packet of a filled flow was not a conntrack hit: entry format wrong?");
  }
}

std::uint32_t next_pow2(std::uint32_t n) {
  std::uint32_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

void run(const PrivateScratch& scratch, const Options& opt) {
  const std::uint64_t start_kb = proc_status_kb("VmRSS");
  const ServiceLoad load = make_service_load(opt.services, opt.backends);
  const std::uint32_t capacity =
      opt.conntrack_capacity ? opt.conntrack_capacity : next_pow2(opt.conntrack_entries);
  dlb::Limits limits = limits_for(load, capacity);
  std::printf("bench_lb_mem: %u services x %u backends, conntrack %u entries (%u flows) in a map of %u; "
              "max_services %u, max_backends %u, Maglev pool %s\n",
              opt.services, opt.backends, opt.conntrack_entries, opt.conntrack_entries, capacity,
              limits.max_services, limits.max_backends,
              limits.maglev_pool_slots ? std::to_string(limits.maglev_pool_slots).c_str() : "default");
  std::printf("  %-34s RSS %6.1f MB\n", "start", static_cast<double>(start_kb) / 1e3);
  print_rss("service model built");
  dlb::EbpfServiceBackend backend(dlb::LoadBalancer::open(scratch.bpffs() / "lb", limits));
  dlb::LoadBalancer& balancer = backend.ebpf();
  print_rss("LoadBalancer open (maps created)");
  auto start = std::chrono::steady_clock::now();
  program_services(backend, load);
  const double program_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("  programmed in %.0f ms\n", program_ms);
  print_rss("services programmed");
  const ConntrackFill fill = fill_conntrack(balancer, load, opt.conntrack_entries);
  std::printf("  conntrack: %" PRIu64 " flows, %" PRIu64 " entries written in %.0f ms\n", fill.flows,
              fill.entries, fill.ms);
  check_filled_flow(balancer, load);
  print_rss("conntrack filled");
  // The fill maps the whole table (its pages count in RSS while mapped);
  // the peak from here on is the collector's alone ("5": reset VmHWM).
  std::ofstream("/proc/self/clear_refs") << "5";
  start = std::chrono::steady_clock::now();
  const dlb::GcResult gc = balancer.gc(dlb::LoadBalancer::monotonic_now_ns());
  const double gc_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("  conntrack holds %" PRIu64 " entries of %" PRIu64 " (gc walk, nothing expired: %.0f ms)\n",
              gc.entries, gc.capacity, gc_ms);
  if (gc.entries < fill.entries) {
    std::printf("  WARNING: %" PRIu64 " entries not written or evicted (full buckets) while filling\n", fill.entries - gc.entries);
  }
  print_rss("gc walked (peak since the fill)");
  print_maps(balancer);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_lb_mem: unknown argument or missing value: %s\n", arg.c_str());
      return 2;
    }
    std::uint32_t value = 0;
    try {
      value = static_cast<std::uint32_t>(std::stoul(argv[++i]));
    } catch (const std::exception&) {
      std::fprintf(stderr, "bench_lb_mem: bad value for %s\n", arg.c_str());
      return 2;
    }
    if (arg == "--services") {
      opt.services = value;
    } else if (arg == "--backends") {
      opt.backends = value;
    } else if (arg == "--conntrack-entries") {
      opt.conntrack_entries = value;
    } else if (arg == "--conntrack-capacity") {
      opt.conntrack_capacity = value;
    } else {
      std::fprintf(stderr, "bench_lb_mem: unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  if (opt.services == 0 || opt.backends == 0) {
    std::fprintf(stderr, "bench_lb_mem: --services and --backends must be > 0\n");
    return 2;
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "bench_lb_mem: needs root (BPF maps, mounts)\n");
    return 1;
  }
  try {
    PrivateScratch scratch("mem");
    run(scratch, opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_lb_mem: %s\n", e.what());
    return 1;
  }
  return 0;
}
