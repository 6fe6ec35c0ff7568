// The live page's feed: reads the cluster's picture (StateSource) every
// tick, derives events by diffing successive pictures (node joined/down/left,
// task started/failed/rescheduled, backend drained), keeps the recent ones
// in a bounded ring, and pushes the state JSON to server-sent-event streams
// at most once per min_publish_interval, with a heartbeat comment when a
// stream has been quiet for heartbeat_interval.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "observe/cluster_snapshot.h"
#include "observe/http_server.h"

namespace weft::observe {

struct ClusterEvent {
  std::uint64_t seq = 0;  // set by the ring: increasing, so the page can tell new ones
  std::string time;       // RFC 3339
  // "node-joined", "node-down", "node-left", "task-started", "task-failed",
  // "task-rescheduled", "backend-drained"
  std::string kind;
  std::string subject;  // the node's name, the task's id ("redis.1"), the service's name
  std::string detail;   // for people: "on node2", "node1 -> node3", ...
  bool operator==(const ClusterEvent&) const = default;
};
nlohmann::json to_json(const ClusterEvent& event);

// Diffs each snapshot against the one before. The first one is the
// baseline and yields no events (the agent just started: nothing happened
// that it saw). It remembers where each task slot last ran, so a slot that
// vanished with a dead node and comes back elsewhere a few snapshots later
// is a reschedule, not a start.
class EventDeriver {
 public:
  std::vector<ClusterEvent> next(const ClusterSnapshot& snapshot, const std::string& time);
  // The same, keeping `snapshot` itself (not a copy) as the next baseline.
  std::vector<ClusterEvent> next(std::shared_ptr<const ClusterSnapshot> snapshot, const std::string& time);
  // The snapshot the next one is diffed against (null before the first).
  const std::shared_ptr<const ClusterSnapshot>& previous() const { return previous_; }

 private:
  std::shared_ptr<const ClusterSnapshot> previous_;
  std::map<std::string, std::string> last_node_of_slot_;  // "redis.1" -> node
};

// The last `capacity` events, oldest first.
class EventRing {
 public:
  explicit EventRing(std::size_t capacity) : capacity_(capacity) {}
  void push(ClusterEvent event);
  const std::deque<ClusterEvent>& events() const { return events_; }

 private:
  std::size_t capacity_;
  std::uint64_t next_seq_ = 1;
  std::deque<ClusterEvent> events_;
};

// When a change may be published: at once if the last publication is at
// least `min_interval` old, else at the first tick after that (the change
// stays pending, so none is lost and a burst costs one publication).
class PublishGate {
 public:
  explicit PublishGate(std::chrono::steady_clock::duration min_interval) : min_interval_(min_interval) {}
  void changed() { pending_ = true; }
  bool take(std::chrono::steady_clock::time_point now);
  bool pending() const { return pending_; }

 private:
  std::chrono::steady_clock::duration min_interval_;
  bool pending_ = false;
  std::optional<std::chrono::steady_clock::time_point> last_;
};

struct FeedTiming {
  std::chrono::milliseconds min_publish_interval{1000};
  std::chrono::milliseconds heartbeat_interval{15000};
  std::size_t recent_events = 100;
};

// The SSE frame of one state JSON: "event: state\ndata: <json>\n\n".
std::string state_frame(const std::string& state_json);
inline constexpr const char* kHeartbeatFrame = ": heartbeat\n\n";

class EventFeed final : public StateView {
 public:
  explicit EventFeed(StateSource& source, FeedTiming timing = {});

  // Reads the source, derives events, publishes when due, sends heartbeats.
  // `now` is passed in so tests control time; the poller passes the clock.
  // Errors reading the source are left to the caller (the poller logs them).
  void refresh(std::chrono::steady_clock::time_point now);

  // A new stream: it gets the current state at once, then every publication.
  void add_sink(std::shared_ptr<EventSink> sink);
  std::size_t sink_count() const;

  // {...snapshot, "generated_at", "events": [...]}; "{}"-like until the first refresh.
  std::string state_json() const override;

 private:
  void send_to_all(const std::string& frame, std::chrono::steady_clock::time_point now);

  StateSource& source_;
  FeedTiming timing_;
  // Used by refresh() only, which runs on one thread. Its previous() is the
  // last snapshot that changed, which refresh() compares the next read with:
  // one copy held, not a second one here (up to 1 024 services x 256
  // backends under the default limits).
  EventDeriver deriver_;

  mutable std::mutex mutex_;  // guards what follows
  EventRing ring_;
  PublishGate gate_;
  std::string state_json_;
  std::vector<std::shared_ptr<EventSink>> sinks_;
  std::chrono::steady_clock::time_point last_sent_{};
};

// Calls feed.refresh() every `interval` on a thread of its own until stopped.
class FeedPoller {
 public:
  FeedPoller(EventFeed& feed, std::chrono::milliseconds interval);
  ~FeedPoller();  // stop()
  FeedPoller(const FeedPoller&) = delete;
  FeedPoller& operator=(const FeedPoller&) = delete;
  void stop();

 private:
  void run();
  EventFeed& feed_;
  std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace weft::observe
