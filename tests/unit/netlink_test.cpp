// Netlink wrappers against the real kernel, inside namespaces the test makes.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "dataplane/netlink.h"
#include "dataplane/netns.h"
#include "dataplane/overlay.h"
#include "tests/support/addresses.h"
#include "tests/support/scratch_netns.h"

namespace weft::dataplane {
namespace {

using testing::ipv4;

class NetlinkTest : public ::testing::Test {
 protected:
  testing::ScratchDir dir;
  testing::ScratchNamespaces namespaces{dir.path()};
  std::filesystem::path ns_path = namespaces.make("node");
  NetnsHandle ns = NetnsHandle::open(ns_path);
  NetlinkSocket sock{ns};
};

TEST_F(NetlinkTest, SocketActsInItsOwnNamespaceOnly) {
  auto links = sock.list_links();
  ASSERT_EQ(links.size(), 1u);
  EXPECT_EQ(links[0].name, "lo");
}

TEST_F(NetlinkTest, BridgeCreateLookUpDelete) {
  sock.create_bridge("br-test", 1400);
  auto link = sock.get_link("br-test");
  EXPECT_EQ(link.kind, "bridge");
  EXPECT_EQ(link.mtu, 1400);
  EXPECT_FALSE(link.up);
  sock.set_up("br-test");
  EXPECT_TRUE(sock.get_link("br-test").up);
  sock.delete_link("br-test");
  EXPECT_FALSE(sock.find_link("br-test"));
}

TEST_F(NetlinkTest, ErrorsCarryErrnoAndName) {
  sock.create_bridge("br-dup");
  try {
    sock.create_bridge("br-dup");
    FAIL() << "second create succeeded";
  } catch (const NetlinkError& e) {
    EXPECT_EQ(e.code().value(), EEXIST);
    EXPECT_NE(std::string(e.what()).find("br-dup"), std::string::npos) << e.what();
  }
  try {
    sock.get_link("nope0");
    FAIL();
  } catch (const NetlinkError& e) {
    EXPECT_EQ(e.code().value(), ENODEV);
    EXPECT_NE(std::string(e.what()).find("nope0"), std::string::npos);
  }
  EXPECT_FALSE(sock.delete_link_if_exists("nope0"));
}

TEST_F(NetlinkTest, VxlanHasRequestedSettings) {
  sock.create_bridge("under0");
  sock.add_address("under0", ipv4("192.0.2.1"), 24);
  sock.create_vxlan(VxlanSpec{.name = "vx-test", .vni = 4242, .local_ip = ipv4("192.0.2.1"), .mtu = 1450});
  auto link = sock.get_link("vx-test");
  EXPECT_EQ(link.kind, "vxlan");
  ASSERT_TRUE(link.vni);
  EXPECT_EQ(*link.vni, 4242u);
  EXPECT_EQ(link.mtu, 1450);
}

TEST_F(NetlinkTest, VethPeerLandsInOtherNamespaceWithMac) {
  auto other_path = namespaces.make("other");
  auto other = NetnsHandle::open(other_path);
  const auto mac = MacAddress::from_ipv4(ipv4("10.0.0.7"));
  sock.create_veth(VethSpec{.name = "vh0", .peer_name = "eth0", .peer_netns_fd = other.fd(), .mtu = 1450, .peer_mac = mac});
  EXPECT_TRUE(sock.find_link("vh0"));
  EXPECT_FALSE(sock.find_link("eth0"));
  NetlinkSocket inside(other);
  auto peer = inside.get_link("eth0");
  EXPECT_EQ(peer.mtu, 1450);
  EXPECT_EQ(peer.mac.str(), "02:42:0a:00:00:07");
}

TEST_F(NetlinkTest, AddressesAndDefaultRoute) {
  sock.create_bridge("br1");
  sock.set_up("br1");
  sock.add_address("br1", ipv4("10.9.0.2"), 24);
  sock.add_address("br1", ipv4("10.9.0.2"), 24);  // replace is idempotent
  auto addrs = sock.list_addresses("br1");
  ASSERT_EQ(addrs.size(), 1u);
  EXPECT_EQ(addrs[0], (std::pair{ipv4("10.9.0.2"), 24}));
  auto holder = sock.link_with_address(ipv4("10.9.0.2"));
  ASSERT_TRUE(holder);
  EXPECT_EQ(holder->name, "br1");
  EXPECT_FALSE(sock.has_default_route());
  sock.replace_default_route(ipv4("10.9.0.1"), "br1");
  EXPECT_TRUE(sock.has_default_route());
}

// A failure after the route's nexthop is made (here: no such link) must not
// leak it: under ASan (scripts/build --asan) LeakSanitizer fails the run.
TEST_F(NetlinkTest, DefaultRouteViaMissingLinkFailsWithoutLeaking) {
  try {
    sock.replace_default_route(ipv4("10.9.0.1"), "nope0");
    ADD_FAILURE() << "a route via a missing link was added";
  } catch (const NetlinkError& e) {
    EXPECT_EQ(e.code().value(), ENODEV) << e.what();
  }
  EXPECT_FALSE(sock.has_default_route());
}

TEST_F(NetlinkTest, NeighbourAndFdbEntries) {
  sock.create_bridge("under0");
  sock.add_address("under0", ipv4("192.0.2.1"), 24);
  sock.create_vxlan(VxlanSpec{.name = "vx1", .vni = 5000, .local_ip = ipv4("192.0.2.1")});
  sock.set_up("vx1");
  const auto mac = MacAddress::from_ipv4(ipv4("10.0.0.9"));
  sock.replace_neighbor("vx1", ipv4("10.0.0.9"), mac);
  sock.replace_neighbor("vx1", ipv4("10.0.0.9"), mac);
  sock.replace_fdb("vx1", mac, ipv4("192.0.2.3"));
  auto neighbours = sock.list_neighbors("vx1");
  ASSERT_EQ(neighbours.size(), 1u);
  EXPECT_EQ(neighbours[0].first, ipv4("10.0.0.9"));
  EXPECT_EQ(neighbours[0].second, mac);
  auto fdb = sock.list_fdb("vx1");
  ASSERT_EQ(fdb.size(), 1u);
  EXPECT_EQ(fdb[0], (std::pair{mac, ipv4("192.0.2.3")}));
  sock.delete_fdb("vx1", mac, ipv4("192.0.2.3"));
  sock.delete_neighbor("vx1", ipv4("10.0.0.9"));
  EXPECT_TRUE(sock.list_neighbors("vx1").empty());
  EXPECT_TRUE(sock.list_fdb("vx1").empty());
}

TEST_F(NetlinkTest, RollbackDeletesUnlessDismissed) {
  {
    sock.create_bridge("gone0");
    LinkRollback rollback(sock, "gone0");
  }
  EXPECT_FALSE(sock.find_link("gone0"));
  {
    sock.create_bridge("kept0");
    LinkRollback rollback(sock, "kept0");
    rollback.dismiss();
  }
  EXPECT_TRUE(sock.find_link("kept0"));
}

TEST(MacTest, FormatParseAndDerive) {
  EXPECT_EQ(MacAddress::from_ipv4(ipv4("10.0.0.2")).str(), "02:42:0a:00:00:02");
  auto parsed = MacAddress::parse("02:42:0a:00:00:02");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, MacAddress::from_ipv4(ipv4("10.0.0.2")));
  EXPECT_FALSE(MacAddress::parse("02:42:0a:00:00"));
  EXPECT_FALSE(MacAddress::parse("zz:42:0a:00:00:02"));
  // The bad IPv4 text it once took cannot reach it: it takes a parsed address.
  EXPECT_FALSE(Ipv4::parse("10.0.0"));
}

TEST(MacTest, ParseIsStrictAndRoundTrips) {
  EXPECT_EQ(MacAddress::parse("02:42:0A:FF:00:9c")->str(), "02:42:0a:ff:00:9c");
  EXPECT_EQ(MacAddress::from_ipv4(ipv4("255.1.128.0")).str(), "02:42:ff:01:80:00");
  for (const char* bad : {"", "02:42:0a:00:00:02:", "02:42:0a:00:00:2", "2:42:0a:00:00:02x", " 2:42:0a:00:00:02",
                          "02-42-0a-00-00-02", "02:42:0a:00:00:0g", "+2:42:0a:00:00:02"})
    EXPECT_FALSE(MacAddress::parse(bad)) << bad;
}

TEST(NetnsTest, GuardEntersAndReturns) {
  testing::ScratchDir dir;
  testing::ScratchNamespaces namespaces(dir.path());
  auto target = NetnsHandle::open(namespaces.make("a"));
  auto before = NetnsHandle::current();
  {
    NetnsGuard guard(target);
    EXPECT_TRUE(NetnsHandle::current().same_as(target));
  }
  EXPECT_TRUE(NetnsHandle::current().same_as(before));
}

TEST(NetnsTest, OpenRefusesMissingAndNonNamespaces) {
  EXPECT_THROW(NetnsHandle::open("weft-no-such-namespace-xyz"), std::system_error);
  EXPECT_THROW(NetnsHandle::open("/etc/hostname"), std::system_error);
  EXPECT_THROW(NetnsHandle::open("/proc/self/ns/mnt"), std::system_error);
  EXPECT_NO_THROW(NetnsHandle::open("/proc/self/ns/net"));
}

TEST(NetnsTest, PinnedNamespaceLifecycle) {
  testing::ScratchDir dir;
  auto path = dir.path() / "pinned";
  create_pinned_netns(path);
  EXPECT_TRUE(is_pinned_netns(path));
  EXPECT_THROW(create_pinned_netns(path), std::system_error);
  remove_pinned_netns(path);
  EXPECT_FALSE(is_pinned_netns(path));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_NO_THROW(remove_pinned_netns(path));
}

TEST(NetnsTest, SocketOpenedInsideStaysThere) {
  testing::ScratchDir dir;
  testing::ScratchNamespaces namespaces(dir.path());
  auto target = NetnsHandle::open(namespaces.make("s"));
  auto fd = open_socket_in(target, AF_INET, SOCK_DGRAM, 0);
  EXPECT_TRUE(fd.valid());
  EXPECT_TRUE(NetnsHandle::current().same_as(NetnsHandle::open("/proc/self/ns/net")));
}

// The value of /proc/sys/net/bridge/bridge-nf-call-KEY as seen from `ns`;
// "" when br_netfilter is not loaded.
std::string bridge_nf_sysctl(const NetnsHandle& ns, const std::string& key) {
  NetnsGuard guard(ns);
  std::ifstream file("/proc/sys/net/bridge/bridge-nf-call-" + key);
  std::string value;
  if (file) file >> value;
  return value;
}

TEST(OverlayNetfilterTest, BridgeNetfilterOffInNetworkNamespaceOnly) {
  testing::ScratchDir dir;
  testing::ScratchNamespaces namespaces(dir.path());
  auto target = NetnsHandle::open(namespaces.make("nf"));
  auto self = NetnsHandle::current();
  const std::vector<std::string> keys{"iptables", "ip6tables", "arptables"};
  std::vector<std::string> before;
  for (const auto& key : keys) before.push_back(bridge_nf_sysctl(self, key));

  EXPECT_TRUE(disable_bridge_netfilter(target));
  EXPECT_TRUE(disable_bridge_netfilter(target));  // already off: still fine
  EXPECT_TRUE(NetnsHandle::current().same_as(self));
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto value = bridge_nf_sysctl(target, keys[i]);
    if (value.empty()) continue;  // br_netfilter not loaded: nothing to turn off
    EXPECT_EQ(value, "0") << keys[i];
    EXPECT_EQ(bridge_nf_sysctl(self, keys[i]), before[i]) << keys[i] << " changed outside the namespace";
  }
}

}  // namespace
}  // namespace weft::dataplane
