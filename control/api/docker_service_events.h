// Docker's service events (`docker events`: Type "service", Action create,
// update, remove) from successive listings of the services: the replicated
// service table is the same on every node, so each agent reports the
// cluster's changes, whichever node made them. It only computes events; the
// agent hands them to its event bus (docker-core's EventBus, Type
// "service", Actor ID = the service id).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "control/model/service_model.h"

namespace weft::control::api {

struct ServiceEvent {
  std::string action;  // "create", "update", "remove"
  std::string service_id;
  // Docker's: "name"; an update of the replica count adds "replicas.old"
  // and "replicas.new".
  std::map<std::string, std::string> attributes;
};

// Not thread-safe: one caller (the agent's event watcher) at a time.
class ServiceEventDiff {
 public:
  // The events since the previous listing; the first listing is the
  // baseline and yields none (the services existed before anyone watched).
  std::vector<ServiceEvent> next(const std::vector<ServiceDetail>& services);

 private:
  struct Seen {
    std::string name;
    std::uint64_t version = 0;
    std::uint64_t replicas = 0;
  };
  bool first_ = true;
  std::map<std::string, Seen> seen_;  // by service id
};

}  // namespace weft::control::api
