// The agent's membership in a weft cluster: runs the gossip (memberlist with
// serf compatibility) on a thread of its own, keeps the replicated tables,
// feeds remote networks, endpoints and address ranges to the network
// manager, and publishes the local ones.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "control/gossip/memberlist.h"
#include "control/network/network_manager.h"
#include "control/model/swarm_model.h"
#include "control/services/service_cluster.h"
#include "control/tables/replicated_tables.h"
#include "control/tasks/task_cluster.h"

namespace weft::control::cluster {

struct ClusterConfig {
  std::string node_name;
  std::string advertise_addr;  // underlay IPv4; also the gossip address peers use
  std::string state_dir;
  std::string bind_addr = "0.0.0.0";
  std::uint16_t bind_port = 7946;
  std::vector<std::string> join;  // --join ADDR:PORT, tried at start
  std::string key_file;           // --key-file: the gossip key, base64
  std::chrono::seconds tombstone_lifetime = std::chrono::minutes(30);  // endpoints, tasks
  // Networks, services, address ranges: a node away longer than this brings
  // back, with its stale copy, what was deleted while it was gone.
  std::chrono::seconds cluster_tombstone_lifetime = tables::ReplicatedTables::kDefaultClusterTombstoneLifetime;
  // memberlist's timings (probe, gossip, push/pull, suspicion...); name,
  // addresses and key are filled in from the fields above.
  gossip::Config gossip_timings;
};

// What the cluster needs of the node's network manager, so that it can run
// without a kernel behind it (unit tests). Called on the gossip thread.
class NodeNetworks {
 public:
  virtual ~NodeNetworks() = default;
  virtual void attach_cluster(network::ClusterLink* link) = 0;
  virtual void detach_cluster() = 0;
  virtual bool has_networks() = 0;
  virtual std::vector<Network> local_networks() = 0;
  virtual std::vector<Endpoint> local_endpoints() = 0;
  virtual void apply_remote_network(const Network& network) = 0;
  virtual void forget_remote_network(const std::string& network_id) = 0;
  virtual void apply_remote_endpoint(const Endpoint& endpoint, network::ipam::Ipv4 vtep) = 0;
  virtual void forget_remote_endpoint(const std::string& endpoint_id) = 0;
  virtual void set_owned(const std::string& space, const network::ipam::RangeSet& owned) = 0;
  // See NetworkManager::give_away.
  virtual void give_away(const std::string& space,
                         const std::function<network::ipam::RangeSet(const network::ipam::RangeSet& free)>& give) = 0;
  virtual network::ipam::Cidr address_pool() = 0;
};

// What weftd's /metrics reads of the cluster (Cluster::metrics()).
struct ClusterMetrics {
  bool active = false;                              // in a swarm
  std::map<std::string, std::size_t> nodes;         // by status: "ready", "down", ...
  std::map<std::string, std::size_t> table_entries; // live entries by table
  std::uint64_t table_sync_bytes = 0;
};

class Cluster final : public SwarmService,
                      public network::ClusterLink,
                      public services::ServiceClusterLink,
                      public tasks::TaskClusterLink {
 public:
  // The agent's: `networks` must outlive this object.
  Cluster(ClusterConfig config, network::NetworkManager& networks);
  Cluster(ClusterConfig config, NodeNetworks& networks);
  ~Cluster() override;
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Replicates services through `services` (the agent's ServiceManager),
  // which must outlive this object; call before start(). Without it the
  // services table is still carried, just not acted on here.
  void set_services(services::ClusterServices* services);
  // The same for task records (the agent's task supervisor); before start().
  void set_tasks(tasks::ClusterTasks* tasks);

  // Starts the gossip thread and, when this node was in a swarm before (or
  // was given --key-file), resumes it: rejoins known peers.
  void start();
  void stop();

  // SwarmService: called from the API's worker threads, several at once
  // (see control/api/server.h); each does its work on the gossip thread
  // (State::call), a join waits for peers outside it.
  SwarmInitResult init(const SwarmInitRequest& request) override;
  void join(const SwarmJoinRequest& request) override;
  void leave(const SwarmLeaveRequest& request) override;
  SwarmInfo info() override;
  std::vector<NodeInfo> list_nodes() override;
  void set_node_availability(const std::string& id_or_name, const std::string& availability) override;
  NodeInfo get_node(const std::string& id_or_name) override;
  // Counts for /metrics, taken on the gossip thread; any thread may call.
  ClusterMetrics metrics();
  void remove_node(const std::string& id_or_name) override;

  // ClusterLink (called by the network manager; queue work only)
  void publish_network(const Network& network) override;
  void withdraw_network(const std::string& network_id) override;
  void publish_endpoint(const Endpoint& endpoint) override;
  void withdraw_endpoint(const std::string& endpoint_id) override;
  void claim_space(const std::string& space, const network::ipam::Range& whole) override;
  void request_range(const std::string& space, std::uint32_t unit) override;

  // ServiceClusterLink (called by the service manager; queue work only)
  void publish_service(const Service& service) override;
  void withdraw_service(const std::string& service_id) override;

  // TaskClusterLink (called by the task supervisor; queue work only)
  void publish_task(const TaskRecord& task) override;
  void withdraw_task(const std::string& key) override;
  void request_logs(const std::string& service_id, std::uint64_t max_bytes, std::chrono::milliseconds timeout,
                    std::function<void(std::map<std::string, std::string>)> done) override;

 private:
  void drain_before_leave(std::chrono::seconds drain);
  struct State;
  std::unique_ptr<NodeNetworks> adapter_;  // around the agent's NetworkManager
  std::unique_ptr<State> state_;
};

}  // namespace weft::control::cluster
