// A node's load-balancer address per network (NetworkManager::
// set_node_lb_addresses, for the nftables load balancer's SNAT), against the
// real network manager and kernel: one per network, from the top of this
// node's range, durable across restarts and never rolled back by
// reconcile, published as an endpoint record of a fixed shape, released
// with its network or when the feature is off at start; in a cluster it
// waits for a donation instead of blocking.
#include <gtest/gtest.h>

#include <openssl/evp.h>

#include <array>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "control/model/ids.h"
#include "control/network/network_manager.h"
#include "control/network/state_file.h"
#include "dataplane/netlink.h"
#include "dataplane/netns.h"
#include "tests/support/addresses.h"
#include "tests/support/scratch_netns.h"

namespace weft::control::network {
namespace {
namespace dp = weft::dataplane;
namespace fs = std::filesystem;
using testing::ipv4;

std::string sha256_hex(const std::string& text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

// What the network manager asks of the cluster, recorded.
class RecordingCluster final : public ClusterLink {
 public:
  void publish_network(const Network&) override {}
  void withdraw_network(const std::string&) override {}
  void publish_endpoint(const Endpoint& e) override {
    std::lock_guard lock(mu);
    published.push_back(e);
  }
  void withdraw_endpoint(const std::string& id) override {
    std::lock_guard lock(mu);
    withdrawn.push_back(id);
  }
  void claim_space(const std::string&, const ipam::Range&) override {}
  void request_range(const std::string& space, std::uint32_t) override {
    std::lock_guard lock(mu);
    requested.push_back(space);
  }
  std::mutex mu;
  std::vector<Endpoint> published;
  std::vector<std::string> withdrawn, requested;
};

class NodeLbAddressTest : public ::testing::Test {
 protected:
  NodeLbAddressTest() {
    dp::NetlinkSocket node(node_ns);
    node.create_veth(dp::VethSpec{.name = "eth0", .peer_name = "eth0peer", .mtu = 1500});
    node.add_address("eth0", ipv4("192.0.2.10"), 24);
    node.set_up("eth0");
    node.set_up("lo");
  }

  std::unique_ptr<NetworkManager> start_agent() {
    AgentConfig c;
    c.node_name = "node1";
    c.advertise_addr = "192.0.2.10";
    c.state_dir = (dir.path() / "state").string();
    auto m = std::make_unique<NetworkManager>(c);
    m->on_endpoints_changed([this] { ++notified; });
    m->reconcile();
    return m;
  }
  nlohmann::json state() const { return nlohmann::json::parse(*read_file(dir.path() / "state" / "state.json")); }
  static std::vector<AddressReservation> node_lb(NetworkManager& m) {
    std::vector<AddressReservation> out;
    for (const auto& r : m.reservations())
      if (r.owner.starts_with("node-lb:")) out.push_back(r);
    return out;
  }
  static std::vector<Endpoint> lb_endpoints(NetworkManager& m) {
    std::vector<Endpoint> out;
    for (const auto& e : m.list_endpoints())
      if (e.name.starts_with("lb-")) out.push_back(e);
    return out;
  }
  static Network remote_network(const std::string& subnet) {
    const auto cidr = *ipam::Cidr::parse(subnet);
    return Network{.id = random_id(), .name = "remote-net", .driver = "overlay", .subnet = cidr,
                   .gateway = ipam::Ipv4{cidr.first().value + 1}, .vni = 4200, .attachable = false,
                   .created = now_rfc3339(), .node = "node2"};
  }

  testing::ScratchDir dir;
  testing::ScratchNamespaces namespaces{dir.path()};
  dp::NetnsHandle node_ns = dp::NetnsHandle::open(namespaces.make("node"));
  dp::NetnsGuard in_node{node_ns};
  std::atomic<int> notified{0};
};

TEST_F(NodeLbAddressTest, ANetworkGetsOneAddressFromTheTopPublishedAsAnEndpoint) {
  auto agent = start_agent();
  agent->set_node_lb_addresses(true);
  const int before = notified;
  const auto n = agent->create_network({.name = "net-test"});
  EXPECT_GT(notified, before) << "the load balancer hears of the new address";

  auto reserved = node_lb(*agent);
  ASSERT_EQ(reserved.size(), 1u);
  EXPECT_EQ(reserved[0].ip.str(), "10.0.0.254");
  EXPECT_EQ(reserved[0].owner, "node-lb:node1");
  EXPECT_EQ(reserved[0].network_id, n.id);
  EXPECT_EQ(state()["reservations"][0]["owner"], "node-lb:node1");

  // The record, as endpoint ls and the cluster see it.
  auto lbs = lb_endpoints(*agent);
  ASSERT_EQ(lbs.size(), 1u);
  const Endpoint& e = lbs[0];
  EXPECT_EQ(e.id, sha256_hex("node-lb/node1/" + n.id));
  EXPECT_EQ(e.name, "lb-node1");
  EXPECT_EQ(e.network_id, n.id);
  EXPECT_EQ(e.network_name, "net-test");
  EXPECT_EQ(e.ip.str(), "10.0.0.254");
  EXPECT_EQ(e.prefix_len, 24);
  EXPECT_EQ(e.mac.str(), "02:42:0a:00:00:fe");
  EXPECT_EQ(e.node, "node1");
  EXPECT_TRUE(e.netns.empty());
  EXPECT_TRUE(e.ifname.empty());
  EXPECT_TRUE(e.service_id.empty()) << "not a service backend";
  EXPECT_TRUE(is_node_lb_endpoint(e));
  auto local = agent->local_endpoints();
  ASSERT_EQ(local.size(), 1u) << "published by the cluster as this node's";
  EXPECT_EQ(local[0].id, e.id);
  EXPECT_EQ(agent->local_topology().networks.at(0).node_lb_address.str(), "10.0.0.254");

  // Once per network: asking again changes nothing; a second network has its own.
  agent->set_node_lb_addresses(true);
  EXPECT_EQ(node_lb(*agent).size(), 1u);
  const auto second = agent->create_network({.name = "net-two"});
  ASSERT_EQ(node_lb(*agent).size(), 2u);
  EXPECT_EQ(lb_endpoints(*agent).size(), 2u);
  EXPECT_NE(node_lb_endpoint_id("node1", second.id), e.id);

  // The low addresses stay for endpoints and services, as without it.
  auto c1 = namespaces.make("c1");
  const auto attached = agent->connect({.network = "net-test", .netns = c1.string()});
  EXPECT_EQ(attached.ip.str(), "10.0.0.2");
  EXPECT_FALSE(is_node_lb_endpoint(attached));
  EXPECT_EQ(agent->reserve_address(n.id, "service:x").str(), "10.0.0.3");
}

TEST_F(NodeLbAddressTest, DurableAcrossRestartsAndLeftAloneByReconcile) {
  std::string id;
  {
    auto agent = start_agent();
    agent->set_node_lb_addresses(true);
    id = agent->create_network({.name = "net-test"}).id;
  }
  // A kill: the next start reconciles before it knows the load balancer.
  auto agent = start_agent();
  auto reserved = node_lb(*agent);
  ASSERT_EQ(reserved.size(), 1u) << "reconcile neither rolls it back nor releases it";
  EXPECT_EQ(reserved[0].ip.str(), "10.0.0.254");
  EXPECT_EQ(lb_endpoints(*agent).size(), 1u);
  agent->set_node_lb_addresses(true);
  reserved = node_lb(*agent);
  ASSERT_EQ(reserved.size(), 1u);
  EXPECT_EQ(reserved[0].ip.str(), "10.0.0.254") << "the same address, not a second one";
  // Nothing in the kernel went either: the network namespace is intact.
  EXPECT_TRUE(dp::NetlinkSocket(dp::NetnsHandle::open(dir.path() / "state" / "netns" / id.substr(0, 12)))
                  .find_link("br0"));
  // Taken: an explicit --ip cannot have it.
  auto c1 = namespaces.make("c1");
  EXPECT_THROW(agent->connect({.network = "net-test", .netns = c1.string(), .ip = "10.0.0.254"}), ApiError);
}

TEST_F(NodeLbAddressTest, ReleasedWithItsNetworkAndWhenOffAtStart) {
  {
    auto agent = start_agent();
    agent->set_node_lb_addresses(true);
    agent->create_network({.name = "net-test"});
    // The address keeps no network, unlike a service's VIP.
    EXPECT_NO_THROW(agent->remove_network("net-test"));
    EXPECT_TRUE(node_lb(*agent).empty());
    EXPECT_TRUE(lb_endpoints(*agent).empty());
    EXPECT_FALSE(state().contains("reservations"));
    agent->create_network({.name = "net-test"});
    ASSERT_EQ(node_lb(*agent).size(), 1u);
  }
  // The next start runs the eBPF load balancer: the address goes.
  auto agent = start_agent();
  agent->set_node_lb_addresses(false);
  EXPECT_TRUE(node_lb(*agent).empty());
  EXPECT_TRUE(lb_endpoints(*agent).empty());
  EXPECT_FALSE(state().contains("reservations")) << "released on disk too";
  auto c1 = namespaces.make("c1");
  EXPECT_EQ(agent->connect({.network = "net-test", .netns = c1.string(), .ip = "10.0.0.254"}).ip.str(), "10.0.0.254")
      << "free again";
  // And a network made while it is off gets none.
  agent->create_network({.name = "net-two"});
  EXPECT_TRUE(node_lb(*agent).empty());
}

TEST_F(NodeLbAddressTest, InAClusterItWaitsForADonationAndIsPublished) {
  auto agent = start_agent();
  RecordingCluster cluster;
  agent->attach_cluster(&cluster);
  agent->set_node_lb_addresses(true);
  const auto n = remote_network("10.0.5.0/24");
  agent->apply_remote_network(n);
  // This node holds none of the network's addresses yet: it asks, and does
  // not block (this runs on the cluster's thread, which brings the answer).
  EXPECT_TRUE(node_lb(*agent).empty());
  {
    std::lock_guard lock(cluster.mu);
    EXPECT_EQ(cluster.requested, std::vector<std::string>{network_space(n.id)});
    EXPECT_TRUE(cluster.published.empty());
  }
  const int before = notified;
  agent->set_owned(network_space(n.id), ipam::RangeSet(ipam::Range{ipv4("10.0.5.191"), ipv4("10.0.5.254")}));
  auto reserved = node_lb(*agent);
  ASSERT_EQ(reserved.size(), 1u);
  EXPECT_EQ(reserved[0].ip.str(), "10.0.5.254");
  EXPECT_GT(notified, before);
  {
    std::lock_guard lock(cluster.mu);
    ASSERT_EQ(cluster.published.size(), 1u);
    const Endpoint& e = cluster.published[0];
    EXPECT_EQ(e.id, node_lb_endpoint_id("node1", n.id));
    EXPECT_EQ(e.name, "lb-node1");
    EXPECT_EQ(e.ip.str(), "10.0.5.254");
    EXPECT_EQ(e.mac.str(), "02:42:0a:00:05:fe");
    EXPECT_EQ(e.node, "node1");
  }
  // Another donation adds no second address.
  agent->set_owned(network_space(n.id), ipam::RangeSet(ipam::Range{ipv4("10.0.5.129"), ipv4("10.0.5.254")}));
  EXPECT_EQ(node_lb(*agent).size(), 1u);

  // The network is removed by its creator: the record is withdrawn.
  agent->forget_remote_network(n.id);
  EXPECT_TRUE(node_lb(*agent).empty());
  std::lock_guard lock(cluster.mu);
  EXPECT_EQ(cluster.withdrawn, std::vector<std::string>{node_lb_endpoint_id("node1", n.id)});
  agent->detach_cluster();
}

TEST_F(NodeLbAddressTest, OtherNodesAddressesDoNotKeepANetwork) {
  auto agent = start_agent();
  RecordingCluster cluster;
  agent->attach_cluster(&cluster);
  agent->set_owned(kPoolSpace, ipam::RangeSet(ipam::Range{ipv4("10.0.0.0"), ipv4("10.255.255.255")}));
  agent->set_owned(kVniSpace, ipam::RangeSet(kVniRange));
  agent->set_node_lb_addresses(true);
  // Created here: this node holds the network's whole range at once.
  const auto n = agent->create_network({.name = "net-test"});
  ASSERT_EQ(node_lb(*agent).size(), 1u);
  {
    std::lock_guard lock(cluster.mu);
    ASSERT_EQ(cluster.published.size(), 1u);
  }
  // node2's address in it arrives like any endpoint and is programmed.
  Endpoint peer_lb;
  peer_lb.id = node_lb_endpoint_id("node2", n.id);
  peer_lb.name = "lb-node2";
  peer_lb.network_id = n.id;
  peer_lb.ip = ipv4("10.0.0.190");
  peer_lb.prefix_len = 24;
  peer_lb.mac = dp::MacAddress::from_ipv4(peer_lb.ip);
  peer_lb.node = "node2";
  agent->apply_remote_endpoint(peer_lb, ipv4("192.0.2.11"));
  const auto netns = dir.path() / "state" / "netns" / n.id.substr(0, 12);
  const auto neighbours = dp::NetlinkSocket(dp::NetnsHandle::open(netns)).list_neighbors("wvx4096");
  EXPECT_EQ(neighbours, (std::vector<std::pair<dp::Ipv4, dp::MacAddress>>{{peer_lb.ip, peer_lb.mac}}));
  // An attached endpoint elsewhere keeps the network; node addresses do not.
  Endpoint attached = peer_lb;
  attached.id = random_id();
  attached.name = "web";
  attached.netns = "/run/netns/web";
  attached.ip = ipv4("10.0.0.191");
  attached.mac = dp::MacAddress::from_ipv4(attached.ip);
  agent->apply_remote_endpoint(attached, ipv4("192.0.2.11"));
  EXPECT_THROW(agent->remove_network("net-test"), ApiError);
  agent->forget_remote_endpoint(attached.id);
  EXPECT_NO_THROW(agent->remove_network("net-test"));
  std::lock_guard lock(cluster.mu);
  EXPECT_EQ(cluster.withdrawn, std::vector<std::string>{node_lb_endpoint_id("node1", n.id)});
}

}  // namespace
}  // namespace weft::control::network
