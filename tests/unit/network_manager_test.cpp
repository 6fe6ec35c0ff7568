// NetworkManager against the real kernel: the test plays a node (a namespace
// with an underlay interface) and containers (more namespaces).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "control/network/network_manager.h"
#include "control/model/record_json.h"
#include "control/network/state_file.h"
#include "dataplane/netlink.h"
#include "dataplane/netns.h"
#include "dataplane/overlay.h"
#include "tests/support/addresses.h"
#include "tests/support/scratch_netns.h"

namespace weft::control::network {
namespace {
namespace dp = weft::dataplane;
namespace fs = std::filesystem;
using testing::ipv4;
using testing::mac;

class NetworkManagerTest : public ::testing::Test {
 protected:
  NetworkManagerTest() {
    dp::NetlinkSocket node(node_ns);
    node.create_veth(dp::VethSpec{.name = "eth0", .peer_name = "eth0peer", .mtu = 1500});
    node.add_address("eth0", ipv4("192.0.2.10"), 24);
    node.set_up("eth0");
    node.set_up("lo");
  }

  AgentConfig config() const {
    AgentConfig c;
    c.node_name = "node1";
    c.advertise_addr = "192.0.2.10";
    c.state_dir = (dir.path() / "state").string();
    return c;
  }

  std::unique_ptr<NetworkManager> start_agent() {
    auto m = std::make_unique<NetworkManager>(config());
    m->reconcile();
    return m;
  }

  fs::path state_dir() const { return dir.path() / "state"; }
  fs::path state_file() const { return state_dir() / "state.json"; }
  fs::path netns_dir() const { return dir.path() / "state" / "netns"; }
  // The state dir as a 1 MiB tmpfs that fill_state_dir() fills up (the
  // scratch dir unmounts it).
  void mount_small_state_dir() {
    fs::create_directories(state_dir());
    ASSERT_EQ(::mount("weft-test", state_dir().c_str(), "tmpfs", 0, "size=1m,mode=0700"), 0) << std::strerror(errno);
  }
  void fill_state_dir() {
    const auto filler = state_dir() / "filler";
    int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    const std::string block(65536, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    ::close(fd);
    struct statvfs fs_info {};
    ASSERT_EQ(::statvfs(state_dir().c_str(), &fs_info), 0);
    ASSERT_EQ(fs_info.f_bavail, 0u) << "the state dir is not full";
  }
  // Names of the veths in a namespace (a pinned file).
  static std::set<std::string> veths_in(const fs::path& ns) {
    std::set<std::string> names;
    for (const auto& l : dp::NetlinkSocket(dp::NetnsHandle::open(ns)).list_links())
      if (l.kind == "veth") names.insert(l.name);
    return names;
  }
  // Links other than lo in a namespace.
  static std::set<std::string> interfaces_in(const fs::path& ns) {
    std::set<std::string> names;
    for (const auto& l : dp::NetlinkSocket(dp::NetnsHandle::open(ns)).list_links())
      if (l.name != "lo") names.insert(l.name);
    return names;
  }
  std::size_t netns_files() const {
    std::error_code ec;
    return std::distance(fs::directory_iterator(netns_dir(), ec), fs::directory_iterator());
  }
  std::size_t vxlans_in_node() {
    std::size_t n = 0;
    for (const auto& l : dp::NetlinkSocket(node_ns).list_links()) n += l.kind == "vxlan";
    return n;
  }

  testing::ScratchDir dir;
  testing::ScratchNamespaces namespaces{dir.path()};
  dp::NetnsHandle node_ns = dp::NetnsHandle::open(namespaces.make("node"));
  dp::NetnsGuard in_node{node_ns};  // the agent runs in the node's namespace
};

// A TCP connection from `from` to ip:port where `to` listens: proves the
// overlay carries traffic between the two namespaces.
bool tcp_reaches(const fs::path& from, const fs::path& to, const std::string& ip, int port) {
  auto listener = dp::open_socket_in(dp::NetnsHandle::open(to), AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  if (bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return false;
  if (listen(listener.get(), 1) != 0) return false;
  auto client = dp::open_socket_in(dp::NetnsHandle::open(from), AF_INET, SOCK_STREAM, 0);
  timeval timeout{.tv_sec = 3, .tv_usec = 0};
  setsockopt(client.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  return ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

TEST_F(NetworkManagerTest, CreateNetworkLaysOutDevices) {
  auto agent = start_agent();
  auto n = agent->create_network({.name = "net-test"});
  EXPECT_EQ(n.subnet.str(), "10.0.0.0/24");
  EXPECT_EQ(n.gateway.str(), "10.0.0.1");
  EXPECT_EQ(n.vni, 4096u);
  EXPECT_EQ(n.id.size(), 64u);
  EXPECT_EQ(netns_files(), 1u);
  auto net = dp::NetlinkSocket(dp::NetnsHandle::open(netns_dir() / n.id.substr(0, 12)));
  auto bridge = net.get_link("br0");
  auto vxlan = net.get_link("wvx4096");
  EXPECT_EQ(vxlan.master_ifindex, bridge.ifindex);
  EXPECT_EQ(vxlan.mtu, 1450);
  EXPECT_EQ(net.list_addresses("br0"), (std::vector<std::pair<dp::Ipv4, int>>{{ipv4("10.0.0.1"), 24}}));
  EXPECT_EQ(vxlans_in_node(), 0u);

  auto second = agent->create_network({.name = "net-two"});
  EXPECT_EQ(second.subnet.str(), "10.0.1.0/24");
  EXPECT_EQ(second.vni, 4097u);
}

TEST_F(NetworkManagerTest, EndpointsReachEachOther) {
  auto agent = start_agent();
  agent->create_network({.name = "net-test"});
  auto c1 = namespaces.make("c1");
  auto c2 = namespaces.make("c2");
  auto e1 = agent->connect({.network = "net-test", .netns = c1.string()});
  auto e2 = agent->connect({.network = "net-test", .netns = c2.string(), .name = "second"});
  EXPECT_EQ(e1.ip.str(), "10.0.0.2");
  EXPECT_EQ(e2.ip.str(), "10.0.0.3");
  EXPECT_EQ(e1.ifname, "eth0");
  EXPECT_EQ(e1.mac.str(), "02:42:0a:00:00:02");
  EXPECT_EQ(e2.name, "second");
  EXPECT_TRUE(tcp_reaches(c1, c2, "10.0.0.3", 7001));
  EXPECT_TRUE(tcp_reaches(c2, c1, "10.0.0.2", 7002));
  dp::NetlinkSocket inside(dp::NetnsHandle::open(c1));
  EXPECT_TRUE(inside.has_default_route());
  EXPECT_EQ(inside.get_link("eth0").mtu, 1450);
  EXPECT_EQ(agent->list_endpoints().size(), 2u);
}

TEST_F(NetworkManagerTest, RestartAdoptsAndRepairs) {
  auto c1 = namespaces.make("c1");
  auto c2 = namespaces.make("c2");
  std::string id;
  {
    auto agent = start_agent();
    id = agent->create_network({.name = "net-test"}).id;
    agent->connect({.network = "net-test", .netns = c1.string()});
    agent->connect({.network = "net-test", .netns = c2.string()});
  }
  {
    auto agent = start_agent();  // adopt: nothing changes
    EXPECT_EQ(agent->list_networks().size(), 1u);
    EXPECT_EQ(agent->list_endpoints().size(), 2u);
    EXPECT_EQ(netns_files(), 1u);
    EXPECT_TRUE(tcp_reaches(c1, c2, "10.0.0.3", 7003));
  }
  // Devices deleted behind the agent's back come back at the next start.
  dp::NetlinkSocket(dp::NetnsHandle::open(netns_dir() / id.substr(0, 12))).delete_link("wvx4096");
  dp::NetlinkSocket(dp::NetnsHandle::open(c2)).delete_link("eth0");
  auto agent = start_agent();
  auto net = dp::NetlinkSocket(dp::NetnsHandle::open(netns_dir() / id.substr(0, 12)));
  EXPECT_TRUE(net.find_link("wvx4096"));
  EXPECT_TRUE(tcp_reaches(c1, c2, "10.0.0.3", 7004));
  EXPECT_EQ(vxlans_in_node(), 0u);
}

TEST_F(NetworkManagerTest, RestartRemovesStaleObjectsAndGoneEndpoints) {
  auto c1 = namespaces.make("c1");
  {
    auto agent = start_agent();
    agent->create_network({.name = "net-test"});
    agent->connect({.network = "net-test", .netns = c1.string()});
  }
  dp::remove_pinned_netns(c1);  // the container went away while the agent was down
  dp::create_pinned_netns(netns_dir() / "deadbeef0000");  // a stale network namespace
  dp::NetlinkSocket(node_ns).create_vxlan({.name = "wvx4999", .vni = 4999, .local_ip = ipv4("192.0.2.10")});
  auto agent = start_agent();
  EXPECT_TRUE(agent->list_endpoints().empty());
  EXPECT_EQ(netns_files(), 1u);
  EXPECT_EQ(vxlans_in_node(), 0u);
  // Its address is free again.
  auto c2 = namespaces.make("c2");
  EXPECT_EQ(agent->connect({.network = "net-test", .netns = c2.string()}).ip.str(), "10.0.0.2");
}

TEST_F(NetworkManagerTest, BadInputIsRefusedAndLeavesNothing) {
  auto agent = start_agent();
  auto expect_error = [&](auto&& call, ApiError::Kind kind) {
    try {
      call();
      ADD_FAILURE() << "no error";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_GT(std::string(e.what()).size(), 10u);
    }
  };
  using K = ApiError::Kind;
  expect_error([&] { agent->create_network({.name = "x", .subnet = "10.0.0.0/33"}); }, K::BadRequest);
  expect_error([&] { agent->create_network({.name = "x", .subnet = "foo"}); }, K::BadRequest);
  expect_error([&] { agent->create_network({.name = "x", .subnet = "10.0.0.1/24"}); }, K::BadRequest);
  try {
    agent->create_network({.name = "x", .subnet = "10.0.0.1/24"});
  } catch (const ApiError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 10.0.0.0/24"), std::string::npos) << e.what();
  }
  expect_error([&] { agent->create_network({.name = "x", .subnet = "10.7.0.0/24", .gateway = "10.8.0.1"}); },
               K::BadRequest);
  expect_error([&] { agent->create_network({.name = "x", .driver = "bridge"}); }, K::BadRequest);
  expect_error([&] { agent->create_network({.name = "bad name"}); }, K::BadRequest);
  EXPECT_EQ(netns_files(), 0u);

  agent->create_network({.name = "big", .subnet = "10.5.0.0/16"});
  expect_error([&] { agent->create_network({.name = "x", .subnet = "10.5.3.0/24"}); }, K::Conflict);
  expect_error([&] { agent->create_network({.name = "big"}); }, K::Conflict);
  // After a refused overlap the subnet is still free for a good request.
  EXPECT_EQ(agent->create_network({.name = "y", .subnet = "10.7.0.0/24", .gateway = "10.7.0.254"}).gateway.str(),
            "10.7.0.254");

  auto c1 = namespaces.make("c1");
  expect_error([&] { agent->connect({.network = "big", .netns = "weft-no-such-ns-42"}); }, K::NotFound);
  expect_error([&] { agent->connect({.network = "nope", .netns = c1.string()}); }, K::NotFound);
  expect_error([&] { agent->connect({.network = "big", .netns = c1.string(), .ip = "10.6.0.9"}); }, K::BadRequest);
  expect_error([&] { agent->connect({.network = "big", .netns = c1.string(), .ip = "10.5.0.1"}); }, K::Conflict);
  dp::NetlinkSocket inside(dp::NetnsHandle::open(c1));
  EXPECT_FALSE(inside.find_link("eth0"));

  EXPECT_EQ(agent->connect({.network = "big", .netns = c1.string(), .name = "web", .ip = "10.5.9.9"}).ip.str(),
            "10.5.9.9");
  auto c2 = namespaces.make("c2");
  expect_error([&] { agent->connect({.network = "big", .netns = c2.string(), .name = "web"}); }, K::Conflict);
  expect_error([&] { agent->connect({.network = "big", .netns = c1.string()}); }, K::Conflict);
  expect_error([&] { agent->disconnect({.network = "y", .netns = c1.string()}); }, K::NotFound);
  expect_error([&] { agent->remove_network("big"); }, K::Conflict);
  agent->disconnect({.network = "big", .netns = c1.string()});
  EXPECT_FALSE(inside.find_link("eth0"));
  agent->remove_network("big");
  expect_error([&] { agent->remove_network("big"); }, K::NotFound);
  EXPECT_EQ(netns_files(), 1u);
}

TEST_F(NetworkManagerTest, SecondAgentOnTheSameStateDirIsRefused) {
  auto agent = start_agent();
  try {
    NetworkManager second(config());
    FAIL() << "a second manager took the same state dir";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("another weftd"), std::string::npos) << e.what();
  }
  agent.reset();
  EXPECT_NO_THROW(NetworkManager again(config()));
}

TEST_F(NetworkManagerTest, StateFileIsWrittenAndNamesResolve) {
  auto agent = start_agent();
  auto n = agent->create_network({.name = "net-test", .attachable = true});
  auto text = read_file(dir.path() / "state" / "state.json");
  ASSERT_TRUE(text);
  auto state = nlohmann::json::parse(*text);
  EXPECT_EQ(state["networks"][0]["name"], "net-test");
  EXPECT_EQ(agent->get_network(n.id.substr(0, 5)).name, "net-test");
  EXPECT_EQ(agent->get_network(n.id).name, "net-test");
  EXPECT_TRUE(agent->get_network("net-test").attachable);
}

// Issue 7, item 3: a change the state file cannot record is not made.
TEST_F(NetworkManagerTest, FullDiskChangesNothingAndRestartStillWorks) {
  mount_small_state_dir();
  auto c1 = namespaces.make("c1");
  auto c2 = namespaces.make("c2");
  auto c3 = namespaces.make("c3");
  auto agent = start_agent();
  const auto net_a = agent->create_network({.name = "net-a"});
  agent->create_network({.name = "net-b"});
  agent->connect({.network = "net-a", .netns = c1.string()});
  agent->connect({.network = "net-a", .netns = c2.string()});
  const auto state_before = read_file(state_file());
  const auto net_a_ns = netns_dir() / net_a.id.substr(0, 12);
  const auto veths_before = veths_in(net_a_ns);
  ASSERT_EQ(veths_before.size(), 2u);
  fill_state_dir();

  auto expect_refused = [](auto&& call, const char* what) {
    try {
      call();
      ADD_FAILURE() << what << ": no error with a full disk";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.kind(), ApiError::Kind::Internal) << what << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("state file"), std::string::npos) << what << ": " << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": not an API error: " << e.what();
    }
  };
  expect_refused([&] { agent->disconnect({.network = "net-a", .netns = c1.string()}); }, "detach");
  EXPECT_EQ(interfaces_in(c1), std::set<std::string>{"eth0"});
  EXPECT_EQ(agent->list_endpoints().size(), 2u);
  EXPECT_TRUE(tcp_reaches(c1, c2, "10.0.0.3", 7101));
  expect_refused([&] { agent->remove_network("net-b"); }, "network rm");
  EXPECT_EQ(agent->list_networks().size(), 2u);
  EXPECT_EQ(netns_files(), 2u);
  expect_refused([&] { agent->connect({.network = "net-a", .netns = c3.string()}); }, "attach");
  EXPECT_TRUE(interfaces_in(c3).empty());
  expect_refused([&] { agent->create_network({.name = "net-c"}); }, "network create");
  EXPECT_EQ(netns_files(), 2u);
  EXPECT_EQ(veths_in(net_a_ns), veths_before);
  EXPECT_EQ(read_file(state_file()), state_before);

  // A restart with the disk still full comes up with everything in place.
  agent.reset();
  ASSERT_NO_THROW(agent = start_agent());
  EXPECT_EQ(agent->list_endpoints().size(), 2u);
  EXPECT_EQ(agent->list_networks().size(), 2u);
  EXPECT_TRUE(tcp_reaches(c1, c2, "10.0.0.3", 7102));

  // With space again the same requests go through and stay done.
  fs::remove(state_dir() / "filler");
  agent->disconnect({.network = "net-a", .netns = c1.string()});
  agent->remove_network("net-b");
  EXPECT_EQ(agent->connect({.network = "net-a", .netns = c3.string()}).ip.str(), "10.0.0.2");
  agent.reset();
  agent = start_agent();
  EXPECT_EQ(agent->list_endpoints().size(), 2u);
  EXPECT_EQ(agent->list_networks().size(), 1u);
  EXPECT_TRUE(interfaces_in(c1).empty());
  EXPECT_TRUE(tcp_reaches(c3, c2, "10.0.0.3", 7103));
}

// Issue 7, item 2: what a kill -9 in the middle of attaches leaves is rolled
// back at start, before any address is handed out again.
TEST_F(NetworkManagerTest, RestartRollsBackInterruptedAttachesAndRemovesOrphans) {
  auto c1 = namespaces.make("c1");
  auto c2 = namespaces.make("c2");
  auto c3 = namespaces.make("c3");
  Network net;
  Endpoint e1;
  {
    auto agent = start_agent();
    net = agent->create_network({.name = "net-test"});
    e1 = agent->connect({.network = "net-test", .netns = c1.string()});
  }
  const dp::OverlayLayout layout{.netns_path = netns_dir() / net.id.substr(0, 12),
                                 .vni = net.vni,
                                 .gateway = net.gateway,
                                 .prefix_len = 24,
                                 .underlay_ip = ipv4("192.0.2.10"),
                                 .mtu = 1450};
  // An attach recorded ahead ("attaching") and cut short in the kernel: the
  // veth pair exists, the container side has no address yet.
  Endpoint half{.id = std::string(64, 'a'),
                .name = "half",
                .network_id = net.id,
                .network_name = net.name,
                .netns = c2.string(),
                .ifname = "eth0",
                .ip = ipv4("10.0.0.3"),
                .prefix_len = 24,
                .mac = mac("02:42:0a:00:00:03"),
                .node = "node1",
                .service_id = {},
                .backend_state = BackendState::active,
                .drain_until = {}};
  dp::NetlinkSocket(dp::NetnsHandle::open(layout.netns_path))
      .create_veth({.name = "veth" + half.id.substr(0, 11),
                    .peer_name = "eth0",
                    .peer_netns_fd = dp::NetnsHandle::open(c2).fd(),
                    .mtu = 1450,
                    .peer_mac = half.mac});
  auto state = nlohmann::json::parse(*read_file(state_file()));
  auto record = endpoint_record(half);
  record["state"] = "attaching";
  state["endpoints"].push_back(record);
  write_file_atomically(state_file(), state.dump(2));
  // A complete attach no record mentions (left by an agent without
  // write-ahead records), holding an address the state thinks is free.
  dp::attach_endpoint(layout,
                      {.host_ifname = "vethbbbbbbbbbbb", .ip = ipv4("10.0.0.4"), .mac = mac("02:42:0a:00:00:04")},
                      dp::NetnsHandle::open(c3));
  // A state write cut short.
  std::ofstream(state_dir() / ".state.json.tmp.Zz9Yy8") << "{\"version\":";

  auto agent = start_agent();
  EXPECT_EQ(agent->list_endpoints().size(), 1u);
  EXPECT_EQ(veths_in(layout.netns_path), std::set<std::string>{"veth" + e1.id.substr(0, 11)});
  EXPECT_TRUE(interfaces_in(c2).empty());
  EXPECT_TRUE(interfaces_in(c3).empty());
  EXPECT_FALSE(fs::exists(state_dir() / ".state.json.tmp.Zz9Yy8"));
  const auto saved = nlohmann::json::parse(*read_file(state_file()));
  EXPECT_EQ(saved["endpoints"].size(), 1u) << saved.dump(2);

  // Both attach again as new ones: eth0, and no address twice.
  auto e2 = agent->connect({.network = "net-test", .netns = c2.string()});
  auto e3 = agent->connect({.network = "net-test", .netns = c3.string()});
  EXPECT_EQ(e2.ifname, "eth0");
  EXPECT_EQ(e3.ifname, "eth0");
  EXPECT_EQ((std::set<dp::Ipv4>{e1.ip, e2.ip, e3.ip}).size(), 3u);
  EXPECT_EQ(interfaces_in(c2), std::set<std::string>{"eth0"});
  EXPECT_TRUE(tcp_reaches(c2, c3, e3.ip.str(), 7201));
  EXPECT_TRUE(tcp_reaches(c3, c1, e1.ip.str(), 7202));
}

}  // namespace
}  // namespace weft::control::network

namespace weft::control::network {
namespace {

// The state file keeps addresses as text; one that does not parse makes the
// file corrupt (as a missing field does) instead of reaching the kernel.
TEST_F(NetworkManagerTest, StateFileWithMalformedAddressIsCorrupt) {
  auto c1 = namespaces.make("c1");
  {
    auto agent = start_agent();
    agent->create_network({.name = "net-test"});
    agent->connect({.network = "net-test", .netns = c1.string()});
  }
  auto state = nlohmann::json::parse(*read_file(state_file()));
  state["endpoints"][0]["mac"] = "02:42:0a:00:00";
  write_file_atomically(state_file(), state.dump(2));
  try {
    start_agent();
    ADD_FAILURE() << "the agent started on a state file with a malformed MAC";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("is corrupt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("\"mac\""), std::string::npos) << e.what();
  }
}

// Issue 10: `attach --alias` names are kept with the endpoint (state file,
// restart), bad ones are refused before anything is made; the embedded DNS
// hears of network changes and of local attaches and detaches on their
// own thread, before the call returns.
TEST_F(NetworkManagerTest, AliasesAreKeptAndTheDnsHooksAreTold) {
  auto agent = start_agent();
  int networks_told = 0, local_told = 0;
  std::thread::id local_thread;
  agent->on_networks_changed([&] { ++networks_told; });
  agent->after_local_attach_or_detach([&] {
    ++local_told;
    local_thread = std::this_thread::get_id();
  });
  agent->create_network({.name = "net-test"});
  EXPECT_EQ(networks_told, 1);
  auto c1 = namespaces.make("c1");
  auto e = agent->connect({.network = "net-test", .netns = c1.string(), .aliases = {"db", "Cache.local"}});
  EXPECT_EQ(e.aliases, (std::vector<std::string>{"db", "Cache.local"}));
  EXPECT_EQ(local_told, 1);
  EXPECT_EQ(local_thread, std::this_thread::get_id());

  auto state = nlohmann::json::parse(*read_file(state_file()));
  EXPECT_EQ(state["endpoints"][0]["aliases"], (nlohmann::json{"db", "Cache.local"}));

  auto c2 = namespaces.make("c2");
  std::vector<std::string> seventeen;
  for (int i = 0; i < 17; ++i) seventeen.push_back(std::string("a").append(std::to_string(i)));
  for (const auto& bad : {std::vector<std::string>{"no way"}, std::vector<std::string>{"a..b"}, seventeen}) {
    try {
      agent->connect({.network = "net-test", .netns = c2.string(), .aliases = bad});
      ADD_FAILURE() << "aliases accepted: " << bad.front();
    } catch (const ApiError& err) {
      EXPECT_EQ(err.kind(), ApiError::Kind::BadRequest) << err.what();
    }
  }
  EXPECT_EQ(interfaces_in(c2), std::set<std::string>{});
  EXPECT_EQ(local_told, 1) << "a refused attach changed nothing";

  agent.reset();
  agent = start_agent();
  ASSERT_EQ(agent->list_endpoints().size(), 1u);
  EXPECT_EQ(agent->list_endpoints()[0].aliases, (std::vector<std::string>{"db", "Cache.local"}));
  int told_after_restart = 0;
  agent->after_local_attach_or_detach([&] { ++told_after_restart; });
  agent->on_networks_changed([&] { ++told_after_restart; });
  agent->disconnect({.network = "net-test", .netns = c1.string()});
  EXPECT_EQ(told_after_restart, 1);
  agent->remove_network("net-test");
  EXPECT_EQ(told_after_restart, 2);
}


// Readers share one snapshot of the endpoints per change instead of a copy
// each (issue 9): asked again without a change, the same one comes back; a
// change makes a new one with a higher version, and the old one stays as it
// was for those still holding it.
TEST_F(NetworkManagerTest, SharedEndpointsAreOneSnapshotPerChange) {
  auto agent = start_agent();
  const Network net{.id = std::string(64, 'e'), .name = "net-remote", .driver = "overlay",
                    .subnet = testing::cidr("10.0.9.0/24"), .gateway = ipv4("10.0.9.1"), .vni = 4242,
                    .attachable = false, .created = "2026-11-26T12:00:00Z", .node = "node2"};
  agent->apply_remote_network(net);
  Endpoint e{.id = std::string(64, 'a'), .name = "redis-1", .network_id = net.id,
             .network_name = "net-remote", .netns = "/run/netns/weft-node2-0123456789ab-1",
             .ifname = "eth0", .ip = ipv4("10.0.9.7"), .prefix_len = 24, .mac = mac("02:42:0a:00:09:07"),
             .node = "node2", .service_id = std::string(64, '5'), .backend_state = BackendState::active,
             .drain_until = {}, .aliases = {}};
  agent->apply_remote_endpoint(e, ipv4("192.0.2.12"));

  const auto first = agent->shared_endpoints();
  ASSERT_EQ(first->endpoints.size(), 1u);
  EXPECT_EQ(first->endpoints[0]->id(), e.id);
  EXPECT_EQ(first->endpoints[0]->network_name(), "net-remote");
  EXPECT_NE(first->version, 0u);
  EXPECT_EQ(agent->shared_endpoints().get(), first.get()) << "no change: the same snapshot";

  Endpoint other = e;
  other.id = std::string(64, 'b');
  other.name = "redis-2";
  other.ip = ipv4("10.0.9.8");
  other.mac = mac("02:42:0a:00:09:08");
  agent->apply_remote_endpoint(other, ipv4("192.0.2.12"));
  const auto second = agent->shared_endpoints();
  EXPECT_NE(second.get(), first.get());
  EXPECT_GT(second->version, first->version);
  ASSERT_EQ(second->endpoints.size(), 2u);
  const auto listed = agent->list_endpoints();
  ASSERT_EQ(listed.size(), 2u);
  for (std::size_t i = 0; i < listed.size(); ++i) EXPECT_EQ(second->endpoints[i]->id(), listed[i].id) << "in order";
  EXPECT_EQ(first->endpoints.size(), 1u) << "immutable for its holders";
  // An unchanged endpoint is the same object in both: the snapshots point at
  // what the network manager holds, not at copies of it.
  const auto unchanged = std::find_if(second->endpoints.begin(), second->endpoints.end(),
                                      [&](const auto& p) { return p->id() == e.id; });
  ASSERT_NE(unchanged, second->endpoints.end());
  EXPECT_EQ(unchanged->get(), first->endpoints[0].get());

  agent->forget_remote_endpoint(e.id);
  const auto third = agent->shared_endpoints();
  EXPECT_GT(third->version, second->version);
  ASSERT_EQ(third->endpoints.size(), 1u);
  EXPECT_EQ(third->endpoints[0]->id(), other.id);
}

// Records of other nodes carry no network name; the network's name here
// stands in. The snapshots share the network manager's records as they are
// even so (issue 9): an unchanged endpoint is the same object in the next
// snapshot, whether its network arrived before it or after.
TEST_F(NetworkManagerTest, SnapshotsShareRecordsWithoutANetworkName) {
  auto agent = start_agent();
  const Network net{.id = std::string(64, 'e'), .name = "net-remote", .driver = "overlay",
                    .subnet = testing::cidr("10.0.9.0/24"), .gateway = ipv4("10.0.9.1"), .vni = 4242,
                    .attachable = false, .created = "2026-11-26T12:00:00Z", .node = "node2"};
  auto remote = [&](char id, const std::string& name, const char* ip) {
    return Endpoint{.id = std::string(64, id), .name = name, .network_id = net.id, .network_name = "",
                    .netns = "/run/netns/weft-node2-0123456789ab-1", .ifname = "eth0", .ip = ipv4(ip),
                    .prefix_len = 24, .mac = {}, .node = "node2", .service_id = std::string(64, '5'),
                    .backend_state = BackendState::active, .drain_until = {}, .aliases = {}};
  };
  auto element = [](const std::shared_ptr<const EndpointSnapshot>& s, const std::string& id) {
    for (const auto& p : s->endpoints)
      if (p->id() == id) return p.get();
    return static_cast<const PackedEndpoint*>(nullptr);
  };
  const auto early = remote('a', "redis-1", "10.0.9.7");
  agent->apply_remote_endpoint(early, ipv4("192.0.2.12"));  // before its network
  const auto unknown = agent->shared_endpoints();
  ASSERT_NE(element(unknown, early.id), nullptr);
  EXPECT_EQ(element(unknown, early.id)->network_name(), "") << "the record's own while the network is unknown";

  agent->apply_remote_network(net);
  const auto late = remote('b', "redis-2", "10.0.9.8");
  agent->apply_remote_endpoint(late, ipv4("192.0.2.12"));  // after it
  const auto first = agent->shared_endpoints();
  ASSERT_EQ(first->endpoints.size(), 2u);
  for (const auto& p : first->endpoints) EXPECT_EQ(p->network_name(), "net-remote") << p->id();
  for (const auto& e : agent->list_endpoints()) EXPECT_EQ(e.network_name, "net-remote") << e.id;

  agent->apply_remote_endpoint(remote('c', "redis-3", "10.0.9.9"), ipv4("192.0.2.12"));
  const auto second = agent->shared_endpoints();
  ASSERT_NE(second.get(), first.get());
  EXPECT_EQ(element(second, early.id), element(first, early.id)) << "shared, not copied per snapshot";
  EXPECT_EQ(element(second, late.id), element(first, late.id)) << "shared, not copied per snapshot";

  agent->forget_remote_network(net.id);
  const auto gone = agent->shared_endpoints();
  ASSERT_NE(element(gone, late.id), nullptr);
  EXPECT_EQ(element(gone, late.id)->network_name(), "") << "the record's own again";
}

// Endpoints of other nodes are held packed (remote_endpoints.h): what
// list_endpoints() and list_backends() give back is every field of the
// record, with the network's name here, and a changed record replaces it.
TEST_F(NetworkManagerTest, RemoteEndpointsComeBackWhole) {
  auto agent = start_agent();
  const Network net{.id = std::string(64, 'e'), .name = "net-remote", .driver = "overlay",
                    .subnet = testing::cidr("10.0.9.0/24"), .gateway = ipv4("10.0.9.1"), .vni = 4242,
                    .attachable = false, .created = "2026-11-26T12:00:00Z", .node = "node2"};
  agent->apply_remote_network(net);
  Endpoint e{.id = std::string(60, 'a') + "beef", .name = "redis-1", .network_id = net.id,
             .network_name = "as-the-record-says", .netns = "/run/netns/weft-node2-0123456789ab-1",
             .ifname = "eth0", .ip = ipv4("10.0.9.7"), .prefix_len = 24, .mac = mac("02:42:0a:00:09:07"),
             .node = "node2", .service_id = std::string(64, '5'), .backend_state = BackendState::active,
             .drain_until = {}, .aliases = {"db", "cache"}};
  Endpoint plain = e;
  plain.id = std::string(64, 'b');
  plain.name = "client";
  plain.ip = ipv4("10.0.9.8");
  plain.service_id.clear();
  plain.aliases.clear();
  agent->apply_remote_endpoint(e, ipv4("192.0.2.12"));
  agent->apply_remote_endpoint(plain, ipv4("192.0.2.12"));

  auto listed = agent->list_endpoints();
  ASSERT_EQ(listed.size(), 2u);
  const Endpoint& got = listed[1].id == e.id ? listed[1] : listed[0];
  EXPECT_EQ(got.id, e.id);
  EXPECT_EQ(got.name, "redis-1");
  EXPECT_EQ(got.network_id, net.id);
  EXPECT_EQ(got.network_name, "net-remote") << "the network's name here, as before";
  EXPECT_EQ(got.netns, e.netns);
  EXPECT_EQ(got.ifname, "eth0");
  EXPECT_EQ(got.ip, e.ip);
  EXPECT_EQ(got.prefix_len, 24);
  EXPECT_EQ(got.mac, e.mac);
  EXPECT_EQ(got.node, "node2");
  EXPECT_EQ(got.service_id, e.service_id);
  EXPECT_EQ(got.backend_state, BackendState::active);
  EXPECT_EQ(got.aliases, e.aliases);

  // Draining elsewhere: the same place, a new state.
  e.backend_state = BackendState::draining;
  e.drain_until = "2026-11-26T18:00:00Z";
  agent->apply_remote_endpoint(e, ipv4("192.0.2.12"));
  auto backends = agent->list_backends();
  ASSERT_EQ(backends.size(), 1u) << "only service backends";
  EXPECT_EQ(backends[0].id, e.id);
  EXPECT_EQ(backends[0].network_id, net.id);
  EXPECT_EQ(backends[0].service_id, e.service_id);
  EXPECT_EQ(backends[0].ip, e.ip);
  EXPECT_EQ(backends[0].mac, e.mac);
  EXPECT_EQ(backends[0].node, "node2");
  EXPECT_EQ(backends[0].backend_state, BackendState::draining);
  EXPECT_EQ(backends[0].drain_until, "2026-11-26T18:00:00Z");

  auto of_service = agent->backends_of(e.service_id);
  ASSERT_EQ(of_service.size(), 1u);
  EXPECT_EQ(of_service[0].name, "redis-1") << "whole, unlike list_backends()";
  EXPECT_EQ(of_service[0].aliases, e.aliases);
  EXPECT_TRUE(agent->backends_of("").empty()) << "not the endpoints without a service";
  EXPECT_TRUE(agent->backends_of(std::string(64, '6')).empty());

  // A name taken by a remote endpoint is refused here too.
  auto c1 = namespaces.make("c1");
  EXPECT_THROW(agent->connect({.network = "net-remote", .netns = c1.string(), .name = "redis-1"}), ApiError);
  // A network with remote endpoints is not removed.
  EXPECT_THROW(agent->remove_network("net-remote"), ApiError);

  agent->forget_remote_endpoint(e.id);
  agent->forget_remote_endpoint(plain.id);
  EXPECT_TRUE(agent->list_endpoints().empty());
  EXPECT_TRUE(agent->list_backends().empty());
  // Their addresses are free again: an attach may take them.
  auto attached = agent->connect({.network = "net-remote", .netns = c1.string(), .ip = "10.0.9.7"});
  EXPECT_EQ(attached.ip, e.ip);
}

}  // namespace
}  // namespace weft::control::network
