#include "observe/event_feed.h"

#include <set>
#include <unordered_map>
#include <utility>

#include <spdlog/spdlog.h>

#include "control/model/ids.h"

namespace weft::observe {

nlohmann::json to_json(const ClusterEvent& event) {
  return {{"seq", event.seq},
          {"time", event.time},
          {"kind", event.kind},
          {"subject", event.subject},
          {"detail", event.detail}};
}

// --- EventDeriver -------------------------------------------------------------

namespace {

const SnapshotNode* find_node(const ClusterSnapshot& snapshot, const std::string& name) {
  for (const auto& node : snapshot.nodes)
    if (node.name == name) return &node;
  return nullptr;
}

// Tasks by "<id>@<node>": a snapshot holds up to thousands, diffed every tick.
std::unordered_map<std::string, const SnapshotTask*> index_tasks(const ClusterSnapshot& snapshot) {
  std::unordered_map<std::string, const SnapshotTask*> index;
  index.reserve(snapshot.tasks.size());
  for (const auto& task : snapshot.tasks) index.emplace(task.id + "@" + task.node, &task);
  return index;
}

const SnapshotTask* find(const std::unordered_map<std::string, const SnapshotTask*>& index, const std::string& id,
                         const std::string& node) {
  const auto it = index.find(id + "@" + node);
  return it == index.end() ? nullptr : it->second;
}

}  // namespace

std::vector<ClusterEvent> EventDeriver::next(const ClusterSnapshot& snapshot, const std::string& time) {
  return next(std::make_shared<const ClusterSnapshot>(snapshot), time);
}

std::vector<ClusterEvent> EventDeriver::next(std::shared_ptr<const ClusterSnapshot> shared,
                                             const std::string& time) {
  const ClusterSnapshot& snapshot = *shared;
  std::vector<ClusterEvent> events;
  auto add = [&](std::string kind, std::string subject, std::string detail) {
    events.push_back({.seq = 0, .time = time, .kind = std::move(kind), .subject = std::move(subject),
                      .detail = std::move(detail)});
  };

  if (previous_) {
    const ClusterSnapshot& before = *previous_;
    for (const auto& node : snapshot.nodes) {
      const SnapshotNode* old = find_node(before, node.name);
      if (old != nullptr && old->state == node.state) continue;
      if (node.state == "Ready") add("node-joined", node.name, node.address);
      else if (old == nullptr) continue;  // first seen already down or gone: nothing happened here
      else if (node.state == "Down") add("node-down", node.name, node.address);
      else if (node.state == "Left") add("node-left", node.name, node.address);
    }

    // Tasks: by slot id and node, since two nodes may hold a slot for a while.
    const auto before_tasks = index_tasks(before), now_tasks = index_tasks(snapshot);
    for (const auto& task : snapshot.tasks) {
      const SnapshotTask* old = find(before_tasks, task.id, task.node);
      if (old == nullptr) {
        const auto last = last_node_of_slot_.find(task.id);
        if (last != last_node_of_slot_.end() && last->second != task.node &&
            find(now_tasks, task.id, last->second) == nullptr) {
          add("task-rescheduled", task.id, last->second + " -> " + task.node);
          continue;
        }
        if (task.state == "running") add("task-started", task.id, "on " + task.node);
        else if (task.state == "failed") add("task-failed", task.id, "on " + task.node + ": " + task.error);
        continue;
      }
      if (old->state == task.state) continue;
      if (task.state == "running") add("task-started", task.id, "on " + task.node);
      else if (task.state == "failed") add("task-failed", task.id, "on " + task.node + ": " + task.error);
    }

    for (const auto& service : snapshot.services) {
      const SnapshotService* old_service = nullptr;
      for (const auto& s : before.services)
        if (s.name == service.name) old_service = &s;
      if (old_service == nullptr) continue;
      for (const auto& backend : service.backends) {
        if (backend.state != "draining") continue;
        for (const auto& old : old_service->backends)
          if (old.endpoint == backend.endpoint && old.state != "draining")
            add("backend-drained", service.name, backend.name + " " + backend.ip + " on " + backend.node);
      }
    }
  }

  // Where each slot last ran; forgotten when its service is gone or scaled below it.
  std::map<std::string, const SnapshotService*> services;
  for (const auto& service : snapshot.services) services[service.name] = &service;
  for (const auto& task : snapshot.tasks) last_node_of_slot_[task.id] = task.node;
  std::erase_if(last_node_of_slot_, [&](const auto& entry) {
    const auto dot = entry.first.rfind('.');
    const auto service = services.find(entry.first.substr(0, dot));
    if (service == services.end()) return true;
    try {
      return std::stoull(entry.first.substr(dot + 1)) > service->second->replicas;
    } catch (const std::exception&) {
      return true;
    }
  });
  previous_ = std::move(shared);
  return events;
}

// --- EventRing, PublishGate ---------------------------------------------------

void EventRing::push(ClusterEvent event) {
  event.seq = next_seq_++;
  events_.push_back(std::move(event));
  while (events_.size() > capacity_) events_.pop_front();
}

bool PublishGate::take(std::chrono::steady_clock::time_point now) {
  if (!pending_) return false;
  if (last_ && now - *last_ < min_interval_) return false;
  pending_ = false;
  last_ = now;
  return true;
}

// --- EventFeed ----------------------------------------------------------------

std::string state_frame(const std::string& state_json) { return "event: state\ndata: " + state_json + "\n\n"; }

EventFeed::EventFeed(StateSource& source, FeedTiming timing)
    : source_(source), timing_(timing), ring_(timing.recent_events), gate_(timing.min_publish_interval) {}

void EventFeed::refresh(std::chrono::steady_clock::time_point now) {
  auto read = std::make_shared<const ClusterSnapshot>(source_.read());
  const ClusterSnapshot& snapshot = *read;
  const bool changed = !deriver_.previous() || *deriver_.previous() != snapshot;
  std::vector<ClusterEvent> events;
  if (changed) events = deriver_.next(read, control::now_rfc3339());

  std::lock_guard lock(mutex_);
  if (changed) {
    for (auto& event : events) ring_.push(std::move(event));
    nlohmann::json json = to_json(snapshot);
    json["generated_at"] = control::now_rfc3339();
    auto& list = json["events"] = nlohmann::json::array();
    for (const auto& event : ring_.events()) list.push_back(to_json(event));
    state_json_ = json.dump();
    // dump() grows the string by doubling: up to twice the JSON held between
    // ticks otherwise (1.4 MB of JSON at the default limits).
    state_json_.shrink_to_fit();
    gate_.changed();
  }
  if (gate_.take(now)) {
    send_to_all(state_frame(state_json_), now);
  } else if (now - last_sent_ >= timing_.heartbeat_interval) {
    send_to_all(kHeartbeatFrame, now);
  }
}

void EventFeed::send_to_all(const std::string& frame, std::chrono::steady_clock::time_point now) {
  last_sent_ = now;
  std::erase_if(sinks_, [&](const std::shared_ptr<EventSink>& sink) { return !sink->send(frame); });
}

void EventFeed::add_sink(std::shared_ptr<EventSink> sink) {
  std::lock_guard lock(mutex_);
  if (!state_json_.empty() && !sink->send(state_frame(state_json_))) return;
  sinks_.push_back(std::move(sink));
}

std::size_t EventFeed::sink_count() const {
  std::lock_guard lock(mutex_);
  return sinks_.size();
}

std::string EventFeed::state_json() const {
  std::lock_guard lock(mutex_);
  return state_json_.empty() ? std::string(R"({"nodes":[],"networks":[],"services":[],"tasks":[],"events":[]})")
                             : state_json_;
}

// --- FeedPoller ---------------------------------------------------------------

FeedPoller::FeedPoller(EventFeed& feed, std::chrono::milliseconds interval)
    : feed_(feed), interval_(interval), thread_([this] { run(); }) {}

FeedPoller::~FeedPoller() { stop(); }

void FeedPoller::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void FeedPoller::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    try {
      feed_.refresh(std::chrono::steady_clock::now());
    } catch (const std::exception& e) {
      // A manager busy or failing now: the next tick tries again; say it once a minute at most.
      static std::chrono::steady_clock::time_point last_logged{};
      const auto now = std::chrono::steady_clock::now();
      if (now - last_logged > std::chrono::minutes(1)) {
        spdlog::warn("live page: reading the cluster's state failed: {}", e.what());
        last_logged = now;
      }
    }
    lock.lock();
    wake_.wait_for(lock, interval_, [this] { return stopping_; });
  }
}

}  // namespace weft::observe
