// bench_lb: the eBPF service load balancer's data-plane costs, in one run.
//
// For 1, 1 000 and 10 000 services (VIP:80/tcp, 10 backends each):
//  * ns/packet of the tc programs through BPF_PROG_TEST_RUN (the kernel's
//    own per-run average, so no syscall cost): a VIP packet starting a new
//    flow on a fresh tuple (a connection's first packet: conntrack miss,
//    frontend, Maglev pick, one conntrack insert, DNAT; a chain of VIPs
//    makes every repeat run a tuple never seen; measured on a table whose
//    pages the program has touched, its first pass over a new table
//    reported apart, see run_one), a VIP packet starting a new
//    flow on a reused tuple (the old flow's entry rewritten in place),
//    a packet of a tracked
//    flow (conntrack hit + DNAT), a reply (reverse NAT), a packet to no VIP
//    (the cost everybody else pays), and a trivial tc program as the floor
//    of the method, measured in the same run; and the memory floor of a
//    fresh tuple: one line read per run of a map the size of the conntrack
//    table, and of its tags (memory_floor.h) (--conntrack-lru per-cpu|both
//    is still accepted, but means nothing since ABI 8: the rows would be
//    the same program run again);
//  * time to program all services (frontend + 10 backends + Maglev table, in
//    one bulk call), one backend change (one backend replaced by a new one:
//    Maglev rebuild and in-place table write) and one drain, with all of
//    them there;
//  * BPF map memory (memlock of every map, Maglev tables included).
//
//  * conntrack at scale (--conntrack-flows, one entry each): map memory,
//    RSS, and the garbage collector's walk.
//
//   bench_lb [--services 1,1000,10000] [--maglev-size 16381] [--maglev-pool SLOTS]
//            [--repeat N] [--new-flows N] [--fresh-flows N] [--conntrack-flows N]
//            [--conntrack-entries N] [--conntrack-lru common|per-cpu|both]
//
// --maglev-size is the largest table; a service with 10 backends gets 1021
// slots either way (dataplane/lb/maglev.h).
//
// Needs root; its bpffs is mounted in a private mount namespace
// (private_scratch.h), so nothing outlives the process.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/lb/memory_floor.h"
#include "bench/lb/private_scratch.h"
#include "dataplane/lb/load_balancer.h"
#include "dataplane/unique_fd.h"
#include "tests/unit/lb_packets.h"

extern "C" {
#include "ebpf/lb_abi.h"
}

namespace lb = weft::dataplane::lb;
using namespace weft::lbtest;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::vector<std::uint32_t> services{1, 1000, 10000};
  std::uint32_t maglev_size = lb::kDefaultMaglevTableSize;  // the largest table
  std::uint32_t pool_slots = 0;  // 0: the library's default
  std::uint32_t repeat = 1000000;
  // Cold single-run flows (one entry each). With the fresh flows below
  // they stay under one CPU's share of a per-CPU-LRU conntrack map (the
  // 262 144 entries split over 2 CPUs here), so that mode is measured
  // inserting, not evicting.
  std::uint32_t new_flows = 5000;
  std::uint32_t conntrack_entries = 262144;  // in the ns/packet runs
  // Limits::conntrack_lru_per_cpu for each run. Ignored since ABI 8 (one
  // set-associative table for every CPU), so one run by default; the
  // option stays for scripts that pass it.
  std::vector<bool> lru_per_cpu{false};
  std::uint32_t fresh_flows = 51200;  // fresh tuples in repeat runs (one entry each)
  std::uint32_t conntrack_flows = 500000;
};

constexpr std::uint32_t kBackendsPerService = 10;
// The chain of services that makes every repeat run a fresh tuple (see
// fresh_flows in run_one).
constexpr std::uint32_t kChainServices = 256;
const std::uint32_t kClient = ip4(10, 255, 0, 5);

std::uint32_t vip_of(std::uint32_t service) { return ip4(10, 1, 0, 0) + service; }
std::uint32_t chain_vip_of(std::uint32_t link) { return ip4(10, 96, 0, 0) + link; }
std::uint32_t backend_ip_of(std::uint32_t backend_id) { return ip4(10, 128, 0, 0) + backend_id; }

std::vector<lb::Backend> backends_of(std::uint32_t service, std::uint32_t generation = 0) {
  std::vector<lb::Backend> list;
  for (std::uint32_t i = 0; i < kBackendsPerService; ++i) {
    std::uint32_t id = 1 + service * kBackendsPerService + i;
    std::uint32_t ip = backend_ip_of(id) + generation * 0x100000;
    list.push_back(lb::Backend{id, ip, lb::mac_from_ip(ip), lb::BackendState::active});
  }
  return list;
}

// Average ns per run as the kernel measured it, and the verdict.
double test_run(int prog_fd, const Bytes& in, std::uint32_t repeat, int* verdict = nullptr) {
  std::vector<std::uint8_t> out(in.size() + 256);
  bpf_test_run_opts opts{};
  opts.sz = sizeof opts;
  opts.data_in = in.data();
  opts.data_size_in = static_cast<std::uint32_t>(in.size());
  opts.data_out = out.data();
  opts.data_size_out = static_cast<std::uint32_t>(out.size());
  opts.repeat = repeat;
  if (bpf_prog_test_run_opts(prog_fd, &opts) != 0) {
    throw lb::BpfError(errno, "BPF_PROG_TEST_RUN");
  }
  if (verdict) *verdict = static_cast<int>(opts.retval);
  return static_cast<double>(opts.duration);
}

// lb_rev_nat_slots (ebpf/lb_abi.h) read through the map.
class RevNatSlotsView {
 public:
  explicit RevNatSlotsView(int fd) : fd_(fd) {
    bpf_map_info info{};
    std::uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) throw lb::BpfError(errno, "lb_rev_nat_slots info");
    size_ = info.max_entries;
    std::uint32_t log2 = 0;
    while ((1u << log2) < size_) ++log2;
    shift_ = 32 - log2;
  }
  std::uint32_t index(std::uint32_t ip_host) const { return lb_rev_nat_slot_index(htonl(ip_host), shift_); }
  std::uint64_t get(std::uint32_t slot) const {
    std::uint64_t value = 0;
    if (bpf_map_lookup_elem(fd_, &slot, &value) != 0) throw lb::BpfError(errno, "read lb_rev_nat_slots");
    return value;
  }
  // Slots that one backend IP has to itself, and slots that ask lb_rev_nat.
  std::pair<std::uint32_t, std::uint32_t> count() const {
    std::uint32_t own = 0, asking = 0;
    for (std::uint32_t slot = 0; slot < size_; ++slot) {
      const std::uint64_t value = get(slot);
      if (value == LB_REV_NAT_SLOT_ASK) {
        ++asking;
      } else if (value != 0) {
        ++own;
      }
    }
    return {own, asking};
  }

 private:
  int fd_;
  std::uint32_t size_ = 0;
  std::uint32_t shift_ = 32;
};

// The bytes of an ARRAY map's values (elements 8-byte aligned), as its
// mmap sees them.
struct ArrayBytes {
  std::size_t bytes = 0;
  std::size_t mapped = 0;  // rounded up to pages
};

ArrayBytes array_bytes(int fd) {
  bpf_map_info info{};
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) throw lb::BpfError(errno, "map info");
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  ArrayBytes size;
  size.bytes = std::size_t{(info.value_size + 7) / 8 * 8} * info.max_entries;
  size.mapped = (size.bytes + page - 1) / page * page;
  return size;
}

// Zeroes an mmapable ARRAY (the conntrack table and its tags: every way
// free) through mmap.
void empty_array(int fd) {
  const ArrayBytes size = array_bytes(fd);
  void* mem = mmap(nullptr, size.mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) throw lb::BpfError(errno, "mmap a conntrack map");
  std::memset(mem, 0, size.bytes);
  munmap(mem, size.mapped);
}

// `r0 = 0 (TC_ACT_OK); exit`: the floor of a BPF_PROG_TEST_RUN measurement.
weft::dataplane::UniqueFd trivial_tc_program() {
  struct bpf_insn insns[2] = {};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  insns[0].dst_reg = BPF_REG_0;
  insns[0].imm = 0;
  insns[1].code = BPF_JMP | BPF_EXIT;
  weft::dataplane::UniqueFd fd(
      bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "trivial", "GPL", insns, 2, nullptr));
  if (!fd) throw lb::BpfError(errno, "load trivial tc program");
  return fd;
}

std::uint64_t memlock_of(int fd) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  std::string key;
  std::uint64_t value = 0;
  while (in >> key) {
    if (key == "memlock:") {
      in >> value;
      return value;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

std::vector<std::uint32_t> parse_list(const std::string& text) {
  std::vector<std::uint32_t> values;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) values.push_back(static_cast<std::uint32_t>(std::stoul(item)));
  return values;
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

void run_one(const std::string& pin_dir, std::uint32_t services, bool lru_per_cpu,
             const Options& opt) {
  lb::Limits limits;
  limits.conntrack_lru_per_cpu = lru_per_cpu;
  limits.max_services = services + 1 + kChainServices;  // + the measured ones
  limits.max_frontends = services + 1 + kChainServices;
  limits.max_backends = services * kBackendsPerService + 4 + kChainServices;
  limits.conntrack_entries = opt.conntrack_entries;
  limits.maglev_table_size = opt.maglev_size;
  if (opt.pool_slots != 0) limits.maglev_pool_slots = opt.pool_slots;
  lb::LoadBalancer balancer = lb::LoadBalancer::open(pin_dir, limits);

  // All services at once, as an agent starting with its tables would.
  auto start = Clock::now();
  std::vector<lb::ServiceBackends> all;
  all.reserve(services);
  for (std::uint32_t s = 0; s < services; ++s) {
    balancer.upsert_service({vip_of(s), 80, lb::Protocol::tcp}, s);
    all.push_back({s, backends_of(s)});
  }
  balancer.set_backends(all);
  double program_ms = ms_since(start);

  // One backend replaced by a new one (a task restarted elsewhere: new id,
  // new IP), back and forth, in the middle service: a table rebuild each.
  const std::uint32_t changed = services / 2;
  const std::uint32_t spare_id = services * kBackendsPerService + 1;
  constexpr int kChanges = 200;
  start = Clock::now();
  for (int i = 0; i < kChanges; ++i) {
    auto list = backends_of(changed);
    if (i % 2 == 0) {
      list[3].id = spare_id;
      list[3].ip = backend_ip_of(spare_id);
      list[3].mac = lb::mac_from_ip(list[3].ip);
    }
    balancer.set_backends(changed, list);
  }
  double change_us = ms_since(start) * 1000.0 / kChanges;
  // Draining one backend: its table is rebuilt without it.
  start = Clock::now();
  for (int i = 0; i < kChanges; ++i) {
    balancer.set_backend_state(1 + changed * kBackendsPerService + 6,
                               i % 2 == 0 ? lb::BackendState::draining
                                          : lb::BackendState::active);
  }
  double drain_us = ms_since(start) * 1000.0 / kChanges;

  const int from = balancer.from_endpoint_prog_fd();
  const int to = balancer.to_endpoint_prog_fd();

  // Cold new flows: one run per packet, distinct flows to random services;
  // then the same tuples again as new connections (another SYN sequence
  // number): a reused tuple, whose entries are rewritten in place.
  auto cold_new_flows = [&](std::uint32_t seq) {
    std::mt19937 rng(42);
    std::uniform_int_distribution<std::uint32_t> pick(0, services - 1);
    double total = 0;
    for (std::uint32_t i = 0; i < opt.new_flows; ++i) {
      Tcp t;
      t.saddr = kClient + (i >> 14);
      t.daddr = vip_of(pick(rng));
      t.sport = static_cast<std::uint16_t>(10000 + (i & 0x3fff));
      t.dport = 80;
      t.flags = kSyn;
      t.seq = seq;
      int verdict = -1;
      total += test_run(from, tcp_packet(t), 1, &verdict);
      if (verdict != 0) throw std::runtime_error("new flow not forwarded");
    }
    return total / opt.new_flows;
  };
  double new_ns = cold_new_flows(1000);
  double reused_ns = cold_new_flows(2000);

  // Repeat mode runs the program again and again on the same skb, so a
  // packet the program rewrites would be a different packet from the second
  // run on. The measured service's one backend therefore has the VIP's own
  // address: DNAT and reverse NAT rewrite an address to itself (same helper
  // calls, same work) and every run takes the same path. Each figure is
  // checked against the program's own counters.
  const std::uint32_t measured = services;
  // Its address has a slot of lb_rev_nat_slots to itself, as a backend IP
  // mostly has (lb_abi.h; the reply with a shared slot is measured too):
  // the first address from vip_of(measured) on whose slot no other
  // backend IP, nor one of the chain's below, lands.
  const RevNatSlotsView slots(balancer.map_fd("lb_rev_nat_slots"));
  std::set<std::uint32_t> chain_slots;
  for (std::uint32_t k = 0; k < kChainServices; ++k) chain_slots.insert(slots.index(chain_vip_of(k)));
  std::uint32_t measured_vip = vip_of(measured);
  while (slots.get(slots.index(measured_vip)) != 0 ||
         chain_slots.contains(slots.index(measured_vip))) {
    ++measured_vip;
  }
  balancer.upsert_service({measured_vip, 80, lb::Protocol::tcp}, measured);
  std::vector<lb::Backend> self{
      {spare_id + 1, measured_vip, lb::mac_from_ip(measured_vip), lb::BackendState::active}};
  balancer.set_backends(measured, self);
  auto stat = [&](int which) { return balancer.stats()[static_cast<std::size_t>(which)]; };
  auto check = [&](int which, std::uint64_t before, const char* what) {
    if (stat(which) - before < opt.repeat) {
      throw std::runtime_error(std::string(what) + ": not every run took the measured path (" + std::to_string(stat(which) - before) + " of " + std::to_string(opt.repeat) + ")");
    }
  };
  int verdict = -1;

  Tcp first;
  first.saddr = ip4(10, 254, 0, 1);
  first.daddr = measured_vip;
  first.sport = 50000;
  first.dport = 80;
  first.flags = kSyn;
  // A new flow on a reused tuple: with every timeout at 0 each run finds
  // its conntrack entry expired and does all a first packet does (Maglev
  // pick, the entry written, DNAT), except that the entry is rewritten
  // where they are instead of inserted (same backend, same keys): the case
  // of client ports coming round again under short connections. A fresh
  // tuple's LRU insert is in the cold single runs above.
  balancer.set_timeouts(lb::Timeouts{std::chrono::nanoseconds(0), std::chrono::nanoseconds(0),
                                     std::chrono::nanoseconds(0), std::chrono::nanoseconds(0)});
  std::uint64_t before = stat(LB_STAT_NEW_FLOW);
  double new_repeat_ns = test_run(from, tcp_packet(first), opt.repeat, &verdict);
  check(LB_STAT_NEW_FLOW, before, "new flow");
  balancer.set_timeouts(lb::Timeouts{});

  // A new flow on a fresh tuple, what a connection's first packet costs,
  // with no syscall between runs: a chain of kChainServices services whose
  // one backend each is the next one's VIP (the last's is the first's).
  // Each run DNATs the packet to the next VIP, so the next run sees a tuple
  // never seen (client, next VIP, same ports): conntrack miss, frontend,
  // Maglev pick, its entry inserted, DNAT. kChainServices runs bring the
  // packet round to the first VIP, so each call of the repeat loop is
  // exactly one lap, from a new source port each time (then all tuples are
  // new again). The chain's services add to the measured count: a 1-service
  // run has 1 + kChainServices there.
  const std::uint32_t chain_base = services + 1;
  const std::uint32_t chain_backend = spare_id + 2;
  for (std::uint32_t k = 0; k < kChainServices; ++k) {
    balancer.upsert_service({chain_vip_of(k), 80, lb::Protocol::tcp}, chain_base + k);
    const std::uint32_t next = chain_vip_of((k + 1) % kChainServices);
    std::vector<lb::Backend> one{
        {chain_backend + k, next, lb::mac_from_ip(next), lb::BackendState::active}};
    balancer.set_backends(chain_base + k, one);
  }
  // One pass of `laps` laps from the source network 10.`net`.0.0/16 (a
  // tuple never seen at each run): the kernel's average ns per run.
  auto fresh_pass = [&](std::uint8_t net, std::uint32_t laps) {
    const std::uint64_t new_before = stat(LB_STAT_NEW_FLOW);
    const std::uint64_t reopened = stat(LB_STAT_FLOW_REOPENED);
    double ns = 0;
    for (std::uint32_t lap = 0; lap < laps; ++lap) {
      Tcp t;
      t.saddr = ip4(10, net, 0, 1) + (lap >> 15);
      t.daddr = chain_vip_of(0);
      t.sport = static_cast<std::uint16_t>(20000 + (lap & 0x7fff));
      t.dport = 80;
      t.flags = kSyn;
      ns += test_run(from, tcp_packet(t), kChainServices, &verdict);
      if (verdict != 0) throw std::runtime_error("fresh new flow not forwarded");
    }
    if (stat(LB_STAT_NEW_FLOW) - new_before != std::uint64_t{laps} * kChainServices ||
        stat(LB_STAT_FLOW_REOPENED) != reopened) {
      throw std::runtime_error("fresh new flow: not every run started a flow on a fresh tuple");
    }
    return ns / laps;
  };
  // The table's first pass is measured apart: on this VM the program's
  // first touch of each page of a new map costs ~4-12 us (a pass of 51 200
  // fresh flows over a new 25 MB table cost ~950 ns a flow, the same flows
  // once its pages were touched ~250; writing the pages through mmap
  // first does not help: it is the kernel's mapping of the map). A node
  // pays that once per page of its table's life, not per flow. So a first
  // pass, of enough flows to touch every page of the table (8 per page),
  // then the table emptied through mmap, then the measured pass.
  const ArrayBytes table = array_bytes(balancer.map_fd("lb_conntrack"));
  const std::uint32_t laps = std::max<std::uint32_t>(1, opt.fresh_flows / kChainServices);
  const std::uint32_t first_laps = std::max<std::uint32_t>(
      laps, static_cast<std::uint32_t>((table.bytes / 4096 * 8 + kChainServices - 1) / kChainServices));
  const double first_pass_ns = fresh_pass(253, first_laps);
  empty_array(balancer.map_fd("lb_conntrack"));
  empty_array(balancer.map_fd("lb_ct_tags"));
  const double fresh_ns = fresh_pass(252, laps);

  Tcp data = first;
  data.flags = kAck;
  data.payload = std::string(64, 'x');
  Bytes data_packet = tcp_packet(data);
  test_run(from, data_packet, 1, &verdict);
  before = stat(LB_STAT_CT_HIT);
  double hit_ns = test_run(from, data_packet, opt.repeat, &verdict);
  check(LB_STAT_CT_HIT, before, "conntrack hit");

  Tcp reply;
  reply.saddr = measured_vip;  // the backend's address
  reply.daddr = data.saddr;
  reply.sport = 80;
  reply.dport = 50000;
  reply.flags = kAck;
  reply.payload = std::string(64, 'y');
  before = stat(LB_STAT_REV_NAT);
  if (slots.get(slots.index(measured_vip)) != lb_rev_nat_slot(htonl(measured_vip), htonl(measured_vip))) {
    throw std::runtime_error("reply: the backend's lb_rev_nat_slots slot is not its own");
  }
  double reply_ns = test_run(to, tcp_packet(reply), opt.repeat);
  check(LB_STAT_REV_NAT, before, "reply");
  // The same with another backend IP on its slot (a draining backend of
  // the same service, so nothing else changes): lb_rev_nat decides.
  std::uint32_t sharing = ip4(10, 64, 0, 0);
  while (slots.index(sharing) != slots.index(measured_vip) || sharing == measured_vip) ++sharing;
  std::vector<lb::Backend> shared{
      self[0], {spare_id + 2 + kChainServices, sharing, lb::mac_from_ip(sharing), lb::BackendState::draining}};
  balancer.set_backends(measured, shared);
  if (slots.get(slots.index(measured_vip)) != LB_REV_NAT_SLOT_ASK) {
    throw std::runtime_error("reply, shared slot: the slot does not ask lb_rev_nat");
  }
  before = stat(LB_STAT_REV_NAT);
  double reply_shared_ns = test_run(to, tcp_packet(reply), opt.repeat);
  check(LB_STAT_REV_NAT, before, "reply, shared slot");
  balancer.set_backends(measured, self);
  const auto [slots_own, slots_asking] = slots.count();

  Tcp other = data;
  other.daddr = ip4(10, 200, 0, 9);
  std::uint64_t events = 0;
  for (std::uint64_t v : balancer.stats()) events += v;
  double pass_ns = test_run(from, tcp_packet(other), opt.repeat);
  double pass_to_ns = test_run(to, tcp_packet(other), opt.repeat);
  std::uint64_t events_after = 0;
  for (std::uint64_t v : balancer.stats()) events_after += v;
  if (events_after != events) throw std::runtime_error("non-VIP packets were not passed through");
  weft::dataplane::UniqueFd trivial = trivial_tc_program();
  double floor_ns = test_run(trivial.get(), tcp_packet(other), opt.repeat);
  // Single runs, for comparison with the cold new flows above: each carries
  // the timer's own cost and cold caches.
  double hit_single = 0, floor_single = 0;
  for (std::uint32_t i = 0; i < opt.new_flows; ++i) {
    hit_single += test_run(from, data_packet, 1);
    floor_single += test_run(trivial.get(), data_packet, 1);
  }
  hit_single /= opt.new_flows;
  floor_single /= opt.new_flows;
  // The memory floor of a fresh tuple (memory_floor.h): one line read from
  // a map the size of the conntrack table, and of its tags.
  const std::size_t tags_bytes = array_bytes(balancer.map_fd("lb_ct_tags")).bytes;
  const auto table_floor = weft::bench::lb::MemoryFloor(table.bytes).measure();
  const auto tags_floor = weft::bench::lb::MemoryFloor(tags_bytes).measure();

  std::uint64_t map_bytes = 0;
  const char* names[] = {"lb_vips",         "lb_vip_filter", "lb_services",
                         "lb_maglev",       "lb_maglev_index", "lb_backends",
                         "lb_backend_counters", "lb_conntrack", "lb_ct_tags", "lb_config",
                         "lb_stats"};
  for (const char* name : names) map_bytes += memlock_of(balancer.map_fd(name));
  // The Maglev tables: one pool, and the index of where each service's is.
  const std::uint64_t table_bytes =
      memlock_of(balancer.map_fd("lb_maglev")) + memlock_of(balancer.map_fd("lb_maglev_index"));

  std::printf(
      "%6u services, %-6s LRU | ns/packet (repeat %u): new flow (fresh tuple) %5.1f (table's first pass %6.1f), new flow (reused tuple) %5.1f, ct hit %5.1f, reply %5.1f (shared slot %5.1f), non-VIP "
      "%5.1f / %5.1f (from/to), trivial prog %5.1f | single runs, cold: new flow (fresh tuple) %6.1f, new flow (reused tuple) %6.1f, ct hit "
      "%6.1f, trivial %6.1f | program all %7.1f ms, one backend change %6.1f us, drain %6.1f "
      "us | maps %6.1f MB (tables %6.1f MB) | rev-NAT slots: %u own, %u asking | memory floor, one "
      "line read a run, chained / independent: of a %.1f MB map (the conntrack table's size) "
      "%5.1f / %5.1f, of a %.1f MB map (its tags') %5.1f / %5.1f\n",
      services, lru_per_cpu ? "per-CPU" : "common", opt.repeat, fresh_ns, first_pass_ns, new_repeat_ns, hit_ns, reply_ns, reply_shared_ns, pass_ns, pass_to_ns, floor_ns,
      new_ns, reused_ns, hit_single,
      floor_single, program_ms, change_us, drain_us,
      static_cast<double>(map_bytes) / 1e6, static_cast<double>(table_bytes) / 1e6, slots_own, slots_asking,
      static_cast<double>(table.bytes) / 1e6, table_floor.chained, table_floor.independent,
      static_cast<double>(tags_bytes) / 1e6, tags_floor.chained, tags_floor.independent);
  std::fflush(stdout);
}

std::uint64_t vm_rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

// Conntrack at scale: `flows` flows (one entry each) through the program,
// then the map's memory, our RSS, and the garbage collector's walk with
// nothing to delete and with everything to delete.
void run_conntrack(const std::string& pin_dir, std::uint32_t flows) {
  lb::Limits limits;
  limits.max_services = 1;
  limits.max_frontends = 1;
  limits.max_backends = kBackendsPerService + 1;
  limits.conntrack_entries = flows + flows / 8;
  lb::LoadBalancer balancer = lb::LoadBalancer::open(pin_dir, limits);
  balancer.upsert_service({vip_of(0), 80, lb::Protocol::tcp}, 0);
  auto list = backends_of(0);
  balancer.set_backends(0, list);
  const int from = balancer.from_endpoint_prog_fd();
  auto start = Clock::now();
  for (std::uint32_t i = 0; i < flows; ++i) {
    Tcp t;
    t.saddr = kClient + (i >> 15);
    t.daddr = vip_of(0);
    t.sport = static_cast<std::uint16_t>(1024 + (i & 0x7fff));
    t.dport = 80;
    test_run(from, tcp_packet(t), 1);
  }
  double fill_ms = ms_since(start);
  start = Clock::now();
  lb::GcResult kept = balancer.gc(lb::LoadBalancer::monotonic_now_ns());
  double walk_ms = ms_since(start);
  start = Clock::now();
  lb::GcResult gone = balancer.gc(lb::LoadBalancer::monotonic_now_ns() + 86400ULL * 1000000000ULL);
  double delete_ms = ms_since(start);
  std::printf(
      "conntrack %u flows: %" PRIu64 " entries of %" PRIu64 " (map %.1f MB), filled in %.0f ms, "
      "gc walk with nothing expired %.0f ms, gc deleting all %" PRIu64 " in %.0f ms, RSS %.1f MB\n",
      flows, kept.entries, kept.capacity,
      static_cast<double>(memlock_of(balancer.map_fd("lb_conntrack"))) / 1e6, fill_ms, walk_ms,
      gone.expired, delete_ms, static_cast<double>(vm_rss_kb()) / 1e3);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_lb: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    try {
      if (arg == "--services") {
        opt.services = parse_list(value());
      } else if (arg == "--maglev-size") {
        opt.maglev_size = static_cast<std::uint32_t>(std::stoul(value()));
      } else if (arg == "--maglev-pool") {
        opt.pool_slots = static_cast<std::uint32_t>(std::stoul(value()));
      } else if (arg == "--repeat") {
        opt.repeat = static_cast<std::uint32_t>(std::stoul(value()));
      } else if (arg == "--conntrack-flows") {
        opt.conntrack_flows = static_cast<std::uint32_t>(std::stoul(value()));
      } else if (arg == "--conntrack-lru") {
        std::string mode = value();
        if (mode == "common") {
          opt.lru_per_cpu = {false};
        } else if (mode == "per-cpu") {
          opt.lru_per_cpu = {true};
        } else if (mode == "both") {
          opt.lru_per_cpu = {false, true};
        } else {
          throw std::invalid_argument(mode);
        }
      } else if (arg == "--conntrack-entries") {
        opt.conntrack_entries = static_cast<std::uint32_t>(std::stoul(value()));
      } else if (arg == "--fresh-flows") {
        opt.fresh_flows = static_cast<std::uint32_t>(std::stoul(value()));
      } else if (arg == "--new-flows") {
        opt.new_flows = static_cast<std::uint32_t>(std::stoul(value()));
      } else {
        std::fprintf(stderr, "bench_lb: unknown argument %s\n", arg.c_str());
        return 2;
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "bench_lb: bad value for %s\n", arg.c_str());
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "bench_lb: needs root (BPF, bpffs mount)\n");
    return 1;
  }
  int status = 0;
  try {
    weft::bench::lb::PrivateScratch scratch("pkt");
    const std::string dir = scratch.bpffs().string();
    std::printf("bench_lb: Maglev tables up to %u slots, %u backends per service, repeat %u, %u new flows\n",
                opt.maglev_size, kBackendsPerService, opt.repeat, opt.new_flows);
    for (std::uint32_t n : opt.services) {
      for (bool per_cpu : opt.lru_per_cpu) {
        std::string pin_dir = dir + "/lb" + std::to_string(n);
        run_one(pin_dir, n, per_cpu, opt);
        lb::LoadBalancer::remove_pins(pin_dir);
      }
    }
    if (opt.conntrack_flows > 0) {
      std::string pin_dir = dir + "/ct";
      run_conntrack(pin_dir, opt.conntrack_flows);
      lb::LoadBalancer::remove_pins(pin_dir);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_lb: %s\n", e.what());
    status = 1;
  }
  return status;
}
