// The task supervisor and the cluster, each as the other sees it: the
// cluster replicates task records in its node-scoped `tasks` table, so a
// node's tasks leave every other node's view when it is confirmed dead (and
// their slots move, see placement.h), and come back with it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "control/model/service_model.h"

namespace weft::control::tasks {

// What the supervisor asks of the cluster. Queues work only.
class TaskClusterLink {
 public:
  virtual ~TaskClusterLink() = default;
  virtual void publish_task(const TaskRecord& task) = 0;
  virtual void withdraw_task(const std::string& key) = 0;  // TaskRecord::key()
  // Asks the other Ready weft nodes for their tails of the service's task
  // logs (ClusterTasks::local_logs there, at most max_bytes per task);
  // `done` gets node -> text on the cluster's thread once all answered or
  // `timeout` passed (those that did not answer are missing).
  virtual void request_logs(const std::string& service_id, std::uint64_t max_bytes, std::chrono::milliseconds timeout,
                            std::function<void(std::map<std::string, std::string>)> done) = 0;
};

// What the cluster tells the supervisor (on the cluster's thread).
class ClusterTasks {
 public:
  virtual ~ClusterTasks() = default;
  virtual void attach_cluster(TaskClusterLink* link) = 0;
  virtual void detach_cluster() = 0;
  // This node's task records, published when the node (re)joins.
  virtual std::vector<TaskRecord> local_tasks() = 0;
  // Any node's task record (this node's own come back too: ignore them).
  virtual void apply_task(const TaskRecord& task) = 0;
  virtual void forget_task(const std::string& key) = 0;
  // This node's tails of the service's task logs, for a peer's request
  // (bounded, quick: on the cluster's thread).
  virtual std::string local_logs(const std::string& service_id, std::uint64_t max_bytes) = 0;
};

}  // namespace weft::control::tasks
