// Docker's event stream (`GET /events`, `docker events`): the events, a bus
// that anything in the agent publishes them to, and what the route reads
// from a request (since, until, filters).
//
// Publishing: call EventBus::publish from any thread. The agent's
// ClusterEventWatcher (event_watcher.h) publishes network create/destroy,
// connect/disconnect and node create/update/remove for the whole cluster;
// other parts (services) publish their own with Type "service".
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace weft::control::api {

// One event in Docker's shape: {"Type", "Action", "Actor": {"ID",
// "Attributes"}, "scope", "time", "timeNano"}.
struct DockerEvent {
  std::string type{};    // "network", "node", "service"
  std::string action{};  // "create", "destroy", "connect", "disconnect", "update", "remove"
  std::string actor_id{};
  std::map<std::string, std::string> attributes{};
  std::string scope = "swarm";  // "local" or "swarm"
  std::int64_t time_nano = 0;   // 0: publish() stamps the current time
};
nlohmann::json event_json(const DockerEvent& event);

// What `GET /events` asked for. Filters follow dockerd: values of one key
// are alternatives, keys must all match.
struct EventQuery {
  std::optional<std::int64_t> since_nano;
  std::optional<std::int64_t> until_nano;
  std::map<std::string, std::set<std::string>> filters{};  // type, event, network, node, service, scope
  bool matches(const DockerEvent& event) const;
};

// The query string of `GET /events` ("since=...&until=...&filters=...");
// throws ApiError(BadRequest) with dockerd-like messages on bad values.
EventQuery parse_event_query(std::string_view query);

// Thread-safe. Keeps the last `history` events for `since`; subscribers are
// called on the publishing thread with the bus locked, so they must only
// hand the event on (post it), never call back into the bus.
class EventBus {
 public:
  using Subscriber = std::function<void(const DockerEvent&)>;
  static constexpr std::size_t kDefaultHistory = 1024;

  explicit EventBus(std::size_t history = kDefaultHistory) : history_limit_(history) {}

  void publish(DockerEvent event);

  // Registers `subscriber` and returns, atomically with it, the remembered
  // events at or after `since_nano` (none when nullopt), so none falls
  // between the backlog and the live ones.
  std::uint64_t subscribe(Subscriber subscriber, std::optional<std::int64_t> since_nano,
                          std::vector<DockerEvent>& backlog);
  void unsubscribe(std::uint64_t id);
  std::size_t subscribers() const;

 private:
  mutable std::mutex mutex_;
  const std::size_t history_limit_;
  std::deque<DockerEvent> history_;
  std::map<std::uint64_t, Subscriber> subscribers_;
  std::uint64_t next_id_ = 1;
  std::int64_t last_time_ = 0;
};

std::int64_t now_nano();

}  // namespace weft::control::api
