// Cluster (control/cluster/cluster.cpp) with real gossip on 127.0.0.1 and a
// fake network manager in place of the kernel: the swarm's join/leave state
// machine, address ranges asked for and given, and what a node publishes
// and republishes. Each Cluster runs its own gossip thread, as in the agent;
// the test polls what the fakes were told, with a deadline.
#include "control/cluster/cluster.h"
#include "tests/support/addresses.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include <unistd.h>

#include "tests/support/fast_gossip.h"

namespace weft::control::cluster {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Stands in for the NetworkManager: remembers what the cluster told it and
// answers from what the test set. Called on the cluster's gossip thread.
class FakeNodeNetworks final : public NodeNetworks {
 public:
  void attach_cluster(network::ClusterLink* link) override {
    std::lock_guard lock(mu_);
    link_ = link;
  }
  void detach_cluster() override {
    std::lock_guard lock(mu_);
    link_ = nullptr;
  }
  bool has_networks() override {
    std::lock_guard lock(mu_);
    return !local_networks_.empty();
  }
  std::vector<Network> local_networks() override {
    std::lock_guard lock(mu_);
    return local_networks_;
  }
  std::vector<Endpoint> local_endpoints() override {
    std::lock_guard lock(mu_);
    return local_endpoints_;
  }
  void apply_remote_network(const Network& network) override {
    std::lock_guard lock(mu_);
    networks_[network.id] = network;
  }
  void forget_remote_network(const std::string& id) override {
    std::lock_guard lock(mu_);
    networks_.erase(id);
  }
  void apply_remote_endpoint(const Endpoint& endpoint, network::ipam::Ipv4 vtep) override {
    std::lock_guard lock(mu_);
    remote_endpoints_[endpoint.id] = vtep.str();
  }
  void forget_remote_endpoint(const std::string& id) override {
    std::lock_guard lock(mu_);
    remote_endpoints_.erase(id);
    ++forgotten_endpoints_;
  }
  void set_owned(const std::string& space, const network::ipam::RangeSet& owned) override {
    std::lock_guard lock(mu_);
    owned_[space] = owned;
  }
  // Nothing is handed out here: everything owned is free.
  void give_away(const std::string& space,
                 const std::function<network::ipam::RangeSet(const network::ipam::RangeSet& free)>& give) override {
    std::lock_guard lock(mu_);
    auto it = owned_.find(space);
    owned_[space] = give(it == owned_.end() ? network::ipam::RangeSet{} : it->second);
  }
  network::ipam::Cidr address_pool() override { return *network::ipam::Cidr::parse("10.0.0.0/8"); }

  // --- the test's side ---
  void set_local(std::vector<Network> networks, std::vector<Endpoint> endpoints) {
    std::lock_guard lock(mu_);
    local_networks_ = std::move(networks);
    local_endpoints_ = std::move(endpoints);
  }
  bool attached() {
    std::lock_guard lock(mu_);
    return link_ != nullptr;
  }
  bool knows_network(const std::string& id) {
    std::lock_guard lock(mu_);
    return networks_.count(id) != 0;
  }
  std::optional<std::string> vtep_of(const std::string& endpoint_id) {
    std::lock_guard lock(mu_);
    auto it = remote_endpoints_.find(endpoint_id);
    return it == remote_endpoints_.end() ? std::nullopt : std::optional(it->second);
  }
  int forgotten_endpoints() {
    std::lock_guard lock(mu_);
    return forgotten_endpoints_;
  }
  network::ipam::RangeSet owned(const std::string& space) {
    std::lock_guard lock(mu_);
    auto it = owned_.find(space);
    return it == owned_.end() ? network::ipam::RangeSet{} : it->second;
  }

 private:
  std::mutex mu_;
  network::ClusterLink* link_ = nullptr;
  std::vector<Network> local_networks_;
  std::vector<Endpoint> local_endpoints_;
  std::map<std::string, Network> networks_;
  std::map<std::string, std::string> remote_endpoints_;  // id -> vtep
  int forgotten_endpoints_ = 0;
  std::map<std::string, network::ipam::RangeSet> owned_;
};

// One agent's cluster layer: its fake networks, state directory and Cluster,
// which can be stopped and started again on the same directory and port.
struct Node {
  Node(std::string name, fs::path state_dir, gossip::Config timings)
      : name(std::move(name)), state_dir(std::move(state_dir)), timings(std::move(timings)) {
    start();
  }
  void start() {
    ClusterConfig config;
    config.node_name = name;
    config.advertise_addr = "127.0.0.1";
    config.state_dir = state_dir.string();
    config.bind_addr = "127.0.0.1";
    config.bind_port = port;
    config.gossip_timings = timings;
    cluster = std::make_unique<Cluster>(config, networks);
    cluster->start();
  }
  // A crash as the peers see it: gossip stops without a leave.
  void stop() {
    if (cluster) {
      // The same port again after a restart: memberlist does not move a
      // name to a new address.
      if (auto info = cluster->info(); info.active) port = port_of(info.advertise);
      cluster.reset();
    }
  }
  static std::uint16_t port_of(const std::string& address) {
    return static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
  }
  std::optional<NodeInfo> node(const std::string& hostname) {
    for (const auto& n : cluster->list_nodes())
      if (n.hostname == hostname) return n;
    return std::nullopt;
  }
  // "ready" or "down" as this node sees `hostname`; "" when it is not listed.
  std::string status_of(const std::string& hostname) {
    auto n = node(hostname);
    return n ? n->status : "";
  }

  std::string name;
  fs::path state_dir;
  gossip::Config timings;
  std::uint16_t port = 0;
  FakeNodeNetworks networks;
  std::unique_ptr<Cluster> cluster;  // last: stopped before the fake goes
};

Network network(const std::string& id, const std::string& node) {
  return Network{.id = id, .name = "net-" + id.substr(0, 4), .driver = "overlay", .subnet = testing::cidr("10.0.7.0/24"),
                 .gateway = testing::ipv4("10.0.7.1"), .vni = 4100, .attachable = false, .created = "2024-05-01T12:00:00Z",
                 .node = node};
}

Endpoint endpoint(const std::string& id, const std::string& network_id, const std::string& ip,
                  const std::string& node) {
  return Endpoint{.id = id, .name = "ep-" + id.substr(0, 4), .network_id = network_id, .network_name = "",
                  .netns = "/run/netns/x", .ifname = "eth0", .ip = testing::ipv4(ip), .prefix_len = 24,
                  .mac = testing::mac("02:42:0a:00:07:02"), .node = node, .service_id = {},
                  .backend_state = BackendState::active, .drain_until = {}};
}

std::string hex_id(char c) { return std::string(64, c); }

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() /
           ("weft-cluster-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    fs::create_directories(root);
  }
  void TearDown() override {
    nodes.clear();
    fs::remove_all(root);
  }

  Node& add(const std::string& name, gossip::Config timings = weft::testing::fast_gossip_timings()) {
    nodes.push_back(std::make_unique<Node>(name, root / name, std::move(timings)));
    return *nodes.back();
  }

  // Polls `done` until it holds or the deadline passes; returns done().
  static bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 8s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }

  static ApiError::Kind error_kind(const std::function<void()>& f) {
    try {
      f();
    } catch (const ApiError& e) {
      return e.kind();
    }
    ADD_FAILURE() << "no ApiError thrown";
    return ApiError::Kind::Internal;
  }

  // node0 makes a swarm, node1 joins it; both see each other ready.
  std::pair<Node*, Node*> form_two(gossip::Config timings = weft::testing::fast_gossip_timings()) {
    auto& a = add("node0", timings);
    auto& b = add("node1", timings);
    const auto made = a.cluster->init({});
    b.cluster->join({.join_token = made.join_token, .remote_addrs = {made.advertise}});
    EXPECT_TRUE(eventually([&] { return a.status_of("node1") == "ready"; }));
    return {&a, &b};
  }

  fs::path root;
  std::vector<std::unique_ptr<Node>> nodes;
};

TEST_F(ClusterTest, SwarmCommandsFollowTheJoinLeaveStateMachine) {
  auto& a = add("node0");
  auto& b = add("node1");
  // Outside a swarm: nothing to list or leave.
  EXPECT_FALSE(a.cluster->info().active);
  EXPECT_FALSE(a.networks.attached());
  EXPECT_EQ(error_kind([&] { a.cluster->list_nodes(); }), ApiError::Kind::Conflict);
  EXPECT_EQ(error_kind([&] { a.cluster->leave({}); }), ApiError::Kind::Conflict);

  const auto made = a.cluster->init({});
  EXPECT_TRUE(a.cluster->info().active);
  EXPECT_TRUE(a.networks.attached());
  EXPECT_EQ(made.node_id, a.cluster->info().node_id);
  EXPECT_EQ(made.join_token, a.cluster->info().join_token);
  EXPECT_TRUE(fs::exists(root / "node0" / "cluster" / "swarm.json"));
  EXPECT_EQ(error_kind([&] { a.cluster->init({}); }), ApiError::Kind::Conflict);

  // Refused joins leave the node outside.
  EXPECT_EQ(error_kind([&] { b.cluster->join({.join_token = "WEFT-1-nonsense", .remote_addrs = {made.advertise}}); }),
            ApiError::Kind::BadRequest);
  EXPECT_EQ(error_kind([&] { b.cluster->join({.join_token = made.join_token, .remote_addrs = {}}); }),
            ApiError::Kind::BadRequest);
  EXPECT_EQ(error_kind([&] { b.cluster->join({.join_token = made.join_token, .remote_addrs = {"127.0.0.1:1"}}); }),
            ApiError::Kind::Internal);
  EXPECT_FALSE(b.cluster->info().active);
  EXPECT_FALSE(b.networks.attached());
  b.networks.set_local({network(hex_id('e'), "node1")}, {});
  EXPECT_EQ(error_kind([&] { b.cluster->join({.join_token = made.join_token, .remote_addrs = {made.advertise}}); }),
            ApiError::Kind::Conflict);
  b.networks.set_local({}, {});

  b.cluster->join({.join_token = made.join_token, .remote_addrs = {made.advertise}});
  EXPECT_TRUE(b.cluster->info().active);
  EXPECT_EQ(b.cluster->info().gossip_key_base64, a.cluster->info().gossip_key_base64);
  EXPECT_EQ(error_kind([&] { b.cluster->join({.join_token = made.join_token, .remote_addrs = {made.advertise}}); }),
            ApiError::Kind::Conflict);
  ASSERT_TRUE(eventually([&] { return a.status_of("node1") == "ready"; }));
  const auto listed = a.cluster->list_nodes();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].hostname, "node0");
  EXPECT_TRUE(listed[0].self);
  EXPECT_EQ(listed[0].id, made.node_id);
  EXPECT_EQ(listed[1].id, b.cluster->info().node_id);
  EXPECT_EQ(listed[1].role, "weft");
  EXPECT_EQ(a.cluster->get_node(listed[1].id.substr(0, 6)).hostname, "node1");
  EXPECT_EQ(error_kind([&] { a.cluster->get_node("node9"); }), ApiError::Kind::NotFound);
  EXPECT_EQ(error_kind([&] { a.cluster->remove_node("node0"); }), ApiError::Kind::Conflict);
  EXPECT_EQ(error_kind([&] { a.cluster->remove_node("node1"); }), ApiError::Kind::Conflict);  // alive

  // A graceful leave: the peer sees "left", the node is outside again and
  // forgets its swarm on disk.
  b.cluster->leave({});
  EXPECT_FALSE(b.cluster->info().active);
  EXPECT_FALSE(b.networks.attached());
  EXPECT_FALSE(fs::exists(root / "node1" / "cluster" / "swarm.json"));
  EXPECT_FALSE(fs::exists(root / "node1" / "cluster" / "tables.bin"));
  ASSERT_TRUE(eventually([&] {
    auto seen = a.node("node1");
    return seen && seen->membership == "left";
  }));
  EXPECT_EQ(a.node("node1")->status, "down");
}

TEST_F(ClusterTest, NetworkReachesThePeerWhichAsksItsCreatorForAddresses) {
  auto [a, b] = form_two();
  // The whole pool and VNI range are node0's, which made the swarm.
  EXPECT_EQ(a->networks.owned(network::kPoolSpace).size(), 1u << 24);
  EXPECT_TRUE(b->networks.owned(network::kPoolSpace).empty());

  // node0 creates a network (as its NetworkManager would: claim, publish).
  const auto net = network(hex_id('a'), "node0");
  const auto space = network::network_space(net.id);
  a->cluster->claim_space(space, network::ipam::Range{*network::ipam::Ipv4::parse("10.0.7.2"), *network::ipam::Ipv4::parse("10.0.7.254")});
  a->cluster->publish_network(net);
  ASSERT_TRUE(eventually([&] { return b->networks.knows_network(net.id); }));
  // node1 holds none of its addresses, so it asks node0 at once (a range
  // request), before anything is attached there.
  ASSERT_TRUE(eventually([&] { return !b->networks.owned(space).empty(); }));
  ASSERT_TRUE(eventually([&] { return a->networks.owned(space).size() + b->networks.owned(space).size() == 253; }));
  const auto got = b->networks.owned(space);
  for (const auto& r : got.ranges()) EXPECT_FALSE(a->networks.owned(space).contains(r.first));

  // A request for part of the pool, in /24s: node0 gives whole units.
  b->cluster->request_range(network::kPoolSpace, 256);
  ASSERT_TRUE(eventually([&] { return !b->networks.owned(network::kPoolSpace).empty(); }));
  const auto given = b->networks.owned(network::kPoolSpace);
  EXPECT_EQ(given.size() % 256, 0u);
  EXPECT_EQ(given.ranges().front().first.value % 256, 0u);
  ASSERT_TRUE(eventually([&] { return a->networks.owned(network::kPoolSpace).size() + given.size() == 1u << 24; }));
  EXPECT_FALSE(a->networks.owned(network::kPoolSpace).contains(given.ranges().front().first));

  // Withdrawn on node0, gone on node1.
  a->cluster->withdraw_network(net.id);
  EXPECT_TRUE(eventually([&] { return !b->networks.knows_network(net.id); }));
}

TEST_F(ClusterTest, EndpointsArePublishedWithdrawnOnDeathAndRepublishedAtResume) {
  auto [a, b] = form_two();
  const auto net = network(hex_id('a'), "node0");
  a->cluster->publish_network(net);
  const auto old_ep = endpoint(hex_id('1'), net.id, "10.0.7.2", "node1");
  b->networks.set_local({}, {old_ep});
  b->cluster->publish_endpoint(old_ep);
  // With the hosting node's underlay address (the VXLAN endpoint).
  ASSERT_TRUE(eventually([&] { return a->networks.vtep_of(old_ep.id) == "127.0.0.1"; }));
  // A peer's endpoint is not applied on the node that hosts it.
  EXPECT_FALSE(b->networks.vtep_of(old_ep.id));

  // node1 dies: node0 withdraws its endpoints once it is confirmed dead.
  b->stop();
  ASSERT_TRUE(eventually([&] { return a->status_of("node1") == "down"; }));
  EXPECT_TRUE(eventually([&] { return !a->networks.vtep_of(old_ep.id); }));

  // It comes back (same state directory) with one endpoint detached and
  // another attached while it was down: it resumes the swarm, publishes
  // what it has now and deletes what is gone.
  const auto new_ep = endpoint(hex_id('2'), net.id, "10.0.7.3", "node1");
  b->networks.set_local({}, {new_ep});
  b->start();
  EXPECT_TRUE(b->cluster->info().active);
  ASSERT_TRUE(eventually([&] { return a->status_of("node1") == "ready"; }, 10s));
  EXPECT_TRUE(eventually([&] { return a->networks.vtep_of(new_ep.id) == "127.0.0.1"; }));
  EXPECT_FALSE(a->networks.vtep_of(old_ep.id));
}

TEST_F(ClusterTest, RestartedNodeDeletesEndpointsDetachedWhileItWasDown) {
  // No probes: node0 cannot take node1 for dead, so only node1's own
  // tombstone, made when it resumes, can remove the endpoint at node0.
  auto timings = weft::testing::fast_gossip_timings();
  timings.probe_interval = std::chrono::hours(1);
  auto [a, b] = form_two(timings);
  const auto ep = endpoint(hex_id('1'), hex_id('a'), "10.0.7.2", "node1");
  b->networks.set_local({}, {ep});
  b->cluster->publish_endpoint(ep);
  ASSERT_TRUE(eventually([&] { return a->networks.vtep_of(ep.id).has_value(); }));

  b->stop();
  b->networks.set_local({}, {});
  b->start();
  EXPECT_TRUE(eventually([&] { return !a->networks.vtep_of(ep.id); }, 10s));
  EXPECT_EQ(a->status_of("node1"), "ready");
}

TEST_F(ClusterTest, RemovedNodesRangesBecomeTheLocalNodes) {
  auto [a, b] = form_two();
  b->cluster->request_range(network::kVniSpace, 1);
  ASSERT_TRUE(eventually([&] { return !b->networks.owned(network::kVniSpace).empty(); }));
  const auto given = b->networks.owned(network::kVniSpace);
  ASSERT_TRUE(eventually([&] { return !a->networks.owned(network::kVniSpace).contains(given.ranges().front().first); }));

  b->stop();
  ASSERT_TRUE(eventually([&] { return a->status_of("node1") == "down"; }));
  a->cluster->remove_node("node1");
  EXPECT_FALSE(a->node("node1"));  // no longer listed
  EXPECT_TRUE(eventually([&] { return a->networks.owned(network::kVniSpace).contains(given.ranges().front()); }));
  EXPECT_EQ(a->networks.owned(network::kVniSpace).size(), (1u << 24) - 4096);
}

}  // namespace
}  // namespace weft::control::cluster
