// Services replicated through the cluster: two agents' cluster layers with
// real gossip on 127.0.0.1, each with a real ServiceManager over a fake node
// (no kernel). A service made on one node is known on the other with its
// VIP; backends and their drain state on one node show on the other; a
// removal on either node reaches both, and the creator releases the VIP.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <thread>

#include <unistd.h>

#include "control/cluster/cluster.h"
#include "control/services/service_manager.h"
#include "tests/support/fake_service_networks.h"
#include "tests/support/fast_gossip.h"

namespace weft::control::services {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kNetworkId(64, 'a');

struct Agent {
  Agent(const std::string& name, const fs::path& dir) : name(name), dir(dir), networks(name) {
    networks.add_network("net-test", "10.0.0.0/24", kNetworkId);
    start();
  }
  void start() {
    services = std::make_unique<ServiceManager>(ServiceManagerConfig{.node_name = name, .state_dir = dir}, networks);
    services->reconcile();
    cluster::ClusterConfig config;
    config.node_name = name;
    config.advertise_addr = "127.0.0.1";
    config.state_dir = dir.string();
    config.bind_addr = "127.0.0.1";
    config.bind_port = port;
    config.gossip_timings = weft::testing::fast_gossip_timings();
    cluster = std::make_unique<cluster::Cluster>(config, networks);
    cluster->set_services(services.get());
    cluster->start();
  }
  // The agent goes down (its tables saved, as at a stop) and comes back on
  // the same port: memberlist does not move a name to a new address.
  void stop() {
    const auto advertise = cluster->info().advertise;
    port = static_cast<std::uint16_t>(std::stoi(advertise.substr(advertise.rfind(':') + 1)));
    cluster.reset();
    services.reset();
  }
  std::optional<ServiceDetail> service(const std::string& ref) {
    try {
      return services->get_service(ref);
    } catch (const ApiError&) {
      return std::nullopt;
    }
  }

  std::string name;
  fs::path dir;
  std::uint16_t port = 0;
  weft::testing::FakeServiceNetworks networks;
  std::unique_ptr<ServiceManager> services;
  std::unique_ptr<cluster::Cluster> cluster;  // last: stopped first
};

class ServiceClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("weft-service-cluster-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    a = std::make_unique<Agent>("node0", root / "node0");
    b = std::make_unique<Agent>("node1", root / "node1");
    const auto made = a->cluster->init({});
    b->cluster->join({.join_token = made.join_token, .remote_addrs = {made.advertise}});
  }
  void TearDown() override {
    b.reset();
    a.reset();
    fs::remove_all(root);
  }
  static bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 8s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }

  fs::path root;
  std::unique_ptr<Agent> a, b;
};

TEST_F(ServiceClusterTest, ServiceMadeOnOneNodeIsListedOnTheOtherWithItsVip) {
  const auto s = a->services->create_service(
      {.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {"6379/tcp"}});
  ASSERT_TRUE(eventually([&] { return b->service("redis").has_value(); }));
  const auto seen = b->service("redis")->service;
  EXPECT_EQ(seen.id, s.id);
  EXPECT_EQ(seen.node, "node0");
  ASSERT_EQ(seen.vips.size(), 1u);
  EXPECT_EQ(seen.vips[0].addr.str(), "10.0.0.2");
  EXPECT_EQ(seen.ports, s.ports);
  EXPECT_EQ(b->services->lb_view().services.size(), 1u);
  // Names are unique across the cluster.
  try {
    b->services->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
    ADD_FAILURE() << "a second redis was created";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.http_status(), 409);
  }
  // A node's own services are not taken for remote ones.
  EXPECT_EQ(a->services->local_services().size(), 1u);
}

TEST_F(ServiceClusterTest, BackendsAndTheirDrainStateReplicate) {
  const auto s = a->services->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  ASSERT_TRUE(eventually([&] { return b->service("redis").has_value(); }));
  // On node1, found through its own copy of the service.
  ASSERT_TRUE(b->services->find("redis"));
  const auto backend = b->networks.attach(kNetworkId, "r-on-b", s.id);
  ASSERT_TRUE(eventually([&] { return a->service("redis")->backends.size() == 1; }));
  auto seen = a->service("redis")->backends.at(0);
  EXPECT_EQ(seen.endpoint_id, backend.id);
  EXPECT_EQ(seen.node, "node1");
  EXPECT_EQ(seen.ip, backend.ip);
  EXPECT_EQ(seen.state, BackendState::active);
  EXPECT_EQ(a->services->lb_view().backends.size(), 1u);

  b->networks.set_draining(backend.id, "2026-11-26T18:00:00Z");
  ASSERT_TRUE(eventually([&] { return a->service("redis")->backends.at(0).state == BackendState::draining; }));
  EXPECT_EQ(a->services->lb_view().backends.at(0).drain_until, "2026-11-26T18:00:00Z");
}

TEST_F(ServiceClusterTest, RemovalReplicatesAndTheCreatorReleasesTheVip) {
  a->services->create_service({.name = "one", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  a->services->create_service({.name = "two", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  ASSERT_TRUE(eventually([&] { return b->service("one") && b->service("two"); }));

  // Removed where it was made.
  a->services->remove_service("one");
  ASSERT_TRUE(eventually([&] { return !b->service("one"); }));
  EXPECT_EQ(a->networks.released(), std::vector<std::string>{"10.0.0.2"});

  // Removed on the other node: the creator hears of it and releases its VIP.
  b->services->remove_service("two");
  EXPECT_FALSE(b->service("two"));
  ASSERT_TRUE(eventually([&] { return !a->service("two"); }));
  EXPECT_EQ(a->networks.released(), (std::vector<std::string>{"10.0.0.2", "10.0.0.3"}));
  EXPECT_TRUE(a->networks.reservations().empty());
  EXPECT_TRUE(a->services->local_services().empty());
}

TEST_F(ServiceClusterTest, ACreatorThatWasDownWhenItsServiceWasRemovedDoesNotBringItBack) {
  a->services->create_service({.name = "one", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  a->services->create_service({.name = "kept", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  ASSERT_TRUE(eventually([&] { return b->service("one") && b->service("kept"); }));
  a->stop();
  b->services->remove_service("one");
  // Not node-scoped: node0's services stay known while it is away.
  EXPECT_TRUE(b->service("kept"));
  a->start();
  ASSERT_TRUE(eventually([&] { return !a->service("one"); }, 15s));
  EXPECT_EQ(a->networks.released(), std::vector<std::string>{"10.0.0.2"});
  EXPECT_TRUE(a->service("kept"));
  // Well after node0 is back, node1 still has no "one".
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(b->service("one"));
  EXPECT_TRUE(b->service("kept"));
}

}  // namespace
}  // namespace weft::control::services
