#include "control/api/event_watcher.h"

#include <algorithm>
#include <exception>
#include <iterator>
#include <optional>

#include <spdlog/spdlog.h>

#include "control/model/packed_endpoint.h"

namespace weft::control::api {

ClusterEventWatcher::ClusterEventWatcher(EventBus& bus, NetworkService& networks, SwarmService* swarm,
                                         std::chrono::milliseconds period, std::atomic<bool>* swarm_active,
                                         ServiceApi* services)
    : bus_(bus),
      networks_(networks),
      swarm_(swarm),
      period_(period),
      swarm_active_(swarm_active),
      services_(services) {}

ClusterEventWatcher::~ClusterEventWatcher() { stop(); }

void ClusterEventWatcher::start() {
  thread_ = std::thread([this] {
    using Clock = std::chrono::steady_clock;
    std::unique_lock lock(mutex_);
    std::optional<Clock::time_point> last_full;
    while (!stopping_) {
      const auto now = Clock::now();
      const bool full = changed_ || !last_full || now - *last_full >= kResync;
      changed_ = false;
      lock.unlock();
      try {
        if (full)
          poll();
        else
          poll_nodes();
      } catch (const std::exception& e) {
        spdlog::debug("events: listing failed: {}", e.what());
      }
      lock.lock();
      if (full) last_full = now;
      wake_.wait_for(lock, period_, [this] { return stopping_ || changed_; });
    }
  });
}

void ClusterEventWatcher::changed() {
  {
    std::lock_guard lock(mutex_);
    changed_ = true;
  }
  wake_.notify_all();
}

void ClusterEventWatcher::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ClusterEventWatcher::poll() {
  std::lock_guard lock(poll_mutex_);
  diff_networks();
  diff_nodes();
  diff_services();
  first_ = false;
}

void ClusterEventWatcher::diff_services() {
  if (services_ == nullptr) return;
  for (ServiceEvent& e : service_diff_.next(services_->list_services())) {
    bus_.publish(DockerEvent{.type = "service",
                             .action = std::move(e.action),
                             .actor_id = std::move(e.service_id),
                             .attributes = std::move(e.attributes)});
  }
}

void ClusterEventWatcher::poll_nodes() {
  std::lock_guard lock(poll_mutex_);
  if (!first_) diff_nodes();
}

void ClusterEventWatcher::poll_networks() {
  std::lock_guard lock(poll_mutex_);
  // Before the first full comparison there is no baseline to compare with.
  if (!first_) diff_networks();
}

void ClusterEventWatcher::diff_networks() {
  std::map<std::string, NetworkSeen> networks;
  for (const Network& n : networks_.list_networks()) networks[n.id] = {n.name, n.driver};
  // The network service's shared snapshot, not a copy: an unchanged version
  // costs nothing, and what is kept between polls is that same snapshot.
  std::shared_ptr<const EndpointSnapshot> endpoints = networks_.shared_endpoints();
  const bool endpoints_same = endpoints_seen_ && endpoints->version != 0 &&
                              endpoints->version == endpoints_seen_->version;

  auto network_event = [&](const std::string& action, const std::string& id, const NetworkSeen& n) {
    DockerEvent event{.type = "network", .action = action, .actor_id = id,
                      .attributes = {{"name", n.name}, {"type", n.driver}}};
    return event;
  };
  auto endpoint_event = [&](const std::string& action, const PackedEndpoint& e,
                            const std::map<std::string, NetworkSeen>& names) {
    const auto& network_id = e.network_id();
    auto event = network_event(action, network_id, names.count(network_id) ? names.at(network_id)
                                                                            : NetworkSeen{"", "overlay"});
    event.attributes["container"] = e.id();  // Docker names the container; weft's endpoint stands in
    if (!e.name().empty()) event.attributes["endpoint"] = std::string(e.name());
    return event;
  };
  using Ref = const PackedEndpoint*;
  auto less = [](Ref a, Ref b) { return a->compare_id(*b) < 0; };
  // Endpoints by id (the first of an id, as a map of them kept it), in id
  // order as the events always came.
  auto by_id = [&](const EndpointSnapshot& snapshot) {
    std::vector<Ref> sorted;
    sorted.reserve(snapshot.endpoints.size());
    for (const auto& e : snapshot.endpoints) sorted.push_back(e.get());
    std::stable_sort(sorted.begin(), sorted.end(), less);
    sorted.erase(std::unique(sorted.begin(), sorted.end(), [](Ref a, Ref b) { return a->compare_id(*b) == 0; }),
                 sorted.end());
    return sorted;
  };

  if (!first_) {
    for (const auto& [id, n] : networks)
      if (!networks_seen_.count(id)) bus_.publish(network_event("create", id, n));
    if (!endpoints_same) {
      const auto now = by_id(*endpoints);
      const auto before = endpoints_seen_ ? by_id(*endpoints_seen_) : std::vector<Ref>{};
      std::vector<Ref> connected, disconnected;
      std::set_difference(now.begin(), now.end(), before.begin(), before.end(), std::back_inserter(connected), less);
      std::set_difference(before.begin(), before.end(), now.begin(), now.end(), std::back_inserter(disconnected),
                          less);
      for (Ref e : connected) bus_.publish(endpoint_event("connect", *e, networks));
      for (Ref e : disconnected) bus_.publish(endpoint_event("disconnect", *e, networks_seen_));
    }
    for (const auto& [id, n] : networks_seen_)
      if (!networks.count(id)) bus_.publish(network_event("destroy", id, n));
  }
  networks_seen_ = std::move(networks);
  endpoints_seen_ = std::move(endpoints);
}

void ClusterEventWatcher::diff_nodes() {
  std::map<std::string, NodeSeen> nodes;
  if (swarm_) {
    try {
      for (const NodeInfo& n : swarm_->list_nodes()) nodes[n.id] = {n.hostname, n.status, n.availability};
      if (swarm_active_) *swarm_active_ = true;
    } catch (const ApiError&) {
      // Not in a swarm: no nodes.
      if (swarm_active_) *swarm_active_ = false;
    }
  }
  auto node_event = [](const std::string& action, const std::string& id, const NodeSeen& n) {
    return DockerEvent{.type = "node", .action = action, .actor_id = id, .attributes = {{"name", n.hostname}}};
  };
  if (!first_) {
    for (const auto& [id, n] : nodes) {
      auto seen = nodes_seen_.find(id);
      if (seen == nodes_seen_.end()) {
        bus_.publish(node_event("create", id, n));
      } else if (seen->second.state != n.state || seen->second.availability != n.availability) {
        auto event = node_event("update", id, n);
        if (seen->second.state != n.state) {
          event.attributes["state.old"] = seen->second.state;
          event.attributes["state.new"] = n.state;
        }
        if (seen->second.availability != n.availability) {
          event.attributes["availability.old"] = seen->second.availability;
          event.attributes["availability.new"] = n.availability;
        }
        bus_.publish(event);
      }
    }
    for (const auto& [id, n] : nodes_seen_)
      if (!nodes.count(id)) bus_.publish(node_event("remove", id, n));
  }
  nodes_seen_ = std::move(nodes);
}

}  // namespace weft::control::api
