#include "dataplane/overlay.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace weft::dataplane {
namespace {

constexpr const char* kVxlanPrefix = "wvx";

void ensure_bridge(NetlinkSocket& net, const OverlayLayout& layout) {
  auto bridge = net.find_link(kOverlayBridgeName);
  if (bridge && bridge->kind != "bridge") {
    net.delete_link(kOverlayBridgeName);
    bridge.reset();
  }
  // The bridge answers for the gateway (and, on the nftables fallback, the
  // VIPs): a MAC of its own, fixed, so that removing the endpoint whose veth
  // had the lowest MAC does not change it under the neighbour entries of the
  // endpoints left (their held connections would time out until ARP ran again).
  const auto mac = overlay_bridge_mac(layout.underlay_ip);
  if (!bridge) net.create_bridge(kOverlayBridgeName, layout.mtu, mac);
  else if (bridge->mac != mac) net.set_mac(kOverlayBridgeName, mac);
  const auto addresses = net.list_addresses(kOverlayBridgeName);
  const std::pair<Ipv4, int> gateway{layout.gateway, layout.prefix_len};
  if (std::find(addresses.begin(), addresses.end(), gateway) == addresses.end())
    net.add_address(kOverlayBridgeName, layout.gateway, layout.prefix_len);
  net.set_up(kOverlayBridgeName);
}

void ensure_vxlan(NetlinkSocket& node, NetlinkSocket& net, const NetnsHandle& net_ns, const OverlayLayout& layout) {
  const std::string name = vxlan_device_name(layout.vni);
  auto vxlan = net.find_link(name);
  if (vxlan && (vxlan->kind != "vxlan" || vxlan->vni != layout.vni)) {
    net.delete_link(name);
    vxlan.reset();
  }
  if (!vxlan) {
    // A device left in the node namespace by a crash between create and
    // move would make the create fail with "file exists".
    node.delete_link_if_exists(name);
    node.create_vxlan(VxlanSpec{.name = name, .vni = layout.vni, .local_ip = layout.underlay_ip, .mtu = layout.mtu});
    LinkRollback rollback(node, name);
    node.move_link_to_netns(name, net_ns.fd());
    rollback.dismiss();
  }
  net.set_master(name, kOverlayBridgeName);
  net.set_up(name);
}

}  // namespace

MacAddress overlay_bridge_mac(Ipv4 underlay_ip) {
  auto mac = MacAddress::from_ipv4(underlay_ip);
  mac.bytes[0] = 0x0a;  // locally administered, unicast; endpoints have 02
  return mac;
}

std::string vxlan_device_name(std::uint32_t vni) { return kVxlanPrefix + std::to_string(vni); }

bool is_vxlan_device_name(const std::string& name) {
  return name.size() > 3 && name.starts_with(kVxlanPrefix) &&
         std::all_of(name.begin() + 3, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int overlay_mtu(NetlinkSocket& node, Ipv4 underlay_ip) {
  auto underlay = node.link_with_address(underlay_ip);
  if (!underlay) throw NetlinkError(EADDRNOTAVAIL, "no interface holds the advertise address " + underlay_ip.str());
  return underlay->mtu - kVxlanOverhead;
}

bool disable_bridge_netfilter(const NetnsHandle& network_ns) {
  // /proc/sys/net resolves against the namespace of the thread that opens it.
  NetnsGuard guard(network_ns);
  bool ok = true;
  for (const char* key : {"iptables", "ip6tables", "arptables"}) {
    const std::string path = std::string("/proc/sys/net/bridge/bridge-nf-call-") + key;
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) {
      if (errno != ENOENT) ok = false;  // ENOENT: br_netfilter not loaded, nothing runs
      continue;
    }
    char current = 0;
    if (::pread(fd.get(), &current, 1, 0) == 1 && current == '0') continue;
    if (::pwrite(fd.get(), "0\n", 2, 0) != 2) ok = false;
  }
  return ok;
}

void ensure_overlay(NetlinkSocket& node, const OverlayLayout& layout) {
  const bool created = !is_pinned_netns(layout.netns_path);
  if (created) create_pinned_netns(layout.netns_path);
  try {
    auto net_ns = NetnsHandle::open(layout.netns_path);
    NetlinkSocket net(net_ns);
    net.set_up("lo");
    ensure_bridge(net, layout);
    // Best effort: a namespace where it cannot be changed still forwards.
    disable_bridge_netfilter(net_ns);
    ensure_vxlan(node, net, net_ns, layout);
  } catch (...) {
    if (created) remove_overlay(node, layout);
    throw;
  }
}

namespace {
// Namespace teardown is asynchronous in the kernel; deleting the VXLAN now
// frees its VNI at once, so the network can be made again at once.
void delete_links_but_lo(const std::filesystem::path& netns_path) {
  if (!is_pinned_netns(netns_path)) return;
  NetlinkSocket net(NetnsHandle::open(netns_path));
  for (const auto& link : net.list_links())
    if (link.name != "lo") net.delete_link_if_exists(link.name);
}
}  // namespace

void remove_overlay(NetlinkSocket& node, const OverlayLayout& layout) {
  delete_links_but_lo(layout.netns_path);
  node.delete_link_if_exists(vxlan_device_name(layout.vni));
  remove_pinned_netns(layout.netns_path);
}

void remove_network_namespace(const std::filesystem::path& netns_path) {
  delete_links_but_lo(netns_path);
  remove_pinned_netns(netns_path);
}

namespace {
std::string free_interface_name(NetlinkSocket& container) {
  for (int i = 0;; ++i) {
    std::string name = "eth" + std::to_string(i);
    if (!container.find_link(name)) return name;
  }
}
}  // namespace

std::string attach_endpoint(const OverlayLayout& network, const EndpointLayout& endpoint,
                            const NetnsHandle& container) {
  auto net_ns = NetnsHandle::open(network.netns_path);
  NetlinkSocket net(net_ns);
  NetlinkSocket inside(container);
  const std::string ifname = free_interface_name(inside);
  net.delete_link_if_exists(endpoint.host_ifname);
  net.create_veth(VethSpec{.name = endpoint.host_ifname,
                           .peer_name = ifname,
                           .peer_netns_fd = container.fd(),
                           .mtu = network.mtu,
                           .peer_mac = endpoint.mac});
  LinkRollback rollback(net, endpoint.host_ifname);
  net.set_master(endpoint.host_ifname, kOverlayBridgeName);
  net.set_up(endpoint.host_ifname);
  inside.set_up("lo");
  inside.add_address(ifname, endpoint.ip, network.prefix_len);
  inside.set_up(ifname);
  if (!inside.has_default_route()) inside.replace_default_route(network.gateway, ifname);
  rollback.dismiss();
  return ifname;
}

bool endpoint_intact(const OverlayLayout& network, const EndpointLayout& endpoint, const NetnsHandle& container,
                     const std::string& container_ifname) {
  if (!is_pinned_netns(network.netns_path)) return false;
  NetlinkSocket net(NetnsHandle::open(network.netns_path));
  auto host = net.find_link(endpoint.host_ifname);
  auto bridge = net.find_link(kOverlayBridgeName);
  if (!host || !bridge || host->master_ifindex != bridge->ifindex || !host->up) return false;
  NetlinkSocket inside(container);
  auto peer = inside.find_link(container_ifname);
  if (!peer || !peer->up) return false;
  const auto addresses = inside.list_addresses(container_ifname);
  return std::find(addresses.begin(), addresses.end(), std::pair{endpoint.ip, network.prefix_len}) != addresses.end();
}

void detach_endpoint(const OverlayLayout& network, const EndpointLayout& endpoint) {
  if (!is_pinned_netns(network.netns_path)) return;
  NetlinkSocket net(NetnsHandle::open(network.netns_path));
  net.delete_link_if_exists(endpoint.host_ifname);
}

std::vector<std::string> remove_unknown_endpoints(const OverlayLayout& network, const std::set<std::string>& keep) {
  std::vector<std::string> removed;
  if (!is_pinned_netns(network.netns_path)) return removed;
  NetlinkSocket net(NetnsHandle::open(network.netns_path));
  for (const auto& link : net.list_links()) {
    if (link.kind != "veth" || keep.count(link.name)) continue;
    if (net.delete_link_if_exists(link.name)) removed.push_back(link.name);
  }
  return removed;
}

}  // namespace weft::dataplane

namespace weft::dataplane {

void program_remote_endpoint(const OverlayLayout& network, const RemoteEndpoint& remote) {
  NetlinkSocket net(NetnsHandle::open(network.netns_path));
  const auto vxlan = vxlan_device_name(network.vni);
  net.replace_neighbor(vxlan, remote.ip, remote.mac);
  net.replace_fdb(vxlan, remote.mac, remote.vtep);
}

void unprogram_remote_endpoint(const OverlayLayout& network, const RemoteEndpoint& remote) {
  if (!is_pinned_netns(network.netns_path)) return;
  NetlinkSocket net(NetnsHandle::open(network.netns_path));
  const auto vxlan = vxlan_device_name(network.vni);
  auto ignore_absent = [](auto&& op) {
    try {
      op();
    } catch (const NetlinkError& e) {
      if (e.code().value() != ENOENT && e.code().value() != ENODEV) throw;
    }
  };
  ignore_absent([&] { net.delete_fdb(vxlan, remote.mac, remote.vtep); });
  ignore_absent([&] { net.delete_neighbor(vxlan, remote.ip); });
}

}  // namespace weft::dataplane
