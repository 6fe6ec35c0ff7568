// Services against the real network manager and kernel: VIPs from the
// network's ranges (write-ahead in state.json), `attach --service`, and
// `detach --drain`, finished by the manager's timer, also across a restart.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "control/model/ids.h"
#include "control/network/network_manager.h"
#include "control/network/reservation_journal.h"
#include "control/network/state_file.h"
#include "control/services/service_manager.h"
#include "dataplane/netlink.h"
#include "dataplane/netns.h"
#include "tests/support/addresses.h"
#include "tests/support/scratch_netns.h"

namespace weft::control::services {
namespace {
namespace dp = weft::dataplane;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using network::AgentConfig;
using network::NetworkManager;
using testing::ipv4;
using ::testing::HasSubstr;

template <class F>
ApiError error_of(F f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError thrown";
  return ApiError(ApiError::Kind::Internal, "none");
}

class ServiceNetworkManagerTest : public ::testing::Test {
 protected:
  ServiceNetworkManagerTest() {
    dp::NetlinkSocket node(node_ns);
    node.create_veth(dp::VethSpec{.name = "eth0", .peer_name = "eth0peer", .mtu = 1500});
    node.add_address("eth0", ipv4("192.0.2.10"), 24);
    node.set_up("eth0");
    node.set_up("lo");
  }
  ~ServiceNetworkManagerTest() override { stop_agent(); }

  // The agent's order: networks, then services, each reconciled.
  void start_agent() {
    AgentConfig c;
    c.node_name = "node1";
    c.advertise_addr = "192.0.2.10";
    c.state_dir = state_dir().string();
    networks = std::make_unique<NetworkManager>(c);
    services = std::make_unique<ServiceManager>(ServiceManagerConfig{.node_name = "node1", .state_dir = state_dir()},
                                                *networks);
    networks->reconcile();
    services->reconcile();
  }
  void stop_agent() {
    services.reset();
    networks.reset();
  }
  fs::path state_dir() const { return dir.path() / "state"; }
  nlohmann::json state() const { return nlohmann::json::parse(*network::read_file(state_dir() / "state.json")); }
  // The reservations on disk: the state file's, with the journal's changes
  // since it (reservation_journal.h) replayed.
  std::vector<network::AddressReservation> reservations_on_disk() const {
    std::vector<network::AddressReservation> result;
    for (const auto& j : state().value("reservations", nlohmann::json::array()))
      result.push_back({.network_id = j.at("network_id"), .ip = ipv4(j.at("ip").get<std::string>()),
                        .owner = j.at("owner")});
    const auto generation = state().value("reservation_journal", std::uint64_t{0});
    for (const auto& c : network::ReservationJournal(state_dir() / "reservations.journal").read(generation)) {
      std::erase_if(result, [&](const auto& r) { return r.network_id == c.reservation.network_id && r.ip == c.reservation.ip; });
      if (c.reserved) result.push_back(c.reservation);
    }
    return result;
  }
  std::set<std::string> veths_in_network(const Network& n) const {
    std::set<std::string> names;
    for (const auto& l : dp::NetlinkSocket(dp::NetnsHandle::open(state_dir() / "netns" / n.id.substr(0, 12))).list_links())
      if (l.kind == "veth") names.insert(l.name);
    return names;
  }
  Service create(const std::string& name, std::vector<std::string> networks_ = {"net-test"}) {
    return services->create_service({.name = name, .networks = std::move(networks_), .endpoint_mode = {}, .ports = {}});
  }
  static bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }

  testing::ScratchDir dir;
  testing::ScratchNamespaces namespaces{dir.path()};
  dp::NetnsHandle node_ns = dp::NetnsHandle::open(namespaces.make("node"));
  dp::NetnsGuard in_node{node_ns};
  std::unique_ptr<NetworkManager> networks;
  std::unique_ptr<ServiceManager> services;
};

TEST_F(ServiceNetworkManagerTest, VipsComeFromTheNetworkAndAreReleasedOnRemove) {
  start_agent();
  auto net = networks->create_network({.name = "net-test"});
  auto s = create("redis");
  EXPECT_EQ(s.vips.at(0).addr.str(), "10.0.0.2");
  auto reservations = reservations_on_disk();
  ASSERT_EQ(reservations.size(), 1u);
  EXPECT_EQ(reservations[0].ip.str(), "10.0.0.2");
  EXPECT_EQ(reservations[0].owner, vip_owner(s.id));
  // Endpoints get the addresses after it.
  auto c1 = namespaces.make("c1");
  EXPECT_EQ(networks->connect({.network = "net-test", .netns = c1.string()}).ip.str(), "10.0.0.3");
  // A network a service is on stays.
  networks->disconnect({.network = "net-test", .netns = c1.string()});
  EXPECT_THAT(error_of([&] { networks->remove_network("net-test"); }).what(), HasSubstr("in use by a service"));

  services->remove_service("redis");
  EXPECT_TRUE(reservations_on_disk().empty());
  EXPECT_EQ(create("web").vips.at(0).addr.str(), "10.0.0.2") << "the released VIP is handed out again";
  // And across a restart the services and their VIPs stay.
  stop_agent();
  start_agent();
  EXPECT_EQ(services->get_service("web").service.vips.at(0).addr.str(), "10.0.0.2");
  EXPECT_EQ(create("db").vips.at(0).addr.str(), "10.0.0.3");
  (void)net;
}

// A create's VIP reservation is one journal line, not a rewrite of the
// whole state file (which holds every reservation); a restart replays it.
TEST_F(ServiceNetworkManagerTest, VipReservationsAreJournaledNotRewrittenWithTheStateFile) {
  start_agent();
  networks->create_network({.name = "net-test"});
  create("first");
  struct stat before {};
  ASSERT_EQ(::stat((state_dir() / "state.json").c_str(), &before), 0);
  create("second");
  auto third = create("third");
  services->remove_service("third");
  struct stat after {};
  ASSERT_EQ(::stat((state_dir() / "state.json").c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "state.json was rewritten for a reservation";
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  EXPECT_EQ(reservations_on_disk().size(), 2u);
  stop_agent();
  start_agent();
  EXPECT_EQ(networks->reservations().size(), 2u);
  EXPECT_EQ(services->get_service("second").service.vips.at(0).addr.str(), "10.0.0.3");
  EXPECT_EQ(create("fourth").vips.at(0).addr.str(), "10.0.0.4") << "the third's VIP went back";
  (void)third;
}

// A crash after a new state file and before the journal started over: the
// old journal's changes are in the state file already and are not replayed
// (here: one that would reserve an address no one holds).
TEST_F(ServiceNetworkManagerTest, AJournalOfAnOlderGenerationIsNotReplayed) {
  start_agent();
  auto net = networks->create_network({.name = "net-test"});
  const auto generation = state()["reservation_journal"].get<std::uint64_t>();
  stop_agent();
  {
    std::ofstream journal(state_dir() / "reservations.journal", std::ios::trunc);
    journal << nlohmann::json{{"generation", generation - 1}}.dump() << "\n"
            << nlohmann::json{{"op", "+"}, {"network_id", net.id}, {"ip", "10.0.0.2"}, {"owner", "node-lb:x"}}.dump()
            << "\n";
  }
  start_agent();
  EXPECT_TRUE(networks->reservations().empty());
  // The same line in the current generation is replayed.
  stop_agent();
  const auto current = state()["reservation_journal"].get<std::uint64_t>();
  {
    std::ofstream journal(state_dir() / "reservations.journal", std::ios::trunc);
    journal << nlohmann::json{{"generation", current}}.dump() << "\n"
            << nlohmann::json{{"op", "+"}, {"network_id", net.id}, {"ip", "10.0.0.2"}, {"owner", "node-lb:x"}}.dump()
            << "\n";
  }
  start_agent();
  ASSERT_EQ(networks->reservations().size(), 1u);
  EXPECT_EQ(networks->reservations()[0].owner, "node-lb:x");
}

TEST_F(ServiceNetworkManagerTest, AVipReservedForAServiceNeverRecordedIsReleasedAtStart) {
  start_agent();
  auto net = networks->create_network({.name = "net-test"});
  // What a crash after the reservation and before services.json leaves.
  EXPECT_EQ(networks->reserve_address(net.id, vip_owner(random_id())).str(), "10.0.0.2");
  stop_agent();
  start_agent();
  EXPECT_TRUE(networks->reservations().empty());
  EXPECT_EQ(create("redis").vips.at(0).addr.str(), "10.0.0.2");
}

TEST_F(ServiceNetworkManagerTest, FullDiskRefusesCreateAndLeavesNothing) {
  fs::create_directories(state_dir());
  ASSERT_EQ(::mount("weft-test", state_dir().c_str(), "tmpfs", 0, "size=1m,mode=0700"), 0) << std::strerror(errno);
  start_agent();
  networks->create_network({.name = "net-test"});
  const auto filler = state_dir() / "filler";
  {
    int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    const std::string block(65536, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    ::close(fd);
  }
  auto e = error_of([&] { create("redis"); });
  EXPECT_EQ(e.http_status(), 500);
  EXPECT_TRUE(services->list_services().empty());
  EXPECT_TRUE(networks->reservations().empty());
  fs::remove(filler);
  EXPECT_EQ(create("redis").vips.at(0).addr.str(), "10.0.0.2") << "nothing was held by the refused create";
  stop_agent();
  start_agent();
  EXPECT_EQ(services->list_services().size(), 1u);
}

TEST_F(ServiceNetworkManagerTest, AttachWithServiceMakesABackend) {
  start_agent();
  auto net = networks->create_network({.name = "net-test"});
  networks->create_network({.name = "net-b"});
  auto s = create("redis");
  auto c1 = namespaces.make("c1");
  auto e = error_of([&] { networks->connect({.network = "net-test", .netns = c1.string(), .service = "nope"}); });
  EXPECT_EQ(e.http_status(), 404);
  EXPECT_THAT(e.what(), HasSubstr("service nope not found"));
  e = error_of([&] { networks->connect({.network = "net-b", .netns = c1.string(), .service = "redis"}); });
  EXPECT_EQ(e.http_status(), 400);
  EXPECT_THAT(e.what(), HasSubstr("service redis is not on network net-b"));
  EXPECT_TRUE(networks->list_endpoints().empty()) << "refused attaches leave nothing";

  auto backend = networks->connect({.network = "net-test", .netns = c1.string(), .service = s.id.substr(0, 8)});
  EXPECT_EQ(backend.service_id, s.id);
  EXPECT_EQ(state()["endpoints"][0]["service_id"], s.id);
  auto d = services->get_service("redis");
  ASSERT_EQ(d.backends.size(), 1u);
  EXPECT_EQ(d.backends[0].ip.str(), "10.0.0.3");
  auto view = services->lb_view();
  // The network manager's shared snapshot of every endpoint, not a copy.
  ASSERT_TRUE(view.all_endpoints);
  EXPECT_TRUE(view.backends.empty());
  EXPECT_EQ(std::count_if(view.all_endpoints->endpoints.begin(), view.all_endpoints->endpoints.end(),
                          [](const auto& e) { return !e->service_id().empty(); }),
            1);
  ASSERT_EQ(view.attach_points.size(), 1u);
  EXPECT_EQ(view.attach_points[0].host_ifname, "veth" + backend.id.substr(0, 11));
  EXPECT_TRUE(veths_in_network(net).count(view.attach_points[0].host_ifname));
  ASSERT_EQ(view.networks.size(), 2u);
  // The service goes, its backend stays attached.
  services->remove_service("redis");
  EXPECT_EQ(networks->list_endpoints().size(), 1u);
}

TEST_F(ServiceNetworkManagerTest, DrainReturnsAtOnceAndDetachesAtTheDeadline) {
  start_agent();
  auto net = networks->create_network({.name = "net-test"});
  create("redis");
  auto c1 = namespaces.make("c1");
  auto c2 = namespaces.make("c2");
  networks->connect({.network = "net-test", .netns = c1.string(), .service = "redis"});
  networks->connect({.network = "net-test", .netns = c2.string()});
  // Shared: the listener lives as long as the service manager.
  auto changes = std::make_shared<std::atomic<int>>(0);
  services->on_change([changes] { ++*changes; });

  EXPECT_THAT(error_of([&] {
                networks->disconnect({.network = "net-test", .netns = c1.string(), .drain_seconds = 86401});
              }).what(),
              HasSubstr("too long"));
  const auto started = std::chrono::steady_clock::now();
  networks->disconnect({.network = "net-test", .netns = c1.string(), .drain_seconds = 1});
  EXPECT_LT(std::chrono::steady_clock::now() - started, 500ms) << "a drain does not wait";
  auto d = services->get_service("redis");
  ASSERT_EQ(d.backends.size(), 1u);
  EXPECT_EQ(d.backends[0].state, BackendState::draining);
  std::vector<std::string> recorded_states;
  const auto recorded = state();
  for (const auto& record : recorded["endpoints"]) recorded_states.push_back(record.value("backend_state", "none"));
  EXPECT_THAT(recorded_states, ::testing::UnorderedElementsAre("draining", "none"));
  EXPECT_GE(*changes, 1);
  EXPECT_EQ(veths_in_network(net).size(), 2u) << "still attached while draining";
  ASSERT_TRUE(eventually([&] { return services->get_service("redis").backends.empty(); }));
  EXPECT_EQ(veths_in_network(net).size(), 1u);
  EXPECT_FALSE(dp::NetlinkSocket(dp::NetnsHandle::open(c1)).find_link("eth0"));

  // Not a backend: a drain time means nothing, it goes at once.
  networks->disconnect({.network = "net-test", .netns = c2.string(), .drain_seconds = 30});
  EXPECT_TRUE(networks->list_endpoints().empty());
  EXPECT_EQ(networks->pending_drains(), 0u);
}

TEST_F(ServiceNetworkManagerTest, ARestartFinishesOverdueDrainsAndRearmsPendingOnes) {
  start_agent();
  auto net = networks->create_network({.name = "net-test"});
  create("redis");
  auto c1 = namespaces.make("c1");
  auto c2 = namespaces.make("c2");
  networks->connect({.network = "net-test", .netns = c1.string(), .service = "redis"});
  networks->connect({.network = "net-test", .netns = c2.string(), .service = "redis"});
  networks->disconnect({.network = "net-test", .netns = c1.string(), .drain_seconds = 1});
  networks->disconnect({.network = "net-test", .netns = c2.string(), .drain_seconds = 4});
  stop_agent();  // the agent is down when c1's drain ends
  std::this_thread::sleep_for(1500ms);
  start_agent();
  // Overdue: finished right after the start.
  ASSERT_TRUE(eventually([&] { return networks->list_endpoints().size() == 1; }, 1s));
  EXPECT_FALSE(dp::NetlinkSocket(dp::NetnsHandle::open(c1)).find_link("eth0"));
  auto left = networks->list_endpoints().at(0);
  EXPECT_EQ(left.backend_state, BackendState::draining);
  EXPECT_EQ(networks->pending_drains(), 1u);
  ASSERT_TRUE(eventually([&] { return networks->list_endpoints().empty(); }, 5s));
  EXPECT_TRUE(veths_in_network(net).empty());
}

}  // namespace
}  // namespace weft::control::services
