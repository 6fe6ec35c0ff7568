// Two emulated nodes joined by an underlay bridge: endpoints on each reach
// each other over VXLAN once the remote entries are programmed, and not
// before (no flooding, no learning).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include "dataplane/netlink.h"
#include "dataplane/netns.h"
#include "dataplane/overlay.h"
#include "tests/support/addresses.h"
#include "tests/support/scratch_netns.h"

namespace weft::dataplane {
namespace {

using testing::ipv4;
using testing::mac;

class TwoNodeOverlayTest : public ::testing::Test {
 protected:
  TwoNodeOverlayTest() {
    NetlinkSocket sw(switch_ns);
    sw.create_bridge("sw0");
    sw.set_up("sw0");
    wire_node(node1_ns, "p1", "192.0.2.11");
    wire_node(node2_ns, "p2", "192.0.2.12");
  }

  void wire_node(const NetnsHandle& node, const std::string& port, const std::string& ip) {
    NetlinkSocket sw(switch_ns);
    sw.create_veth({.name = port, .peer_name = "eth0", .peer_netns_fd = node.fd(), .mtu = 1500});
    sw.set_master(port, "sw0");
    sw.set_up(port);
    NetlinkSocket n(node);
    n.add_address("eth0", ipv4(ip), 24);
    n.set_up("eth0");
    n.set_up("lo");
  }

  OverlayLayout layout(const std::string& name, const std::string& underlay) {
    return OverlayLayout{.netns_path = dir.path() / "state" / name, .vni = 4096, .gateway = ipv4("10.0.0.1"),
                         .prefix_len = 24, .underlay_ip = ipv4(underlay), .mtu = 1450};
  }

  testing::ScratchDir dir;
  testing::ScratchNamespaces namespaces{dir.path()};
  NetnsHandle switch_ns = NetnsHandle::open(namespaces.make("sw"));
  NetnsHandle node1_ns = NetnsHandle::open(namespaces.make("n1"));
  NetnsHandle node2_ns = NetnsHandle::open(namespaces.make("n2"));
};

// A neighbour that failed to resolve a moment ago may take a few seconds to be
// retried, hence the generous default.
bool tcp_connects(const std::filesystem::path& from, const std::filesystem::path& to, const char* ip, int port,
                  int timeout_seconds = 8) {
  auto listener = open_socket_in(NetnsHandle::open(to), AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip, &addr.sin_addr);
  if (bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(listener.get(), 1) != 0)
    return false;
  auto client = open_socket_in(NetnsHandle::open(from), AF_INET, SOCK_STREAM, 0);
  timeval timeout{.tv_sec = timeout_seconds, .tv_usec = 0};
  setsockopt(client.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  return ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

TEST_F(TwoNodeOverlayTest, RemoteEntriesCarryTrafficAcrossNodes) {
  auto net1 = layout("net-on-1", "192.0.2.11");
  auto net2 = layout("net-on-2", "192.0.2.12");
  {
    NetnsGuard in(node1_ns);
    NetlinkSocket node(node1_ns);
    ensure_overlay(node, net1);
  }
  {
    NetlinkSocket node(node2_ns);
    ensure_overlay(node, net2);
  }
  auto c1 = namespaces.make("c1");
  auto c2 = namespaces.make("c2");
  attach_endpoint(net1, {.host_ifname = "veth1", .ip = ipv4("10.0.0.2"), .mac = mac("02:42:0a:00:00:02")},
                  NetnsHandle::open(c1));
  attach_endpoint(net2, {.host_ifname = "veth2", .ip = ipv4("10.0.0.3"), .mac = mac("02:42:0a:00:00:03")},
                  NetnsHandle::open(c2));

  EXPECT_FALSE(tcp_connects(c1, c2, "10.0.0.3", 7100, 1)) << "reached without entries: flooding or learning is on";

  program_remote_endpoint(net1, {.ip = ipv4("10.0.0.3"), .mac = mac("02:42:0a:00:00:03"), .vtep = ipv4("192.0.2.12")});
  program_remote_endpoint(net2, {.ip = ipv4("10.0.0.2"), .mac = mac("02:42:0a:00:00:02"), .vtep = ipv4("192.0.2.11")});
  program_remote_endpoint(net2, {.ip = ipv4("10.0.0.2"), .mac = mac("02:42:0a:00:00:02"), .vtep = ipv4("192.0.2.11")});
  EXPECT_TRUE(tcp_connects(c1, c2, "10.0.0.3", 7101));
  EXPECT_TRUE(tcp_connects(c2, c1, "10.0.0.2", 7102));

  NetlinkSocket net(NetnsHandle::open(net1.netns_path));
  EXPECT_EQ(net.list_fdb(vxlan_device_name(4096)).size(), 1u);
  const RemoteEndpoint on_node2{.ip = ipv4("10.0.0.3"), .mac = mac("02:42:0a:00:00:03"), .vtep = ipv4("192.0.2.12")};
  unprogram_remote_endpoint(net1, on_node2);
  unprogram_remote_endpoint(net1, on_node2);
  EXPECT_TRUE(net.list_fdb(vxlan_device_name(4096)).empty());
  EXPECT_TRUE(net.list_neighbors(vxlan_device_name(4096)).empty());

  NetlinkSocket n1(node1_ns), n2(node2_ns);
  remove_overlay(n1, net1);
  remove_overlay(n2, net2);
}

// The bridge answers ARP for the gateway (and, on the nftables fallback, for
// the VIPs). Left to itself the kernel gives it the lowest MAC of its ports
// and changes it when that port goes: the endpoints still attached then send
// to a MAC nobody owns until their neighbour entry expires.
TEST_F(TwoNodeOverlayTest, BridgeKeepsItsMacWhenEndpointsComeAndGo) {
  auto net1 = layout("net-on-1", "192.0.2.11");
  NetlinkSocket node(node1_ns);
  ensure_overlay(node, net1);
  NetlinkSocket net(NetnsHandle::open(net1.netns_path));
  const auto bridge_mac = mac("0a:42:c0:00:02:0b");  // of the underlay address 192.0.2.11
  EXPECT_EQ(overlay_bridge_mac(ipv4("192.0.2.11")), bridge_mac);
  EXPECT_NE(overlay_bridge_mac(ipv4("192.0.2.12")), bridge_mac);  // each node's own
  EXPECT_EQ(net.get_link(kOverlayBridgeName).mac, bridge_mac);

  const EndpointLayout first{.host_ifname = "veth1", .ip = ipv4("10.0.0.2"), .mac = mac("02:42:0a:00:00:02")};
  const EndpointLayout second{.host_ifname = "veth2", .ip = ipv4("10.0.0.3"), .mac = mac("02:42:0a:00:00:03")};
  attach_endpoint(net1, first, NetnsHandle::open(namespaces.make("c1")));
  attach_endpoint(net1, second, NetnsHandle::open(namespaces.make("c2")));
  EXPECT_EQ(net.get_link(kOverlayBridgeName).mac, bridge_mac);
  // Whichever host-side veth has the lowest (random) MAC, neither's going
  // moves the bridge's.
  detach_endpoint(net1, first);
  EXPECT_EQ(net.get_link(kOverlayBridgeName).mac, bridge_mac);
  detach_endpoint(net1, second);
  EXPECT_EQ(net.get_link(kOverlayBridgeName).mac, bridge_mac);

  // A bridge made before this rule (kernel-chosen MAC) is corrected in place.
  net.set_mac(kOverlayBridgeName, mac("06:00:00:00:00:01"));
  ensure_overlay(node, net1);
  EXPECT_EQ(net.get_link(kOverlayBridgeName).mac, bridge_mac);
  remove_overlay(node, net1);
}

}  // namespace
}  // namespace weft::dataplane
