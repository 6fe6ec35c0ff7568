// The agent's side of the live page: reads the network manager, the swarm,
// the service manager (with its load balancer's counters) and the tasks
// through the model's interfaces, which are safe to call from any thread,
// and turns them into a ClusterSnapshot.
#pragma once

#include <string>

#include "control/model/model.h"
#include "control/model/service_model.h"
#include "control/model/swarm_model.h"
#include "observe/cluster_snapshot.h"

namespace weft::observe {

struct AgentIdentity {
  std::string node_name;
  std::string advertise_addr;  // shown for this node while it is in no swarm
  std::string version;
};

class AgentStateSource final : public StateSource {
 public:
  // `swarm` and `services` may be null (an agent without them).
  AgentStateSource(AgentIdentity identity, control::NetworkService& networks, control::SwarmService* swarm,
                   control::ServiceApi* services, SnapshotLimits limits = {});
  ClusterSnapshot read() override;

 private:
  AgentIdentity identity_;
  control::NetworkService& networks_;
  control::SwarmService* swarm_;
  control::ServiceApi* services_;
  SnapshotLimits limits_;
};

}  // namespace weft::observe
