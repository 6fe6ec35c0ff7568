#include "dataplane/netlink.h"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "dataplane/netns.h"

namespace weft::dataplane {
namespace {

// libnl reports its own codes; callers and users want the kernel's errno.
int errno_of(int nl_error) {
  switch (std::abs(nl_error)) {
    case NLE_EXIST: return EEXIST;
    case NLE_OBJ_NOTFOUND: return ENOENT;
    case NLE_NODEV: return ENODEV;
    case NLE_PERM: return EPERM;
    case NLE_NOACCESS: return EACCES;
    case NLE_BUSY: return EBUSY;
    case NLE_INVAL: return EINVAL;
    case NLE_NOMEM: return ENOMEM;
    case NLE_RANGE: return ERANGE;
    case NLE_OPNOTSUPP: return EOPNOTSUPP;
    case NLE_AGAIN: return EAGAIN;
    case NLE_NOADDR: return EADDRNOTAVAIL;
    case NLE_AF_NOSUPPORT: return EAFNOSUPPORT;
    case NLE_MSGSIZE: return EMSGSIZE;
    case NLE_BAD_SOCK: return EBADF;
    case NLE_INTR: return EINTR;
    case NLE_MSG_TOOSHORT:
    case NLE_MSG_TRUNC:
    case NLE_MSG_OVERFLOW: return EMSGSIZE;
    case NLE_AF_MISMATCH: return EAFNOSUPPORT;
    case NLE_NOATTR: return ENODATA;
    default: return EIO;
  }
}

[[noreturn]] void fail(int nl_error, const std::string& what) {
  throw NetlinkError(errno_of(nl_error), what + ": " + nl_geterror(nl_error));
}

void check(int rc, const std::string& what) {
  if (rc < 0) fail(rc, what);
}

struct LinkDeleter { void operator()(rtnl_link* l) const { rtnl_link_put(l); } };
struct AddrDeleter { void operator()(nl_addr* a) const { nl_addr_put(a); } };
struct RtAddrDeleter { void operator()(rtnl_addr* a) const { rtnl_addr_put(a); } };
struct RouteDeleter { void operator()(rtnl_route* r) const { rtnl_route_put(r); } };
struct NeighDeleter { void operator()(rtnl_neigh* n) const { rtnl_neigh_put(n); } };
struct CacheDeleter { void operator()(nl_cache* c) const { nl_cache_free(c); } };
struct NexthopDeleter { void operator()(rtnl_nexthop* n) const { rtnl_route_nh_free(n); } };
using LinkPtr = std::unique_ptr<rtnl_link, LinkDeleter>;
using AddrPtr = std::unique_ptr<nl_addr, AddrDeleter>;
using RtAddrPtr = std::unique_ptr<rtnl_addr, RtAddrDeleter>;
using RoutePtr = std::unique_ptr<rtnl_route, RouteDeleter>;
using NeighPtr = std::unique_ptr<rtnl_neigh, NeighDeleter>;
using CachePtr = std::unique_ptr<nl_cache, CacheDeleter>;
using NexthopPtr = std::unique_ptr<rtnl_nexthop, NexthopDeleter>;

LinkPtr alloc_link() {
  LinkPtr link(rtnl_link_alloc());
  if (!link) throw NetlinkError(ENOMEM, "rtnl_link_alloc");
  return link;
}

AddrPtr ipv4_addr(Ipv4 ip, int prefix_len = 32) {
  const in_addr raw{htonl(ip.value)};
  AddrPtr addr(nl_addr_build(AF_INET, &raw, sizeof(raw)));
  if (!addr) throw NetlinkError(ENOMEM, "nl_addr_build");
  nl_addr_set_prefixlen(addr.get(), prefix_len);
  return addr;
}

AddrPtr mac_addr(const MacAddress& mac) {
  AddrPtr addr(nl_addr_build(AF_LLC, mac.bytes.data(), mac.bytes.size()));
  if (!addr) throw NetlinkError(ENOMEM, "nl_addr_build");
  return addr;
}

std::optional<Ipv4> ipv4_of(nl_addr* addr) {
  // Bridge FDB entries carry their IPv4 VTEP with the entry's family, so the
  // length is what tells an IPv4 address.
  if (!addr || nl_addr_get_len(addr) != 4) return std::nullopt;
  in_addr raw{};
  std::copy_n(static_cast<const std::uint8_t*>(nl_addr_get_binary_addr(addr)), 4,
              reinterpret_cast<std::uint8_t*>(&raw));
  return Ipv4{ntohl(raw.s_addr)};
}

MacAddress mac_of(nl_addr* addr) {
  MacAddress mac{};
  if (addr && nl_addr_get_len(addr) == mac.bytes.size())
    std::copy_n(static_cast<const std::uint8_t*>(nl_addr_get_binary_addr(addr)), mac.bytes.size(), mac.bytes.begin());
  return mac;
}

LinkInfo info_of(rtnl_link* link) {
  LinkInfo info;
  info.ifindex = rtnl_link_get_ifindex(link);
  if (const char* name = rtnl_link_get_name(link)) info.name = name;
  if (const char* kind = rtnl_link_get_type(link)) info.kind = kind;
  info.mtu = static_cast<int>(rtnl_link_get_mtu(link));
  info.master_ifindex = rtnl_link_get_master(link);
  info.up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
  info.mac = mac_of(rtnl_link_get_addr(link));
  std::uint32_t vni = 0;
  if (info.kind == "vxlan" && rtnl_link_vxlan_get_id(link, &vni) == 0) info.vni = vni;
  return info;
}

}  // namespace

void NetlinkSocket::SocketDeleter::operator()(nl_sock* sock) const { nl_socket_free(sock); }

NetlinkSocket::NetlinkSocket() { connect(); }

NetlinkSocket::NetlinkSocket(const NetnsHandle& ns) {
  NetnsGuard guard(ns);
  connect();
}

void NetlinkSocket::connect() {
  std::unique_ptr<nl_sock, SocketDeleter> sock(nl_socket_alloc());
  if (!sock) throw NetlinkError(ENOMEM, "nl_socket_alloc");
  check(nl_connect(sock.get(), NETLINK_ROUTE), "connect route netlink");
  sock_ = std::move(sock);
}

std::optional<LinkInfo> NetlinkSocket::find_link(const std::string& name) {
  rtnl_link* raw = nullptr;
  int rc = rtnl_link_get_kernel(sock(), 0, name.c_str(), &raw);
  if (rc == -NLE_NODEV || rc == -NLE_OBJ_NOTFOUND) return std::nullopt;
  check(rc, "look up link " + name);
  LinkPtr link(raw);
  return info_of(link.get());
}

LinkInfo NetlinkSocket::get_link(const std::string& name) {
  auto link = find_link(name);
  if (!link) throw NetlinkError(ENODEV, "link " + name + ": no such device");
  return *link;
}

int NetlinkSocket::ifindex_of(const std::string& name) { return get_link(name).ifindex; }

std::vector<LinkInfo> NetlinkSocket::list_links() {
  nl_cache* raw = nullptr;
  check(rtnl_link_alloc_cache(sock(), AF_UNSPEC, &raw), "list links");
  CachePtr cache(raw);
  std::vector<LinkInfo> links;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj))
    links.push_back(info_of(reinterpret_cast<rtnl_link*>(obj)));
  return links;
}

void NetlinkSocket::create_bridge(const std::string& name, int mtu, std::optional<MacAddress> mac) {
  auto link = alloc_link();
  rtnl_link_set_name(link.get(), name.c_str());
  check(rtnl_link_set_type(link.get(), "bridge"), "bridge " + name);
  if (mtu > 0) rtnl_link_set_mtu(link.get(), static_cast<unsigned>(mtu));
  AddrPtr address;
  if (mac) {
    address = mac_addr(*mac);
    rtnl_link_set_addr(link.get(), address.get());
  }
  check(rtnl_link_add(sock(), link.get(), NLM_F_CREATE | NLM_F_EXCL), "create bridge " + name);
}

void NetlinkSocket::create_vxlan(const VxlanSpec& spec) {
  LinkPtr link(rtnl_link_vxlan_alloc());
  if (!link) throw NetlinkError(ENOMEM, "rtnl_link_vxlan_alloc");
  const std::string what = "create vxlan " + spec.name + " (vni " + std::to_string(spec.vni) + ")";
  rtnl_link_set_name(link.get(), spec.name.c_str());
  check(rtnl_link_vxlan_set_id(link.get(), spec.vni), what);
  auto local = ipv4_addr(spec.local_ip);
  check(rtnl_link_vxlan_set_local(link.get(), local.get()), what);
  check(rtnl_link_vxlan_set_port(link.get(), spec.dstport), what);
  check(rtnl_link_vxlan_set_learning(link.get(), spec.learning ? 1 : 0), what);
  check(rtnl_link_vxlan_set_proxy(link.get(), spec.proxy ? 1 : 0), what);
  if (spec.mtu > 0) rtnl_link_set_mtu(link.get(), static_cast<unsigned>(spec.mtu));
  check(rtnl_link_add(sock(), link.get(), NLM_F_CREATE | NLM_F_EXCL), what);
}

void NetlinkSocket::create_veth(const VethSpec& spec) {
  LinkPtr link(rtnl_link_veth_alloc());
  if (!link) throw NetlinkError(ENOMEM, "rtnl_link_veth_alloc");
  const std::string what = "create veth " + spec.name + " (peer " + spec.peer_name + ")";
  rtnl_link_set_name(link.get(), spec.name.c_str());
  if (spec.mtu > 0) rtnl_link_set_mtu(link.get(), static_cast<unsigned>(spec.mtu));
  rtnl_link* peer = rtnl_link_veth_get_peer(link.get());
  LinkPtr peer_ref(peer);
  rtnl_link_set_name(peer, spec.peer_name.c_str());
  if (spec.mtu > 0) rtnl_link_set_mtu(peer, static_cast<unsigned>(spec.mtu));
  if (spec.peer_netns_fd >= 0) rtnl_link_set_ns_fd(peer, spec.peer_netns_fd);
  AddrPtr peer_mac;
  if (spec.peer_mac) {
    peer_mac = mac_addr(*spec.peer_mac);
    rtnl_link_set_addr(peer, peer_mac.get());
  }
  check(rtnl_link_add(sock(), link.get(), NLM_F_CREATE | NLM_F_EXCL), what);
}

void NetlinkSocket::delete_link(const std::string& name) {
  auto link = alloc_link();
  rtnl_link_set_name(link.get(), name.c_str());
  check(rtnl_link_delete(sock(), link.get()), "delete link " + name);
}

bool NetlinkSocket::delete_link_if_exists(const std::string& name) {
  auto link = alloc_link();
  rtnl_link_set_name(link.get(), name.c_str());
  int rc = rtnl_link_delete(sock(), link.get());
  if (rc == -NLE_NODEV || rc == -NLE_OBJ_NOTFOUND) return false;
  check(rc, "delete link " + name);
  return true;
}

namespace {
// Applies `changes` to the link called `name`.
void change_link(nl_sock* sock, const std::string& name, rtnl_link* changes, const std::string& what) {
  rtnl_link* raw = nullptr;
  check(rtnl_link_get_kernel(sock, 0, name.c_str(), &raw), what);
  LinkPtr current(raw);
  check(rtnl_link_change(sock, current.get(), changes, 0), what);
}
}  // namespace

void NetlinkSocket::move_link_to_netns(const std::string& name, int netns_fd) {
  auto changes = alloc_link();
  rtnl_link_set_ns_fd(changes.get(), netns_fd);
  change_link(sock(), name, changes.get(), "move link " + name + " to namespace");
}

void NetlinkSocket::set_master(const std::string& name, const std::string& master) {
  auto changes = alloc_link();
  rtnl_link_set_master(changes.get(), ifindex_of(master));
  change_link(sock(), name, changes.get(), "attach link " + name + " to " + master);
}

void NetlinkSocket::set_up(const std::string& name) {
  auto changes = alloc_link();
  rtnl_link_set_flags(changes.get(), IFF_UP);
  change_link(sock(), name, changes.get(), "set link " + name + " up");
}

void NetlinkSocket::set_mtu(const std::string& name, int mtu) {
  auto changes = alloc_link();
  rtnl_link_set_mtu(changes.get(), static_cast<unsigned>(mtu));
  change_link(sock(), name, changes.get(), "set mtu of " + name);
}

void NetlinkSocket::set_mac(const std::string& name, const MacAddress& mac) {
  auto changes = alloc_link();
  auto address = mac_addr(mac);
  rtnl_link_set_addr(changes.get(), address.get());
  change_link(sock(), name, changes.get(), "set the MAC address of " + name);
}

void NetlinkSocket::add_address(const std::string& ifname, Ipv4 ip, int prefix_len) {
  const std::string what = "add address " + ip.str() + "/" + std::to_string(prefix_len) + " to " + ifname;
  RtAddrPtr addr(rtnl_addr_alloc());
  if (!addr) throw NetlinkError(ENOMEM, what);
  rtnl_addr_set_ifindex(addr.get(), ifindex_of(ifname));
  auto local = ipv4_addr(ip, prefix_len);
  check(rtnl_addr_set_local(addr.get(), local.get()), what);
  check(rtnl_addr_add(sock(), addr.get(), NLM_F_REPLACE), what);
}

std::vector<std::pair<Ipv4, int>> NetlinkSocket::list_addresses(const std::string& ifname) {
  const int ifindex = ifindex_of(ifname);
  nl_cache* raw = nullptr;
  check(rtnl_addr_alloc_cache(sock(), &raw), "list addresses of " + ifname);
  CachePtr cache(raw);
  std::vector<std::pair<Ipv4, int>> result;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    if (rtnl_addr_get_ifindex(addr) != ifindex || rtnl_addr_get_family(addr) != AF_INET) continue;
    if (const auto local = ipv4_of(rtnl_addr_get_local(addr)))
      result.emplace_back(*local, rtnl_addr_get_prefixlen(addr));
  }
  return result;
}

std::optional<LinkInfo> NetlinkSocket::link_with_address(Ipv4 ip) {
  nl_cache* raw = nullptr;
  check(rtnl_addr_alloc_cache(sock(), &raw), "list addresses");
  CachePtr cache(raw);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    if (rtnl_addr_get_family(addr) != AF_INET || ipv4_of(rtnl_addr_get_local(addr)) != ip) continue;
    rtnl_link* link_raw = nullptr;
    check(rtnl_link_get_kernel(sock(), rtnl_addr_get_ifindex(addr), nullptr, &link_raw), "look up link of " + ip.str());
    LinkPtr link(link_raw);
    return info_of(link.get());
  }
  return std::nullopt;
}

void NetlinkSocket::replace_default_route(Ipv4 gateway, const std::string& ifname) {
  const std::string what = "default route via " + gateway.str() + " dev " + ifname;
  RoutePtr route(rtnl_route_alloc());
  if (!route) throw NetlinkError(ENOMEM, what);
  rtnl_route_set_family(route.get(), AF_INET);
  auto dst = ipv4_addr(Ipv4{}, 0);
  check(rtnl_route_set_dst(route.get(), dst.get()), what);
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  rtnl_route_set_protocol(route.get(), RTPROT_STATIC);
  rtnl_route_set_scope(route.get(), RT_SCOPE_UNIVERSE);
  // Owned here until the route takes it: ifindex_of() below can throw.
  NexthopPtr nexthop(rtnl_route_nh_alloc());
  if (!nexthop) throw NetlinkError(ENOMEM, what);
  auto gw = ipv4_addr(gateway);
  rtnl_route_nh_set_gateway(nexthop.get(), gw.get());
  rtnl_route_nh_set_ifindex(nexthop.get(), ifindex_of(ifname));
  rtnl_route_add_nexthop(route.get(), nexthop.release());
  check(rtnl_route_add(sock(), route.get(), NLM_F_CREATE | NLM_F_REPLACE), what);
}

bool NetlinkSocket::has_default_route() {
  nl_cache* raw = nullptr;
  check(rtnl_route_alloc_cache(sock(), AF_INET, 0, &raw), "list routes");
  CachePtr cache(raw);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* route = reinterpret_cast<rtnl_route*>(obj);
    if (rtnl_route_get_table(route) == RT_TABLE_MAIN && nl_addr_get_prefixlen(rtnl_route_get_dst(route)) == 0)
      return true;
  }
  return false;
}

std::optional<std::string> NetlinkSocket::default_route_interface() {
  nl_cache* raw = nullptr;
  check(rtnl_route_alloc_cache(sock(), AF_INET, 0, &raw), "list routes");
  CachePtr cache(raw);
  std::optional<int> best_ifindex;
  std::uint32_t best_metric = UINT32_MAX;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* route = reinterpret_cast<rtnl_route*>(obj);
    if (rtnl_route_get_table(route) != RT_TABLE_MAIN || nl_addr_get_prefixlen(rtnl_route_get_dst(route)) != 0)
      continue;
    if (rtnl_route_get_nnexthops(route) < 1) continue;
    const int ifindex = rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(route, 0));
    if (ifindex <= 0) continue;
    if (!best_ifindex || rtnl_route_get_priority(route) < best_metric) {
      best_ifindex = ifindex;
      best_metric = rtnl_route_get_priority(route);
    }
  }
  if (!best_ifindex) return std::nullopt;
  for (const auto& link : list_links())
    if (link.ifindex == *best_ifindex) return link.name;
  return std::nullopt;
}

void NetlinkSocket::replace_neighbor(const std::string& ifname, Ipv4 ip, const MacAddress& mac) {
  const std::string what = "neighbour " + ip.str() + " lladdr " + mac.str() + " dev " + ifname;
  NeighPtr neigh(rtnl_neigh_alloc());
  if (!neigh) throw NetlinkError(ENOMEM, what);
  rtnl_neigh_set_ifindex(neigh.get(), ifindex_of(ifname));
  rtnl_neigh_set_family(neigh.get(), AF_INET);
  auto dst = ipv4_addr(ip);
  check(rtnl_neigh_set_dst(neigh.get(), dst.get()), what);
  auto lladdr = mac_addr(mac);
  rtnl_neigh_set_lladdr(neigh.get(), lladdr.get());
  rtnl_neigh_set_state(neigh.get(), NUD_PERMANENT);
  check(rtnl_neigh_add(sock(), neigh.get(), NLM_F_CREATE | NLM_F_REPLACE), what);
}

void NetlinkSocket::delete_neighbor(const std::string& ifname, Ipv4 ip) {
  const std::string what = "delete neighbour " + ip.str() + " dev " + ifname;
  NeighPtr neigh(rtnl_neigh_alloc());
  if (!neigh) throw NetlinkError(ENOMEM, what);
  rtnl_neigh_set_ifindex(neigh.get(), ifindex_of(ifname));
  rtnl_neigh_set_family(neigh.get(), AF_INET);
  auto dst = ipv4_addr(ip);
  check(rtnl_neigh_set_dst(neigh.get(), dst.get()), what);
  check(rtnl_neigh_delete(sock(), neigh.get(), 0), what);
}

namespace {
NeighPtr fdb_entry(int ifindex, const MacAddress& mac, Ipv4 dst_ip, const std::string& what) {
  NeighPtr neigh(rtnl_neigh_alloc());
  if (!neigh) throw NetlinkError(ENOMEM, what);
  rtnl_neigh_set_ifindex(neigh.get(), ifindex);
  auto lladdr = mac_addr(mac);
  rtnl_neigh_set_lladdr(neigh.get(), lladdr.get());
  // libnl refuses a destination whose family differs from the entry's, so
  // the IPv4 VTEP address goes in before the entry becomes AF_BRIDGE.
  auto dst = ipv4_addr(dst_ip);
  check(rtnl_neigh_set_dst(neigh.get(), dst.get()), what);
  rtnl_neigh_set_family(neigh.get(), AF_BRIDGE);
  rtnl_neigh_set_flags(neigh.get(), NTF_SELF);
  rtnl_neigh_set_state(neigh.get(), NUD_PERMANENT | NUD_NOARP);
  return neigh;
}
}  // namespace

void NetlinkSocket::replace_fdb(const std::string& ifname, const MacAddress& mac, Ipv4 dst_ip) {
  const std::string what = "fdb " + mac.str() + " dst " + dst_ip.str() + " dev " + ifname;
  auto neigh = fdb_entry(ifindex_of(ifname), mac, dst_ip, what);
  check(rtnl_neigh_add(sock(), neigh.get(), NLM_F_CREATE | NLM_F_REPLACE), what);
}

void NetlinkSocket::delete_fdb(const std::string& ifname, const MacAddress& mac, Ipv4 dst_ip) {
  const std::string what = "delete fdb " + mac.str() + " dst " + dst_ip.str() + " dev " + ifname;
  auto neigh = fdb_entry(ifindex_of(ifname), mac, dst_ip, what);
  check(rtnl_neigh_delete(sock(), neigh.get(), 0), what);
}

std::vector<std::pair<Ipv4, MacAddress>> NetlinkSocket::list_neighbors(const std::string& ifname) {
  const int ifindex = ifindex_of(ifname);
  nl_cache* raw = nullptr;
  check(rtnl_neigh_alloc_cache(sock(), &raw), "list neighbours");
  CachePtr cache(raw);
  std::vector<std::pair<Ipv4, MacAddress>> result;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* neigh = reinterpret_cast<rtnl_neigh*>(obj);
    if (rtnl_neigh_get_ifindex(neigh) != ifindex || rtnl_neigh_get_family(neigh) != AF_INET) continue;
    if (!(rtnl_neigh_get_state(neigh) & NUD_PERMANENT)) continue;
    if (const auto dst = ipv4_of(rtnl_neigh_get_dst(neigh)))
      result.emplace_back(*dst, mac_of(rtnl_neigh_get_lladdr(neigh)));
  }
  return result;
}

std::vector<std::pair<MacAddress, Ipv4>> NetlinkSocket::list_fdb(const std::string& ifname) {
  const int ifindex = ifindex_of(ifname);
  nl_cache* raw = nullptr;
  // A plain dump leaves bridge entries out; iterating families includes them.
  check(rtnl_neigh_alloc_cache_flags(sock(), &raw, NL_CACHE_AF_ITER), "list fdb");
  CachePtr cache(raw);
  std::vector<std::pair<MacAddress, Ipv4>> result;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* neigh = reinterpret_cast<rtnl_neigh*>(obj);
    if (rtnl_neigh_get_ifindex(neigh) != ifindex || rtnl_neigh_get_family(neigh) != AF_BRIDGE) continue;
    if (const auto dst = ipv4_of(rtnl_neigh_get_dst(neigh)))
      result.emplace_back(mac_of(rtnl_neigh_get_lladdr(neigh)), *dst);
  }
  return result;
}

namespace {
// An entry with no destination port: the kernel points it at the bridge
// itself. NUD_PERMANENT makes it local (static alone would be refused for
// the bridge device: an entry without a port must be local).
NeighPtr local_fdb_entry(int ifindex, const MacAddress& mac, const std::string& what) {
  NeighPtr neigh(rtnl_neigh_alloc());
  if (!neigh) throw NetlinkError(ENOMEM, what);
  rtnl_neigh_set_ifindex(neigh.get(), ifindex);
  rtnl_neigh_set_family(neigh.get(), AF_BRIDGE);
  auto lladdr = mac_addr(mac);
  rtnl_neigh_set_lladdr(neigh.get(), lladdr.get());
  rtnl_neigh_set_flags(neigh.get(), NTF_SELF);
  rtnl_neigh_set_state(neigh.get(), NUD_PERMANENT);
  return neigh;
}
}  // namespace

void NetlinkSocket::add_local_fdb(const std::string& bridge, const MacAddress& mac) {
  const std::string what = "fdb " + mac.str() + " dev " + bridge + " self local";
  auto neigh = local_fdb_entry(ifindex_of(bridge), mac, what);
  check(rtnl_neigh_add(sock(), neigh.get(), NLM_F_CREATE | NLM_F_REPLACE), what);
}

void NetlinkSocket::delete_local_fdb(const std::string& bridge, const MacAddress& mac) {
  const std::string what = "delete fdb " + mac.str() + " dev " + bridge + " self local";
  auto neigh = local_fdb_entry(ifindex_of(bridge), mac, what);
  const int rc = rtnl_neigh_delete(sock(), neigh.get(), 0);
  if (rc < 0 && errno_of(rc) != ENOENT) fail(rc, what);
}

std::vector<MacAddress> NetlinkSocket::list_local_fdb(const std::string& bridge) {
  const int ifindex = ifindex_of(bridge);
  nl_cache* raw = nullptr;
  check(rtnl_neigh_alloc_cache_flags(sock(), &raw, NL_CACHE_AF_ITER), "list fdb");
  CachePtr cache(raw);
  std::vector<MacAddress> result;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* neigh = reinterpret_cast<rtnl_neigh*>(obj);
    if (rtnl_neigh_get_ifindex(neigh) != ifindex || rtnl_neigh_get_family(neigh) != AF_BRIDGE) continue;
    if (!(rtnl_neigh_get_state(neigh) & NUD_PERMANENT) || !rtnl_neigh_get_lladdr(neigh)) continue;
    const MacAddress mac = mac_of(rtnl_neigh_get_lladdr(neigh));
    if (std::find(result.begin(), result.end(), mac) == result.end()) result.push_back(mac);
  }
  return result;
}

LinkRollback::~LinkRollback() {
  if (!socket_) return;
  try {
    socket_->delete_link_if_exists(name_);
  } catch (...) {
    // Rolling back during unwinding: the original error is the one to report.
  }
}

}  // namespace weft::dataplane
