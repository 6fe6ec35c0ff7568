// ServiceDataplane with real traffic: a scratch "network namespace" with a
// bridge, a client and two backend namespaces on veths (as the overlay lays
// them out), socat servers in the backends, and an LbView naming them. The
// view goes in through apply(); TCP from the client to VIP:80 shows what the
// data path does, on eBPF (the tc programs on the host-side veths) and on
// the nftables fallback. Needs root; skipped otherwise.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "control/services/lb_id_map.h"
#include "control/services/service_dataplane.h"
#include "control/services/service_dataplane_driver.h"
#include "dataplane/netlink.h"
#include "dataplane/overlay.h"
#include "tests/support/netns_sockets.h"
#include "tests/support/private_bpffs.h"
#include "tests/support/scratch_netns.h"

namespace weft::control::services {
namespace {

using namespace std::chrono_literals;
using dataplane::Ipv4;
using dataplane::NetlinkSocket;
using dataplane::NetnsHandle;
using dataplane::UniqueFd;
using weft::testing::PrivateBpffs;
using weft::testing::ScratchDir;
using weft::testing::TcpClient;
using weft::testing::read_some;
using weft::testing::socket_address;
using weft::testing::ScratchNamespaces;

const Ipv4 kVip = *Ipv4::parse("10.0.0.100");
const std::string kNet = std::string(64, 'a');
const std::string kService = std::string(64, 'b');
const std::string kDnsrrService = std::string(64, 'c');
const std::string kB1 = std::string(63, 'e') + "1";
const std::string kB2 = std::string(63, 'e') + "2";
const std::string kClient = std::string(63, 'e') + "0";

class ServiceDataplaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: network namespaces, BPF and nftables";
    bpffs_.emplace(dir_.path() / "bpffs");
    if (!bpffs_->error().empty()) GTEST_SKIP() << "no private bpffs: " << bpffs_->error();
    namespaces_.emplace(dir_.path());
    net_path_ = namespaces_->make("net");
    net_.emplace(NetnsHandle::open(net_path_.string()));
    {
      NetlinkSocket net(*net_);
      net.set_up("lo");
      net.create_bridge("br0");
      net.add_address("br0", *Ipv4::parse("10.0.0.1"), 24);
      net.set_up("br0");
    }
    dataplane::disable_bridge_netfilter(*net_);
    client_.emplace(NetnsHandle::open(add_endpoint("client", "10.0.0.2").string()));
    for (const auto& [name, ip] : {std::pair{"b1", "10.0.0.11"}, std::pair{"b2", "10.0.0.12"}}) {
      auto path = add_endpoint(name, ip);
      start_server(path, {"socat", "TCP-LISTEN:80,fork,reuseaddr", std::string("SYSTEM:echo ") + name + "; cat"});
    }
    for (const char* ip : {"10.0.0.11", "10.0.0.12"}) wait_for_listener(*Ipv4::parse(ip));
  }

  void TearDown() override {
    dp_.reset();
    for (pid_t pid : servers_) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }

  std::filesystem::path add_endpoint(const std::string& name, const std::string& ip) {
    auto path = namespaces_->make(name);
    auto ns = NetnsHandle::open(path.string());
    NetlinkSocket net(*net_);
    // The endpoint's MAC follows from its address, as the overlay makes it:
    // the eBPF program sends a balanced packet to that MAC.
    net.create_veth({.name = "v" + name,
                     .peer_name = "eth0",
                     .peer_netns_fd = ns.fd(),
                     .mtu = 0,
                     .peer_mac = dataplane::MacAddress::from_ipv4(*Ipv4::parse(ip))});
    net.set_master("v" + name, "br0");
    net.set_up("v" + name);
    NetlinkSocket inside(ns);
    inside.set_up("lo");
    inside.add_address("eth0", *Ipv4::parse(ip), 24);
    inside.set_up("eth0");
    inside.replace_default_route(*Ipv4::parse("10.0.0.1"), "eth0");
    return path;
  }

  void start_server(const std::filesystem::path& ns_path, std::vector<std::string> argv) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) ::_exit(127);
      ::setpgid(0, 0);
      const int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    servers_.push_back(pid);
  }

  void wait_for_listener(Ipv4 ip) {
    for (int i = 0; i < 100; ++i) {
      if (TcpClient(*client_, ip, 80).error() == 0) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "no listener on " << ip.str();
  }

  ServiceDataplaneOptions options(LbKind kind) const {
    ServiceDataplaneOptions o;
    o.kind = kind;
    o.pin_dir = dir_.path() / "bpffs" / "lb";
    o.state_dir = dir_.path() / "state";
    o.limits.max_services = 64;
    o.limits.max_frontends = 64;
    o.limits.max_backends = 256;
    o.limits.conntrack_entries = 16384;
    o.limits.maglev_table_size = 1021;
    return o;
  }

  static Endpoint backend(const std::string& id, const char* ip, BackendState state = BackendState::active) {
    Endpoint e;
    e.id = id;
    e.network_id = kNet;
    e.ip = *Ipv4::parse(ip);
    e.prefix_len = 24;
    e.mac = dataplane::MacAddress::from_ipv4(e.ip);
    e.service_id = kService;
    e.backend_state = state;
    return e;
  }

  // The service on the network with the given backends, a dnsrr service
  // beside it, and the tc attach points of all three endpoints.
  LbView view(std::vector<Endpoint> backends) const {
    LbView v;
    Service vip_service;
    vip_service.id = kService;
    vip_service.name = "web";
    vip_service.network_ids = {kNet};
    vip_service.vips = {ServiceVip{kNet, kVip, 24}};
    Service dnsrr;
    dnsrr.id = kDnsrrService;
    dnsrr.name = "dns-rr";
    dnsrr.mode = EndpointMode::dnsrr;
    dnsrr.network_ids = {kNet};
    v.services = {vip_service, dnsrr};
    v.backends = std::move(backends);
    LbNetwork network;
    network.network_id = kNet;
    network.netns = net_path_;
    network.bridge = "br0";
    network.subnet = *dataplane::Cidr::parse("10.0.0.0/24");
    network.gateway = *Ipv4::parse("10.0.0.1");
    v.networks = {network};
    for (const auto& [id, ifname] : {std::pair{kClient, "vclient"}, std::pair{kB1, "vb1"}, std::pair{kB2, "vb2"}})
      v.attach_points.push_back(LbAttachPoint{id, kNet, ifname});
    return v;
  }
  LbView two_backends(BackendState b1 = BackendState::active) const {
    return view({backend(kB1, "10.0.0.11", b1), backend(kB2, "10.0.0.12")});
  }

  std::map<std::string, int> connect_many(int n) {
    std::map<std::string, int> seen;
    for (int i = 0; i < n; ++i) {
      TcpClient c(*client_, kVip, 80);
      seen[c.error() ? "error " + std::to_string(c.error()) : c.greeting()]++;
    }
    return seen;
  }

  // A connection through the VIP that landed on `name`.
  std::unique_ptr<TcpClient> connection_to(const std::string& name) {
    for (int i = 0; i < 40; ++i) {
      auto c = std::make_unique<TcpClient>(*client_, kVip, 80);
      if (c->greeting() == name) return c;
    }
    return nullptr;
  }

  bool tc_attached(const std::string& ifname) {
    const std::string command = "nsenter --net=" + net_path_.string() + " tc filter show dev " + ifname +
                                " ingress | grep -q lb_from_endpoin";
    return std::system(command.c_str()) == 0;
  }

  void balance_drain_and_reset();

  ScratchDir dir_;
  std::optional<PrivateBpffs> bpffs_;
  std::optional<ScratchNamespaces> namespaces_;
  std::filesystem::path net_path_;
  std::optional<NetnsHandle> net_, client_;
  std::vector<pid_t> servers_;
  std::optional<ServiceDataplane> dp_;
};

// The behaviour both data paths share: balance over two backends, drain
// one (its open connection goes on, new ones avoid it), remove it (its open
// connection is reset).
void ServiceDataplaneTest::balance_drain_and_reset() {
  ASSERT_TRUE(dp_->apply(two_backends()));
  auto seen = connect_many(30);
  EXPECT_EQ(seen.size(), 2u) << "both backends and nothing else";
  EXPECT_GT(seen["b1"], 0);
  EXPECT_GT(seen["b2"], 0);
  std::uint64_t total = 0;
  for (const auto& [endpoint, c] : dp_->counters(kService, kNet)) {
    EXPECT_TRUE(endpoint == kB1 || endpoint == kB2) << endpoint;
    total += c.connections;
  }
  EXPECT_EQ(total, 30u) << "counters by endpoint id";
  EXPECT_EQ(dp_->metrics().connections[kService], 30u) << "weft_lb_connections_total";
  EXPECT_FALSE(dp_->service_number(kDnsrrService, kNet)) << "dnsrr services have nothing in the load balancer";

  auto on_b1 = connection_to("b1");
  ASSERT_TRUE(on_b1);
  auto on_b2 = connection_to("b2");
  ASSERT_TRUE(on_b2);
  ASSERT_TRUE(dp_->apply(two_backends(BackendState::draining)));
  EXPECT_EQ(connect_many(20)["b2"], 20) << "a draining backend gets no new connection";
  EXPECT_EQ(on_b1->echo("still here\n"), "still here\n") << "a draining backend's open connection goes on";

  const std::uint64_t before_removal = dp_->metrics().connections[kService];
  ASSERT_TRUE(dp_->apply(view({backend(kB2, "10.0.0.12")})));
  int err = 0;
  auto got = on_b1->echo("anyone?\n", &err);
  ASSERT_TRUE(got.has_value()) << "the removed backend's flow hangs instead of being reset";
  EXPECT_EQ(err, ECONNRESET) << "got '" << *got << "'";
  EXPECT_EQ(on_b2->echo("fine\n"), "fine\n") << "another backend's flow is untouched";
  EXPECT_EQ(connect_many(10)["b2"], 10);
  EXPECT_FALSE(dp_->backend_number(kB1)) << "the removed backend's id is freed";
  // A counter never goes down: the removed backend's connections still count.
  EXPECT_EQ(dp_->metrics().connections[kService], before_removal + 10);
}

TEST_F(ServiceDataplaneTest, AutoPicksEbpfAndBalancesDrainsAndResets) {
  dp_.emplace(ServiceDataplane::open(options(LbKind::automatic)));
  EXPECT_EQ(dp_->kind(), "ebpf");
  balance_drain_and_reset();
  EXPECT_TRUE(tc_attached("vclient"));
  // Conntrack collection reports the map's fill (the flows above are fresh).
  auto fill = dp_->collect_garbage();
  ASSERT_TRUE(fill.has_value());
  EXPECT_EQ(fill->capacity, 16384u);
  EXPECT_GT(fill->entries, 0u);
  EXPECT_EQ(dp_->conntrack_fill().entries, fill->entries);
}

TEST_F(ServiceDataplaneTest, ANewVipTakesTheServiceOver) {
  dp_.emplace(ServiceDataplane::open(options(LbKind::ebpf)));
  ASSERT_TRUE(dp_->apply(two_backends()));
  LbView moved = two_backends();
  const Ipv4 new_vip = *Ipv4::parse("10.0.0.101");
  moved.services[0].vips[0].addr = new_vip;
  ASSERT_TRUE(dp_->apply(moved));
  TcpClient c(*client_, new_vip, 80);
  ASSERT_EQ(c.error(), 0);
  EXPECT_FALSE(c.greeting().empty());
  EXPECT_NE(TcpClient(*client_, kVip, 80).error(), 0) << "the old VIP is gone";
}

TEST_F(ServiceDataplaneTest, AutoFallsBackToNftablesOnlyWhenNoMapsArePinned) {
  // No bpffs under the pin dir: the programs cannot be pinned, nftables it is.
  auto no_bpffs = options(LbKind::automatic);
  no_bpffs.pin_dir = dir_.path() / "not-bpffs" / "lb";
  EXPECT_EQ(ServiceDataplane::open(no_bpffs).kind(), "nftables");
  EXPECT_EQ(ServiceDataplane::open(no_bpffs).kind(), "nftables") << "and again on the next start";

  // Maps pinned by an eBPF run that cannot be reused (other sizes): auto
  // refuses rather than leave their programs on the endpoints beside nftables.
  ServiceDataplane::open(options(LbKind::ebpf));
  auto other_sizes = options(LbKind::automatic);
  other_sizes.limits.conntrack_entries *= 2;
  try {
    ServiceDataplane::open(other_sizes);
    ADD_FAILURE() << "auto fell back to nftables with eBPF maps pinned";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("holds maps of an earlier run"), std::string::npos) << e.what();
  }
  EXPECT_EQ(ServiceDataplane::open(options(LbKind::automatic)).kind(), "ebpf");
}

TEST_F(ServiceDataplaneTest, NftablesBalancesDrainsAndResets) {
  dp_.emplace(ServiceDataplane::open(options(LbKind::nftables)));
  EXPECT_EQ(dp_->kind(), "nftables");
  balance_drain_and_reset();
  EXPECT_FALSE(dp_->collect_garbage()) << "the kernel's conntrack ages nftables' flows";
  EXPECT_FALSE(tc_attached("vclient")) << "no tc programs with nftables";
  EXPECT_EQ(dp_->lookup(kService, kNet, *Ipv4::parse("10.0.0.2"), 40000, 80, PortProtocol::tcp), std::nullopt)
      << "nftables draws at random: nothing to predict";

  // The network leaves the view: its table goes.
  ASSERT_TRUE(dp_->apply(LbView{}));
  EXPECT_NE(std::system(("nsenter --net=" + net_path_.string() + " nft list table ip weft_lb >/dev/null 2>&1").c_str()),
            0);
  EXPECT_FALSE(dp_->service_number(kService, kNet));
}

TEST_F(ServiceDataplaneTest, NftablesWithoutANodeAddressUsesOnlyLocalBackends) {
  dp_.emplace(ServiceDataplane::open(options(LbKind::nftables)));
  // A backend on another node: no veth here. Without an address of this
  // node to SNAT to, its replies could not come back: left out, so no
  // connection is black-holed.
  const std::string remote = std::string(63, 'e') + "9";
  LbView v = two_backends();
  v.backends.push_back(backend(remote, "10.0.0.50"));
  ASSERT_TRUE(dp_->apply(v));
  auto seen = connect_many(15);
  EXPECT_EQ(seen["b1"] + seen["b2"], 15) << "no connection went to the unreachable remote backend";
  EXPECT_FALSE(dp_->counters(kService, kNet).contains(remote));

  // With an address of this node in the network, remote backends are used.
  v.networks[0].node_lb_address = *Ipv4::parse("10.0.0.99");
  ASSERT_TRUE(dp_->apply(v));
  EXPECT_TRUE(dp_->counters(kService, kNet).contains(remote));
  EXPECT_EQ(dp_->counters(kService, kNet).size(), 3u);
}

TEST_F(ServiceDataplaneTest, LookupNamesTheBackendThatGetsTheFlow) {
  dp_.emplace(ServiceDataplane::open(options(LbKind::ebpf)));
  LbView listed_twice = two_backends();
  listed_twice.backends.push_back(listed_twice.backends[0]);
  ASSERT_TRUE(dp_->apply(listed_twice)) << "an endpoint listed twice counts once";
  const std::map<std::string, std::string> name_of{{kB1, "b1"}, {kB2, "b2"}};
  std::map<std::string, int> seen;
  for (std::uint16_t sport = 41000; sport < 41010; ++sport) {
    auto predicted = dp_->lookup(kService, kNet, *Ipv4::parse("10.0.0.2"), sport, 80, PortProtocol::tcp);
    ASSERT_TRUE(predicted.has_value());
    ASSERT_TRUE(name_of.contains(*predicted)) << "'" << *predicted << "'";
    TcpClient c(*client_, kVip, 80, sport);
    ASSERT_EQ(c.error(), 0);
    EXPECT_EQ(c.greeting(), name_of.at(*predicted)) << "source port " << sport;
    seen[*predicted]++;
  }
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_EQ(dp_->lookup(std::string(64, 'f'), kNet, *Ipv4::parse("10.0.0.2"), 1, 80, PortProtocol::tcp), "")
      << "an unknown service: no backend";
}

TEST_F(ServiceDataplaneTest, ReopenKeepsIdsAndOpenConnections) {
  dp_.emplace(ServiceDataplane::open(options(LbKind::ebpf)));
  // b2 first, so it holds backend id 1: a fresh start would number the
  // view's order (b1, b2) the other way round.
  ASSERT_TRUE(dp_->apply(view({backend(kB2, "10.0.0.12")})));
  ASSERT_TRUE(dp_->apply(two_backends()));
  const auto service = dp_->service_number(kService, kNet);
  const auto b1 = dp_->backend_number(kB1), b2 = dp_->backend_number(kB2);
  ASSERT_TRUE(service && b1 && b2);
  ASSERT_EQ(*b2, 1u);
  auto on_b1 = connection_to("b1");
  auto on_b2 = connection_to("b2");
  ASSERT_TRUE(on_b1 && on_b2);

  dp_.reset();  // the agent stops (or is killed): programs stay attached
  EXPECT_TRUE(tc_attached("vclient"));
  EXPECT_EQ(on_b2->echo("while down\n"), "while down\n");

  dp_.emplace(ServiceDataplane::open(options(LbKind::ebpf)));
  EXPECT_EQ(dp_->service_number(kService, kNet), service);
  EXPECT_EQ(dp_->backend_number(kB1), b1);
  EXPECT_EQ(dp_->backend_number(kB2), b2);
  ASSERT_TRUE(dp_->apply(two_backends()));
  EXPECT_EQ(dp_->service_number(kService, kNet), service);
  EXPECT_EQ(dp_->backend_number(kB1), b1);
  EXPECT_EQ(dp_->backend_number(kB2), b2);
  EXPECT_EQ(on_b1->echo("after restart\n"), "after restart\n");
  EXPECT_EQ(on_b2->echo("after restart\n"), "after restart\n");
  auto seen = connect_many(20);
  EXPECT_EQ(seen["b1"] + seen["b2"], 20);

  // An endpoint's attach point leaves the view: its programs come off.
  LbView without_client = two_backends();
  std::erase_if(without_client.attach_points, [](const LbAttachPoint& p) { return p.endpoint_id == kClient; });
  ASSERT_TRUE(dp_->apply(without_client));
  EXPECT_FALSE(tc_attached("vclient"));
  EXPECT_TRUE(tc_attached("vb1"));
}

TEST_F(ServiceDataplaneTest, ServiceGoneWhileTheAgentWasDownIsRemovedOnStart) {
  dp_.emplace(ServiceDataplane::open(options(LbKind::ebpf)));
  ASSERT_TRUE(dp_->apply(two_backends()));
  ASSERT_EQ(TcpClient(*client_, kVip, 80).error(), 0);
  dp_.reset();
  dp_.emplace(ServiceDataplane::open(options(LbKind::ebpf)));
  LbView no_service = two_backends();
  no_service.services.clear();
  ASSERT_TRUE(dp_->apply(no_service));
  EXPECT_FALSE(dp_->service_number(kService, kNet));
  TcpClient c(*client_, kVip, 80);
  EXPECT_NE(c.error(), 0) << "the VIP is gone from the maps";
}

TEST_F(ServiceDataplaneTest, DriverAppliesChangesAndRetriesWhatFailed) {
  dp_.emplace(ServiceDataplane::open(options(LbKind::ebpf)));
  std::mutex mutex;
  LbView current = two_backends();
  // An attach point whose veth does not exist yet: incomplete, retried.
  current.attach_points.push_back(LbAttachPoint{std::string(64, '9'), kNet, "vlate"});
  DriverTiming timing;
  timing.first_retry = 100ms;
  timing.debounce = 100ms;  // roomy: a loaded machine must not split the burst below
  timing.max_delay = 2s;
  ServiceDataplaneDriver driver(*dp_, [&] {
    std::lock_guard lock(mutex);
    return current;
  }, timing);
  auto wait_for = [&](auto&& condition) {
    for (int i = 0; i < 100 && !condition(); ++i) std::this_thread::sleep_for(50ms);
    return condition();
  };
  ASSERT_TRUE(wait_for([&] { return driver.applies() >= 1; }));
  EXPECT_FALSE(driver.last_apply_complete());
  EXPECT_EQ(connect_many(10).size(), 2u) << "the rest was applied";
  add_endpoint("late", "10.0.0.20");
  EXPECT_TRUE(wait_for([&] { return driver.last_apply_complete(); })) << "the retry attached the late veth";
  EXPECT_TRUE(tc_attached("vlate"));

  {
    std::lock_guard lock(mutex);
    current = two_backends(BackendState::draining);
  }
  const auto before = driver.applies();
  for (int i = 0; i < 5; ++i) {  // one burst, one apply
    driver.changed();
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(wait_for([&] { return driver.applies() > before; }));
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(driver.applies(), before + 1);
  EXPECT_EQ(connect_many(10)["b2"], 10);
}

}  // namespace
// Free heap goes back to the system once applies stop for release_after,
// not while a burst of changes goes on, and once per quiet spell.
TEST_F(ServiceDataplaneTest, DriverReleasesFreeHeapOnceChangesStop) {
  dp_.emplace(ServiceDataplane::open(options(LbKind::ebpf)));
  DriverTiming timing;
  timing.debounce = 10ms;
  timing.max_delay = 50ms;
  timing.release_after = 1s;  // roomy: a loaded machine's sleeps run long
  ServiceDataplaneDriver driver(*dp_, [&] { return two_backends(); }, timing);
  auto wait_for = [&](auto&& condition) {
    for (int i = 0; i < 100 && !condition(); ++i) std::this_thread::sleep_for(50ms);
    return condition();
  };
  ASSERT_TRUE(wait_for([&] { return driver.memory_releases() == 1; })) << "after the first apply";
  EXPECT_GE(driver.applies(), 1u);

  // Changes every 50 ms for 1.5 s: applies, but no quiet spell of 1 s.
  const auto before = driver.applies();
  for (int i = 0; i < 30; ++i) {
    driver.changed();
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(driver.applies(), before);
  EXPECT_EQ(driver.memory_releases(), 1u) << "released during a burst";
  ASSERT_TRUE(wait_for([&] { return driver.memory_releases() == 2; })) << "after the burst";
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(driver.memory_releases(), 2u) << "released again with nothing applied";
}

}  // namespace weft::control::services
