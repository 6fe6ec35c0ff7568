// The service manager and the cluster, each as the other sees it: the
// cluster replicates services in its `services` table (not node-scoped: a
// service outlives the node that created it, as networks do).
#pragma once

#include <string>
#include <vector>

#include "control/model/service_model.h"

namespace weft::control::services {

// What the service manager asks of the cluster. Queues work only: a service
// change never waits on the cluster.
class ServiceClusterLink {
 public:
  virtual ~ServiceClusterLink() = default;
  virtual void publish_service(const Service& service) = 0;
  // Also for a service another node created (`service rm` works anywhere).
  virtual void withdraw_service(const std::string& service_id) = 0;
};

// What the cluster tells the service manager (on the cluster's thread).
class ClusterServices {
 public:
  virtual ~ClusterServices() = default;
  virtual void attach_cluster(ServiceClusterLink* link) = 0;
  // Left the swarm: services of other nodes are forgotten.
  virtual void detach_cluster() = 0;
  // Created on this node.
  virtual std::vector<Service> local_services() = 0;
  virtual void apply_remote_service(const Service& service) = 0;
  // The service was removed in the cluster (a tombstone): forgotten if it is
  // another node's, removed for good (virtual IPs released) if it is ours.
  virtual void forget_service(const std::string& service_id) = 0;
};

}  // namespace weft::control::services
