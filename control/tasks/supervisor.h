// Runs the task slots that fall to this node (placement.h): a task is the
// service's command in a network namespace of its own, /run/netns/
// weft-<node>-<service id, 12>-<slot>, attached to the service's networks as
// a backend (NetworkService::connect with the service), started through
// `ip netns exec` so it gets a private mount namespace where /etc/resolv.conf
// is the agent's (/etc/netns/NAME/resolv.conf, 127.0.0.11). Its stdout and
// stderr go to <state-dir>/tasks/logs/<service id>.<slot>.log, rotated (one
// old copy, .log.1) when a process starts with it past 16 MiB. `service
// logs` shows this node's tails and asks the other Ready nodes for theirs
// over the cluster (each line prefixed "name.slot.<service id>@node | ").
//
// - Durable intent: a task is recorded in <state-dir>/tasks/state.json before
//   its namespace is made or its process forked, and its pid and start time
//   (from /proc) once it runs. A restarted agent adopts the tasks whose
//   process still runs (same pid, same start time); the others are torn down
//   (endpoints detached, namespace removed) and started again if still due.
// - Tasks run in a session of their own: the agent stopping, even kill -9,
//   does not stop them.
// - A task that exits is started again per the service's restart condition
//   after a delay of 5 s that doubles with each quick failure, up to 60 s.
//   For tests only, the environment variable WEFT_TASK_RESTART_DELAY_MS
//   (100 to 60000) sets the first delay instead of 5 s, so a test can watch
//   the delays grow without waiting minutes.
// - A node that does not see a majority of the nodes it saw Ready lately
//   (a partition's smaller side) starts no task, and nothing is started for
//   `settle` after the Ready nodes change (start_gate.h): on a heal, each
//   slot's older copy on the majority side stays (placement.h) and the
//   cut-off node's stale copies stop.
// - A slot that is not this node's any more (scaled down, placed elsewhere)
//   is drained first: its endpoints are detached with a short drain, the
//   process gets SIGTERM when the drain ends, SIGKILL 5 s later. A removed
//   service's tasks stop at once, first thing each tick (nothing asked of
//   the cluster before).
// - A stop is of every process of the task (task_process.h): its command's
//   process group, told by pid + start time or, when that does not match,
//   by the task's namespace, and every other process in that namespace. The
//   agent's own children are waited for until collected (a zombie left
//   behind would be the agent's for good). The namespace is removed only
//   once none is left; one that outlives SIGKILL keeps the task "stopping",
//   tried again every 10 s.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "control/model/model.h"
#include "control/services/service_manager.h"
#include "control/tasks/task_cluster.h"

namespace weft::control::tasks {

struct SupervisorConfig {
  std::string node_name;
  std::filesystem::path state_dir;  // tasks/ goes here
  std::chrono::milliseconds tick{500};
  // New tasks wait this long after start, so the cluster's tables (where
  // peers' tasks run) are in before this node places anything: a returning
  // node must not start slots that moved while it was away.
  std::chrono::milliseconds settle{std::chrono::seconds(5)};
  // A node counts toward the majority a node needs to start tasks
  // (start_gate.h) for this long after it was last Ready.
  std::chrono::milliseconds member_memory{std::chrono::minutes(10)};
  std::chrono::seconds drain{2};
  // The first restart delay; it doubles with each quick failure, up to
  // max_restart_delay (Swarm's 5 s back-off).
  std::chrono::milliseconds restart_delay{std::chrono::seconds(5)};
  std::chrono::milliseconds max_restart_delay{std::chrono::seconds(60)};
  std::filesystem::path netns_dir = "/run/netns";
  // With the agent's DNS on: how long a new task waits after its attach for
  // /etc/netns/NAME/resolv.conf (written by the DNS agent when it serves the
  // namespace), so `ip netns exec` finds it to bind-mount. 0: no wait.
  std::chrono::milliseconds resolv_conf_wait{0};
  std::filesystem::path netns_etc_dir = "/etc/netns";
};

// A Ready node as placement sees it: Swarm's availability, "active",
// "pause" (keeps its tasks, gets no new ones) or "drain" (its tasks move).
struct ReadyNode {
  std::string name;
  std::string availability = "active";
  bool suspect = false;  // Ready but failing probes: the picture is not settled (start_gate.h)
};

class Supervisor final : public ClusterTasks, public services::TaskView {
 public:
  // `ready_nodes`: the Ready weft nodes of the cluster with their
  // availability (this node alone outside a swarm). All references must
  // outlive this object.
  Supervisor(SupervisorConfig config, services::ServiceManager& services, NetworkService& networks,
             std::function<std::vector<ReadyNode>()> ready_nodes);
  ~Supervisor() override;
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Loads the state file, adopts running tasks, tears down the rest. After
  // the network manager's and the service manager's reconcile.
  void reconcile();
  // Starts the supervising thread; stop() ends it (tasks keep running).
  void start();
  void stop();

  // ClusterTasks
  void attach_cluster(TaskClusterLink* link) override;
  void detach_cluster() override;
  std::vector<TaskRecord> local_tasks() override;
  void apply_task(const TaskRecord& task) override;
  void forget_task(const std::string& key) override;
  std::string local_logs(const std::string& service_id, std::uint64_t max_bytes) override;

  // services::TaskView
  std::vector<TaskRecord> tasks() override;
  std::string logs(const std::string& service_id, std::uint64_t max_bytes) override;
  std::vector<TaskLog> logs_by_slot(const std::string& service_id, std::uint64_t max_bytes) override;

 private:
  std::map<std::string, std::string> remote_logs(const std::string& service_id, std::uint64_t max_bytes);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control::tasks
