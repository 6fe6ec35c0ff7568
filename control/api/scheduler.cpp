#include "control/api/scheduler.h"

#include <algorithm>

namespace weft::control::api {

RequestScheduler::RequestScheduler(Limits limits) : limits_(limits) {
  limits_.max_running_network_changes = std::max<std::size_t>(limits_.max_running_network_changes, 1);
  limits_.max_pending = std::max<std::size_t>(limits_.max_pending, 1);
}

bool RequestScheduler::may_start(Workload workload) const {
  switch (workload) {
    case Workload::kImmediate:
    case Workload::kRead:
      return true;
    case Workload::kNetworkChange:
      return !swarm_change_running_ && running_network_changes_ < limits_.max_running_network_changes;
    case Workload::kSwarmChange:
      return !swarm_change_running_ && running_network_changes_ == 0;
  }
  return false;
}

void RequestScheduler::started(Workload workload) {
  if (workload == Workload::kNetworkChange) ++running_network_changes_;
  if (workload == Workload::kSwarmChange) swarm_change_running_ = true;
}

RequestScheduler::Admission RequestScheduler::submit(Workload workload, std::function<void()> start) {
  if (pending_ >= limits_.max_pending) return Admission::kRefused;
  ++pending_;
  const bool is_change = workload == Workload::kNetworkChange || workload == Workload::kSwarmChange;
  // A change behind a waiting one waits too, so a swarm change is not
  // starved by a stream of network changes.
  if (is_change && (!waiting_.empty() || !may_start(workload))) {
    waiting_.emplace_back(workload, std::move(start));
    return Admission::kDeferred;
  }
  started(workload);
  start();
  return Admission::kStarted;
}

void RequestScheduler::finished(Workload workload) {
  if (pending_ > 0) --pending_;
  if (workload == Workload::kNetworkChange && running_network_changes_ > 0) --running_network_changes_;
  if (workload == Workload::kSwarmChange) swarm_change_running_ = false;
  while (!waiting_.empty() && may_start(waiting_.front().first)) {
    auto [next, start] = std::move(waiting_.front());
    waiting_.pop_front();
    started(next);
    start();
  }
}

}  // namespace weft::control::api
