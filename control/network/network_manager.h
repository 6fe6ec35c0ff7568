// The agent's networks and endpoints on this node: validates requests,
// allocates addresses, realises them in the kernel through dataplane/, keeps
// the state file, and reconciles the kernel with it at start.
#pragma once

#include <filesystem>
#include <functional>
#include <string_view>
#include <memory>
#include <mutex>

#include "control/network/agent_config.h"
#include "control/network/ipam.h"
#include "control/network/service_directory.h"
#include "control/model/model.h"
#include "control/model/packed_endpoint.h"

namespace weft::control::network {

// Address spaces whose ranges nodes own in a cluster (control/cluster/).
inline constexpr const char* kPoolSpace = "pool";
inline constexpr const char* kVniSpace = "vni";
// The VXLAN network identifiers networks get (VNIs ride in ranges of Ipv4
// numbers like addresses do): 4096 up to the largest 24-bit one, as Docker.
inline constexpr ipam::Range kVniRange{ipam::Ipv4{4096}, ipam::Ipv4{(1u << 24) - 1}};
// A network's own addresses: the space "net:<network id>".
inline constexpr std::string_view kNetworkSpacePrefix = "net:";
std::string network_space(const std::string& network_id);

// What the network manager needs from the cluster layer. Every call only
// queues work: a network change never waits on the cluster.
class ClusterLink {
 public:
  virtual ~ClusterLink() = default;
  virtual void publish_network(const Network& network) = 0;
  virtual void withdraw_network(const std::string& network_id) = 0;
  virtual void publish_endpoint(const Endpoint& endpoint) = 0;
  virtual void withdraw_endpoint(const std::string& endpoint_id) = 0;
  // Takes a whole space nobody holds yet (a new network's addresses).
  virtual void claim_space(const std::string& space, const ipam::Range& whole) = 0;
  // Asks a peer to donate part of `space`; the answer arrives as set_owned().
  virtual void request_range(const std::string& space, std::uint32_t unit) = 0;
};

// An address of a network held for something that is not an endpoint (a
// service's virtual IP): recorded in the state file with its owner before
// the owner hears of it, so a crash in between cannot leak it unnoticed.
struct AddressReservation {
  std::string network_id;
  ipam::Ipv4 ip{};
  std::string owner;  // e.g. "service:<id>"
};

// What this node's load balancer needs of its networks' kernel side.
struct NetworkNamespaceInfo {
  std::string network_id;
  std::filesystem::path netns;  // the network's namespace file
  std::string bridge;
  ipam::Cidr subnet{};
  ipam::Ipv4 gateway{};
  // This node's load-balancer address in the network (see
  // set_node_lb_addresses); zero: none (yet).
  ipam::Ipv4 node_lb_address{};
};

// A node's own address in a network, for the nftables load balancer's SNAT
// (node_lb_addresses.cpp): reserved with the owner "node-lb:<node>" and
// published as an endpoint record with an id derived from the node and the
// network, so every node can tell such records from attached endpoints.
inline constexpr std::string_view kNodeLbOwnerPrefix = "node-lb:";
std::string node_lb_owner(const std::string& node_name);
std::string node_lb_endpoint_id(const std::string& node_name, const std::string& network_id);
bool is_node_lb_endpoint(const Endpoint& endpoint);

struct EndpointVeth {
  std::string endpoint_id;
  std::string network_id;
  std::string host_ifname;  // in the network's namespace
};
struct LocalTopology {
  std::vector<NetworkNamespaceInfo> networks;
  std::vector<EndpointVeth> veths;  // of the endpoints attached here
};

// The longest `endpoint detach --drain`: a day.
inline constexpr std::uint32_t kMaxDrainSeconds = 86400;

class NetworkManager final : public NetworkService {
 public:
  explicit NetworkManager(AgentConfig config);
  ~NetworkManager() override;
  NetworkManager(const NetworkManager&) = delete;
  NetworkManager& operator=(const NetworkManager&) = delete;

  // Loads the state file and makes the kernel match it: adopts what exists,
  // re-creates what is missing, removes what is stale, rolls back attaches a
  // crash cut short, deletes veths no record accounts for and temp files of
  // interrupted state writes. Must run before the API serves (it does: see
  // tools/weftd.cpp), so no address still held in the kernel is handed out.
  // A state file it cannot write (full disk) is logged, not fatal.
  void reconcile();

  Network create_network(const NetworkSpec& spec) override;
  std::vector<Network> list_networks() override;
  Network get_network(const std::string& name_or_id) override;
  void remove_network(const std::string& name_or_id) override;
  Endpoint connect(const AttachRequest& request) override;
  void disconnect(const DetachRequest& request) override;
  std::vector<Endpoint> list_endpoints() override;
  // list_endpoints(), built once per change (coalesced: when first asked
  // for after a burst of changes) and shared by every reader.
  std::shared_ptr<const EndpointSnapshot> shared_endpoints() override;
  // The endpoints that are service backends, local and remote, unsorted,
  // with what the load balancer uses of them: id, network, service,
  // address and prefix, MAC, node, backend state and drain time (no names,
  // namespace, interface or aliases). Cheaper than list_endpoints(): the
  // load balancer's view is built from it on every apply.
  std::vector<Endpoint> list_backends();
  // The endpoints, local and remote, that are backends of one service,
  // whole (as list_endpoints() has them), unsorted: what `service inspect`
  // shows, without copying every other endpoint.
  std::vector<Endpoint> backends_of(const std::string& service_id);

  // --- services (control/services) ---
  // Where `attach --service` looks services up; set before the API serves.
  // Without one, every --service is "not found".
  void set_service_directory(ServiceDirectory* directory);
  // Called, without locks held, after any endpoint (local or remote) or its
  // backend state changed; set before the API serves.
  void on_endpoints_changed(std::function<void()> listener);
  // Called, without locks held, after a network was created or removed,
  // here or in the cluster; set before the API serves.
  void on_networks_changed(std::function<void()> listener);
  // Called on the thread of an attach or detach (or the start of a drain),
  // once it is done and without locks held, before the call returns: a
  // listener may wait there a little. The embedded DNS does, so an attach
  // returns once its namespace is served and a detach once its names are
  // gone on this node. Set before the API serves.
  void after_local_attach_or_detach(std::function<void()> listener);
  // Takes an address of the network (name, id or prefix) from this node's
  // ranges for `owner`, durably (fsync'ed) before it returns; ApiError when
  // none is free (after asking peers) or the state file cannot be written.
  ipam::Ipv4 reserve_address(const std::string& network, const std::string& owner);
  // Gives a reserved address back. Never throws: an unknown reservation is
  // ignored; one that cannot be dropped from the state file stays reserved
  // (logged) until a start finds its owner gone.
  void release_address(const std::string& network_id, ipam::Ipv4 ip);
  std::vector<AddressReservation> reservations();
  LocalTopology local_topology();
  // Whether this node keeps an address of its own in every network it has
  // (on when the load balancer is the nftables fallback, which SNATs
  // balanced flows to it so replies of backends on other nodes come back
  // here; like Docker's lb-<network> endpoint). On: each network gets one
  // from this node's ranges (the highest free one; when there is none yet,
  // once a peer donated some), reserved durably before anything uses it,
  // published as an endpoint record ("lb-<node>", no namespace) and listed
  // by list_endpoints(); it goes with its network. Off: every such address
  // is released. Call once at start, after the cluster started (a node that
  // resumes a swarm gets its ranges then), and before the load balancer
  // programs anything.
  void set_node_lb_addresses(bool on);
  // Drains whose deadline is armed, for tests.
  std::size_t pending_drains();

  // --- cluster side (called by control/cluster on its own thread) ---
  // Switches to cluster mode: numbers come only from ranges this node owns.
  void attach_cluster(ClusterLink* link);
  void detach_cluster();  // back to a single node after leaving the swarm
  bool has_networks();
  std::vector<Network> local_networks();   // created on this node
  // Attached on this node, and this node's load-balancer addresses (no
  // netns; see set_node_lb_addresses): what the cluster publishes as ours.
  std::vector<Endpoint> local_endpoints();
  void apply_remote_network(const Network& network);
  void forget_remote_network(const std::string& network_id);
  // `vtep`: the underlay address of the node hosting the endpoint.
  void apply_remote_endpoint(const Endpoint& endpoint, ipam::Ipv4 vtep);
  void forget_remote_endpoint(const std::string& endpoint_id);
  void set_owned(const std::string& space, const ipam::RangeSet& owned);
  // Gives part of this node's numbers in `space` to a peer with no gap in
  // which an allocation could take one of them: `give` gets the numbers
  // owned here and not handed out, picks the gift (making it durable) and
  // returns what this node owns afterwards, in force before the next
  // allocation.
  void give_away(const std::string& space, const std::function<ipam::RangeSet(const ipam::RangeSet& free)>& give);
  std::string advertise_addr() const;
  ipam::Cidr address_pool() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control::network
