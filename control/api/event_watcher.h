// Turns changes of the cluster's networks, endpoints and nodes into Docker
// events on an EventBus, whichever node made them: it compares what the
// services list every `period` with the last listing (the tables are the
// same on every node, so every agent reports the cluster's changes). The
// first listing is the baseline and reports nothing.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "control/api/events.h"
#include "control/model/model.h"
#include "control/model/swarm_model.h"

namespace weft::control::api {

class ClusterEventWatcher {
 public:
  // `swarm` may be null. All must outlive the watcher.
  // `swarm_active`, when given, is kept up to date with the swarm's state.
  ClusterEventWatcher(EventBus& bus, NetworkService& networks, SwarmService* swarm,
                      std::chrono::milliseconds period = std::chrono::milliseconds(500),
                      std::atomic<bool>* swarm_active = nullptr);
  ~ClusterEventWatcher();
  ClusterEventWatcher(const ClusterEventWatcher&) = delete;
  ClusterEventWatcher& operator=(const ClusterEventWatcher&) = delete;

  void start();
  void stop();  // idempotent
  // One comparison, on the caller's thread (tests; start() runs it periodically).
  void poll();

 private:
  struct NetworkSeen {
    std::string name;
    std::string driver;
  };
  struct EndpointSeen {
    std::string network_id;
    std::string name;
  };
  struct NodeSeen {
    std::string hostname;
    std::string state;
  };

  void diff_networks();
  void diff_nodes();

  EventBus& bus_;
  NetworkService& networks_;
  SwarmService* swarm_;
  const std::chrono::milliseconds period_;
  std::atomic<bool>* swarm_active_;
  bool first_ = true;
  std::map<std::string, NetworkSeen> networks_seen_;
  std::map<std::string, EndpointSeen> endpoints_seen_;
  std::map<std::string, NodeSeen> nodes_seen_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace weft::control::api
