// The nftables load balancer with real traffic: a scratch network
// namespace with a bridge, a client and two backend namespaces on veths,
// socat servers in the backends, and the client connecting to the VIP.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/lb/ebpf_service_backend.h"
#include "dataplane/lb/nft_load_balancer.h"
#include "dataplane/netlink.h"
#include "dataplane/overlay.h"
#include "tests/support/netns_sockets.h"
#include "tests/support/scratch_netns.h"

namespace weft::dataplane::lb {
namespace {

using namespace std::chrono_literals;
using testing::ScratchDir;
using testing::ScratchNamespaces;
using testing::TcpClient;
using testing::read_some;

constexpr std::uint32_t ip4(int a, int b, int c, int d) {
  return (std::uint32_t(a) << 24) | (std::uint32_t(b) << 16) | (std::uint32_t(c) << 8) | std::uint32_t(d);
}
constexpr std::uint32_t kVip = ip4(10, 0, 0, 100);
constexpr std::uint32_t kVip2 = ip4(10, 0, 0, 101);
constexpr std::uint32_t kB1 = ip4(10, 0, 0, 11);
constexpr std::uint32_t kB2 = ip4(10, 0, 0, 12);
constexpr std::uint32_t kService = 1;

sockaddr_in addr_of(std::uint32_t ip, std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(ip);
  return sa;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

class LbNftTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: network namespaces and nftables";
    namespaces_.emplace(dir_.path());
    net_path_ = namespaces_->make("net");
    net_.emplace(NetnsHandle::open(net_path_.string()));
    {
      NetlinkSocket net(*net_);
      net.set_up("lo");
      net.create_bridge("br0");
      net.add_address("br0", *weft::dataplane::Ipv4::parse("10.0.0.1"), 24);
      net.set_up("br0");
    }
    disable_bridge_netfilter(*net_);
    client_path_ = add_endpoint("client", "10.0.0.2");
    b1_path_ = add_endpoint("b1", "10.0.0.11");
    b2_path_ = add_endpoint("b2", "10.0.0.12");
    client_.emplace(NetnsHandle::open(client_path_.string()));
    b1_.emplace(NetnsHandle::open(b1_path_.string()));
    for (const auto& [path, name] : {std::pair{b1_path_, "b1"}, std::pair{b2_path_, "b2"}}) {
      start_server(path, {"socat", "TCP-LISTEN:80,fork,reuseaddr", std::string("SYSTEM:echo ") + name + "; cat"});
      start_udp_server(path, name);
    }
    for (auto ip : {kB1, kB2}) wait_for_listener(ip);
    lb_.emplace(NftLoadBalancer::open(*net_, options()));
  }

  void TearDown() override {
    lb_.reset();
    stop_udp_ = true;
    for (auto& t : udp_servers_) t.join();
    for (pid_t pid : servers_) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }

  static NftOptions options() {
    NftOptions o;
    o.limits.max_services = 64;
    o.limits.max_frontends = 64;
    o.limits.max_backends = 256;
    return o;
  }

  std::filesystem::path add_endpoint(const std::string& name, const std::string& ip) {
    auto path = namespaces_->make(name);
    auto ns = NetnsHandle::open(path.string());
    NetlinkSocket net(*net_);
    net.create_veth({.name = "v" + name, .peer_name = "eth0", .peer_netns_fd = ns.fd()});
    net.set_master("v" + name, "br0");
    net.set_up("v" + name);
    NetlinkSocket inside(ns);
    inside.set_up("lo");
    inside.add_address("eth0", *weft::dataplane::Ipv4::parse(ip), 24);
    inside.set_up("eth0");
    inside.replace_default_route(*weft::dataplane::Ipv4::parse("10.0.0.1"), "eth0");
    return path;
  }

  void start_server(const std::filesystem::path& ns_path, std::vector<std::string> argv) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test killed by a timeout takes its server along
      const int fd = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) ::_exit(127);
      // Its own process group: TearDown ends the server and the children it
      // forked per connection or datagram together.
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

  // Answers every datagram on port 53 with the backend's name. (socat's
  // UDP-RECVFROM,fork loses datagrams that arrive while a child runs.)
  void start_udp_server(const std::filesystem::path& ns_path, const std::string& name) {
    auto ns = NetnsHandle::open(ns_path.string());
    UniqueFd fd = open_socket_in(ns, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    auto sa = addr_of(INADDR_ANY, 53);
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    udp_servers_.emplace_back([this, fd = std::move(fd), reply = name + "\n"] {
      while (!stop_udp_) {
        pollfd p{fd.get(), POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        char buf[64];
        sockaddr_in from{};
        socklen_t len = sizeof from;
        if (::recvfrom(fd.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len) < 0) continue;
        ::sendto(fd.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
    });
  }

  void wait_for_listener(std::uint32_t ip) {
    for (int i = 0; i < 100; ++i) {
      TcpClient c(*client_, ip, 80);
      if (c.error() == 0) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "no listener on " << nft::ipv4_text(ip);
  }

  std::vector<Backend> two_backends(BackendState b1 = BackendState::active,
                                    BackendState b2 = BackendState::active) const {
    return {{.id = 11, .ip = kB1, .mac = {}, .state = b1}, {.id = 12, .ip = kB2, .mac = {}, .state = b2}};
  }

  void make_service() {
    lb_->upsert_service({kVip, 80, Protocol::tcp}, kService);
    lb_->upsert_service({kVip, 53, Protocol::udp}, kService);
    lb_->set_backends(kService, two_backends());
  }

  // Greetings of `n` new connections from `ns` to VIP:80, counted by name.
  std::map<std::string, int> connect_many(const NetnsHandle& ns, int n, std::uint32_t vip = kVip) {
    std::map<std::string, int> seen;
    for (int i = 0; i < n; ++i) {
      TcpClient c(ns, vip, 80);
      seen[c.error() ? "error " + std::to_string(c.error()) : c.greeting()]++;
    }
    return seen;
  }

  int shell_in(const std::filesystem::path& ns_path, const std::string& command) {
    return std::system(("nsenter --net=" + ns_path.string() + " " + command + " >/dev/null 2>&1").c_str());
  }

  ScratchDir dir_;
  std::optional<ScratchNamespaces> namespaces_;
  std::filesystem::path net_path_, client_path_, b1_path_, b2_path_;
  std::optional<NetnsHandle> net_, client_, b1_;
  std::vector<pid_t> servers_;
  std::atomic<bool> stop_udp_{false};
  std::vector<std::thread> udp_servers_;
  std::optional<NftLoadBalancer> lb_;
};

TEST_F(LbNftTest, NewConnectionsReachEveryBackendWithTheVipAsPeer) {
  make_service();
  auto seen = connect_many(*client_, 40);
  EXPECT_EQ(seen.size(), 2u) << "both backends and nothing else";
  EXPECT_GT(seen["b1"], 0);
  EXPECT_GT(seen["b2"], 0);
  // An echo through the VIP works both ways (replies are un-NATed).
  TcpClient c(*client_, kVip, 80);
  ASSERT_EQ(c.error(), 0);
  c.greeting();
  EXPECT_EQ(c.echo("ping\n"), "ping\n");
  // One counted connection per new connection.
  std::uint64_t total = 0;
  for (const auto& counter : lb_->counters(kService)) total += counter.connections;
  EXPECT_EQ(total, 41u);
}

TEST_F(LbNftTest, DrainingBackendGetsNoNewConnectionsButItsOpenOnesGoOn) {
  make_service();
  std::optional<TcpClient> open;
  std::string on;
  for (int i = 0; i < 20 && on != "b1"; ++i) {
    open.emplace(*client_, kVip, 80);
    on = open->greeting();
  }
  ASSERT_EQ(on, "b1");
  lb_->set_backend_state(11, BackendState::draining);
  auto seen = connect_many(*client_, 20);
  EXPECT_EQ(seen["b2"], 20) << "a draining backend gets no new connection";
  EXPECT_EQ(open->echo("still here\n"), "still here\n");
  ASSERT_EQ(lb_->backends(kService).size(), 2u);
  EXPECT_EQ(lb_->backends(kService)[0].state, BackendState::draining);
}

TEST_F(LbNftTest, DeadBackendsOpenConnectionsGetAResetNewOnesGoElsewhere) {
  make_service();
  std::optional<TcpClient> open;
  std::string on;
  for (int i = 0; i < 20 && on != "b1"; ++i) {
    open.emplace(*client_, kVip, 80);
    on = open->greeting();
  }
  ASSERT_EQ(on, "b1");
  TcpClient survivor(*client_, kVip, 80);
  std::string survivor_on;
  for (int i = 0; i < 20 && survivor_on != "b2"; ++i) {
    survivor = TcpClient(*client_, kVip, 80);
    survivor_on = survivor.greeting();
  }
  ASSERT_EQ(survivor_on, "b2");
  auto connections_of_b2 = [&] {
    for (const auto& c : lb_->counters(kService))
      if (c.backend_id == 12) return c.connections;
    return std::uint64_t{0};
  };
  const auto b2_before = connections_of_b2();
  lb_->set_backend_state(11, BackendState::dead);
  int err = 0;
  auto got = open->echo("anyone?\n", &err);
  ASSERT_TRUE(got.has_value()) << "the dead backend's flow hangs instead of being reset";
  EXPECT_EQ(err, ECONNRESET) << "got '" << *got << "'";
  // The RST is the VIP's own: the flow's next packet (no SYN) was not
  // balanced to the other backend.
  EXPECT_EQ(connections_of_b2(), b2_before);
  EXPECT_EQ(survivor.echo("fine\n"), "fine\n") << "another backend's flow is untouched";
  EXPECT_EQ(connect_many(*client_, 10)["b2"], 10);
}

TEST_F(LbNftTest, VipWithoutBackendsRefusesTcpAndUdpAtOnce) {
  lb_->upsert_service({kVip, 80, Protocol::tcp}, kService);
  lb_->upsert_service({kVip, 53, Protocol::udp}, kService);
  const auto start = std::chrono::steady_clock::now();
  TcpClient c(*client_, kVip, 80);
  EXPECT_EQ(c.error(), ECONNREFUSED);
  TcpClient other_port(*client_, kVip, 8080);
  EXPECT_EQ(other_port.error(), ECONNREFUSED) << "a VIP port without a frontend";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);

  UniqueFd udp = open_socket_in(*client_, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  auto sa = addr_of(kVip, 53);
  ASSERT_EQ(::connect(udp.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::send(udp.get(), "q", 1, 0), 1);
  int err = 0;
  auto got = read_some(udp.get(), 2s, &err);
  ASSERT_TRUE(got.has_value()) << "no ICMP port unreachable";
  EXPECT_EQ(err, ECONNREFUSED);

  // Backends come: the same VIP now answers; they go: refused again.
  lb_->set_backends(kService, two_backends());
  EXPECT_EQ(TcpClient(*client_, kVip, 80).error(), 0);
  lb_->set_backends(kService, {});
  EXPECT_EQ(TcpClient(*client_, kVip, 80).error(), ECONNREFUSED);
}

TEST_F(LbNftTest, VipAnswersPing) {
  make_service();
  EXPECT_EQ(shell_in(client_path_, "ping -c 1 -W 2 10.0.0.100"), 0);
  EXPECT_NE(shell_in(client_path_, "ping -c 1 -W 1 10.0.0.102"), 0) << "an address that is no VIP";
}

TEST_F(LbNftTest, UdpIsBalancedPerFlow) {
  make_service();
  std::map<std::string, int> seen;
  for (int flow = 0; flow < 20; ++flow) {
    UniqueFd udp = open_socket_in(*client_, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    auto sa = addr_of(kVip, 53);
    ASSERT_EQ(::connect(udp.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    std::string first;
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(::send(udp.get(), "q", 1, 0), 1);
      auto got = read_some(udp.get(), 2s);
      ASSERT_TRUE(got.has_value()) << "flow " << flow << " got no answer";
      if (i == 0) first = trimmed(*got);
      EXPECT_EQ(trimmed(*got), first) << "a UDP flow stays on its backend";
    }
    seen[first]++;
  }
  EXPECT_GT(seen["b1"], 0);
  EXPECT_GT(seen["b2"], 0);
}

TEST_F(LbNftTest, BackendReachesItsOwnServiceIncludingItself) {
  make_service();
  auto seen = connect_many(*b1_, 30);
  EXPECT_GT(seen["b1"], 0) << "hairpin: the backend picked for itself";
  EXPECT_GT(seen["b2"], 0);
  EXPECT_EQ(seen["b1"] + seen["b2"], 30);
}

TEST_F(LbNftTest, PortZeroFrontendForwardsEveryPort) {
  lb_->upsert_service({kVip2, 0, Protocol::tcp}, 2);
  lb_->set_backends(2, std::vector<Backend>{{.id = 21, .ip = kB2, .mac = {}, .state = BackendState::active}});
  EXPECT_EQ(connect_many(*client_, 3, kVip2)["b2"], 3);
}

TEST_F(LbNftTest, ReopenKeepsModelAndFlowsAndRemoveCleansUp) {
  make_service();
  lb_->set_backend_state(12, BackendState::draining);
  TcpClient open(*client_, kVip, 80);
  ASSERT_EQ(open.greeting(), "b1");
  const auto frontends = lb_->frontends();
  lb_.reset();  // a crashed or restarted agent

  lb_.emplace(NftLoadBalancer::open(*net_, options()));
  EXPECT_EQ(lb_->frontends(), frontends);
  auto backends = lb_->backends(kService);
  ASSERT_EQ(backends.size(), 2u);
  EXPECT_EQ(backends[0].state, BackendState::active);
  EXPECT_EQ(backends[0].ip, kB1);
  EXPECT_EQ(backends[1].state, BackendState::draining);
  EXPECT_EQ(backends[1].ip, kB2);
  EXPECT_EQ(open.echo("after restart\n"), "after restart\n");
  EXPECT_EQ(connect_many(*client_, 5)["b1"], 5);
  // The restored model drives the next change.
  lb_->set_backend_state(12, BackendState::active);
  EXPECT_GT(connect_many(*client_, 30)["b2"], 0);
  // An active backend's service comes back from its slot (backend_svc holds
  // only the others): it can be drained, and the next restart still knows it.
  lb_.reset();
  lb_.emplace(NftLoadBalancer::open(*net_, options()));
  lb_->set_backend_state(11, BackendState::draining);
  EXPECT_EQ(connect_many(*client_, 5)["b2"], 5);
  lb_.reset();
  lb_.emplace(NftLoadBalancer::open(*net_, options()));
  backends = lb_->backends(kService);
  ASSERT_EQ(backends.size(), 2u);
  EXPECT_EQ(backends[0].state, BackendState::draining);
  EXPECT_EQ(backends[1].state, BackendState::active);

  lb_.reset();
  NftLoadBalancer::remove(*net_, options());
  EXPECT_NE(shell_in(net_path_, "nft list table ip weft_lb"), 0);
  EXPECT_NE(shell_in(client_path_, "ping -c 1 -W 1 10.0.0.100"), 0) << "the VIP address is gone";
}

TEST_F(LbNftTest, OneBackendChangeIsAFewElementUpdates) {
  lb_->upsert_service({kVip, 80, Protocol::tcp}, kService);
  std::vector<Backend> ten;
  for (std::uint32_t i = 0; i < 10; ++i)
    ten.push_back({.id = 100 + i, .ip = ip4(10, 0, 1, 1 + static_cast<int>(i)), .mac = {}, .state = BackendState::active});
  lb_->set_backends(kService, ten);
  lb_->set_backend_state(103, BackendState::draining);
  const std::string& text = lb_->last_commands();
  // Slot 3 gets the last slot's backend, the last slot goes, the service's
  // pick goes from 10 to 9 (and pick_9 is made, once), and the drained
  // backend's service is recorded now that no slot holds it.
  EXPECT_EQ(lb_->last_operations(), 7u) << text;
  EXPECT_EQ(text.find("flush"), std::string::npos) << text;
  EXPECT_EQ(text.find("delete rule"), std::string::npos) << text;
  // The only rules are those of the new pick_9, made once.
  const auto first_rule = text.find("add rule");
  ASSERT_NE(first_rule, std::string::npos) << text;
  EXPECT_EQ(text.substr(first_rule, 29), "add rule ip weft_lb pick_9 ct") << text;
  lb_->set_backend_state(103, BackendState::active);
  lb_->set_backend_state(105, BackendState::draining);
  EXPECT_EQ(lb_->last_commands().find("rule"), std::string::npos) << lb_->last_commands();
  EXPECT_EQ(lb_->last_operations(), 6u) << lb_->last_commands();
}

// The elements go as one transaction: when the kernel refuses one (here a
// slot deleted behind the balancer's back), it applies none of them, the
// call throws naming the map, and the model is unchanged; a pick chain made
// for the change stays known (the kernel has it).
TEST_F(LbNftTest, RefusedElementChangeAppliesNothing) {
  make_service();
  ASSERT_EQ(shell_in(net_path_, "nft delete element ip weft_lb slots { 1 . 1 }"), 0);
  try {
    lb_->set_backend_state(12, BackendState::draining);
    ADD_FAILURE() << "the kernel took a delete of a missing slot";
  } catch (const nft::NftError& e) {
    EXPECT_NE(std::string(e.what()).find("map slots"), std::string::npos) << e.what();
  }
  auto backends = lb_->backends(kService);
  ASSERT_EQ(backends.size(), 2u);
  EXPECT_EQ(backends[1].state, BackendState::active);
  EXPECT_EQ(shell_in(net_path_, "sh -c 'nft list map ip weft_lb svc_pick | grep -q \"goto pick_2\"'"), 0)
      << "the service still picks among 2";
  EXPECT_NE(shell_in(net_path_, "sh -c 'nft list map ip weft_lb backend_svc | grep -q elements'"), 0)
      << "no owner element was added";
  EXPECT_EQ(shell_in(net_path_, "nft list chain ip weft_lb pick_1"), 0);

  ASSERT_EQ(shell_in(net_path_, "nft add element ip weft_lb slots { 1 . 1 : 12 }"), 0);
  lb_->set_backend_state(12, BackendState::draining);
  EXPECT_EQ(lb_->last_commands().find("add chain"), std::string::npos) << "pick_1 exists";
  EXPECT_EQ(connect_many(*client_, 5)["b1"], 5);
}

// Active backends' service is the key of their slot: loading them writes a
// slot and an address each and no owner element (the full load's cost is
// per element); only a backend out of the slots gets one, and loses it when
// it comes back.
TEST_F(LbNftTest, OnlyBackendsWithoutASlotHaveAnOwnerElement) {
  // Marks list as 0x%08x: backend 103 is 0x00000067, 104 is 0x00000068.
  auto owners = [&] {
    std::string out;
    FILE* p = ::popen(("nsenter --net=" + net_path_.string() + " nft list map ip weft_lb backend_svc").c_str(), "r");
    char buf[512];
    while (p && std::fgets(buf, sizeof buf, p)) out += buf;
    if (p) ::pclose(p);
    // An empty listing (nsenter or nft failed) would pass every "not
    // found" below.
    EXPECT_NE(out.find("map backend_svc"), std::string::npos) << "listing the map failed: " << out;
    return out;
  };
  lb_->upsert_service({kVip, 80, Protocol::tcp}, kService);
  std::vector<Backend> ten;
  for (std::uint32_t i = 0; i < 10; ++i)
    ten.push_back({.id = 100 + i, .ip = ip4(10, 0, 1, 1 + static_cast<int>(i)), .mac = {}, .state = BackendState::active});
  lb_->set_backends(kService, ten);
  EXPECT_EQ(lb_->last_operations(), 10u + 10u + 2u) << lb_->last_commands();  // slots, addresses, pick_10 and its use
  EXPECT_EQ(lb_->last_commands().find("backend_svc"), std::string::npos) << lb_->last_commands();
  EXPECT_EQ(owners().find("elements"), std::string::npos) << owners();
  EXPECT_NE(owners().find("backend_svc"), std::string::npos) << "the listing worked";

  lb_->set_backend_state(103, BackendState::draining);
  lb_->set_backend_state(104, BackendState::dead);
  EXPECT_NE(owners().find("0x00000067 : 0x00000001"), std::string::npos) << owners();
  EXPECT_NE(owners().find("0x00000068 : 0x00000001"), std::string::npos) << owners();
  lb_->set_backend_state(103, BackendState::active);
  EXPECT_EQ(owners().find("0x00000067"), std::string::npos) << owners();
  EXPECT_NE(owners().find("0x00000068 : 0x00000001"), std::string::npos) << owners();
  // Removing the service removes the record of the backend outside the slots.
  lb_->remove_service(kService);
  EXPECT_EQ(owners().find("elements"), std::string::npos) << owners();
}

TEST_F(LbNftTest, BadInputIsRefusedAndChangesNothing) {
  make_service();
  const std::string before = lb_->last_commands();
  auto refused = [&](auto&& call) {
    EXPECT_ANY_THROW(call());
    EXPECT_EQ(lb_->frontends().size(), 2u);
    EXPECT_EQ(lb_->backends(kService).size(), 2u);
  };
  refused([&] { lb_->upsert_service({kVip, 80, Protocol::tcp}, options().limits.max_services); });
  refused([&] { lb_->upsert_service({0, 80, Protocol::tcp}, 2); });
  refused([&] {
    const std::pair<Frontend, std::uint32_t> twice[] = {{{kVip2, 80, Protocol::tcp}, 2}, {{kVip2, 80, Protocol::tcp}, 3}};
    lb_->upsert_services(twice);
  });
  refused([&] { lb_->set_backends(2, std::vector<Backend>{{.id = 11, .ip = kB1, .mac = {}, .state = BackendState::active}}); });
  refused([&] { lb_->set_backends(2, std::vector<Backend>{{.id = 0, .ip = kB1, .mac = {}, .state = BackendState::active}}); });
  refused([&] { lb_->set_backends(2, std::vector<Backend>{{.id = 256, .ip = kB1, .mac = {}, .state = BackendState::active}}); });
  refused([&] { lb_->set_backend_state(99, BackendState::draining); });
  EXPECT_FALSE(lb_->service_ids().count(2)) << "nothing of the refused calls stayed";
  // And the data path is as it was.
  auto seen = connect_many(*client_, 20);
  EXPECT_EQ(seen["b1"] + seen["b2"], 20);
}

TEST_F(LbNftTest, OpenReconcilesVipRoutesAndReplacesAForeignTable) {
  make_service();
  lb_.reset();
  // A VIP route of ours the table does not know (a crash between route and
  // table), and one the table knows but is missing.
  ASSERT_EQ(shell_in(net_path_, "ip route add local 10.0.0.77/32 dev br0 table local proto 247"), 0);
  ASSERT_EQ(shell_in(net_path_, "ip route del local 10.0.0.100/32 dev br0 table local proto 247"), 0);
  lb_.emplace(NftLoadBalancer::open(*net_, options()));
  EXPECT_NE(shell_in(net_path_, "sh -c 'ip route show table local | grep -q 10.0.0.77'"), 0);
  EXPECT_EQ(shell_in(client_path_, "ping -c 1 -W 2 10.0.0.100"), 0);
  auto seen = connect_many(*client_, 4);
  EXPECT_EQ(seen["b1"] + seen["b2"], 4);
  lb_.reset();

  // A table of that name without this layout's marker is replaced.
  ASSERT_EQ(shell_in(net_path_, std::string("nft delete set ip weft_lb ") + nft::kLayoutMarker), 0);
  lb_.emplace(NftLoadBalancer::open(*net_, options()));
  EXPECT_TRUE(lb_->frontends().empty());
  EXPECT_NE(shell_in(net_path_, "sh -c 'ip route show table local | grep -q 10.0.0.100'"), 0)
      << "the new table has no VIP, so its route went";
}

// The SNAT address of a node (NftOptions::snat_ip) is reached by backends on
// other nodes at its MAC, 02:42:<address>, through the VXLAN port, not by
// ARP for it on this bridge. Here the backends have the neighbour entry a
// remote node's proxy ARP would give them; the bridge must hand frames to
// that MAC to its own stack (a local FDB entry), else it floods them to its
// ports and the balanced connections die unanswered.
TEST_F(LbNftTest, SnatAddressTakesFramesToItsMacOnTheBridge) {
  constexpr std::uint32_t kSnat = ip4(10, 0, 0, 250), kSnat2 = ip4(10, 0, 0, 251);
  const MacAddress snat_mac = MacAddress::from_ipv4(Ipv4{kSnat});
  auto local_macs = [&] {
    auto macs = NetlinkSocket(*net_).list_local_fdb("br0");
    return std::set<MacAddress>(macs.begin(), macs.end());
  };
  lb_.reset();
  NftOptions o = options();
  o.snat_ip = kSnat;
  lb_.emplace(NftLoadBalancer::open(*net_, o));
  EXPECT_TRUE(local_macs().count(snat_mac));
  for (const auto& path : {b1_path_, b2_path_, client_path_})
    ASSERT_EQ(shell_in(path, "ip neigh replace 10.0.0.250 lladdr " + snat_mac.str() + " dev eth0 nud permanent"), 0);
  EXPECT_EQ(shell_in(client_path_, "ping -c 1 -W 2 10.0.0.250"), 0) << "a frame to the SNAT MAC reaches the stack";
  make_service();
  auto seen = connect_many(*client_, 20);
  EXPECT_EQ(seen["b1"] + seen["b2"], 20) << "the backends' replies to the SNAT address come back";
  TcpClient c(*client_, kVip, 80);
  c.greeting();
  EXPECT_EQ(c.echo("via the node's address\n"), "via the node's address\n");

  // Another address: the entry moves with it; without one, none is left.
  lb_.reset();
  o.snat_ip = kSnat2;
  lb_.emplace(NftLoadBalancer::open(*net_, o));
  EXPECT_FALSE(local_macs().count(snat_mac));
  EXPECT_TRUE(local_macs().count(MacAddress::from_ipv4(Ipv4{kSnat2})));
  lb_.reset();
  NftLoadBalancer::remove(*net_, options());
  const MacAddress own = NetlinkSocket(*net_).get_link("br0").mac;
  for (const MacAddress& mac : local_macs())
    EXPECT_FALSE(mac.bytes[0] == 0x02 && mac.bytes[1] == 0x42 && mac != own) << mac.str();
  EXPECT_NE(shell_in(net_path_, "nft list table netdev weft_lb"), 0) << "its netdev table went too";
}

}  // namespace
}  // namespace weft::dataplane::lb

namespace weft::dataplane::lb::nft {
namespace {

// Both data paths are one interface for the agent.
static_assert(std::is_base_of_v<ServiceBackend, NftLoadBalancer>);
static_assert(std::is_base_of_v<ServiceBackend, EbpfServiceBackend>);

// No root needed: what a batch sends, in which order.
TEST(NftCommands, BatchSendsChainsThenDeletesThenAddsOneStatementPerMap) {
  Commands c("weft_lb");
  c.delete_slot(1, 3);
  c.add_slot(1, 3, 19);
  c.delete_slot(1, 9);
  c.delete_pick(1);
  c.add_pick_chain(9);
  c.set_pick(1, 9);
  EXPECT_EQ(c.operations(), 6u);
  EXPECT_EQ(c.chains_text(),
            "add chain ip weft_lb pick_9\n"
            "add rule ip weft_lb pick_9 ct mark set meta mark . numgen random mod 9 map @slots\n"
            "add rule ip weft_lb pick_9 dnat ip to ct mark map @backend_addr\n");
  EXPECT_EQ(c.text(), c.chains_text() +
                          "delete element ip weft_lb slots { 1 . 3, 1 . 9 }\n"
                          "delete element ip weft_lb svc_pick { 1 }\n"
                          "add element ip weft_lb slots { 1 . 3 : 19 }\n"
                          "add element ip weft_lb svc_pick { 1 : goto pick_9 }\n");
  ASSERT_EQ(c.deletes().size(), 2u);
  EXPECT_EQ(c.deletes()[0].elements.size(), 2u);
  ASSERT_EQ(c.adds().size(), 2u);
  EXPECT_EQ(c.adds()[1].map, "svc_pick");
  EXPECT_EQ(c.adds()[1].elements[0].goto_pick, 9u);
}

// The kernel's register layout: marks in host order, addresses and ports in
// network order, each part of a concatenation padded to 4 bytes.
TEST(NftCommands, ElementsInRegisterLayout) {
  Commands c("t");
  c.add_frontend({0x0a000064, 80, Protocol::tcp}, 4);
  c.add_frontend({0x0a000064, 0, Protocol::udp}, 5);
  c.add_slot(7, 2, 300);
  c.add_backend(300, 0x0a000b0c);
  auto bytes = [](const auto& array, std::size_t len) { return std::vector<std::uint8_t>(array.begin(), array.begin() + len); };
  auto host = [](std::uint32_t v) {
    std::vector<std::uint8_t> out(4);
    std::memcpy(out.data(), &v, 4);
    return out;
  };
  auto cat = [](std::vector<std::uint8_t> a, const std::vector<std::uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  ASSERT_EQ(c.adds().size(), 4u);
  const Element& port = c.adds()[0].elements[0];
  EXPECT_EQ(bytes(port.key, port.key_len), (std::vector<std::uint8_t>{10, 0, 0, 100, 6, 0, 0, 0, 0, 80, 0, 0}));
  EXPECT_EQ(bytes(port.data, port.data_len), host(4));
  const Element& any = c.adds()[1].elements[0];
  EXPECT_EQ(bytes(any.key, any.key_len), (std::vector<std::uint8_t>{10, 0, 0, 100, 17, 0, 0, 0}));
  const Element& slot = c.adds()[2].elements[0];
  EXPECT_EQ(bytes(slot.key, slot.key_len), cat(host(7), host(2)));
  EXPECT_EQ(bytes(slot.data, slot.data_len), host(300));
  const Element& addr = c.adds()[3].elements[0];
  EXPECT_EQ(bytes(addr.key, addr.key_len), host(300));
  EXPECT_EQ(bytes(addr.data, addr.data_len), (std::vector<std::uint8_t>{10, 0, 11, 12}));
}

TEST(NftCommands, FrontendsWithAndWithoutPort) {
  Commands c("t");
  c.add_frontend({0x0a000064, 80, Protocol::tcp}, 4);
  c.add_frontend({0x0a000064, 0, Protocol::udp}, 5);
  EXPECT_EQ(c.text(),
            "add element ip t fe_port { 10.0.0.100 . tcp . 80 : 4 }\n"
            "add element ip t fe_any { 10.0.0.100 . udp : 5 }\n");
}

}  // namespace
}  // namespace weft::dataplane::lb::nft
