// Which API requests may run now: admission for the API's worker pool
// (server.h). Pure bookkeeping, no threads: the server calls it only on
// its io thread, so it needs no lock and tests drive it directly.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <utility>

#include "control/api/routes.h"

namespace weft::control::api {

class RequestScheduler {
 public:
  struct Limits {
    // Network changes running at once (at least 1). Keep it below the
    // number of workers, so a worker is always left for reads however slow
    // the changes are.
    std::size_t max_running_network_changes = 1;
    // Requests admitted and not yet finished (running or waiting); beyond
    // it a request is refused, which the server answers with 503.
    std::size_t max_pending = 64;
  };

  enum class Admission { kStarted, kDeferred, kRefused };

  explicit RequestScheduler(Limits limits);

  // Admits one request of `workload` (not kImmediate: those need no worker).
  // `start` hands the request to a worker; it is called now (kStarted), or
  // later from finished() (kDeferred), or never (kRefused). Every started
  // request must be reported back with finished(workload).
  //
  // Reads start at once, next to anything. Network changes run side by side
  // up to the limit, but not while a swarm change runs. A
  // swarm change runs alone among the changes, as it did when the API had
  // one thread: joining refuses a node with networks, leaving forgets remote
  // networks, and the cluster's join/leave/init paths are not written to
  // overlap each other. Waiting changes start in arrival order.
  Admission submit(Workload workload, std::function<void()> start);

  // A started request is done; starts the waiting ones that may run now.
  void finished(Workload workload);

  // Drops the waiting requests without starting them (the server stops).
  void clear() {
    pending_ -= waiting_.size();
    waiting_.clear();
  }

  std::size_t pending() const { return pending_; }
  std::size_t running_changes() const { return running_network_changes_ + (swarm_change_running_ ? 1 : 0); }
  std::size_t waiting() const { return waiting_.size(); }

 private:
  bool may_start(Workload workload) const;
  void started(Workload workload);

  Limits limits_;
  std::size_t pending_ = 0;
  std::size_t running_network_changes_ = 0;
  bool swarm_change_running_ = false;
  std::deque<std::pair<Workload, std::function<void()>>> waiting_;
};

}  // namespace weft::control::api
