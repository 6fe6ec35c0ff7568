// Route netlink over libnl-route-3: links (bridge, VXLAN, veth), addresses,
// routes, neighbour and bridge FDB entries, in whichever namespace the
// socket was opened in.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "dataplane/address.h"

struct nl_sock;

namespace weft::dataplane {

class NetnsHandle;

// A netlink failure: code() is the kernel's errno, what() names the
// operation and the object.
class NetlinkError : public std::system_error {
 public:
  NetlinkError(int err, const std::string& what) : std::system_error(err, std::generic_category(), what) {}
};

struct LinkInfo {
  int ifindex = 0;
  std::string name;
  std::string kind;  // "bridge", "vxlan", "veth", "" for physical/lo
  int mtu = 0;
  int master_ifindex = 0;
  bool up = false;
  MacAddress mac{};
  std::optional<std::uint32_t> vni;  // for vxlan
};

struct VxlanSpec {
  std::string name;
  std::uint32_t vni = 0;
  Ipv4 local_ip;         // underlay source address
  std::uint16_t dstport = 4789;
  int mtu = 0;           // 0: kernel default
  bool learning = false;
  bool proxy = true;     // answer ARP from the neighbour table
};

struct VethSpec {
  std::string name;
  std::string peer_name;
  int peer_netns_fd = -1;  // create the peer directly in this namespace
  int mtu = 0;
  std::optional<MacAddress> peer_mac{};
};

class NetlinkSocket {
 public:
  // A socket in the calling thread's current namespace.
  NetlinkSocket();
  // A socket in `ns`.
  explicit NetlinkSocket(const NetnsHandle& ns);
  ~NetlinkSocket() = default;
  NetlinkSocket(NetlinkSocket&& other) noexcept = default;
  NetlinkSocket& operator=(NetlinkSocket&&) = delete;
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;

  // Links
  std::optional<LinkInfo> find_link(const std::string& name);
  LinkInfo get_link(const std::string& name);  // NetlinkError(ENODEV) if absent
  std::vector<LinkInfo> list_links();
  // `mac`: a fixed address, which the kernel then keeps; without one the
  // bridge takes its lowest port's and changes it when that port goes.
  void create_bridge(const std::string& name, int mtu = 0, std::optional<MacAddress> mac = std::nullopt);
  void create_vxlan(const VxlanSpec& spec);
  void create_veth(const VethSpec& spec);
  void delete_link(const std::string& name);
  bool delete_link_if_exists(const std::string& name);
  void move_link_to_netns(const std::string& name, int netns_fd);
  void set_master(const std::string& name, const std::string& master);
  void set_up(const std::string& name);
  void set_mtu(const std::string& name, int mtu);
  void set_mac(const std::string& name, const MacAddress& mac);

  // Addresses and routes (IPv4)
  void add_address(const std::string& ifname, Ipv4 ip, int prefix_len);
  std::vector<std::pair<Ipv4, int>> list_addresses(const std::string& ifname);
  // The interface that holds `ip`, if any.
  std::optional<LinkInfo> link_with_address(Ipv4 ip);
  void replace_default_route(Ipv4 gateway, const std::string& ifname);
  bool has_default_route();
  // The interface of the main table's IPv4 default route with the lowest
  // metric; nullopt when there is none (or it has no interface).
  std::optional<std::string> default_route_interface();

  // Neighbour (IP -> MAC) and bridge FDB (MAC -> remote VTEP) entries
  void replace_neighbor(const std::string& ifname, Ipv4 ip, const MacAddress& mac);
  void delete_neighbor(const std::string& ifname, Ipv4 ip);
  void replace_fdb(const std::string& ifname, const MacAddress& mac, Ipv4 dst_ip);
  void delete_fdb(const std::string& ifname, const MacAddress& mac, Ipv4 dst_ip);
  // Permanent neighbour entries on `ifname`: (ip, mac)
  std::vector<std::pair<Ipv4, MacAddress>> list_neighbors(const std::string& ifname);
  // Static FDB entries with an IPv4 remote destination on `ifname`: (mac, dst ip)
  std::vector<std::pair<MacAddress, Ipv4>> list_fdb(const std::string& ifname);
  // Bridge-local FDB entries (`bridge fdb add MAC dev BRIDGE self local`):
  // the bridge delivers frames sent to such a MAC to its own IP stack
  // instead of flooding them to its ports. Absent is not an error for
  // delete. list_local_fdb gives the MACs of every local entry on the
  // bridge device itself, its own MAC included.
  void add_local_fdb(const std::string& bridge, const MacAddress& mac);
  void delete_local_fdb(const std::string& bridge, const MacAddress& mac);
  std::vector<MacAddress> list_local_fdb(const std::string& bridge);

 private:
  struct SocketDeleter {
    void operator()(nl_sock* sock) const;
  };
  void connect();
  int ifindex_of(const std::string& name);
  nl_sock* sock() const { return sock_.get(); }
  std::unique_ptr<nl_sock, SocketDeleter> sock_;
};

// Deletes a link it was given unless dismissed: rolls back a half-made
// object when a later step fails.
class LinkRollback {
 public:
  LinkRollback(NetlinkSocket& socket, std::string name) : socket_(&socket), name_(std::move(name)) {}
  ~LinkRollback();
  LinkRollback(const LinkRollback&) = delete;
  LinkRollback& operator=(const LinkRollback&) = delete;
  void dismiss() { socket_ = nullptr; }

 private:
  NetlinkSocket* socket_;
  std::string name_;
};

}  // namespace weft::dataplane
