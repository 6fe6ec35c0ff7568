// What the nftables load balancer needs from the network's namespace
// besides the table: a libnftables context bound to it, the VIPs as
// local routes via the bridge (nftables cannot answer ARP), forwarding, and
// deleting a dead backend's conntrack entries.
#pragma once

#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>

#include "dataplane/netns.h"
#include "dataplane/unique_fd.h"

struct nft_ctx;

namespace weft::dataplane::lb::nft {

// A failed nftables command: what() carries libnftables' error text.
class NftError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A second handle on the namespace `ns` refers to.
NetnsHandle duplicate(const NetnsHandle& ns);

// A libnftables context whose commands run in one network namespace.
class NftContext {
 public:
  explicit NftContext(NetnsHandle ns);
  ~NftContext();
  NftContext(const NftContext&) = delete;
  NftContext& operator=(const NftContext&) = delete;

  // Runs a buffer of commands as one transaction; throws NftError naming
  // `what` with libnftables' message. Returns the (JSON) output.
  std::string run(const std::string& commands, const std::string& what);
  // `list ...` with JSON output.
  std::string list_json(const std::string& what_to_list);

 private:
  NetnsHandle ns_;
  nft_ctx* ctx_ = nullptr;
};

class Commands;

// Sends a batch's element changes (Commands::deletes(), then adds()) as one
// nf_tables transaction of element messages built with libnftnl, on a
// netlink socket of the namespace. libnftables would parse, evaluate and
// allocate ~1 KB per element (10 000 services x 10 backends: 1.6 s of the
// 1.9 s load, the kernel ~0.25 s); this writes the kernel's element
// attributes directly. Throws NftError naming `what`, the map and errno;
// on any error the kernel applied nothing.
class NftElementWriter {
 public:
  explicit NftElementWriter(const NetnsHandle& ns);
  void send(const Commands& commands, const std::string& what);

 private:
  UniqueFd fd_;
  std::uint32_t seq_ = 0;
};

// The VIPs as routes of type local via the bridge (table local, protocol
// kRouteProtocol): the stack then owns them, so it answers ARP and ping for
// them on the bridge, like an address would, but a route costs O(log n) to
// add where the n-th address on a device costs O(n). Listing by protocol
// finds exactly this load balancer's routes after a restart.
class VipRoutes {
 public:
  static constexpr std::uint8_t kRouteProtocol = 247;  // free in /etc/iproute2/rt_protos

  VipRoutes(const NetnsHandle& ns, std::string bridge);
  std::set<std::uint32_t> list();
  void add(std::uint32_t ip);
  void remove(std::uint32_t ip);  // absent is not an error

 private:
  void request(std::uint16_t type, std::uint16_t flags, std::uint32_t ip, const char* what);
  std::string bridge_;
  int ifindex_ = 0;
  UniqueFd fd_;
  std::uint32_t seq_ = 0;
};

// The SNAT address's MAC (02:42:<address>, the MAC its endpoint record
// gives every other node) as a local FDB entry of the bridge. Replies of
// backends on other nodes arrive from the VXLAN port addressed to that MAC;
// a local entry makes the bridge hand them to its own stack (where the
// netdev table of replace_snat_mac_table marks them as this host's, and
// conntrack un-NATs them) instead of flooding them to its ports. Setting
// the bridge's MAC to it instead would need neither, but would change the
// MAC the gateway and the VIPs answer ARP with under attached endpoints.
// Makes the bridge's local 02:42 entries, other than its own MAC, exactly
// that one; snat_ip 0: none.
void reconcile_snat_mac(const NetnsHandle& ns, const std::string& bridge, std::uint32_t snat_ip);

// ip_forward on, ICMP redirects off (a balanced packet leaves the bridge it
// came in on; a redirect would tell the client to bypass the VIP).
void enable_forwarding(const NetnsHandle& ns, const std::string& bridge);

// Deletes every conntrack entry whose mark is `mark`; returns false when
// the kernel refused (logged by the caller).
bool delete_conntrack_by_mark(const NetnsHandle& ns, std::uint32_t mark);

}  // namespace weft::dataplane::lb::nft
