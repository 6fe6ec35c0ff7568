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
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "control/api/docker_service_events.h"
#include "control/api/events.h"
#include "control/model/model.h"
#include "control/model/service_model.h"
#include "control/model/swarm_model.h"

namespace weft::control::api {

class ClusterEventWatcher {
 public:
  // `swarm` may be null. All must outlive the watcher.
  // `swarm_active`, when given, is kept up to date with the swarm's state.
  // `services`, when given, adds Docker's service events (create, update,
  // remove) from the replicated service table.
  ClusterEventWatcher(EventBus& bus, NetworkService& networks, SwarmService* swarm,
                      std::chrono::milliseconds period = std::chrono::milliseconds(500),
                      std::atomic<bool>* swarm_active = nullptr, ServiceApi* services = nullptr);
  ~ClusterEventWatcher();
  ClusterEventWatcher(const ClusterEventWatcher&) = delete;
  ClusterEventWatcher& operator=(const ClusterEventWatcher&) = delete;

  void start();
  void stop();  // idempotent
  // One comparison, on the caller's thread; safe from any thread. The agent
  // compares the endpoints after each local attach or detach
  // (poll_networks), so even an endpoint that comes and goes between two
  // periodic comparisons has its events.
  void poll();
  // The networks and endpoints part of poll() only: it never waits for the
  // cluster, so it may run on any thread that changes endpoints.
  void poll_networks();
  // Something changed (a network, an endpoint, a service, here or remote):
  // compare everything on the watcher's thread. Never blocks. Between
  // changes the thread compares only the nodes, every period (membership is
  // not signalled), and everything once every `resync` as a safety net:
  // listing every endpoint and service each period cost a large cluster
  // (100 000 endpoints) most of a core while nothing changed.
  void changed();
  // How often the thread compares everything without being told of a change.
  // Each change is compared at once, as before, so a remote endpoint that
  // comes and goes quickly still has both its events.
  static constexpr std::chrono::seconds kResync{30};

 private:
  struct NetworkSeen {
    std::string name;
    std::string driver;
  };
  struct NodeSeen {
    std::string hostname;
    std::string state;
    std::string availability;
  };

  void poll_nodes();
  void diff_networks();
  void diff_nodes();
  void diff_services();

  EventBus& bus_;
  NetworkService& networks_;
  SwarmService* swarm_;
  const std::chrono::milliseconds period_;
  std::atomic<bool>* swarm_active_;
  ServiceApi* services_;
  ServiceEventDiff service_diff_;
  bool first_ = true;
  std::map<std::string, NetworkSeen> networks_seen_;
  std::shared_ptr<const EndpointSnapshot> endpoints_seen_;  // shared with the network service
  std::map<std::string, NodeSeen> nodes_seen_;

  std::mutex poll_mutex_;  // one comparison at a time; guards the *_seen_ maps
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool changed_ = false;
  std::thread thread_;
};

}  // namespace weft::control::api
