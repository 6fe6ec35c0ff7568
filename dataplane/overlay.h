// An overlay network on one node, laid out as Docker lays it out: a
// namespace per network holding a bridge (with the gateway address) and the
// network's VXLAN device; endpoints are veth pairs from that bridge into the
// container's namespace.
#pragma once

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "dataplane/netlink.h"
#include "dataplane/netns.h"

namespace weft::dataplane {

inline constexpr const char* kOverlayBridgeName = "br0";
// The VXLAN device is made in the node's namespace (so its UDP socket lives
// on the underlay) and then moved; the same name is kept on both sides so a
// leftover from a crash between the two steps is recognisable.
std::string vxlan_device_name(std::uint32_t vni);
bool is_vxlan_device_name(const std::string& name);

struct OverlayLayout {
  std::filesystem::path netns_path;  // pinned namespace of the network
  std::uint32_t vni = 0;
  Ipv4 gateway;                      // on the bridge
  int prefix_len = 24;
  Ipv4 underlay_ip;                  // VXLAN local address
  int mtu = 1450;                    // underlay MTU - VXLAN overhead
};

// The MAC of a network's bridge on the node whose underlay address is
// `underlay_ip`: 0a:42 and that address. Fixed, so the kernel does not change
// it when ports come and go; per node, because the bridge's routed frames
// (the nftables fallback's) cross the VXLAN, and a bridge that receives
// a frame with its own address as the source logs a warning for each one;
// apart from the endpoints' 02:42:<overlay address>.
MacAddress overlay_bridge_mac(Ipv4 underlay_ip);

// VXLAN over IPv4 adds 50 bytes (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).
inline constexpr int kVxlanOverhead = 50;
// MTU for overlay devices on a node whose underlay address is `underlay_ip`.
int overlay_mtu(NetlinkSocket& node, Ipv4 underlay_ip);

// Turns bridge netfilter (br_netfilter's net.bridge.bridge-nf-call-iptables,
// -ip6tables, -arptables) off in a network's namespace. Nothing filters there
// (no rules in that namespace; service load balancing is eBPF), but with
// br_netfilter loaded these sysctls start at 1 in every new namespace, and
// then every frame crossing br0 is run through the IPv4/IPv6/ARP hooks: on
// the overlay bench that was ~5% of the throughput. Per namespace, so the
// node's own setting is left alone. Best effort: true when the sysctls are 0
// afterwards or do not exist (br_netfilter not loaded), false otherwise.
bool disable_bridge_netfilter(const NetnsHandle& network_ns);

// Makes the kernel hold `layout`: creates what is missing, repairs what is
// wrong, leaves what is right (also bridge netfilter, see above). `node` is a
// socket in the node's namespace. On failure nothing it created is left behind.
void ensure_overlay(NetlinkSocket& node, const OverlayLayout& layout);
// Removes the network's namespace (and with it the bridge, VXLAN and the
// host ends of its endpoints) and any leftover VXLAN in the node namespace.
void remove_overlay(NetlinkSocket& node, const OverlayLayout& layout);
// Removes a pinned network namespace whose layout is unknown (left by a
// network the state no longer has): deletes every link in it first, so a
// VXLAN device frees its VNI at once rather than when the kernel gets to
// tearing the namespace down.
void remove_network_namespace(const std::filesystem::path& netns_path);

struct EndpointLayout {
  std::string host_ifname;    // bridge side, in the network namespace
  Ipv4 ip;
  MacAddress mac;
};

// Connects `container` to the network: returns the interface name inside it
// (eth0, or the next free ethN). Rolls back on failure.
std::string attach_endpoint(const OverlayLayout& network, const EndpointLayout& endpoint,
                            const NetnsHandle& container);
// True when the endpoint's veth exists on the bridge and its peer in
// `container` carries its address.
bool endpoint_intact(const OverlayLayout& network, const EndpointLayout& endpoint, const NetnsHandle& container,
                     const std::string& container_ifname);
// Deletes the endpoint's veth pair; absent is not an error.
void detach_endpoint(const OverlayLayout& network, const EndpointLayout& endpoint);
// Deletes every veth in the network's namespace whose name is not in
// `keep` (host ends of endpoints the state accounts for). Everything in that
// namespace is made by the agent, so an unknown veth is a leftover of an
// attach that a crash cut short; deleting it also deletes its peer in the
// container (veth pairs die together; the peer is created straight in the
// container's namespace, never moved there later). Returns the names deleted.
std::vector<std::string> remove_unknown_endpoints(const OverlayLayout& network, const std::set<std::string>& keep);

}  // namespace weft::dataplane

namespace weft::dataplane {

// A remote endpoint, reachable through the VXLAN: a permanent neighbour
// entry (its IP -> MAC, so ARP is answered locally by the `proxy` flag) and
// a static FDB entry (its MAC -> the owning node's underlay address). No
// flooding, no learning.
struct RemoteEndpoint {
  Ipv4 ip;
  MacAddress mac;
  Ipv4 vtep;  // underlay address of the node that hosts it
};

void program_remote_endpoint(const OverlayLayout& network, const RemoteEndpoint& remote);
// Absent entries are not an error.
void unprogram_remote_endpoint(const OverlayLayout& network, const RemoteEndpoint& remote);

}  // namespace weft::dataplane
