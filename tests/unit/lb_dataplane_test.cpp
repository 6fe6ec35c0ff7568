// Packet-in/packet-out tests of the load balancer's tc programs through
// BPF_PROG_TEST_RUN, with the maps programmed by the C++ API. Needs root (BPF
// and a private bpffs mounted under a temp dir); skips otherwise.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <thread>

#include "dataplane/lb/conntrack_table.h"
#include "dataplane/lb/load_balancer.h"
#include "tests/support/private_bpffs.h"
#include "tests/unit/lb_packets.h"

extern "C" {
#include "ebpf/lb_abi.h"
#include "ebpf/lb_csum.h"
}

namespace weft::dataplane::lb {
namespace {

using namespace weft::lbtest;
using weft::testing::PrivateBpffs;

constexpr int kOk = 0, kShot = 2, kRedirect = 7;

const std::uint32_t kVip = ip4(10, 0, 0, 2);
const std::uint32_t kClient = ip4(10, 0, 0, 5);
constexpr std::uint32_t kService = 1;

std::uint32_t backend_ip(std::uint32_t id) { return ip4(10, 0, 1, static_cast<int>(id)); }

Backend backend(std::uint32_t id, BackendState state = BackendState::active) {
  return Backend{id, backend_ip(id), mac_from_ip(backend_ip(id)), state};
}

std::vector<Backend> backends(std::uint32_t count) {
  std::vector<Backend> list;
  for (std::uint32_t id = 1; id <= count; ++id) list.push_back(backend(id));
  return list;
}

// lb_rev_nat_slots (ebpf/lb_abi.h) as a load balancer wrote it.
class SlotsOf {
 public:
  explicit SlotsOf(const LoadBalancer& lb) : fd_(lb.map_fd("lb_rev_nat_slots")) {
    bpf_map_info info{};
    std::uint32_t len = sizeof info;
    EXPECT_EQ(bpf_obj_get_info_by_fd(fd_, &info, &len), 0);
    std::uint32_t log2 = 0;
    while ((1u << log2) < info.max_entries) ++log2;
    shift_ = 32 - log2;
  }
  std::uint32_t index(std::uint32_t ip) const { return lb_rev_nat_slot_index(htonl(ip), shift_); }
  // The slot `ip` lands on.
  std::uint64_t of(std::uint32_t ip) const {
    std::uint32_t slot = index(ip);
    std::uint64_t value = 0;
    EXPECT_EQ(bpf_map_lookup_elem(fd_, &slot, &value), 0);
    return value;
  }
  // The first address from `from` on that lands on the slot of `ip`.
  std::uint32_t mate(std::uint32_t ip, std::uint32_t from = ip4(10, 0, 2, 0)) const {
    while (index(from) != index(ip) || from == ip) ++from;
    return from;
  }
  static std::uint64_t own(std::uint32_t ip, std::uint32_t vip) {
    return lb_rev_nat_slot(htonl(ip), htonl(vip));
  }

 private:
  int fd_;
  std::uint32_t shift_ = 32;
};

struct RunResult {
  int retval = -1;
  Bytes out;
};

RunResult run(int prog_fd, const Bytes& in) {
  RunResult r;
  r.out.resize(in.size() + 256);
  bpf_test_run_opts opts{};
  opts.sz = sizeof opts;
  opts.data_in = in.data();
  opts.data_size_in = static_cast<std::uint32_t>(in.size());
  opts.data_out = r.out.data();
  opts.data_size_out = static_cast<std::uint32_t>(r.out.size());
  opts.repeat = 1;
  int err = bpf_prog_test_run_opts(prog_fd, &opts);
  EXPECT_EQ(err, 0) << "BPF_PROG_TEST_RUN: " << strerror(errno);
  r.retval = static_cast<int>(opts.retval);
  r.out.resize(opts.data_size_out);
  return r;
}

// Every live entry of the conntrack table (`fd`: lb_conntrack), read
// through mmap as the collector reads it.
std::vector<std::pair<lb_ct_key, lb_ct_value>> conntrack_entries(int fd) {
  std::vector<std::pair<lb_ct_key, lb_ct_value>> all;
  bpf_map_info info{};
  std::uint32_t len = sizeof info;
  EXPECT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
  EXPECT_EQ(info.value_size, sizeof(lb_ct_bucket));
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t bytes = (std::size_t{info.max_entries} * sizeof(lb_ct_bucket) + page - 1) / page * page;
  void* mem = mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  EXPECT_NE(mem, MAP_FAILED) << strerror(errno);
  if (mem == MAP_FAILED) return all;
  const auto* table = static_cast<const lb_ct_bucket*>(mem);
  for (std::uint32_t bucket = 0; bucket < info.max_entries; ++bucket) {
    for (const lb_ct_entry& way : table[bucket].way) {
      const ConntrackSnapshot snap = ConntrackTable::read(way);
      if (snap.state == ConntrackSnapshot::State::live) all.emplace_back(snap.key, snap.value);
    }
  }
  munmap(mem, bytes);
  return all;
}

ConntrackTable conntrack_table(const LoadBalancer& lb) {
  return ConntrackTable(lb.map_fd("lb_conntrack"), lb.map_fd("lb_ct_tags"));
}

// Ends the entry of `key`, as an eviction would; whether there was one.
bool erase_conntrack_entry(const LoadBalancer& lb, const lb_ct_key& key) {
  ConntrackTable table = conntrack_table(lb);
  std::uint32_t bucket = 0, way = 0;
  if (!table.find(key, &bucket, &way)) return false;
  return table.end_if_unchanged(bucket, way, ConntrackTable::read(table.way(bucket, way)).stamp);
}

class LbDataplaneTest : public ::testing::Test {
 public:
  static Limits test_limits() {
    Limits limits;
    limits.max_services = 64;
    limits.max_frontends = 64;
    limits.max_backends = 256;
    limits.conntrack_entries = 16384;
    limits.maglev_table_size = 1021;
    return limits;
  }

 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: BPF programs and a private bpffs mount";
    bpffs_.emplace();
    if (!bpffs_->ok()) GTEST_SKIP() << "no private bpffs: " << bpffs_->error();
    pin_dir_ = bpffs_->dir() / "lb";
    lb_.emplace(LoadBalancer::open(pin_dir_, test_limits()));
  }
  void TearDown() override {
    lb_.reset();
    bpffs_.reset();
  }

  // VIP:80/tcp and VIP:53/udp of service 1 with `count` backends.
  void make_service(std::uint32_t count) {
    lb_->upsert_service({kVip, 80, Protocol::tcp}, kService);
    lb_->upsert_service({kVip, 53, Protocol::udp}, kService);
    auto list = backends(count);
    lb_->set_backends(kService, list);
  }

  RunResult from_endpoint(const Bytes& in) { return run(lb_->from_endpoint_prog_fd(), in); }
  RunResult to_endpoint(const Bytes& in) { return run(lb_->to_endpoint_prog_fd(), in); }

  Bytes syn(std::uint16_t sport, std::uint16_t dport = 80) {
    Tcp t;
    t.saddr = kClient;
    t.daddr = kVip;
    t.sport = sport;
    t.dport = dport;
    t.flags = kSyn;
    t.seq = 5000;
    return tcp_packet(t);
  }
  // The backend's SYN-ACK to syn(client_port)'s SYN (seq 5000), port 80.
  Bytes syn_ack(std::uint32_t backend, std::uint16_t client_port) {
    Tcp t;
    t.saddr = backend;
    t.daddr = kClient;
    t.sport = 80;
    t.dport = client_port;
    t.flags = kSyn | kAck;
    t.seq = 9000;
    t.ack = 5001;
    return tcp_packet(t);
  }
  // Marks the pinned maps as written by another ABI version.
  void set_pinned_abi_version(std::uint32_t version) {
    lb_config cfg{};
    std::uint32_t zero = 0;
    ASSERT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_config"), &zero, &cfg), 0);
    cfg.abi_version = version;
    ASSERT_EQ(bpf_map_update_elem(lb_->map_fd("lb_config"), &zero, &cfg, BPF_ANY), 0);
  }
  // A conntrack value of ABI versions 5 to 7, in their LRU hash.
  struct LegacyCtValue {
    std::uint64_t last_seen_ns;
    std::uint32_t backend_id, nat_addr, service_id, frontend_epoch, syn_seq;
    std::uint8_t flags, pad;
    std::uint16_t syn_len;
  };
  static_assert(sizeof(LegacyCtValue) == 32);
  // Turns the pins into those an agent of ABI `version` (5 to 7) leaves:
  // conntrack an LRU hash of their value layout holding this table's
  // flows (and `extra` entries), lb_stats one counter shorter, no
  // lb_ct_tags; lb_config says `version`. Closes the load balancer.
  void pin_as_abi(std::uint32_t version,
                  const std::vector<std::pair<lb_ct_key, lb_ct_value>>& extra = {}) {
    auto flows = conntrack_entries(lb_->map_fd("lb_conntrack"));
    flows.insert(flows.end(), extra.begin(), extra.end());
    const int ncpus = libbpf_num_possible_cpus();
    ASSERT_GT(ncpus, 0);
    std::vector<std::vector<std::uint64_t>> stats(LB_STAT_MAX - 1);
    for (std::uint32_t stat = 0; stat + 1 < LB_STAT_MAX; ++stat) {
      stats[stat].resize(static_cast<std::size_t>(ncpus));
      ASSERT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_stats"), &stat, stats[stat].data()), 0);
    }
    set_pinned_abi_version(version);
    lb_.reset();
    for (const char* name : {"lb_conntrack", "lb_ct_tags", "lb_stats"}) {
      ASSERT_EQ(::unlink((pin_dir_ / name).c_str()), 0) << name;
    }
    const int ct = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "lb_conntrack", sizeof(lb_ct_key),
                                  sizeof(LegacyCtValue), test_limits().conntrack_entries, nullptr);
    ASSERT_GE(ct, 0) << strerror(errno);
    for (const auto& [key, value] : flows) {
      LegacyCtValue old{std::uint64_t{value.seen} << LB_CT_SEEN_SHIFT, value.backend_id, value.nat_addr,
                        value.service_id, value.frontend_epoch, value.syn_seq, value.flags, 0,
                        value.syn_len};
      ASSERT_EQ(bpf_map_update_elem(ct, &key, &old, BPF_ANY), 0);
    }
    ASSERT_EQ(bpf_obj_pin(ct, (pin_dir_ / "lb_conntrack").c_str()), 0);
    ::close(ct);
    const int st = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "lb_stats", sizeof(std::uint32_t),
                                  sizeof(std::uint64_t), LB_STAT_MAX - 1, nullptr);
    ASSERT_GE(st, 0) << strerror(errno);
    for (std::uint32_t stat = 0; stat + 1 < LB_STAT_MAX; ++stat) {
      ASSERT_EQ(bpf_map_update_elem(st, &stat, stats[stat].data(), BPF_ANY), 0);
    }
    ASSERT_EQ(bpf_obj_pin(st, (pin_dir_ / "lb_stats").c_str()), 0);
    ::close(st);
  }
  Bytes ack(std::uint16_t sport, const std::string& payload = "GET /") {
    Tcp t;
    t.saddr = kClient;
    t.daddr = kVip;
    t.sport = sport;
    t.dport = 80;
    t.flags = kAck | kPsh;
    t.seq = 5001;
    t.ack = 9001;
    t.payload = payload;
    return tcp_packet(t);
  }

  // Which backend (by IP) the program sent a client packet to.
  std::uint32_t backend_of(const RunResult& r) {
    EXPECT_EQ(r.retval, kOk);
    return get32(r.out, kIp + 16);
  }

  std::optional<PrivateBpffs> bpffs_;
  std::filesystem::path pin_dir_;
  std::optional<LoadBalancer> lb_;
};

TEST_F(LbDataplaneTest, TcpToVipIsDnatedWithValidChecksums) {
  make_service(1);
  Bytes in = syn(40000);
  RunResult r = from_endpoint(in);
  ASSERT_EQ(r.retval, kOk);
  ASSERT_EQ(r.out.size(), in.size());
  EXPECT_EQ(get32(r.out, kIp + 16), backend_ip(1));
  EXPECT_EQ(get32(r.out, kIp + 12), kClient);
  EXPECT_EQ(get16(r.out, kL4), 40000);
  EXPECT_EQ(get16(r.out, kL4 + 2), 80);  // ports unchanged (VIP mode)
  EXPECT_EQ(get_mac(r.out, 0), mac_of(backend_ip(1)));
  EXPECT_EQ(get_mac(r.out, 6), mac_of(kClient));
  EXPECT_TRUE(ip_checksum_ok(r.out));
  EXPECT_TRUE(l4_checksum_ok(r.out));

  // With payload too, and the counters see both packets and one connection.
  RunResult data = from_endpoint(ack(40000));
  EXPECT_EQ(backend_of(data), backend_ip(1));
  EXPECT_TRUE(l4_checksum_ok(data.out));
  auto counters = lb_->counters(kService);
  ASSERT_EQ(counters.size(), 1u);
  EXPECT_EQ(counters[0].backend_id, 1u);
  EXPECT_EQ(counters[0].connections, 1u);
  EXPECT_EQ(counters[0].packets, 2u);
  EXPECT_EQ(counters[0].bytes, in.size() + ack(40000).size());
}

// /metrics reads every backend's connections in batches; they must be what
// the per-backend lookups (service inspect) read.
TEST_F(LbDataplaneTest, ConnectionsByBackendMatchThePerBackendCounters) {
  make_service(3);
  for (std::uint16_t sport = 41000; sport < 41030; ++sport) ASSERT_EQ(from_endpoint(syn(sport)).retval, kOk);
  const std::vector<std::uint64_t> all = lb_->connections_by_backend();
  ASSERT_EQ(all.size(), test_limits().max_backends);
  std::uint64_t sum = 0;
  for (const auto& c : lb_->counters(kService)) {
    EXPECT_EQ(all[c.backend_id], c.connections) << "backend " << c.backend_id;
    sum += all[c.backend_id];
  }
  EXPECT_EQ(sum, 30u);
  EXPECT_EQ(std::accumulate(all.begin(), all.end(), std::uint64_t{0}), 30u);
}

TEST_F(LbDataplaneTest, UdpToVipIsDnatedWithValidChecksums) {
  make_service(1);
  RunResult r = from_endpoint(udp_packet(kClient, 33333, kVip, 53, "query"));
  ASSERT_EQ(r.retval, kOk);
  EXPECT_EQ(get32(r.out, kIp + 16), backend_ip(1));
  EXPECT_NE(get16(r.out, kL4 + 6), 0);
  EXPECT_TRUE(ip_checksum_ok(r.out));
  EXPECT_TRUE(l4_checksum_ok(r.out));

  // A datagram without a checksum keeps none.
  RunResult none = from_endpoint(udp_packet(kClient, 33334, kVip, 53, "query", false));
  ASSERT_EQ(none.retval, kOk);
  EXPECT_EQ(get32(none.out, kIp + 16), backend_ip(1));
  EXPECT_EQ(get16(none.out, kL4 + 6), 0);
  EXPECT_TRUE(ip_checksum_ok(none.out));
}

TEST_F(LbDataplaneTest, RepliesAreReverseNatedToTheVip) {
  make_service(1);
  ASSERT_EQ(from_endpoint(syn(40000)).retval, kOk);
  Tcp reply;
  reply.saddr = backend_ip(1);
  reply.daddr = kClient;
  reply.sport = 80;
  reply.dport = 40000;
  reply.flags = kSyn | kAck;
  reply.seq = 9000;
  reply.ack = 5001;
  RunResult r = to_endpoint(tcp_packet(reply));
  ASSERT_EQ(r.retval, kOk);
  EXPECT_EQ(get32(r.out, kIp + 12), kVip);
  EXPECT_EQ(get32(r.out, kIp + 16), kClient);
  EXPECT_EQ(get16(r.out, kL4), 80);
  EXPECT_EQ(get_mac(r.out, 6), mac_of(kVip));
  EXPECT_TRUE(ip_checksum_ok(r.out));
  EXPECT_TRUE(l4_checksum_ok(r.out));

  // UDP replies as well.
  ASSERT_EQ(from_endpoint(udp_packet(kClient, 33333, kVip, 53, "q")).retval, kOk);
  RunResult u = to_endpoint(udp_packet(backend_ip(1), 53, kClient, 33333, "answer"));
  ASSERT_EQ(u.retval, kOk);
  EXPECT_EQ(get32(u.out, kIp + 12), kVip);
  EXPECT_TRUE(ip_checksum_ok(u.out));
  EXPECT_TRUE(l4_checksum_ok(u.out));
}

TEST_F(LbDataplaneTest, TrafficNotToAVipPassesUntouched) {
  make_service(2);
  const std::uint32_t other = ip4(10, 0, 0, 9);
  std::vector<Bytes> packets;
  Tcp t;
  t.saddr = kClient;
  t.daddr = other;
  t.sport = 40000;
  t.dport = 80;
  packets.push_back(tcp_packet(t));
  packets.push_back(udp_packet(kClient, 1000, other, 53, "x"));
  packets.push_back(icmp_echo(kClient, other, 1, 1));
  packets.push_back(arp_request(kClient, other));
  Bytes ipv6(80, 0);
  put16(ipv6, 12, 0x86dd);
  packets.push_back(ipv6);
  for (const Bytes& in : packets) {
    RunResult r = from_endpoint(in);
    EXPECT_EQ(r.retval, kOk);
    EXPECT_EQ(r.out, in);
    RunResult back = to_endpoint(in);  // no flow: untouched towards the endpoint too
    EXPECT_EQ(back.retval, kOk);
    EXPECT_EQ(back.out, in);
  }
  auto stats = lb_->stats();
  EXPECT_EQ(stats[LB_STAT_NEW_FLOW], 0u);
}

TEST_F(LbDataplaneTest, ArpRequestForVipIsAnswered) {
  make_service(1);
  RunResult r = from_endpoint(arp_request(kClient, kVip));
  ASSERT_EQ(r.retval, kRedirect);
  ASSERT_EQ(r.out.size(), 42u);
  EXPECT_EQ(get_mac(r.out, 0), mac_of(kClient));  // back to the asker
  EXPECT_EQ(get_mac(r.out, 6), mac_of(kVip));
  EXPECT_EQ(get16(r.out, 12), 0x0806);
  EXPECT_EQ(get16(r.out, 20), 2);                  // reply
  EXPECT_EQ(get_mac(r.out, 22), mac_of(kVip));     // sender: the VIP
  EXPECT_EQ(get32(r.out, 28), kVip);
  EXPECT_EQ(get_mac(r.out, 32), mac_of(kClient));  // target: the asker
  EXPECT_EQ(get32(r.out, 38), kClient);
}

TEST_F(LbDataplaneTest, EchoRequestToVipIsAnswered) {
  make_service(1);
  Bytes in = icmp_echo(kClient, kVip, 77, 3);
  RunResult r = from_endpoint(in);
  ASSERT_EQ(r.retval, kRedirect);
  ASSERT_EQ(r.out.size(), in.size());
  EXPECT_EQ(get_mac(r.out, 0), mac_of(kClient));
  EXPECT_EQ(get_mac(r.out, 6), mac_of(kVip));
  EXPECT_EQ(get32(r.out, kIp + 12), kVip);
  EXPECT_EQ(get32(r.out, kIp + 16), kClient);
  EXPECT_EQ(r.out[kL4], 0);  // echo reply
  EXPECT_EQ(get16(r.out, kL4 + 4), 77);
  EXPECT_EQ(get16(r.out, kL4 + 6), 3);
  EXPECT_TRUE(std::equal(in.begin() + kL4 + 8, in.end(), r.out.begin() + kL4 + 8));
  EXPECT_TRUE(ip_checksum_ok(r.out));
  EXPECT_TRUE(l4_checksum_ok(r.out));
}

void expect_rst(const RunResult& r, std::uint16_t vip_port, std::uint16_t client_port) {
  ASSERT_EQ(r.retval, kRedirect);
  ASSERT_EQ(r.out.size(), 54u);
  EXPECT_EQ(get_mac(r.out, 0), mac_of(kClient));
  EXPECT_EQ(get_mac(r.out, 6), mac_of(kVip));
  EXPECT_EQ(get32(r.out, kIp + 12), kVip);
  EXPECT_EQ(get32(r.out, kIp + 16), kClient);
  EXPECT_EQ(get16(r.out, kIp + 2), 40);
  EXPECT_EQ(get16(r.out, kL4), vip_port);
  EXPECT_EQ(get16(r.out, kL4 + 2), client_port);
  EXPECT_TRUE(r.out[kL4 + 13] & kRst);
  EXPECT_TRUE(ip_checksum_ok(r.out));
  EXPECT_TRUE(l4_checksum_ok(r.out));
}

TEST_F(LbDataplaneTest, UnknownPortOnVipIsRefused) {
  make_service(1);
  RunResult r = from_endpoint(syn(40000, 81));
  expect_rst(r, 81, 40000);
  EXPECT_EQ(r.out[kL4 + 13], kRst | kAck);
  EXPECT_EQ(get32(r.out, kL4 + 8), 5001u);  // acknowledges the SYN

  // UDP: ICMP port unreachable quoting the datagram's IP header + 8 bytes.
  Bytes udp = udp_packet(kClient, 33333, kVip, 54, "payload");
  RunResult u = from_endpoint(udp);
  ASSERT_EQ(u.retval, kRedirect);
  ASSERT_EQ(u.out.size(), 14u + 20 + 8 + 20 + 8);
  EXPECT_EQ(u.out[kIp + 9], IPPROTO_ICMP);
  EXPECT_EQ(get32(u.out, kIp + 12), kVip);
  EXPECT_EQ(get32(u.out, kIp + 16), kClient);
  EXPECT_EQ(u.out[kL4], 3);
  EXPECT_EQ(u.out[kL4 + 1], 3);
  EXPECT_TRUE(std::equal(udp.begin() + kIp, udp.begin() + kIp + 28, u.out.begin() + kL4 + 8));
  EXPECT_TRUE(ip_checksum_ok(u.out));
  EXPECT_TRUE(l4_checksum_ok(u.out));

  auto stats = lb_->stats();
  EXPECT_EQ(stats[LB_STAT_RST_UNKNOWN_PORT], 1u);
  EXPECT_EQ(stats[LB_STAT_ICMP_UNREACH], 1u);
}

TEST_F(LbDataplaneTest, VipWithoutBackendsAnswersRst) {
  lb_->upsert_service({kVip, 80, Protocol::tcp}, kService);
  expect_rst(from_endpoint(syn(40000)), 80, 40000);
  // A data segment gets a RST with its ACK number as sequence (RFC 793).
  RunResult r = from_endpoint(ack(40001));
  expect_rst(r, 80, 40001);
  EXPECT_EQ(r.out[kL4 + 13], kRst);
  EXPECT_EQ(get32(r.out, kL4 + 4), 9001u);
  // A RST is never answered.
  Tcp rst;
  rst.saddr = kClient;
  rst.daddr = kVip;
  rst.sport = 40002;
  rst.dport = 80;
  rst.flags = kRst;
  EXPECT_EQ(from_endpoint(tcp_packet(rst)).retval, kShot);
  EXPECT_EQ(lb_->stats()[LB_STAT_RST_NO_BACKEND], 2u);

  // Backends gone again: refused again.
  auto list = backends(2);
  lb_->set_backends(kService, list);
  EXPECT_EQ(from_endpoint(syn(40003)).retval, kOk);
  lb_->set_backends(kService, {});
  expect_rst(from_endpoint(syn(40004)), 80, 40004);
}

TEST_F(LbDataplaneTest, WildcardPortServiceTakesEveryPort) {
  lb_->upsert_service({kVip, 0, Protocol::tcp}, kService);
  auto list = backends(1);
  lb_->set_backends(kService, list);
  RunResult r = from_endpoint(syn(40000, 6379));
  EXPECT_EQ(backend_of(r), backend_ip(1));
  EXPECT_EQ(get16(r.out, kL4 + 2), 6379);
  // UDP was not asked for.
  EXPECT_EQ(from_endpoint(udp_packet(kClient, 1, kVip, 6379, "x")).retval, kRedirect);
}

TEST_F(LbDataplaneTest, ConntrackKeepsAFlowOnItsBackendWhenBackendsChange) {
  make_service(2);
  // A flow whose Maglev choice changes when backends 3..10 join.
  std::vector<Backend> ten = backends(10);
  std::optional<std::uint16_t> port;
  std::uint32_t first = 0;
  for (std::uint16_t sport = 40000; sport < 40200 && !port; ++sport) {
    first = backend_of(from_endpoint(syn(sport)));
    auto before = lb_->lookup(kService, kClient, sport, 80, Protocol::tcp);
    ASSERT_TRUE(before);
    EXPECT_EQ(before->ip, first);  // lookup answers as the program does
    lb_->set_backends(kService, ten);
    auto after = lb_->lookup(kService, kClient, sport, 80, Protocol::tcp);
    ASSERT_TRUE(after);
    if (after->ip != first) {
      port = sport;
    } else {
      auto two = backends(2);
      lb_->set_backends(kService, two);
    }
  }
  ASSERT_TRUE(port) << "no flow moved in 200 tries";
  for (int i = 0; i < 3; ++i) EXPECT_EQ(backend_of(from_endpoint(ack(*port))), first);
  EXPECT_GE(lb_->stats()[LB_STAT_CT_HIT], 3u);
}

TEST_F(LbDataplaneTest, DrainingBackendKeepsItsFlowsButGetsNoNewOnes) {
  make_service(2);
  std::uint16_t on_one = 0;
  for (std::uint16_t sport = 40000; sport < 40100 && !on_one; ++sport) {
    if (backend_of(from_endpoint(syn(sport))) == backend_ip(1)) on_one = sport;
  }
  ASSERT_NE(on_one, 0);
  lb_->set_backend_state(1, BackendState::draining);
  EXPECT_EQ(backend_of(from_endpoint(ack(on_one))), backend_ip(1));
  for (std::uint16_t sport = 41000; sport < 41200; ++sport) {
    ASSERT_EQ(backend_of(from_endpoint(syn(sport))), backend_ip(2)) << "port " << sport;
  }
  // Replies of the draining backend's flow are still reverse-NATed.
  Tcp reply;
  reply.saddr = backend_ip(1);
  reply.daddr = kClient;
  reply.sport = 80;
  reply.dport = on_one;
  reply.flags = kAck;
  EXPECT_EQ(get32(to_endpoint(tcp_packet(reply)).out, kIp + 12), kVip);
}

TEST_F(LbDataplaneTest, FlowsToADeadBackendGetARst) {
  make_service(2);
  std::uint16_t on_one = 0;
  for (std::uint16_t sport = 40000; sport < 40100 && !on_one; ++sport) {
    if (backend_of(from_endpoint(syn(sport))) == backend_ip(1)) on_one = sport;
  }
  ASSERT_NE(on_one, 0);
  lb_->set_backend_state(1, BackendState::dead);
  RunResult r = from_endpoint(ack(on_one));
  expect_rst(r, 80, on_one);
  EXPECT_EQ(get32(r.out, kL4 + 4), 9001u);
  EXPECT_EQ(lb_->stats()[LB_STAT_RST_DEAD_BACKEND], 1u);
  // The client reconnects from the same port: the new SYN goes to a live one.
  EXPECT_EQ(backend_of(from_endpoint(syn(on_one))), backend_ip(2));
}

TEST_F(LbDataplaneTest, BackendDroppedFromTheListIsDead) {
  make_service(2);
  std::uint16_t on_two = 0;
  for (std::uint16_t sport = 40000; sport < 40100 && !on_two; ++sport) {
    if (backend_of(from_endpoint(syn(sport))) == backend_ip(2)) on_two = sport;
  }
  ASSERT_NE(on_two, 0);
  auto one = backends(1);
  lb_->set_backends(kService, one);
  expect_rst(from_endpoint(ack(on_two)), 80, on_two);
}

// Issue 9's bound through the program: 2000 flows over 10 backends, one
// backend removed, the same flows sent again as new flows: only about the
// removed backend's tenth move.
TEST_F(LbDataplaneTest, RemovingOneOfTenBackendsMovesAboutATenthOfFlows) {
  make_service(10);
  constexpr int kFlows = 2000;
  std::map<std::uint16_t, std::uint32_t> before;
  std::map<std::uint32_t, int> share;
  for (int i = 0; i < kFlows; ++i) {
    std::uint16_t sport = static_cast<std::uint16_t>(20000 + i);
    std::uint32_t ip = backend_of(from_endpoint(syn(sport)));
    auto expected = lb_->lookup(kService, kClient, sport, 80, Protocol::tcp);
    ASSERT_TRUE(expected);
    ASSERT_EQ(expected->ip, ip) << "lookup disagrees with the program";
    before[sport] = ip;
    share[ip]++;
  }
  EXPECT_EQ(share.size(), 10u);
  for (auto& [ip, n] : share) EXPECT_LT(n, 2 * kFlows / 10) << "backend " << ip;

  std::vector<Backend> nine = backends(10);
  nine.erase(nine.begin() + 3);  // backend 4
  lb_->set_backends(kService, nine);
  GcResult gc = lb_->gc(LoadBalancer::monotonic_now_ns() + 24ULL * 3600 * 1000000000ULL);
  EXPECT_EQ(gc.expired, 1u * kFlows);  // one entry per flow
  EXPECT_EQ(gc.entries, 0u);

  int moved = 0, moved_from_others = 0;
  for (auto& [sport, ip] : before) {
    std::uint32_t now = backend_of(from_endpoint(syn(sport)));
    EXPECT_NE(now, backend_ip(4));
    if (now != ip) {
      ++moved;
      if (ip != backend_ip(4)) ++moved_from_others;
    }
  }
  EXPECT_EQ(moved - moved_from_others, share[backend_ip(4)]);
  EXPECT_LE(moved, kFlows / 10 + kFlows * 4 / 100) << moved << " of " << kFlows << " moved";
}

TEST_F(LbDataplaneTest, GcExpiresByStateAndIdleTime) {
  Timeouts t;
  lb_->set_timeouts(t);
  make_service(1);
  const std::uint64_t s = 1000000000ULL;
  std::uint64_t start = LoadBalancer::monotonic_now_ns();
  // 1: UDP; 2: TCP SYN only; 3: TCP established; 4: TCP reset.
  ASSERT_EQ(from_endpoint(udp_packet(kClient, 30000, kVip, 53, "q")).retval, kOk);
  ASSERT_EQ(from_endpoint(syn(40001)).retval, kOk);
  ASSERT_EQ(from_endpoint(syn(40002)).retval, kOk);
  Tcp reply;
  reply.saddr = backend_ip(1);
  reply.daddr = kClient;
  reply.sport = 80;
  reply.dport = 40002;
  reply.flags = kSyn | kAck;
  reply.ack = 5001;  // answers syn()'s SYN (seq 5000)
  ASSERT_EQ(get32(to_endpoint(tcp_packet(reply)).out, kIp + 12), kVip);
  ASSERT_EQ(from_endpoint(syn(40003)).retval, kOk);
  Tcp rst;
  rst.saddr = kClient;
  rst.daddr = kVip;
  rst.sport = 40003;
  rst.dport = 80;
  rst.flags = kRst | kAck;
  ASSERT_EQ(from_endpoint(tcp_packet(rst)).retval, kOk);

  GcResult now = lb_->gc(LoadBalancer::monotonic_now_ns());
  EXPECT_EQ(now.expired, 0u);
  EXPECT_EQ(now.entries, 4u);  // one entry per flow
  EXPECT_EQ(now.capacity, 16384u);

  GcResult after_closing = lb_->gc(start + 11 * s);  // RST: 10 s
  EXPECT_EQ(after_closing.expired, 1u);
  GcResult after_minute = lb_->gc(start + 61 * s);   // UDP and SYN-only: 60 s
  EXPECT_EQ(after_minute.expired, 2u);
  EXPECT_EQ(after_minute.entries, 1u);
  // No 900 s cut: the established flow is there after an idle hour.
  EXPECT_EQ(lb_->gc(start + 3600 * s).expired, 0u);
  GcResult after_six_hours = lb_->gc(start + (6 * 3600 + 1) * s);
  EXPECT_EQ(after_six_hours.expired, 1u);
  EXPECT_EQ(after_six_hours.entries, 0u);
}

// A backend connecting to its own service's VIP and balanced to itself:
// the flow goes back in from the hairpin address, its replies come back in
// from the VIP, and the pair expires together.
TEST_F(LbDataplaneTest, BackendBalancedToItselfGoesBackInThroughTheHairpinAddress) {
  const std::uint32_t self_ip = backend_ip(1);
  const std::uint32_t hairpin = LB_HAIRPIN_ADDR_HOST;
  lb_->upsert_service({kVip, 80, Protocol::tcp}, kService);
  auto list = backends(1);
  lb_->set_backends(kService, list);
  Tcp t;
  t.saddr = self_ip;
  t.daddr = kVip;
  t.sport = 45000;
  t.dport = 80;
  t.dst_mac = mac_of(kVip);
  RunResult r = from_endpoint(tcp_packet(t));
  ASSERT_EQ(r.retval, kRedirect);
  EXPECT_EQ(get32(r.out, kIp + 12), hairpin);
  EXPECT_EQ(get32(r.out, kIp + 16), self_ip);
  EXPECT_EQ(get16(r.out, kL4), 45000);
  EXPECT_EQ(get16(r.out, kL4 + 2), 80);
  EXPECT_EQ(get_mac(r.out, 0), mac_of(self_ip));
  EXPECT_EQ(get_mac(r.out, 6), mac_of(kVip));
  EXPECT_TRUE(ip_checksum_ok(r.out));
  EXPECT_TRUE(l4_checksum_ok(r.out));

  // The server side answers the hairpin address (via its gateway's MAC).
  Tcp answer;
  answer.saddr = self_ip;
  answer.daddr = hairpin;
  answer.sport = 80;
  answer.dport = 45000;
  answer.flags = kSyn | kAck;
  answer.dst_mac = {0x02, 0x42, 10, 0, 0, 1};
  RunResult back = from_endpoint(tcp_packet(answer));
  ASSERT_EQ(back.retval, kRedirect);
  EXPECT_EQ(get32(back.out, kIp + 12), kVip);
  EXPECT_EQ(get32(back.out, kIp + 16), self_ip);
  EXPECT_EQ(get16(back.out, kL4), 80);
  EXPECT_EQ(get16(back.out, kL4 + 2), 45000);
  EXPECT_EQ(get_mac(back.out, 0), mac_of(self_ip));
  EXPECT_EQ(get_mac(back.out, 6), mac_of(kVip));
  EXPECT_TRUE(ip_checksum_ok(back.out));
  EXPECT_TRUE(l4_checksum_ok(back.out));

  // Later packets of the flow take the same way; the pair is one flow.
  t.flags = kAck;
  EXPECT_EQ(get32(from_endpoint(tcp_packet(t)).out, kIp + 12), hairpin);
  EXPECT_EQ(lb_->gc(LoadBalancer::monotonic_now_ns() + 2ULL * 3600 * 1000000000ULL).expired, 0u);
  GcResult gc = lb_->gc(LoadBalancer::monotonic_now_ns() + 7ULL * 3600 * 1000000000ULL);
  EXPECT_EQ(gc.expired, 2u);

  // Nothing answers for the hairpin address by itself.
  answer.sport = 81;
  EXPECT_EQ(from_endpoint(tcp_packet(answer)).retval, kShot);
  Bytes arp = arp_request(self_ip, hairpin);
  EXPECT_EQ(from_endpoint(arp).out, arp);
  EXPECT_THROW(lb_->upsert_service({hairpin, 80, Protocol::tcp}, 2), std::invalid_argument);
}


// A flow lives as long as its most recent direction: a UDP stream the
// backend keeps sending on is not cut because the client went quiet. The
// reply stamps the flow's one entry.
TEST_F(LbDataplaneTest, GcKeepsAFlowWhoseOtherDirectionIsFresh) {
  make_service(1);
  const int fd = lb_->map_fd("lb_conntrack");
  ASSERT_EQ(from_endpoint(udp_packet(kClient, 30000, kVip, 53, "q")).retval, kOk);
  auto first = conntrack_entries(fd);
  ASSERT_EQ(first.size(), 1u);
  const std::uint64_t original = std::uint64_t{first[0].second.seen} << LB_CT_SEEN_SHIFT;
  usleep(100 * 1000);
  ASSERT_EQ(to_endpoint(udp_packet(backend_ip(1), 53, kClient, 30000, "a")).retval, kOk);
  auto after = conntrack_entries(fd);
  ASSERT_EQ(after.size(), 1u);
  const std::uint64_t reply = std::uint64_t{after[0].second.seen} << LB_CT_SEEN_SHIFT;
  ASSERT_GT(reply, original);
  const std::uint64_t minute = 60ULL * 1000000000ULL;
  EXPECT_EQ(lb_->gc(original + minute + (reply - original) / 2).expired, 0u);
  EXPECT_EQ(lb_->gc(reply + minute).expired, 1u);
}

// One entry per flow (ORIGINAL); a reply finds it through lb_rev_nat
// (backend IP -> VIP), and only when the flow is balanced to that backend:
// a client's own connection to a backend's address is never reverse-NATed.
TEST_F(LbDataplaneTest, RepliesFindTheirFlowsOneEntryAndNotOthers) {
  make_service(2);
  const int fd = lb_->map_fd("lb_conntrack");
  const std::uint16_t sport = 40000;
  const std::uint32_t chosen = backend_of(from_endpoint(syn(sport)));
  const std::uint32_t other = chosen == backend_ip(1) ? backend_ip(2) : backend_ip(1);
  auto all = conntrack_entries(fd);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].first.dir, LB_CT_DIR_ORIGINAL);
  EXPECT_EQ(all[0].second.flags & LB_CT_F_PAIRED, 0u);
  lb_rev_nat_value rev{};
  const std::uint32_t chosen_net = htonl(chosen);
  ASSERT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_rev_nat"), &chosen_net, &rev), 0);
  EXPECT_EQ(rev.vip, htonl(kVip));
  EXPECT_EQ(rev.flags, 0u);

  auto reply = [&](std::uint32_t from, std::uint16_t dport, std::uint8_t flags) {
    Tcp t;
    t.saddr = from;
    t.daddr = kClient;
    t.sport = 80;
    t.dport = dport;
    t.flags = flags;
    t.seq = 9000;
    t.ack = 5001;
    return tcp_packet(t);
  };
  RunResult r = to_endpoint(reply(chosen, sport, kSyn | kAck));
  EXPECT_EQ(get32(r.out, kIp + 12), kVip);
  EXPECT_TRUE(l4_checksum_ok(r.out));
  // The other backend on the flow's ports: the client's own connection.
  Bytes in = reply(other, sport, kAck);
  EXPECT_EQ(to_endpoint(in).out, in);
  // The chosen backend on ports of no balanced flow.
  in = reply(chosen, sport + 1, kAck);
  EXPECT_EQ(to_endpoint(in).out, in);
  // The reply stamped the one entry.
  all = conntrack_entries(fd);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_NE(all[0].second.flags & LB_CT_F_SEEN_REPLY, 0u);
  EXPECT_EQ(lb_->stats()[LB_STAT_REV_NAT], 1u);

  // Backends going away take their lb_rev_nat entries along.
  lb_->remove_service(std::uint32_t{kService});
  EXPECT_NE(bpf_map_lookup_elem(lb_->map_fd("lb_rev_nat"), &chosen_net, &rev), 0);
}

// A backend IP behind two VIPs (the same endpoint in two services): its
// replies cannot name their VIP, so new flows to it keep a REPLY entry
// (paired); flows made while it had one VIP go on through lb_rev_nat's
// VIP; and once it is behind one VIP again, paired flows still find their
// ORIGINAL entry.
TEST_F(LbDataplaneTest, BackendBehindTwoVipsKeepsReplyEntries) {
  const std::uint32_t vip2 = ip4(10, 0, 0, 3);
  const int fd = lb_->map_fd("lb_conntrack");
  const std::uint32_t shared = backend_ip(1);
  lb_->upsert_service({kVip, 80, Protocol::tcp}, 1);
  auto one = backends(1);
  lb_->set_backends(1, one);
  auto from_client = [&](std::uint32_t vip, std::uint16_t sport, std::uint8_t flags) {
    Tcp t;
    t.saddr = kClient;
    t.daddr = vip;
    t.sport = sport;
    t.dport = 80;
    t.flags = flags;
    t.seq = 5000;
    return tcp_packet(t);
  };
  auto reply = [&](std::uint16_t dport) {
    Tcp t;
    t.saddr = shared;
    t.daddr = kClient;
    t.sport = 80;
    t.dport = dport;
    t.flags = kAck;
    t.seq = 9001;
    t.ack = 5001;
    return tcp_packet(t);
  };
  ASSERT_EQ(backend_of(from_endpoint(from_client(kVip, 40000, kSyn))), shared);  // before: one entry
  EXPECT_EQ(conntrack_entries(fd).size(), 1u);

  // Service 2 on vip2 with a backend of the same address.
  lb_->upsert_service({vip2, 80, Protocol::tcp}, 2);
  std::vector<Backend> same_ip{Backend{11, shared, mac_from_ip(shared), BackendState::active}};
  lb_->set_backends(2, same_ip);
  lb_rev_nat_value rev{};
  const std::uint32_t shared_net = htonl(shared);
  ASSERT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_rev_nat"), &shared_net, &rev), 0);
  EXPECT_EQ(rev.flags, LB_REV_NAT_F_AMBIGUOUS);
  EXPECT_EQ(rev.vip, htonl(kVip));  // the VIP it had stays
  const SlotsOf slots(*lb_);
  EXPECT_EQ(slots.of(shared), LB_REV_NAT_SLOT_ASK);  // lb_rev_nat decides
  auto backend_flags = [&](std::uint32_t id) {
    lb_backend b{};
    EXPECT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_backends"), &id, &b), 0);
    return b.flags;
  };
  EXPECT_EQ(backend_flags(1), LB_BACKEND_F_PAIRED);  // what new flows read
  EXPECT_EQ(backend_flags(11), LB_BACKEND_F_PAIRED);

  ASSERT_EQ(backend_of(from_endpoint(from_client(kVip, 40001, kSyn))), shared);
  ASSERT_EQ(backend_of(from_endpoint(from_client(vip2, 40002, kSyn))), shared);
  EXPECT_EQ(conntrack_entries(fd).size(), 5u);  // 1 + 2 + 2
  for (auto& [key, value] : conntrack_entries(fd)) {
    const bool old_flow = key.dir == LB_CT_DIR_ORIGINAL && key.sport == htons(40000);
    EXPECT_EQ((value.flags & LB_CT_F_PAIRED) != 0, !old_flow) << "port " << ntohs(key.sport);
  }
  EXPECT_EQ(get32(to_endpoint(reply(40000)).out, kIp + 12), kVip);
  EXPECT_EQ(get32(to_endpoint(reply(40001)).out, kIp + 12), kVip);
  EXPECT_EQ(get32(to_endpoint(reply(40002)).out, kIp + 12), vip2);
  Bytes stray = reply(40003);
  EXPECT_EQ(to_endpoint(stray).out, stray);

  // Behind one VIP again: the paired flow through kVip finds its ORIGINAL
  // entry; new flows get one entry.
  lb_->remove_service(std::uint32_t{2});
  ASSERT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_rev_nat"), &shared_net, &rev), 0);
  EXPECT_EQ(rev.flags, 0u);
  EXPECT_EQ(rev.vip, htonl(kVip));
  EXPECT_EQ(slots.of(shared), SlotsOf::own(shared, kVip));
  EXPECT_EQ(backend_flags(1), 0u);
  EXPECT_EQ(get32(to_endpoint(reply(40001)).out, kIp + 12), kVip);
  const std::size_t before = conntrack_entries(fd).size();
  ASSERT_EQ(backend_of(from_endpoint(from_client(kVip, 40004, kSyn))), shared);
  EXPECT_EQ(conntrack_entries(fd).size(), before + 1);

  // The collector ends a paired flow's two entries together, a lone
  // entry alone.
  GcResult gc = lb_->gc(LoadBalancer::monotonic_now_ns() + 7ULL * 3600 * 1000000000ULL);
  EXPECT_EQ(gc.entries, 0u);
}

// One backend IP behind three services (ids 1, 11, 12): lb_rev_nat and the
// backends' PAIRED flag follow every backend id of the address as the
// services go one by one, the first tracked one first, and after a restart
// in the middle (the index of the address's ids rebuilt from lb_backends).
TEST_F(LbDataplaneTest, RevNatFollowsEveryBackendOfASharedIpAsItsServicesGo) {
  const std::uint32_t vip2 = ip4(10, 0, 0, 3), vip3 = ip4(10, 0, 0, 4);
  const std::uint32_t shared = backend_ip(1), shared_net = htonl(shared);
  make_service(1);
  lb_->upsert_service({vip2, 80, Protocol::tcp}, 2);
  std::vector<Backend> two{Backend{11, shared, mac_from_ip(shared), BackendState::active}};
  lb_->set_backends(2, two);
  lb_->upsert_service({vip3, 80, Protocol::tcp}, 3);
  std::vector<Backend> three{Backend{12, shared, mac_from_ip(shared), BackendState::active}};
  lb_->set_backends(3, three);
  auto rev_nat = [&] {
    lb_rev_nat_value rev{};
    if (bpf_map_lookup_elem(lb_->map_fd("lb_rev_nat"), &shared_net, &rev) != 0) return std::optional<lb_rev_nat_value>();
    return std::optional<lb_rev_nat_value>(rev);
  };
  auto backend_flags = [&](std::uint32_t id) {
    lb_backend b{};
    EXPECT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_backends"), &id, &b), 0);
    return b.flags;
  };
  ASSERT_TRUE(rev_nat());
  EXPECT_EQ(rev_nat()->flags, LB_REV_NAT_F_AMBIGUOUS);
  EXPECT_EQ(rev_nat()->vip, htonl(kVip));
  for (std::uint32_t id : {1u, 11u, 12u}) EXPECT_EQ(backend_flags(id), LB_BACKEND_F_PAIRED) << id;

  // The first of the address's backends goes: the other two are still
  // behind two VIPs; the entry names the least of them.
  lb_->remove_service(std::uint32_t{kService});
  ASSERT_TRUE(rev_nat());
  EXPECT_EQ(rev_nat()->flags, LB_REV_NAT_F_AMBIGUOUS);
  EXPECT_EQ(rev_nat()->vip, htonl(vip2));
  EXPECT_EQ(backend_flags(11), LB_BACKEND_F_PAIRED);
  EXPECT_EQ(backend_flags(12), LB_BACKEND_F_PAIRED);

  // A restart finds the same; then service 2 goes: one VIP left.
  lb_.reset();
  lb_.emplace(LoadBalancer::open(pin_dir_, test_limits()));
  ASSERT_TRUE(rev_nat());
  EXPECT_EQ(rev_nat()->flags, LB_REV_NAT_F_AMBIGUOUS);
  EXPECT_EQ(rev_nat()->vip, htonl(vip2));
  lb_->remove_service(std::uint32_t{2});
  ASSERT_TRUE(rev_nat());
  EXPECT_EQ(rev_nat()->flags, 0u);
  EXPECT_EQ(rev_nat()->vip, htonl(vip3));
  EXPECT_EQ(backend_flags(12), 0u);
  EXPECT_EQ(SlotsOf(*lb_).of(shared), SlotsOf::own(shared, vip3));

  // The last goes: the address has no entry left.
  lb_->remove_service(std::uint32_t{3});
  EXPECT_FALSE(rev_nat());
  EXPECT_EQ(SlotsOf(*lb_).of(shared), 0u);
}

// lb_rev_nat_slots follows the backend IPs: a slot is a backend IP's own
// while no other lands on it; shared, it asks lb_rev_nat; given back when
// the IPs go, and taken by the next IP that lands on it.
TEST_F(LbDataplaneTest, RevNatSlotsFollowBackendIpsThroughSharingAndReuse) {
  const SlotsOf slots(*lb_);
  const std::uint32_t b1 = backend_ip(1), mate = slots.mate(b1);
  const std::uint32_t vip2 = ip4(10, 0, 0, 3), vip3 = ip4(10, 0, 0, 4);
  auto reply = [&](std::uint32_t from, std::uint16_t dport) {
    Tcp t;
    t.saddr = from;
    t.daddr = kClient;
    t.sport = 80;
    t.dport = dport;
    t.flags = kAck;
    t.seq = 9001;
    t.ack = 5001;
    return tcp_packet(t);
  };
  auto syn_to = [&](std::uint32_t vip, std::uint16_t sport) {
    Bytes p = syn(sport);
    put32(p, kIp + 16, vip);
    fill_checksums(p);
    return p;
  };
  auto source_of = [&](const Bytes& in) { return get32(to_endpoint(in).out, kIp + 12); };
  EXPECT_EQ(slots.of(b1), 0u);

  make_service(1);
  EXPECT_EQ(slots.of(b1), SlotsOf::own(b1, kVip));
  ASSERT_EQ(backend_of(from_endpoint(syn(40000))), b1);
  EXPECT_EQ(source_of(reply(b1, 40000)), kVip);
  Bytes from_mate = reply(mate, 40000);  // on the flow's ports, not its backend
  EXPECT_EQ(to_endpoint(from_mate).out, from_mate);

  // Another service's backend on the same slot: it asks lb_rev_nat, and
  // each IP's replies still find their own flows.
  lb_->upsert_service({vip2, 80, Protocol::tcp}, 2);
  std::vector<Backend> two{Backend{2, mate, mac_from_ip(mate), BackendState::active}};
  lb_->set_backends(2, two);
  EXPECT_EQ(slots.of(b1), LB_REV_NAT_SLOT_ASK);
  ASSERT_EQ(backend_of(from_endpoint(syn_to(vip2, 40001))), mate);
  EXPECT_EQ(source_of(reply(b1, 40000)), kVip);
  EXPECT_EQ(source_of(reply(mate, 40001)), vip2);
  EXPECT_EQ(to_endpoint(from_mate).out, from_mate);
  Bytes stranger = reply(kClient + 50, 40000);
  EXPECT_EQ(to_endpoint(stranger).out, stranger);

  // The other goes: the slot is b1's again.
  lb_->remove_service(std::uint32_t{2});
  EXPECT_EQ(slots.of(b1), SlotsOf::own(b1, kVip));
  EXPECT_EQ(source_of(reply(b1, 40000)), kVip);

  // b1 goes too: the slot is free, then the mate's alone, behind vip3. A
  // late packet from b1 on its old flow's ports passes untouched.
  lb_->remove_service(std::uint32_t{kService});
  EXPECT_EQ(slots.of(b1), 0u);
  lb_->upsert_service({vip3, 80, Protocol::tcp}, 3);
  std::vector<Backend> three{Backend{3, mate, mac_from_ip(mate), BackendState::active}};
  lb_->set_backends(3, three);
  EXPECT_EQ(slots.of(b1), SlotsOf::own(mate, vip3));
  ASSERT_EQ(backend_of(from_endpoint(syn_to(vip3, 40002))), mate);
  EXPECT_EQ(source_of(reply(mate, 40002)), vip3);
  Bytes late = reply(b1, 40000);
  EXPECT_EQ(to_endpoint(late).out, late);

  // A restart finds the slots as they are.
  lb_.reset();
  lb_.emplace(LoadBalancer::open(pin_dir_, test_limits()));
  EXPECT_EQ(SlotsOf(*lb_).of(b1), SlotsOf::own(mate, vip3));
  EXPECT_EQ(source_of(reply(mate, 40002)), vip3);
}

TEST_F(LbDataplaneTest, ReopeningThePinDirKeepsConntrackAndTables) {
  make_service(2);
  std::uint16_t sport = 40000;
  std::uint32_t first = backend_of(from_endpoint(syn(sport)));
  lb_.reset();  // the agent goes away; the pins stay

  lb_.emplace(LoadBalancer::open(pin_dir_, test_limits()));
  EXPECT_EQ(backend_of(from_endpoint(ack(sport))), first);
  EXPECT_GE(lb_->stats()[LB_STAT_CT_HIT], 1u);
  Tcp reply;  // lb_rev_nat came back too
  reply.saddr = first;
  reply.daddr = kClient;
  reply.sport = 80;
  reply.dport = sport;
  reply.flags = kAck;
  EXPECT_EQ(get32(to_endpoint(tcp_packet(reply)).out, kIp + 12), kVip);
  auto counters = lb_->counters(kService);
  EXPECT_EQ(counters.size(), 2u);
  auto found = lb_->lookup(kService, kClient, 41000, 80, Protocol::tcp);
  ASSERT_TRUE(found);
  // The index came back from the maps: dropping backend 2 marks it dead.
  auto one = backends(1);
  lb_->set_backends(kService, one);
  for (std::uint16_t p = 42000; p < 42050; ++p) {
    EXPECT_EQ(backend_of(from_endpoint(syn(p))), backend_ip(1));
  }
  // Removing the service removes its VIP: its traffic passes untouched.
  lb_->remove_service(std::uint32_t{kService});
  Bytes in = syn(43000);
  RunResult r = from_endpoint(in);
  EXPECT_EQ(r.retval, kOk);
  EXPECT_EQ(r.out, in);
  EXPECT_FALSE(lb_->lookup(kService, kClient, 41000, 80, Protocol::tcp));
}

TEST_F(LbDataplaneTest, OtherSizesThanThePinnedMapsAreRefusedByName) {
  Limits bigger = test_limits();
  bigger.conntrack_entries *= 2;
  try {
    LoadBalancer::open(pin_dir_, bigger);
    FAIL() << "opened with a different conntrack size";
  } catch (const BpfError& e) {
    EXPECT_EQ(e.code().value(), EINVAL);
    EXPECT_NE(std::string(e.what()).find("lb_conntrack"), std::string::npos) << e.what();
  }
}

// Limits::conntrack_lru_per_cpu meant something for the LRU hash
// conntrack before ABI 8 only: it is still accepted, and changes nothing
// (the same pins open with either value).
TEST_F(LbDataplaneTest, ConntrackLruPerCpuIsAcceptedAndChangesNothing) {
  Limits per_cpu = test_limits();
  per_cpu.conntrack_lru_per_cpu = true;
  make_service(1);
  ASSERT_EQ(backend_of(from_endpoint(syn(40000))), backend_ip(1));
  lb_.reset();
  lb_.emplace(LoadBalancer::open(pin_dir_, per_cpu));
  EXPECT_EQ(conntrack_entries(lb_->map_fd("lb_conntrack")).size(), 1u);
  const std::uint64_t hits = lb_->stats()[LB_STAT_CT_HIT];
  EXPECT_EQ(backend_of(from_endpoint(ack(40000))), backend_ip(1));
  EXPECT_EQ(lb_->stats()[LB_STAT_CT_HIT], hits + 1);
  lb_.reset();
  lb_.emplace(LoadBalancer::open(pin_dir_, test_limits()));
}

// Pins the calling thread to one CPU for its life, then gives the old
// affinity back. BPF_PROG_TEST_RUN of a tc program runs on the caller's CPU.
class OnCpu {
 public:
  explicit OnCpu(int cpu) {
    sched_getaffinity(0, sizeof old_, &old_);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    ok_ = sched_setaffinity(0, sizeof one, &one) == 0 && sched_getcpu() == cpu;
  }
  ~OnCpu() { sched_setaffinity(0, sizeof old_, &old_); }
  bool ok() const { return ok_; }

 private:
  cpu_set_t old_{};
  bool ok_ = false;
};

// The first two CPUs this thread may run on (fewer when it has fewer).
std::vector<int> two_cpus() {
  cpu_set_t allowed;
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < 2; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
  }
  return cpus;
}

// A flow's first packet and its reply (or its next packet) may be handled
// on different CPUs: the conntrack table is one for all CPUs, so both
// directions find the entries wherever they were made; a per-CPU value map
// would not. (Run with either conntrack_lru_per_cpu, which meant per-CPU
// LRU lists before ABI 8 and is ignored since.)
TEST_F(LbDataplaneTest, FlowsMadeOnOneCpuAreFoundOnAnother) {
  const std::vector<int> cpus = two_cpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs";
  for (bool per_cpu : {false, true}) {
    SCOPED_TRACE(per_cpu ? "per-CPU LRU lists" : "common LRU lists");
    lb_.reset();
    LoadBalancer::remove_pins(pin_dir_);
    Limits limits = test_limits();
    limits.conntrack_lru_per_cpu = per_cpu;
    lb_.emplace(LoadBalancer::open(pin_dir_, limits));
    make_service(4);
    for (std::uint16_t sport = 40000; sport < 40008; ++sport) {
      std::uint32_t chosen = 0;
      {
        OnCpu on(cpus[sport % 2]);
        ASSERT_TRUE(on.ok());
        chosen = backend_of(from_endpoint(syn(sport)));
      }
      OnCpu other(cpus[(sport + 1) % 2]);
      ASSERT_TRUE(other.ok());
      RunResult r = to_endpoint(syn_ack(chosen, sport));
      ASSERT_EQ(r.retval, kOk);
      EXPECT_EQ(get32(r.out, kIp + 12), kVip) << "reply on the other CPU not reverse-NATed";
      EXPECT_TRUE(l4_checksum_ok(r.out));
      // The client's next packet, on that CPU too, is a conntrack hit.
      const std::uint64_t hits = lb_->stats()[LB_STAT_CT_HIT];
      EXPECT_EQ(backend_of(from_endpoint(ack(sport))), chosen);
      EXPECT_EQ(lb_->stats()[LB_STAT_CT_HIT], hits + 1);
    }
    EXPECT_EQ(lb_->stats()[LB_STAT_NEW_FLOW], 8u);
    EXPECT_EQ(lb_->stats()[LB_STAT_REV_NAT], 8u);
  }
}

TEST_F(LbDataplaneTest, OtherMaglevSizeOrAbiVersionThanThePinnedMapsIsRefused) {
  Limits other = test_limits();
  other.maglev_table_size = 509;
  try {
    LoadBalancer::open(pin_dir_, other);
    FAIL() << "opened with a different Maglev table size";
  } catch (const BpfError& e) {
    EXPECT_NE(std::string(e.what()).find("Maglev"), std::string::npos) << e.what();
  }
  lb_config cfg{};
  std::uint32_t zero = 0;
  ASSERT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_config"), &zero, &cfg), 0);
  cfg.abi_version = LB_ABI_VERSION + 1;
  ASSERT_EQ(bpf_map_update_elem(lb_->map_fd("lb_config"), &zero, &cfg, BPF_ANY), 0);
  try {
    LoadBalancer::open(pin_dir_, test_limits());
    FAIL() << "opened maps of another ABI version";
  } catch (const BpfError& e) {
    EXPECT_NE(std::string(e.what()).find("ABI version"), std::string::npos) << e.what();
  }
}

// Pins of ABI version 5 (two entries per flow, no lb_rev_nat) are taken
// over: their flows are copied into the table and go on (replies
// reverse-NATed, the two entries collected together), new flows get one
// entry. Older ones are refused.
TEST_F(LbDataplaneTest, PinsOfAbiVersion5AreTakenOverWithTheirFlows) {
  make_service(1);
  const int fd = lb_->map_fd("lb_conntrack");
  // A flow as version 5's programs left it: both entries, no PAIRED flag.
  ASSERT_EQ(backend_of(from_endpoint(syn(40000))), backend_ip(1));
  auto all = conntrack_entries(fd);
  ASSERT_EQ(all.size(), 1u);
  lb_ct_key reply_key{};
  reply_key.saddr = htonl(backend_ip(1));
  reply_key.daddr = htonl(kClient);
  reply_key.sport = htons(80);
  reply_key.dport = htons(40000);
  reply_key.proto = IPPROTO_TCP;
  reply_key.dir = LB_CT_DIR_REPLY;
  lb_ct_value reply_value = all[0].second;
  reply_value.nat_addr = htonl(kVip);
  pin_as_abi(5, {{reply_key, reply_value}});
  lb_config cfg{};
  std::uint32_t zero = 0;
  ASSERT_EQ(::unlink((pin_dir_ / "lb_rev_nat").c_str()), 0);  // version 5 had none
  ASSERT_EQ(::unlink((pin_dir_ / "lb_rev_nat_slots").c_str()), 0);

  lb_.emplace(LoadBalancer::open(pin_dir_, test_limits()));
  ASSERT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_config"), &zero, &cfg), 0);
  EXPECT_EQ(cfg.abi_version, LB_ABI_VERSION);
  EXPECT_EQ(get32(to_endpoint(syn_ack(backend_ip(1), 40000)).out, kIp + 12), kVip);
  EXPECT_EQ(backend_of(from_endpoint(ack(40000))), backend_ip(1));
  ASSERT_EQ(backend_of(from_endpoint(syn(40001))), backend_ip(1));
  EXPECT_EQ(conntrack_entries(lb_->map_fd("lb_conntrack")).size(), 3u);
  // The old flow, established: its REPLY entry lives as long as its
  // ORIGINAL one, which the replies stamp.
  const std::uint64_t hour = 3600ULL * 1000000000ULL;
  const std::uint64_t now = LoadBalancer::monotonic_now_ns();
  EXPECT_EQ(lb_->gc(now + hour).expired, 1u);  // the SYN-only new flow
  EXPECT_EQ(lb_->gc(now + 7 * hour).expired, 2u);

  lb_.reset();
  const int config_fd = bpf_obj_get((pin_dir_ / "lb_config").c_str());
  ASSERT_GE(config_fd, 0);
  cfg.abi_version = 4;
  ASSERT_EQ(bpf_map_update_elem(config_fd, &zero, &cfg, BPF_ANY), 0);
  ::close(config_fd);
  try {
    LoadBalancer::open(pin_dir_, test_limits());
    FAIL() << "opened maps of ABI version 4";
  } catch (const BpfError& e) {
    EXPECT_NE(std::string(e.what()).find("ABI version 4"), std::string::npos) << e.what();
  }
}

// Pins of ABI version 6 (no lb_rev_nat_slots) are taken over as they are:
// the slots are made and filled from lb_rev_nat before anything runs on
// them, and flows go on.
TEST_F(LbDataplaneTest, PinsOfAbiVersion6AreTakenOverWithTheirFlows) {
  make_service(1);
  ASSERT_EQ(backend_of(from_endpoint(syn(40000))), backend_ip(1));
  pin_as_abi(6);
  lb_config cfg{};
  std::uint32_t zero = 0;
  ASSERT_EQ(::unlink((pin_dir_ / "lb_rev_nat_slots").c_str()), 0);  // version 6 had none

  lb_.emplace(LoadBalancer::open(pin_dir_, test_limits()));
  ASSERT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_config"), &zero, &cfg), 0);
  EXPECT_EQ(cfg.abi_version, LB_ABI_VERSION);
  EXPECT_EQ(SlotsOf(*lb_).of(backend_ip(1)), SlotsOf::own(backend_ip(1), kVip));
  EXPECT_EQ(get32(to_endpoint(syn_ack(backend_ip(1), 40000)).out, kIp + 12), kVip);
  EXPECT_EQ(backend_of(from_endpoint(ack(40000))), backend_ip(1));
  EXPECT_EQ(conntrack_entries(lb_->map_fd("lb_conntrack")).size(), 1u);
}

// Pins of ABI version 7 (conntrack an LRU hash) are taken over with their
// flows: copied into the table before anything runs on it (the flow's
// packets are conntrack hits, its replies reverse-NATed), the old
// counters carried over, and the set-aside pins gone.
TEST_F(LbDataplaneTest, PinsOfAbiVersion7AreTakenOverWithTheirFlows) {
  make_service(4);
  std::map<std::uint16_t, std::uint32_t> chosen;
  for (std::uint16_t sport = 40000; sport < 40016; ++sport) {
    chosen[sport] = backend_of(from_endpoint(syn(sport)));
  }
  pin_as_abi(7);
  lb_config cfg{};
  std::uint32_t zero = 0;

  lb_.emplace(LoadBalancer::open(pin_dir_, test_limits()));
  ASSERT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_config"), &zero, &cfg), 0);
  EXPECT_EQ(cfg.abi_version, LB_ABI_VERSION);
  EXPECT_EQ(conntrack_entries(lb_->map_fd("lb_conntrack")).size(), chosen.size());
  EXPECT_EQ(lb_->stats()[LB_STAT_NEW_FLOW], chosen.size());  // counts carried over
  EXPECT_FALSE(std::filesystem::exists(pin_dir_ / "lb_conntrack_abi7"));
  EXPECT_FALSE(std::filesystem::exists(pin_dir_ / "lb_stats_abi7"));
  // Another backend list, so that Maglev alone would move some flows:
  // only their entries keep them where they are.
  auto more = backends(7);
  lb_->set_backends(kService, more);
  for (const auto& [sport, backend] : chosen) {
    EXPECT_EQ(get32(to_endpoint(syn_ack(backend, sport)).out, kIp + 12), kVip) << sport;
    EXPECT_EQ(backend_of(from_endpoint(ack(sport))), backend) << sport;
  }
  EXPECT_EQ(lb_->stats()[LB_STAT_CT_HIT], chosen.size());
  EXPECT_EQ(lb_->stats()[LB_STAT_NEW_FLOW], chosen.size());
  EXPECT_EQ(lb_->stats()[LB_STAT_REV_NAT], chosen.size());

  // Reopened, nothing is taken over twice.
  lb_.reset();
  lb_.emplace(LoadBalancer::open(pin_dir_, test_limits()));
  EXPECT_EQ(conntrack_entries(lb_->map_fd("lb_conntrack")).size(), chosen.size());
  EXPECT_EQ(lb_->stats()[LB_STAT_NEW_FLOW], chosen.size());
}

// Conntrack of one bucket: Limits::conntrack_entries 2 gives 4 ways
// (conntrack_buckets), and both of a key's bucket choices are bucket 0.
Limits one_bucket_limits() {
  Limits limits = LbDataplaneTest::test_limits();
  limits.conntrack_entries = 2;
  return limits;
}

bool has_flow(const std::vector<std::pair<lb_ct_key, lb_ct_value>>& entries, std::uint16_t sport) {
  return std::any_of(entries.begin(), entries.end(),
                     [&](const auto& entry) { return entry.first.sport == htons(sport); });
}

// A new flow whose buckets are full takes the way of the least recently
// seen flow, and the eviction is counted.
TEST_F(LbDataplaneTest, AFullBucketGivesUpItsLeastRecentlySeenFlowCounted) {
  static_assert(LB_CT_WAYS == 4);
  lb_.reset();
  LoadBalancer::remove_pins(pin_dir_);
  lb_.emplace(LoadBalancer::open(pin_dir_, one_bucket_limits()));
  ASSERT_EQ(conntrack_table(*lb_).buckets(), 1u);
  make_service(4);
  std::map<std::uint16_t, std::uint32_t> chosen;
  // `seen` counts ~1 ms units of the coarse clock (a tick, up to 4 ms).
  auto later = [] { usleep(12 * 1000); };
  for (std::uint16_t sport = 40000; sport < 40004; ++sport) {
    chosen[sport] = backend_of(from_endpoint(syn(sport)));
    later();
  }
  ASSERT_EQ(conntrack_entries(lb_->map_fd("lb_conntrack")).size(), 4u);
  EXPECT_EQ(lb_->stats()[LB_STAT_CT_EVICTED], 0u);
  // 40000 speaks again: 40001 is the least recently seen now.
  EXPECT_EQ(backend_of(from_endpoint(ack(40000))), chosen[40000]);
  later();
  ASSERT_EQ(lb_->stats()[LB_STAT_CT_HIT], 1u);

  backend_of(from_endpoint(syn(40004)));
  EXPECT_EQ(lb_->stats()[LB_STAT_CT_EVICTED], 1u);
  auto entries = conntrack_entries(lb_->map_fd("lb_conntrack"));
  EXPECT_EQ(entries.size(), 4u);
  EXPECT_FALSE(has_flow(entries, 40001));
  for (std::uint16_t sport : {40000, 40002, 40003, 40004}) EXPECT_TRUE(has_flow(entries, sport)) << sport;
  EXPECT_EQ(backend_of(from_endpoint(ack(40002))), chosen[40002]);
  EXPECT_EQ(lb_->stats()[LB_STAT_CT_HIT], 2u);
}

// A way whose check disagrees with its fields (a write cut short, or two
// CPUs writing it at once) is a miss: never a flow to the backend its
// fields name. The packet is a new flow (Maglev, the same backend while
// the table is unchanged), and the collector clears the torn way.
TEST_F(LbDataplaneTest, AWayWhoseCheckDisagreesIsReadAsAMiss) {
  make_service(4);
  const std::uint32_t chosen = backend_of(from_endpoint(syn(40000)));
  std::uint32_t other = 1;
  while (backend_ip(other) == chosen) ++other;
  lb_ct_key key{};
  key.saddr = htonl(kClient);
  key.daddr = htonl(kVip);
  key.sport = htons(40000);
  key.dport = htons(80);
  key.proto = IPPROTO_TCP;
  key.dir = LB_CT_DIR_ORIGINAL;
  ConntrackTable table = conntrack_table(*lb_);
  std::uint32_t bucket = 0, way = 0;
  ASSERT_TRUE(table.find(key, &bucket, &way));
  // Another backend's identity written, the check not (yet).
  lb_ct_entry& torn = table.way(bucket, way);
  torn.value.backend_id = other;
  torn.value.nat_addr = htonl(backend_ip(other));
  EXPECT_EQ(ConntrackTable::read(torn).state, ConntrackSnapshot::State::torn);

  EXPECT_EQ(backend_of(from_endpoint(ack(40000))), chosen);
  EXPECT_EQ(lb_->stats()[LB_STAT_CT_HIT], 0u);
  EXPECT_EQ(lb_->stats()[LB_STAT_NEW_FLOW], 2u);
  EXPECT_EQ(lb_->stats()[LB_STAT_RST_DEAD_BACKEND], 0u);
  // The reply of the torn way's backend is not taken for the flow's.
  Bytes stray = syn_ack(backend_ip(other), 40000);
  EXPECT_EQ(to_endpoint(stray).out, stray);

  const GcResult gc = lb_->gc(LoadBalancer::monotonic_now_ns());
  EXPECT_EQ(gc.entries, 1u);
  EXPECT_EQ(ConntrackTable::read(torn).state, ConntrackSnapshot::State::empty);
  EXPECT_EQ(backend_of(from_endpoint(ack(40000))), chosen);
  EXPECT_EQ(lb_->stats()[LB_STAT_CT_HIT], 1u);
}

// The collector ends an entry only as it read it: a way that a packet
// stamped, or that a new flow took, since the collector's read stays.
TEST_F(LbDataplaneTest, CollectorsCompareAndClearLeavesAWayChangedSinceItsRead) {
  lb_.reset();
  LoadBalancer::remove_pins(pin_dir_);
  lb_.emplace(LoadBalancer::open(pin_dir_, one_bucket_limits()));
  make_service(1);
  ASSERT_EQ(backend_of(from_endpoint(syn(40000))), backend_ip(1));
  ConntrackTable table = conntrack_table(*lb_);
  ASSERT_EQ(table.buckets(), 1u);
  lb_ct_key key{};
  key.saddr = htonl(kClient);
  key.daddr = htonl(kVip);
  key.sport = htons(40000);
  key.dport = htons(80);
  key.proto = IPPROTO_TCP;
  key.dir = LB_CT_DIR_ORIGINAL;
  std::uint32_t bucket = 0, way = 0;
  ASSERT_TRUE(table.find(key, &bucket, &way));

  // Stamped by a packet since the read.
  ConntrackSnapshot read = ConntrackTable::read(table.way(bucket, way));
  ASSERT_EQ(read.state, ConntrackSnapshot::State::live);
  usleep(12 * 1000);
  EXPECT_EQ(backend_of(from_endpoint(ack(40000))), backend_ip(1));
  EXPECT_FALSE(table.end_if_unchanged(bucket, way, read.stamp));
  EXPECT_EQ(ConntrackTable::read(table.way(bucket, way)).state, ConntrackSnapshot::State::live);

  // Ended by the program (the backend answers another connection on the
  // tuple) and taken by a new flow since the read.
  read = ConntrackTable::read(table.way(bucket, way));
  Bytes foreign = syn_ack(backend_ip(1), 40000);
  put32(foreign, kL4 + 8, 77777);  // acknowledges no SYN of the flow
  fill_checksums(foreign);
  EXPECT_EQ(to_endpoint(foreign).out, foreign);
  EXPECT_EQ(conntrack_entries(lb_->map_fd("lb_conntrack")).size(), 0u);
  ASSERT_EQ(backend_of(from_endpoint(syn(40001))), backend_ip(1));
  const ConntrackSnapshot now = ConntrackTable::read(table.way(bucket, way));
  ASSERT_EQ(now.state, ConntrackSnapshot::State::live);
  ASSERT_EQ(now.key.sport, htons(40001)) << "the new flow took another way";
  EXPECT_FALSE(table.end_if_unchanged(bucket, way, read.stamp));
  EXPECT_EQ(ConntrackTable::read(table.way(bucket, way)).stamp, now.stamp);
  EXPECT_EQ(backend_of(from_endpoint(ack(40001))), backend_ip(1));
  EXPECT_EQ(lb_->stats()[LB_STAT_CT_HIT], 2u);
  // As read now, it goes.
  EXPECT_TRUE(table.end_if_unchanged(bucket, way, now.stamp));
  EXPECT_EQ(conntrack_entries(lb_->map_fd("lb_conntrack")).size(), 0u);
}

// New flows made on two CPUs at once in one bucket each get a way: a
// program takes a free way by a compare-and-swap of the bucket's tag word
// (lb_ct_claim), so two never write the same free way, which would leave
// one flow (or both, torn) without an entry: its next packet a new flow.
// Each CPU opens a flow, sends its next packet (a conntrack hit) and ends
// it (a SYN-ACK from the backend that acknowledges no SYN of the flow),
// so the bucket never fills. A race, so not certain to fail without the
// claim; without it (free ways picked by a plain read of the tag word),
// three runs on 2 vCPUs (load ~6) lost 119, 303 and 197 of the 40 000
// flows' entries, and left torn ways that filled the bucket (evictions).
TEST_F(LbDataplaneTest, NewFlowsOnTwoCpusAtOnceTakeDifferentWays) {
  const std::vector<int> cpus = two_cpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs";
  lb_.reset();
  LoadBalancer::remove_pins(pin_dir_);
  lb_.emplace(LoadBalancer::open(pin_dir_, one_bucket_limits()));
  ASSERT_EQ(conntrack_table(*lb_).buckets(), 1u);
  make_service(1);
  constexpr std::uint16_t kFlows = 20000;
  const int from = lb_->from_endpoint_prog_fd(), to = lb_->to_endpoint_prog_fd();
  std::vector<Bytes> syns[2], acks[2], ends[2];
  for (int t = 0; t < 2; ++t) {
    // Ports of their own per CPU, each used once.
    for (std::uint16_t i = 0; i < kFlows; ++i) {
      const auto sport = static_cast<std::uint16_t>(20000 + t * kFlows + i);
      syns[t].push_back(syn(sport));
      acks[t].push_back(ack(sport));
      Bytes end = syn_ack(backend_ip(1), sport);
      put32(end, kL4 + 8, 77777);  // acknowledges no SYN of the flow
      fill_checksums(end);
      ends[t].push_back(std::move(end));
    }
  }
  std::atomic<int> ready{0};
  std::atomic<bool> pinned[2] = {false, false};
  auto flows = [&](int t) {
    OnCpu on(cpus[t]);
    pinned[t] = on.ok();
    ready.fetch_add(1);
    while (ready.load() < 2) {
    }
    for (std::uint16_t i = 0; i < kFlows; ++i) {
      run(from, syns[t][i]);
      run(from, acks[t][i]);
      run(to, ends[t][i]);
    }
  };
  std::thread other(flows, 1);
  flows(0);
  other.join();
  ASSERT_TRUE(pinned[0] && pinned[1]);
  const auto stats = lb_->stats();
  EXPECT_EQ(stats[LB_STAT_NEW_FLOW], 2u * kFlows) << "flows that lost their entry";
  EXPECT_EQ(stats[LB_STAT_CT_HIT], 2u * kFlows);
  EXPECT_EQ(stats[LB_STAT_CT_EVICTED], 0u);
  EXPECT_EQ(conntrack_entries(lb_->map_fd("lb_conntrack")).size(), 0u);
}

// The collector frees the ways it ends (their tags, which the programs
// read to find a free way): a table emptied by it has no tag left.
TEST_F(LbDataplaneTest, CollectorFreesTheTagsOfTheWaysItEnds) {
  make_service(4);
  for (std::uint16_t sport = 40000; sport < 40064; ++sport) backend_of(from_endpoint(syn(sport)));
  const int tags_fd = lb_->map_fd("lb_ct_tags");
  auto tagged = [&] {
    std::uint32_t count = 0;
    for (std::uint32_t bucket = 0; bucket < conntrack_table(*lb_).buckets(); ++bucket) {
      std::uint32_t tags = 0;
      EXPECT_EQ(bpf_map_lookup_elem(tags_fd, &bucket, &tags), 0);
      for (int way = 0; way < LB_CT_WAYS; ++way) count += (tags >> (8 * way)) & 0xff ? 1 : 0;
    }
    return count;
  };
  EXPECT_EQ(tagged(), 64u);
  EXPECT_EQ(lb_->gc(LoadBalancer::monotonic_now_ns() + 3600ULL * 1000000000ULL).expired, 64u);
  EXPECT_EQ(tagged(), 0u);
}

// The collector walks the table a window of buckets at a time (what it
// maps counts in the agent's RSS): the two entries of a paired flow, in
// different windows, are still judged and ended together.
TEST_F(LbDataplaneTest, CollectorJudgesPairedFlowsTogetherAcrossItsWindows) {
  Limits big = test_limits();
  big.conntrack_entries = 65536;  // 32 768 buckets: two of the collector's windows
  lb_.reset();
  LoadBalancer::remove_pins(pin_dir_);
  lb_.emplace(LoadBalancer::open(pin_dir_, big));
  // Paired flows: the backend's IP is behind a second VIP too.
  make_service(1);
  lb_->upsert_service({ip4(10, 0, 0, 3), 80, Protocol::tcp}, 2);
  std::vector<Backend> same_ip{Backend{11, backend_ip(1), mac_from_ip(backend_ip(1)), BackendState::active}};
  lb_->set_backends(2, same_ip);
  constexpr std::uint16_t kFlows = 64;
  const std::uint64_t start = LoadBalancer::monotonic_now_ns();
  for (std::uint16_t i = 0; i < kFlows; ++i) {
    ASSERT_EQ(backend_of(from_endpoint(syn(40000 + i))), backend_ip(1));
  }
  ASSERT_LT(LoadBalancer::monotonic_now_ns() - start, 60'000'000u) << "too slow for the times below";
  auto entries = conntrack_entries(lb_->map_fd("lb_conntrack"));
  ASSERT_EQ(entries.size(), 2u * kFlows);
  // Pairs whose entries lie in different windows (16 384 buckets with 4 KiB
  // pages): about half of them.
  ConntrackTable table = conntrack_table(*lb_);
  const std::uint32_t window = ConntrackTable::window_alignment() * 32;
  std::map<std::uint16_t, std::set<std::uint32_t>> windows_of;  // client port -> windows
  for (const auto& [key, value] : entries) {
    std::uint32_t bucket = 0, way = 0;
    ASSERT_TRUE(table.find(key, &bucket, &way));
    windows_of[key.dir == LB_CT_DIR_ORIGINAL ? ntohs(key.sport) : ntohs(key.dport)].insert(bucket / window);
  }
  const auto spanning = std::count_if(windows_of.begin(), windows_of.end(), [](const auto& flow) {
    return flow.first % 2 == 0 && flow.second.size() == 2;
  });
  ASSERT_GT(spanning, 0) << "no answered pair across windows: the test proves nothing";

  // 200 ms later the backend answers every other flow: those are
  // established (6 h), the rest SYN only (60 s). A reply stamps the flow's
  // REPLY entry alone, so 6 h after the SYNs (+ 120 ms) the ORIGINAL entry
  // of an answered flow looks expired by itself, and only its partner,
  // fresh by 80 ms, keeps it.
  usleep(200 * 1000);
  for (std::uint16_t i = 0; i < kFlows; i += 2) {
    EXPECT_EQ(get32(to_endpoint(syn_ack(backend_ip(1), 40000 + i)).out, kIp + 12), kVip);
  }
  const std::uint64_t hour = 3600ULL * 1000000000ULL;
  const std::uint64_t now = LoadBalancer::monotonic_now_ns();
  GcResult gc = lb_->gc(start + 6 * hour + 120'000'000u);
  EXPECT_EQ(gc.expired, kFlows);  // both entries of the 32 unanswered flows
  EXPECT_EQ(gc.entries, kFlows);
  for (std::uint16_t i = 0; i < kFlows; ++i) {
    EXPECT_EQ(has_flow(conntrack_entries(lb_->map_fd("lb_conntrack")), 40000 + i), i % 2 == 0) << i;
  }
  gc = lb_->gc(now + 7 * hour);
  EXPECT_EQ(gc.expired, kFlows);
  EXPECT_EQ(gc.entries, 0u);
}

TEST_F(LbDataplaneTest, RemovePinsLeavesNothing) {
  lb_.reset();
  LoadBalancer::remove_pins(pin_dir_);
  EXPECT_FALSE(std::filesystem::exists(pin_dir_));
  LoadBalancer::remove_pins(pin_dir_);  // idempotent
}

TEST_F(LbDataplaneTest, TheHairpinAddressTakesNoFrontendSlot) {
  Limits one = test_limits();
  one.max_frontends = 1;
  LoadBalancer small = LoadBalancer::open(pin_dir_ / "small", one);
  EXPECT_NO_THROW(small.upsert_service({kVip, 80, Protocol::tcp}, kService));
}

TEST_F(LbDataplaneTest, BadArgumentsAreRefused) {
  EXPECT_THROW(lb_->upsert_service({kVip, 80, Protocol::tcp}, 64), std::invalid_argument);
  std::vector<Backend> zero{Backend{0, backend_ip(1), {}, BackendState::active}};
  EXPECT_THROW(lb_->set_backends(kService, zero), std::invalid_argument);
  std::vector<Backend> big{Backend{256, backend_ip(1), {}, BackendState::active}};
  EXPECT_THROW(lb_->set_backends(kService, big), std::invalid_argument);
  auto list = backends(1);
  lb_->set_backends(kService, list);
  EXPECT_THROW(lb_->set_backends(kService + 1, list), std::invalid_argument);  // owned by 1
  Limits odd = test_limits();
  odd.maglev_table_size = 1024;
  EXPECT_THROW(LoadBalancer::open(pin_dir_ / "other", odd), std::invalid_argument);
}

TEST_F(LbDataplaneTest, ManyServicesAtOnceAndNothingWrittenOnBadInput) {
  const std::uint32_t vip2 = ip4(10, 0, 0, 3);
  lb_->upsert_service({kVip, 80, Protocol::tcp}, 1);
  lb_->upsert_service({vip2, 80, Protocol::tcp}, 2);
  std::vector<ServiceBackends> bulk{{1, {backend(1), backend(2)}}, {2, {backend(3)}}};
  lb_->set_backends(bulk);
  EXPECT_EQ(lb_->lookup(2, kClient, 1000, 80, Protocol::tcp)->backend_id, 3u);
  Tcp t;
  t.saddr = kClient;
  t.daddr = vip2;
  t.sport = 1000;
  t.dport = 80;
  EXPECT_EQ(backend_of(from_endpoint(tcp_packet(t))), backend_ip(3));

  // Backend 4 claimed by both services: refused before anything changes.
  std::vector<ServiceBackends> clash{{1, {backend(1), backend(4)}}, {2, {backend(4)}}};
  EXPECT_THROW(lb_->set_backends(clash), std::invalid_argument);
  std::vector<ServiceBackends> twice{{1, {backend(1)}}, {1, {backend(2)}}};
  EXPECT_THROW(lb_->set_backends(twice), std::invalid_argument);
  for (std::uint16_t p = 2000; p < 2100; ++p) {
    auto found = lb_->lookup(1, kClient, p, 80, Protocol::tcp);
    ASSERT_TRUE(found);
    EXPECT_NE(found->backend_id, 4u);
  }
  EXPECT_EQ(lb_->counters(1).size(), 2u);
}

// A tracked flow skips the frontend lookup only while its VIP's frontends
// are as they were: a port moved to another service starts a new flow there,
// a port removed refuses the flow, as if every packet looked the port up.
TEST_F(LbDataplaneTest, TrackedFlowsFollowFrontendChangesOfTheirVip) {
  make_service(1);
  ASSERT_EQ(backend_of(from_endpoint(syn(40000))), backend_ip(1));
  ASSERT_EQ(backend_of(from_endpoint(ack(40000))), backend_ip(1));

  std::vector<Backend> other{backend(2)};
  lb_->set_backends(2, other);
  lb_->upsert_service({kVip, 80, Protocol::tcp}, 2);
  EXPECT_EQ(backend_of(from_endpoint(ack(40000))), backend_ip(2));
  EXPECT_EQ(backend_of(from_endpoint(ack(40000))), backend_ip(2));

  // VIP:80 goes; VIP:53/udp keeps the VIP: the flow gets a RST.
  lb_->remove_service(Frontend{kVip, 80, Protocol::tcp});
  RunResult gone = from_endpoint(ack(40000));
  EXPECT_EQ(gone.retval, kRedirect);
  EXPECT_EQ(gone.out.at(kL4 + 13) & kRst, kRst);
}

// Frontend epochs are never handed out twice, across a restart too: a
// conntrack entry stamped before a change cannot pass for checked after it.
TEST_F(LbDataplaneTest, FrontendEpochKeepsGrowingAcrossARestart) {
  auto epoch = [&] {
    lb_config cfg{};
    std::uint32_t zero = 0;
    EXPECT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_config"), &zero, &cfg), 0);
    return cfg.frontend_epoch;
  };
  make_service(1);
  const std::uint32_t first = epoch();
  lb_->upsert_service({kVip, 80, Protocol::tcp}, 2);  // moved
  const std::uint32_t before = epoch();
  EXPECT_EQ(before, first + 1);
  lb_->set_timeouts(Timeouts{});
  EXPECT_EQ(epoch(), before);
  lb_.reset();
  lb_.emplace(LoadBalancer::open(pin_dir_, test_limits()));
  EXPECT_EQ(epoch(), before);
  lb_->remove_service(Frontend{kVip, 80, Protocol::tcp});
  EXPECT_EQ(epoch(), before + 1);
}

// An exact port added beside a wildcard frontend takes that port's tracked
// flows over, as a frontend lookup per packet would.
TEST_F(LbDataplaneTest, ExactPortAddedBesideAWildcardTakesItsTrackedFlows) {
  lb_->upsert_service({kVip, 0, Protocol::tcp}, kService);
  auto one = backends(1);
  lb_->set_backends(kService, one);
  std::vector<Backend> other{backend(2)};
  lb_->set_backends(2, other);
  Bytes first = syn(40000, 8080);
  ASSERT_EQ(backend_of(from_endpoint(first)), backend_ip(1));
  ASSERT_EQ(backend_of(from_endpoint(first)), backend_ip(1));
  lb_->upsert_service({kVip, 8080, Protocol::tcp}, 2);
  EXPECT_EQ(backend_of(from_endpoint(first)), backend_ip(2));
  EXPECT_EQ(backend_of(from_endpoint(syn(40001, 8081))), backend_ip(1));
}

// All tables share one pool: a table that grows moves to a new run, its old
// run comes back after a grace period, and a pool too small for new tables
// is found before anything is written.
TEST_F(LbDataplaneTest, MaglevPoolGivesRunsBackAndRefusesWhatDoesNotFit) {
  Limits limits = test_limits();
  limits.maglev_pool_slots = 251 + 1021;  // tables up to 1021 slots here
  LoadBalancer small = LoadBalancer::open(pin_dir_ / "pool", limits);
  const std::uint32_t vip2 = ip4(10, 0, 0, 3);
  small.upsert_service({kVip, 80, Protocol::tcp}, 1);
  small.upsert_service({vip2, 80, Protocol::tcp}, 2);
  auto two = backends(2);
  small.set_backends(1, two);  // 251 slots
  auto twenty = backends(20);
  small.set_backends(1, twenty);  // 1021 slots; its 251 are retired
  std::vector<Backend> other{backend(30)};
  small.set_backends(2, other);  // the retired 251, after a grace period
  std::set<std::uint32_t> seen;
  for (std::uint16_t p = 1000; p < 3000; ++p) {
    seen.insert(small.lookup(1, kClient, p, 80, Protocol::tcp)->backend_id);
    EXPECT_EQ(small.lookup(2, kClient, p, 80, Protocol::tcp)->backend_id, 30u);
  }
  EXPECT_EQ(seen.size(), 20u);

  // A third service's table does not fit: refused, nothing written.
  const std::uint32_t vip3 = ip4(10, 0, 0, 4);
  small.upsert_service({vip3, 80, Protocol::tcp}, 3);
  std::vector<Backend> third{backend(40)};
  try {
    small.set_backends(3, third);
    FAIL() << "a table beyond the pool was accepted";
  } catch (const BpfError& e) {
    EXPECT_EQ(e.code().value(), ENOSPC);
  }
  EXPECT_TRUE(small.counters(3).empty());
  EXPECT_FALSE(small.lookup(3, kClient, 1000, 80, Protocol::tcp));
  lb_backend written{};
  std::uint32_t id = 40;
  ASSERT_EQ(bpf_map_lookup_elem(small.map_fd("lb_backends"), &id, &written), 0);
  EXPECT_EQ(written.state, LB_BACKEND_FREE);
  // Once service 2 goes (and its run with it), service 3 fits.
  small.remove_service(std::uint32_t{2});
  small.set_backends(3, third);
  EXPECT_EQ(small.lookup(3, kClient, 1000, 80, Protocol::tcp)->backend_id, 40u);
}

// The kernel maps all of a BPF array's pages at mmap: a pool mapped whole
// would put tables for every possible service into the agent's RSS from
// start. Only the runs in use are mapped, also after a restart.
// The resident pages of shared and file mappings, where a mapped BPF array
// counts: the heap (and ASan's shadow and quarantine, which grow with every
// allocation under the sanitizers) stays out of the measure.
std::uint64_t rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string key;
  std::uint64_t value = 0, total = 0;
  while (status >> key) {
    if ((key == "RssFile:" || key == "RssShmem:") && status >> value) total += value;
    status.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return total;
}

TEST_F(LbDataplaneTest, MaglevPoolIsInRssOnlyWhereTablesAre) {
  Limits limits = test_limits();
  limits.max_services = 4096;
  limits.max_backends = 1024;
  const std::uint64_t pool_kib = std::uint64_t{4096} * 1021 * sizeof(lb_maglev_slot) / 1024;
  const std::uint64_t before = rss_kib();
  std::optional<LoadBalancer> big(LoadBalancer::open(pin_dir_ / "big", limits));
  const std::uint64_t opened = rss_kib();
  EXPECT_LT(opened - before, pool_kib / 8) << "pool of " << pool_kib << " KiB";

  auto ten_of = [](std::uint32_t service) {  // a 1021-slot table
    std::vector<Backend> list;
    for (std::uint32_t id = service * 10; id < service * 10 + 10; ++id) {
      const std::uint32_t ip = ip4(10, 1, 0, 0) + id;
      list.push_back(Backend{id, ip, mac_from_ip(ip), BackendState::active});
    }
    return list;
  };
  for (std::uint32_t s = 1; s <= 64; ++s) {
    big->upsert_service({ip4(10, 0, 2, static_cast<int>(s)), 80, Protocol::tcp}, s);
    auto list = ten_of(s);
    big->set_backends(s, list);
  }
  EXPECT_LT(rss_kib() - before, pool_kib / 8);
  big.reset();
  big.emplace(LoadBalancer::open(pin_dir_ / "big", limits));
  EXPECT_LT(rss_kib() - before, pool_kib / 8);
  for (std::uint32_t s = 1; s <= 64; ++s) {
    auto found = big->lookup(s, kClient, 40000, 80, Protocol::tcp);
    ASSERT_TRUE(found) << "service " << s;
    EXPECT_GE(found->backend_id, s * 10);
    EXPECT_LT(found->backend_id, s * 10 + 10);
  }
  auto three = ten_of(64);
  three.resize(3);
  big->set_backends(64, three);  // a smaller table in a new run
  EXPECT_LT(big->lookup(64, kClient, 40000, 80, Protocol::tcp)->backend_id, 643u);
}

// Written tables are the map's kernel memory: kept mapped, 10 000 services'
// tables put ~84 MB into the agent's RSS (issue 9). The pool is mapped only
// while written; lookups and in-place rewrites still work after.
TEST_F(LbDataplaneTest, MaglevPoolLeavesRssOnceTablesAreWritten) {
  Limits limits = test_limits();
  limits.max_services = 4096;
  limits.max_backends = 4096;
  limits.max_frontends = 512;
  constexpr std::uint32_t kServices = 256;
  const std::uint64_t tables_kib = std::uint64_t{kServices} * 1021 * sizeof(lb_maglev_slot) / 1024;
  LoadBalancer lb = LoadBalancer::open(pin_dir_ / "written", limits);
  auto ten_of = [](std::uint32_t service, BackendState state) {  // a 1021-slot table
    std::vector<Backend> list;
    for (std::uint32_t id = service * 10; id < service * 10 + 10; ++id) {
      const std::uint32_t ip = ip4(10, 1, 0, 0) + id;
      list.push_back(Backend{id, ip, mac_from_ip(ip), state});
    }
    return list;
  };
  std::vector<ServiceBackends> all;
  for (std::uint32_t s = 1; s <= kServices; ++s) {
    lb.upsert_service({ip4(10, 0, 2, 0) + s, 80, Protocol::tcp}, s);
    all.push_back(ServiceBackends{s, ten_of(s, BackendState::active)});
  }
  const std::uint64_t before = rss_kib();
  lb.set_backends(all);
  EXPECT_LT(rss_kib() - before, tables_kib / 8) << "tables of " << tables_kib << " KiB";
  for (std::uint32_t s = 1; s <= kServices; ++s) {
    auto found = lb.lookup(s, kClient, 40000, 80, Protocol::tcp);
    ASSERT_TRUE(found) << "service " << s;
    EXPECT_GE(found->backend_id, s * 10);
    EXPECT_LT(found->backend_id, s * 10 + 10);
  }
  // Same size, rewritten in place (the other column): the run is mapped again.
  auto nine = ten_of(7, BackendState::active);
  const std::uint32_t taken = lb.lookup(7, kClient, 40000, 80, Protocol::tcp)->backend_id;
  nine[taken - 70].state = BackendState::dead;
  lb.set_backends(7, nine);
  EXPECT_NE(lb.lookup(7, kClient, 40000, 80, Protocol::tcp)->backend_id, taken);
  EXPECT_LT(rss_kib() - before, tables_kib / 8);
}

// lb_vip_filter is one bit per hashed address: addresses sharing a VIP's
// bit still pass untouched (lb_vips decides), and a VIP whose bit another
// VIP shares keeps it when that other VIP goes.
TEST_F(LbDataplaneTest, VipFilterCollisionsNeitherCatchNorHideTraffic) {
  lb_config cfg{};
  std::uint32_t zero = 0;
  ASSERT_EQ(bpf_map_lookup_elem(lb_->map_fd("lb_config"), &zero, &cfg), 0);
  auto bit = [&](std::uint32_t addr) { return lb_vip_filter_bit(htonl(addr), cfg.vip_filter_shift); };
  std::vector<std::uint32_t> same;  // addresses on kVip's bit
  for (std::uint32_t a = ip4(10, 0, 0, 3); same.size() < 2 && a < ip4(10, 64, 0, 0); ++a) {
    if (bit(a) == bit(kVip)) same.push_back(a);
  }
  ASSERT_EQ(same.size(), 2u);
  const std::uint32_t other_vip = same[0], not_a_vip = same[1];

  make_service(1);
  lb_->upsert_service({other_vip, 80, Protocol::tcp}, 2);
  std::vector<Backend> two{backend(2)};
  lb_->set_backends(2, two);
  Tcp t;
  t.saddr = kClient;
  t.daddr = not_a_vip;
  t.sport = 40000;
  t.dport = 80;
  Bytes in = tcp_packet(t);
  RunResult passed = from_endpoint(in);
  EXPECT_EQ(passed.retval, kOk);
  EXPECT_EQ(passed.out, in);

  lb_->remove_service(std::uint32_t{2});
  EXPECT_EQ(backend_of(from_endpoint(syn(40001))), backend_ip(1));
  t.daddr = other_vip;
  in = tcp_packet(t);
  EXPECT_EQ(from_endpoint(in).out, in);
}

TEST_F(LbDataplaneTest, UdpFlowOfADeadBackendMovesToALiveOne) {
  make_service(2);
  std::uint16_t on_one = 0;
  for (std::uint16_t sport = 30000; sport < 30100 && !on_one; ++sport) {
    if (backend_of(from_endpoint(udp_packet(kClient, sport, kVip, 53, "q"))) == backend_ip(1)) {
      on_one = sport;
    }
  }
  ASSERT_NE(on_one, 0);
  lb_->set_backend_state(1, BackendState::dead);
  EXPECT_EQ(backend_of(from_endpoint(udp_packet(kClient, on_one, kVip, 53, "q"))), backend_ip(2));
}

TEST_F(LbDataplaneTest, FragmentsAndIpOptionsToAVipAreDroppedAndCounted) {
  make_service(1);
  Bytes frag = syn(40000);
  put16(frag, kIp + 6, 0x2000);  // more fragments
  fill_checksums(frag);
  EXPECT_EQ(from_endpoint(frag).retval, kShot);
  Bytes options = syn(40001);
  options[kIp] = 0x46;
  EXPECT_EQ(from_endpoint(options).retval, kShot);
  auto stats = lb_->stats();
  EXPECT_EQ(stats[LB_STAT_DROP_FRAGMENT], 1u);
  EXPECT_EQ(stats[LB_STAT_DROP_IP_OPTIONS], 1u);
}

TEST_F(LbDataplaneTest, FinBothWaysEndsAFlowAndANewSynPicksAgain) {
  make_service(2);
  const std::uint16_t sport = 40000;
  std::uint32_t first = backend_of(from_endpoint(syn(sport)));
  Tcp fin;
  fin.saddr = kClient;
  fin.daddr = kVip;
  fin.sport = sport;
  fin.dport = 80;
  fin.flags = kFin | kAck;
  EXPECT_EQ(backend_of(from_endpoint(tcp_packet(fin))), first);
  Tcp reply_fin;
  reply_fin.saddr = first;
  reply_fin.daddr = kClient;
  reply_fin.sport = 80;
  reply_fin.dport = sport;
  reply_fin.flags = kFin | kAck;
  EXPECT_EQ(get32(to_endpoint(tcp_packet(reply_fin)).out, kIp + 12), kVip);
  // Closed both ways: gone after the closing timeout (10 s), not 6 h.
  std::uint64_t now = LoadBalancer::monotonic_now_ns();
  EXPECT_EQ(lb_->gc(now).expired, 0u);
  EXPECT_EQ(lb_->gc(now + 11ULL * 1000000000ULL).expired, 1u);
}

// Tuple reuse (issue 9, found by bench_lb_tcp --direct-to-member 1): a new
// connection on the 4-tuple of a balanced flow, straight to the backend or
// again to the VIP, must not be taken for that flow. Each case is a packet
// sequence through both programs, {packet in, verdict, packet out}, on fresh
// maps with two backends; the client port is one that Maglev gives backend 1.
enum class Way { from_client, to_client };  // lb_from_endpoint, lb_to_endpoint
enum class Out {
  untouched,     // TC_ACT_OK, not a byte changed
  to_backend_1,  // TC_ACT_OK, DNATed to backend 1
  to_backend_2,
  from_vip,      // TC_ACT_OK, source rewritten to the VIP
  rst,           // answered with a RST from the VIP
};
struct Step {
  const char* what;
  Way way;
  // Who sends (kClient to the VIP or to a backend, or a backend to
  // kClient), TCP flags, seq, ack, payload.
  std::uint32_t from, to;
  std::uint8_t flags;
  std::uint32_t seq, ack;
  const char* payload;
  Out out;
  std::optional<std::uint32_t> kill_backend_before = std::nullopt;
};
struct ReuseCase {
  const char* name;
  std::vector<Step> steps;
};

const std::uint32_t kB1 = backend_ip(1), kB2 = backend_ip(2);
// Not a backend. kMateOfB1 stands for the first address on backend 1's
// lb_rev_nat_slots slot (found when the case runs): a backend of another
// service when the slots are shared, else no backend either.
const std::uint32_t kStranger = ip4(10, 0, 0, 77), kMateOfB1 = ip4(0, 0, 0, 1);
constexpr std::uint8_t kSynAck = kSyn | kAck, kFinAck = kFin | kAck;
constexpr auto C2V = Way::from_client, C2B = Way::from_client, B2C = Way::to_client;

// The balanced flow's opening: SYN seq 5000, backend 1 answers ISN 9000.
std::vector<Step> opening() {
  return {
      {"SYN to the VIP", C2V, kClient, kVip, kSyn, 5000, 0, "", Out::to_backend_1},
      {"SYN-ACK", B2C, kB1, kClient, kSynAck, 9000, 5001, "", Out::from_vip},
      {"ACK with a request", C2V, kClient, kVip, kAck | kPsh, 5001, 9001, "GET", Out::to_backend_1},
  };
}
std::vector<Step> fin_both_ways() {
  return {
      {"backend's FIN", B2C, kB1, kClient, kFinAck, 9001, 5004, "", Out::from_vip},
      {"client's FIN", C2V, kClient, kVip, kFinAck, 5004, 9002, "", Out::to_backend_1},
      {"last ACK", B2C, kB1, kClient, kAck, 9002, 5005, "", Out::from_vip},
  };
}
// The client's direct connection to backend 1 from the same port.
std::vector<Step> direct_connection() {
  return {
      {"direct SYN", C2B, kClient, kB1, kSyn, 7000, 0, "", Out::untouched},
      {"direct SYN-ACK", B2C, kB1, kClient, kSynAck, 3000, 7001, "", Out::untouched},
      {"direct ACK", C2B, kClient, kB1, kAck, 7001, 3001, "", Out::untouched},
      {"direct data back", B2C, kB1, kClient, kAck | kPsh, 3001, 7001, "OK", Out::untouched},
  };
}
std::vector<Step> operator+(std::vector<Step> a, const std::vector<Step>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<ReuseCase> reuse_cases() {
  return {
      {"direct connection after the balanced flow closed with FINs",
       opening() + fin_both_ways() + direct_connection()},
      {"direct SYN answered by the backend's TIME_WAIT of the closed balanced flow",
       opening() + fin_both_ways() +
           std::vector<Step>{
               {"direct SYN", C2B, kClient, kB1, kSyn, 7000, 0, "", Out::untouched},
               {"TIME_WAIT's ACK", B2C, kB1, kClient, kAck, 9002, 5005, "", Out::untouched},
               {"client's RST for it", C2B, kClient, kB1, kRst, 5005, 0, "", Out::untouched},
           } +
           direct_connection()},
      {"the client's FIN retransmitted after the close is still answered through the VIP",
       opening() + fin_both_ways() +
           std::vector<Step>{
               {"client's FIN again", C2V, kClient, kVip, kFinAck, 5004, 9002, "", Out::to_backend_1},
               {"backend's ACK again", B2C, kB1, kClient, kAck, 9002, 5005, "", Out::from_vip},
           }},
      {"direct connection after the balanced flow was reset",
       opening() +
           std::vector<Step>{{"client's RST", C2V, kClient, kVip, kRst | kAck, 5004, 9001, "",
                              Out::to_backend_1}} +
           direct_connection()},
      {"direct connection while the balanced flow still looks open (its client vanished)",
       opening() + direct_connection()},
      {"retransmitted SYN-ACK of the balanced flow is still reverse-NATed",
       opening() + std::vector<Step>{
                       {"SYN-ACK again", B2C, kB1, kClient, kSynAck, 9000, 5001, "", Out::from_vip},
                       {"data back", B2C, kB1, kClient, kAck | kPsh, 9001, 5004, "OK", Out::from_vip},
                       {"client's ACK", C2V, kClient, kVip, kAck, 5004, 9003, "", Out::to_backend_1},
                   }},
      {"TCP Fast Open: a SYN-ACK acknowledging the SYN's data is the flow's",
       {
           {"SYN with data", C2V, kClient, kVip, kSyn, 5000, 0, "hello", Out::to_backend_1},
           {"SYN-ACK of the data", B2C, kB1, kClient, kSynAck, 9000, 5006, "", Out::from_vip},
           {"SYN-ACK of the SYN only", B2C, kB1, kClient, kSynAck, 9000, 5001, "", Out::from_vip},
           {"SYN-ACK beyond the data", B2C, kB1, kClient, kSynAck, 9000, 5007, "", Out::untouched},
       }},
      {"new connection to the VIP on a closed flow's tuple, its backend dead since",
       opening() + fin_both_ways() +
           std::vector<Step>{
               {"new SYN", C2V, kClient, kVip, kSyn, 6000, 0, "", Out::to_backend_2, 1},
               {"old backend's late ACK", B2C, kB1, kClient, kAck, 9002, 5005, "", Out::untouched},
               {"SYN-ACK of the new backend", B2C, kB2, kClient, kSynAck, 4000, 6001, "",
                Out::from_vip},
               {"ACK", C2V, kClient, kVip, kAck, 6001, 4001, "", Out::to_backend_2},
           }},
      {"new connection (another ISN) on an open-looking flow's tuple, its backend dead since",
       opening() + std::vector<Step>{
                       {"new SYN", C2V, kClient, kVip, kSyn, 6000, 0, "", Out::to_backend_2, 1},
                       {"SYN-ACK", B2C, kB2, kClient, kSynAck, 4000, 6001, "", Out::from_vip},
                   }},
      {"retransmitted SYN whose backend died meanwhile chooses again",
       {
           {"SYN", C2V, kClient, kVip, kSyn, 5000, 0, "", Out::to_backend_1},
           {"SYN again", C2V, kClient, kVip, kSyn, 5000, 0, "", Out::to_backend_2, 1},
           {"SYN-ACK", B2C, kB2, kClient, kSynAck, 9000, 5001, "", Out::from_vip},
       }},
      {"established flow whose backend died still gets a RST",
       opening() + std::vector<Step>{
                       {"data", C2V, kClient, kVip, kAck | kPsh, 5004, 9001, "x", Out::rst, 1},
                   }},
      {"packets from no backend, or from another address on backend 1's slot, pass untouched",
       opening() + std::vector<Step>{
                       {"stranger's ACK", B2C, kStranger, kClient, kAck, 9001, 5004, "", Out::untouched},
                       {"slot mate's ACK", B2C, kMateOfB1, kClient, kAck, 9001, 5004, "", Out::untouched},
                       {"slot mate's SYN-ACK", B2C, kMateOfB1, kClient, kSynAck, 9000, 5001, "",
                        Out::untouched},
                       {"backend 1's data", B2C, kB1, kClient, kAck | kPsh, 9001, 5004, "OK", Out::from_vip},
                       {"client's ACK", C2V, kClient, kVip, kAck, 5004, 9003, "", Out::to_backend_1},
                   }},
      {"new connection to the VIP on a closed flow's tuple, same backend",
       opening() + fin_both_ways() +
           std::vector<Step>{
               {"new SYN", C2V, kClient, kVip, kSyn, 6000, 0, "", Out::to_backend_1},
               {"SYN-ACK", B2C, kB1, kClient, kSynAck, 4000, 6001, "", Out::from_vip},
               {"ACK", C2V, kClient, kVip, kAck, 6001, 4001, "", Out::to_backend_1},
           }},
  };
}

// How replies find their flow: one entry per flow with the backends'
// lb_rev_nat_slots slots their own (one array read), or shared with the
// IPs of another service's backends (lb_rev_nat asked); and paired flows
// (the backends' IPs also behind a second VIP: their slots ask too).
enum class RevNatMode { own_slots, shared_slots, paired };

TEST_F(LbDataplaneTest, NewConnectionsOnTheTupleOfABalancedFlowAreNotTakenForIt) {
  int n = 0;
  for (const RevNatMode mode : {RevNatMode::own_slots, RevNatMode::shared_slots, RevNatMode::paired})
  for (const ReuseCase& c : reuse_cases()) {
    SCOPED_TRACE(c.name);
    SCOPED_TRACE(mode == RevNatMode::paired         ? "paired flows"
                 : mode == RevNatMode::shared_slots ? "one entry per flow, shared slots"
                                                    : "one entry per flow, own slots");
    lb_.emplace(LoadBalancer::open(pin_dir_ / ("reuse" + std::to_string(n++)), test_limits()));
    make_service(2);
    const SlotsOf slots(*lb_);
    const std::uint32_t mate_of_b1 = slots.mate(kB1);
    if (mode == RevNatMode::paired) {
      lb_->upsert_service({ip4(10, 0, 0, 3), 80, Protocol::tcp}, 2);
      std::vector<Backend> same_ips{Backend{11, kB1, mac_from_ip(kB1), BackendState::active},
                                    Backend{12, kB2, mac_from_ip(kB2), BackendState::active}};
      lb_->set_backends(2, same_ips);
    }
    if (mode == RevNatMode::shared_slots) {
      const std::uint32_t mate_of_b2 = slots.mate(kB2);
      lb_->upsert_service({ip4(10, 0, 0, 4), 80, Protocol::tcp}, 3);
      std::vector<Backend> mates{
          Backend{21, mate_of_b1, mac_from_ip(mate_of_b1), BackendState::active},
          Backend{22, mate_of_b2, mac_from_ip(mate_of_b2), BackendState::active}};
      lb_->set_backends(3, mates);
    }
    for (std::uint32_t b : {kB1, kB2}) {
      EXPECT_EQ(slots.of(b), mode == RevNatMode::own_slots ? SlotsOf::own(b, kVip) : LB_REV_NAT_SLOT_ASK);
    }
    std::uint16_t port = 0;
    for (std::uint16_t p = 40000; p < 40100 && !port; ++p) {
      if (lb_->lookup(kService, kClient, p, 80, Protocol::tcp)->backend_id == 1) port = p;
    }
    ASSERT_NE(port, 0);
    for (const Step& s : c.steps) {
      SCOPED_TRACE(s.what);
      if (s.kill_backend_before) lb_->set_backend_state(*s.kill_backend_before, BackendState::dead);
      Tcp t;
      t.saddr = s.from == kMateOfB1 ? mate_of_b1 : s.from;
      t.daddr = s.to;
      const bool from_client = s.way == Way::from_client;
      t.sport = from_client ? port : 80;
      t.dport = from_client ? 80 : port;
      t.flags = s.flags;
      t.seq = s.seq;
      t.ack = s.ack;
      t.payload = s.payload;
      const Bytes in = tcp_packet(t);
      const RunResult r = from_client ? from_endpoint(in) : to_endpoint(in);
      switch (s.out) {
        case Out::untouched:
          EXPECT_EQ(r.retval, kOk);
          EXPECT_EQ(r.out, in) << "rewritten: source " << std::hex << get32(r.out, kIp + 12)
                               << ", destination " << get32(r.out, kIp + 16);
          break;
        case Out::to_backend_1:
        case Out::to_backend_2: {
          const std::uint32_t want = s.out == Out::to_backend_1 ? kB1 : kB2;
          EXPECT_EQ(r.retval, kOk);
          EXPECT_EQ(get32(r.out, kIp + 16), want);
          EXPECT_EQ(get_mac(r.out, 0), mac_of(want));
          EXPECT_TRUE(l4_checksum_ok(r.out));
          break;
        }
        case Out::from_vip:
          EXPECT_EQ(r.retval, kOk);
          EXPECT_EQ(get32(r.out, kIp + 12), kVip);
          EXPECT_EQ(get_mac(r.out, 6), mac_of(kVip));
          EXPECT_TRUE(l4_checksum_ok(r.out));
          break;
        case Out::rst:
          expect_rst(r, 80, port);
          break;
      }
    }
  }
}

// A new connection on a reused tuple with the same backend rewrites the
// flow's entries where they are (no LRU insert); a paired flow's reply
// entry the LRU evicted meanwhile is written again. Paired here: the
// backend's IP is behind a second VIP too.
TEST_F(LbDataplaneTest, ReusedTupleOnTheSameBackendRenewsBothEntries) {
  make_service(1);
  lb_->upsert_service({ip4(10, 0, 0, 3), 80, Protocol::tcp}, 2);
  std::vector<Backend> same_ip{Backend{11, backend_ip(1), mac_from_ip(backend_ip(1)), BackendState::active}};
  lb_->set_backends(2, same_ip);
  const int fd = lb_->map_fd("lb_conntrack");
  auto entries = [&] { return conntrack_entries(fd); };
  auto syn_seq = [&](std::uint32_t seq) {
    Bytes p = syn(40000);
    put32(p, kL4 + 4, seq);
    fill_checksums(p);
    return p;
  };
  auto syn_ack = [&](std::uint32_t ack) {
    Tcp t;
    t.saddr = backend_ip(1);
    t.daddr = kClient;
    t.sport = 80;
    t.dport = 40000;
    t.flags = kSyn | kAck;
    t.seq = 9000;
    t.ack = ack;
    return tcp_packet(t);
  };
  ASSERT_EQ(backend_of(from_endpoint(syn_seq(5000))), backend_ip(1));
  ASSERT_EQ(backend_of(from_endpoint(syn_seq(6000))), backend_ip(1));  // a new connection
  auto now = entries();
  ASSERT_EQ(now.size(), 2u);
  for (auto& [key, value] : now) {
    EXPECT_EQ(ntohl(value.syn_seq), 6000u) << "dir " << int(key.dir);
    EXPECT_EQ(value.nat_addr, htonl(key.dir == LB_CT_DIR_ORIGINAL ? backend_ip(1) : kVip));
  }
  EXPECT_EQ(to_endpoint(syn_ack(5001)).out, syn_ack(5001));  // the old handshake's: not ours
  EXPECT_EQ(entries().size(), 0u);                          // ... and it ended the flow

  ASSERT_EQ(backend_of(from_endpoint(syn_seq(6000))), backend_ip(1));
  for (auto& [key, value] : entries()) {
    if (key.dir == LB_CT_DIR_REPLY) {
      ASSERT_TRUE(erase_conntrack_entry(*lb_, key));  // as if evicted
    }
  }
  ASSERT_EQ(backend_of(from_endpoint(syn_seq(7000))), backend_ip(1));
  EXPECT_EQ(entries().size(), 2u);
  EXPECT_EQ(get32(to_endpoint(syn_ack(7001)).out, kIp + 12), kVip);
  EXPECT_EQ(lb_->stats()[LB_STAT_FLOW_REOPENED], 2u);

  // Behind one VIP again: the next reuse rewrites the ORIGINAL entry and
  // drops the REPLY one (one entry per flow from then on).
  lb_->remove_service(std::uint32_t{2});
  ASSERT_EQ(backend_of(from_endpoint(syn_seq(8000))), backend_ip(1));
  auto last = entries();
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].first.dir, LB_CT_DIR_ORIGINAL);
  EXPECT_EQ(ntohl(last[0].second.syn_seq), 8000u);
  EXPECT_EQ(get32(to_endpoint(syn_ack(8001)).out, kIp + 12), kVip);
  EXPECT_EQ(lb_->stats()[LB_STAT_FLOW_REOPENED], 3u);
}

// attach/detach on the loopback of a fresh network namespace (a child
// process, so nothing outside it is touched).
TEST_F(LbDataplaneTest, AttachAndDetachAtTc) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (unshare(CLONE_NEWNET) != 0) _exit(10);
    try {
      auto query = [](bpf_tc_attach_point point) {
        bpf_tc_hook hook{};
        hook.sz = sizeof hook;
        hook.ifindex = 1;
        hook.attach_point = point;
        bpf_tc_opts opts{};
        opts.sz = sizeof opts;
        opts.handle = 0x77ef;
        opts.priority = 1;
        return bpf_tc_query(&hook, &opts) == 0 ? opts.prog_id : 0u;
      };
      {
        TcAttachment attached = lb_->attach(1);
        if (query(BPF_TC_INGRESS) == 0 || query(BPF_TC_EGRESS) == 0) _exit(11);
        TcAttachment again = lb_->attach(1);  // replaces, does not stack
        again.release();
      }
      // `attached` detached on destruction.
      if (query(BPF_TC_INGRESS) != 0 || query(BPF_TC_EGRESS) != 0) _exit(12);
      TcAttachment kept = lb_->attach(1);
      kept.release();
      if (query(BPF_TC_INGRESS) == 0) _exit(13);
      LoadBalancer::detach(1);
      if (query(BPF_TC_INGRESS) != 0) _exit(14);
      LoadBalancer::detach(1);  // nothing left: no error
    } catch (const std::exception&) {
      _exit(15);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace weft::dataplane::lb

namespace weft::dataplane::lb {
namespace {

using namespace weft::lbtest;

// The programs rewrite addresses with lb_csum.h's arithmetic instead of
// bpf_l4_csum_replace. BPF_PROG_TEST_RUN only makes CHECKSUM_NONE skbs, so
// the CHECKSUM_PARTIAL form (TCP from a local socket over veth) is checked
// here against a recomputation: the field then holds the folded
// pseudo-header sum, not a complete checksum.
TEST(LbChecksumTest, AddressRewriteKeepsCompleteAndPartialChecksumsRight) {
  const std::uint32_t from = ip4(10, 0, 0, 2), to = ip4(10, 0, 1, 7);
  for (int proto : {IPPROTO_TCP, IPPROTO_UDP}) {
    SCOPED_TRACE(proto);
    const bool udp = proto == IPPROTO_UDP;
    const std::size_t csum_off = udp ? kL4 + 6 : kL4 + 16;
    auto make = [&](std::uint32_t daddr) {
      if (udp) return udp_packet(ip4(10, 0, 0, 5), 4000, daddr, 53, "query");
      Tcp t;
      t.saddr = ip4(10, 0, 0, 5);
      t.daddr = daddr;
      t.sport = 40000;
      t.dport = 80;
      t.payload = "GET / HTTP/1.1";
      return tcp_packet(t);
    };
    Bytes before = make(from), after = make(to);
    // As the program sees them: fields in network order, loaded as they lie.
    auto wire = [](std::uint16_t host_value) { return htons(host_value); };
    // Complete: the incremental update equals the recomputed checksum.
    EXPECT_EQ(lb_l4_csum_replace_addr(wire(get16(before, csum_off)), 0, udp, htonl(from),
                                      htonl(to)),
              wire(get16(after, csum_off)));
    // Partial: the folded pseudo-header sum, before and after.
    auto partial_field = [](const Bytes& p) {
      std::uint32_t sum = pseudo_sum(p);
      while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
      return static_cast<std::uint16_t>(sum);
    };
    EXPECT_EQ(lb_l4_csum_replace_addr(wire(partial_field(before)), 1, udp, htonl(from),
                                      htonl(to)),
              wire(partial_field(after)));
  }
  // UDP without a checksum keeps none; TCP has no such case.
  EXPECT_EQ(lb_l4_csum_replace_addr(0, 0, 1, htonl(from), htonl(to)), 0);
  EXPECT_NE(lb_l4_csum_replace_addr(0, 0, 0, htonl(from), htonl(to)), 0);
  // A UDP checksum that comes out 0 is sent as 0xffff (0 would mean none):
  // 0x0001 with a covered word growing by one is ~(0xfffe + 1) = 0.
  EXPECT_EQ(lb_l4_csum_replace_addr(0x0001, 0, 1, 0x00000000u, 0x00000001u), 0xffff);
  EXPECT_EQ(lb_l4_csum_replace_addr(0x0001, 0, 0, 0x00000000u, 0x00000001u), 0x0000);
}

}  // namespace
}  // namespace weft::dataplane::lb
