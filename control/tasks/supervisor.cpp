#include "control/tasks/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "control/model/ids.h"
#include "control/model/record_json.h"
#include "control/network/state_file.h"
#include "control/tasks/placement.h"
#include "control/tasks/start_gate.h"
#include "control/tasks/task_process.h"
#include "dataplane/netns.h"

namespace weft::control::tasks {
namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kStateVersion = 1;
// How long `service logs` waits for the other nodes' task logs.
constexpr auto kRemoteLogsTimeout = std::chrono::milliseconds(1500);
// The test knob for SupervisorConfig::restart_delay (supervisor.h).
constexpr const char* kRestartDelayEnv = "WEFT_TASK_RESTART_DELAY_MS";
constexpr long kMinRestartDelayMs = 100;
constexpr long kMaxRestartDelayMs = 60000;
// A task that ran this long before it exited starts its back-off afresh.
constexpr auto kHealthyRun = std::chrono::seconds(60);
constexpr auto kKillGrace = std::chrono::seconds(5);
// After SIGKILL: how long a stop waits for the processes to go.
constexpr auto kKillWait = std::chrono::seconds(1);
// A task with processes left after SIGKILL (stuck in the kernel) keeps its
// namespace and record; its stop is tried again after this long.
constexpr auto kStopRetry = std::chrono::seconds(10);
// A task's log is rotated (one old copy kept) when its process starts with
// the log past this size, so a task that keeps failing cannot fill the disk.
constexpr std::uintmax_t kMaxLogBytes = 16u << 20;

// Fixed width, so that start times compare as text (placement.h).
std::string now_precise() {
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(now);
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(now - secs).count();
  const std::time_t t = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[96];
  std::snprintf(out, sizeof out, "%s.%09lldZ", buf, static_cast<long long>(nanos));
  return out;
}

std::string ip_program() {
  for (const char* path : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
    if (::access(path, X_OK) == 0) return path;
  return "ip";
}

// Runs a program and waits for it; its exit status (-1 when it could not run).
int run_program(const std::vector<std::string>& argv) {
  // Prepared before fork(): the child of a threaded process must not allocate.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
    }
    ::close_range(3, ~0U, 0);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct LocalTask {
  TaskRecord record;
  std::string service_name;
  std::string netns_name;
  std::vector<std::string> network_ids;  // attached
  std::uint64_t start_ticks = 0;
  bool child = false;  // forked by this agent: waitpid tells its status
  int quick_failures = 0;
  Clock::time_point started{};
  Clock::time_point next_start{};  // while "restarting"
  Clock::time_point stop_at{};     // while "stopping"
  bool stopping = false;
};

}  // namespace

struct Supervisor::Impl {
  Impl(SupervisorConfig c, services::ServiceManager& s, NetworkService& n, std::function<std::vector<ReadyNode>()> r)
      : config(std::move(c)), services(s), networks(n), ready_nodes(std::move(r)) {}

  fs::path dir() const { return config.state_dir / "tasks"; }
  fs::path state_path() const { return dir() / "state.json"; }
  fs::path log_path(const std::string& service_id, std::uint64_t slot) const {
    return dir() / "logs" / (service_id + "." + std::to_string(slot) + ".log");
  }
  fs::path netns_path(const std::string& name) const { return config.netns_dir / name; }

  // Called with `data` held.
  void persist() {
    json state = {{"version", kStateVersion}, {"tasks", json::array()}};
    for (const auto& [key, t] : local) {
      json j = task_record(t.record);
      j["service_name"] = t.service_name;
      j["netns_name"] = t.netns_name;
      j["network_ids"] = t.network_ids;
      j["start_ticks"] = t.start_ticks;
      j["stopping"] = t.stopping;
      state["tasks"].push_back(j);
    }
    network::write_file_atomically(state_path(), state.dump(2) + "\n");
  }

  void publish(const LocalTask& t) {
    if (cluster) cluster->publish_task(t.record);
  }

  // A task's kernel objects go: endpoints detached (no drain), namespace removed.
  void teardown(const LocalTask& t) {
    for (const auto& network_id : t.network_ids) {
      try {
        networks.disconnect(DetachRequest{.network = network_id, .netns = t.netns_name, .drain_seconds = {}});
      } catch (const std::exception& e) {
        spdlog::debug("tasks: detach {} from {}: {}", t.netns_name, short_id(network_id), e.what());
      }
    }
    try {
      dataplane::remove_pinned_netns(netns_path(t.netns_name));
    } catch (const std::exception& e) {
      spdlog::warn("tasks: cannot remove namespace {}: {}", t.netns_name, e.what());
    }
  }

  // The task's process as task_process.h identifies it: pid, start time
  // and the namespace it runs in.
  TaskProcess process_of(const LocalTask& t) const {
    return TaskProcess{.pid = static_cast<pid_t>(t.record.pid),
                       .start_ticks = t.start_ticks,
                       .child = t.child,
                       .netns = netns_id_of(netns_path(t.netns_name))};
  }

  // Stops the task's processes: its command's (verified by start time or by
  // its namespace) and every other one in its namespace. True when none is
  // left, so the namespace may go: one removed with a process still in it
  // would leave that process running unseen.
  bool stop_processes(const LocalTask& t) {
    const auto outcome = stop_task_processes(processes, process_of(t), kKillGrace, kKillWait);
    if (outcome.leader == LeaderState::unverified)
      spdlog::warn("tasks: {}.{}: pid {} does not have the start time recorded for it ({}) but runs in the task's "
                   "namespace {}: stopped it as the task's",
                   t.service_name, t.record.slot, t.record.pid, t.start_ticks, t.netns_name);
    if (outcome.others > 0)
      spdlog::info("tasks: {}.{}: stopped {} more process(es) in {}", t.service_name, t.record.slot, outcome.others,
                   t.netns_name);
    if (outcome.left.empty()) return true;
    spdlog::warn("tasks: {}.{}: process(es) {} still run in {} after SIGKILL: the namespace stays, trying again in {} s",
                 t.service_name, t.record.slot, fmt::join(outcome.left, " "), t.netns_name, kStopRetry.count());
    return false;
  }

  // The process of a task whose namespace is attached; true when it runs.
  bool spawn(LocalTask& t, const Service& s) {
    fs::create_directories(dir() / "logs");
    const auto log = log_path(s.id, t.record.slot);
    std::error_code size_error;
    if (fs::file_size(log, size_error) > kMaxLogBytes && !size_error) {
      fs::rename(log, fs::path(log.string() + ".1"), size_error);
    }
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log_fd < 0) {
      t.record.error = "cannot open log " + log.string() + ": " + std::strerror(errno);
      return false;
    }
    std::vector<std::string> argv{ip_program(), "netns", "exec", t.netns_name};
    argv.insert(argv.end(), s.command.begin(), s.command.end());
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log_fd);
      t.record.error = std::string("fork: ") + std::strerror(errno);
      return false;
    }
    if (pid == 0) {
      // Its own session and process group: outlives the agent, and stops
      // with all its children.
      ::setsid();
      const int null = ::open("/dev/null", O_RDONLY);
      if (null >= 0) ::dup2(null, 0);
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      // Nothing of the agent's (its API socket, its gossip port) may stay
      // open in a process that outlives it.
      ::close_range(3, ~0U, 0);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(log_fd);
    t.record.pid = pid;
    t.child = true;
    // The child may not have exec'ed yet, but its start time is set at fork.
    const auto started = processes.facts(pid);
    t.start_ticks = started ? started->start_ticks : 0;
    if (!started)
      spdlog::warn("tasks: {}.{}: cannot read the start time of pid {}: it is told from others by its namespace",
                   s.name, t.record.slot, pid);
    t.record.state = "running";
    t.record.started_at = now_precise();
    t.started = Clock::now();
    return true;
  }

  // Makes a task for a slot: recorded, namespace, endpoints, process.
  void start_task(const Service& s, std::uint64_t slot) {
    LocalTask t;
    t.record = TaskRecord{.service_id = s.id,
                          .slot = slot,
                          .node = config.node_name,
                          .endpoint_id = {},
                          .state = "starting",
                          .started_at = now_precise(),
                          .error = {},
                          .pid = 0,
                          .netns = {}};
    t.service_name = s.name;
    t.netns_name = "weft-" + config.node_name + "-" + short_id(s.id) + "-" + std::to_string(slot);
    t.record.netns = netns_path(t.netns_name).string();
    t.network_ids = s.network_ids;  // recorded before attaching: a crash leaves nothing unnamed
    const std::string key = t.record.key();
    {
      std::lock_guard lock(data);
      local[key] = t;
      try {
        persist();
      } catch (const std::exception& e) {
        local.erase(key);
        spdlog::error("tasks: cannot record task {}.{}: {}", s.name, slot, e.what());
        return;
      }
    }
    std::string error;
    try {
      if (dataplane::is_pinned_netns(netns_path(t.netns_name))) dataplane::remove_pinned_netns(netns_path(t.netns_name));
      // `ip netns add` so /run/netns is set up as ip(8) expects it.
      if (run_program({ip_program(), "netns", "add", t.netns_name}) != 0)
        throw std::runtime_error("ip netns add " + t.netns_name + " failed");
      for (const auto& network_id : s.network_ids) {
        const Endpoint e = networks.connect(AttachRequest{.network = network_id,
                                                          .netns = t.netns_name,
                                                          .name = t.netns_name,
                                                          .ip = {},
                                                          .service = s.id});
        if (t.record.endpoint_id.empty()) t.record.endpoint_id = e.id;
      }
      const auto resolv_conf = config.netns_etc_dir / t.netns_name / "resolv.conf";
      for (const auto until = Clock::now() + config.resolv_conf_wait;
           Clock::now() < until && !fs::exists(resolv_conf);)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (!spawn(t, s)) error = t.record.error;
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!error.empty()) teardown(t);
    std::lock_guard lock(data);
    if (!error.empty()) {
      spdlog::error("tasks: cannot start task {}.{}: {}", s.name, slot, error);
      local.erase(key);
      try {
        persist();
      } catch (const std::exception&) {
      }
      next_attempt[key] = Clock::now() + config.restart_delay;
      return;
    }
    local[key] = t;
    try {
      persist();
    } catch (const std::exception& e) {
      spdlog::error("tasks: cannot record task {}.{}'s pid: {}", s.name, slot, e.what());
    }
    spdlog::info("tasks: started {}.{} (pid {}) in {}", s.name, slot, t.record.pid, t.netns_name);
    publish(t);
  }

  // Ends a task: drained (`drain`) or at once; its record withdrawn.
  void finish(const std::string& key, bool drain) {
    LocalTask t;
    bool drain_now = false;
    {
      std::lock_guard lock(data);
      auto it = local.find(key);
      if (it == local.end()) return;
      if (drain && !it->second.stopping && it->second.record.state == "running") {
        it->second.stopping = true;
        it->second.stop_at = Clock::now() + config.drain;
        it->second.record.state = "stopping";
        try {
          persist();
        } catch (const std::exception&) {
        }
        publish(it->second);
        spdlog::info("tasks: draining {}.{}", it->second.service_name, it->second.record.slot);
        t = it->second;
        drain_now = true;
      }
    }
    if (drain_now) {
      // Outside the lock: a detach tells listeners, which may ask for tasks.
      for (const auto& network_id : t.network_ids) {
        try {
          networks.disconnect(DetachRequest{.network = network_id,
                                            .netns = t.netns_name,
                                            .drain_seconds = static_cast<std::uint32_t>(config.drain.count())});
        } catch (const std::exception& e) {
          spdlog::debug("tasks: drain {}: {}", t.netns_name, e.what());
        }
      }
      return;
    }
    {
      std::lock_guard lock(data);
      auto it = local.find(key);
      if (it == local.end()) return;
      if (it->second.stopping && Clock::now() < it->second.stop_at) return;
      t = it->second;
    }
    if (!stop_processes(t)) {
      std::lock_guard lock(data);
      auto it = local.find(key);
      if (it == local.end()) return;
      it->second.stopping = true;
      it->second.stop_at = Clock::now() + kStopRetry;
      it->second.record.state = "stopping";
      try {
        persist();
      } catch (const std::exception&) {
      }
      publish(it->second);
      return;
    }
    teardown(t);
    {
      std::lock_guard lock(data);
      local.erase(key);
      try {
        persist();
      } catch (const std::exception& e) {
        spdlog::error("tasks: cannot record that task {} stopped: {}", key, e.what());
      }
      if (cluster) cluster->withdraw_task(key);
    }
    spdlog::info("tasks: stopped {}.{}", t.service_name, t.record.slot);
  }

  // A running task's process ended? Then restart it per the condition.
  void check_exit(const std::string& key, const Service& s) {
    std::optional<LocalTask> ended;
    check_exit_locked(key, s, ended);
    // Outside the lock (a detach tells listeners, which may ask for tasks):
    // a Complete or Failed task is no backend any more, and its namespace
    // goes; its record stays, so `service ps` shows it and it is not started
    // again. What its command left running in the namespace stops first.
    if (ended && stop_processes(*ended)) teardown(*ended);
  }

  void check_exit_locked(const std::string& key, const Service& s, std::optional<LocalTask>& ended) {
    std::lock_guard lock(data);
    auto it = local.find(key);
    if (it == local.end()) return;
    LocalTask& t = it->second;
    const auto now = Clock::now();
    if (t.record.state == "running") {
      const pid_t pid = static_cast<pid_t>(t.record.pid);
      int status = 0;
      bool exited = false;
      std::optional<int> code;
      if (t.child) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) {
          exited = true;
          if (WIFEXITED(status)) code = WEXITSTATUS(status);
          else if (WIFSIGNALED(status)) code = 128 + WTERMSIG(status);
        } else if (r < 0 && errno == ECHILD) {
          exited = leader_state(processes, process_of(t)) == LeaderState::gone;
        }
      } else {
        exited = leader_state(processes, process_of(t)) == LeaderState::gone;
      }
      if (!exited) return;
      const bool failed = !code || *code != 0;
      t.record.error = code ? (*code == 0 ? "" : "task: non-zero exit (" + std::to_string(*code) + ")")
                            : "task: exited while the agent was away (status unknown)";
      if (now - t.started >= kHealthyRun) t.quick_failures = 0;
      const bool again = s.restart_condition == RestartCondition::any ||
                         (s.restart_condition == RestartCondition::on_failure && failed);
      t.record.pid = 0;
      t.start_ticks = 0;
      if (!again) {
        t.record.state = failed ? "failed" : "complete";
        ended = t;
      } else {
        auto delay = config.restart_delay * (1 << std::min(t.quick_failures, 4));
        if (delay > config.max_restart_delay) delay = config.max_restart_delay;
        ++t.quick_failures;
        t.next_start = now + delay;
        t.record.state = "restarting";
      }
      spdlog::info("tasks: {}.{} exited ({}); {}", t.service_name, t.record.slot,
                   code ? std::to_string(*code) : "status unknown", t.record.state);
      try {
        persist();
      } catch (const std::exception&) {
      }
      publish(t);
    } else if (t.record.state == "restarting" && now >= t.next_start) {
      if (spawn(t, s)) {
        spdlog::info("tasks: restarted {}.{} (pid {})", t.service_name, t.record.slot, t.record.pid);
      } else {
        t.next_start = now + config.max_restart_delay;
      }
      try {
        persist();
      } catch (const std::exception&) {
      }
      publish(t);
    }
  }

  void tick() {
    std::map<std::string, Service> by_id;
    for (auto& s : services.services())
      if (!s.command.empty()) by_id.emplace(s.id, std::move(s));
    // A removed service's tasks stop first, at once: that needs nothing of
    // the cluster, whose node list (below) comes from the gossip thread and
    // may be slow to come when that thread is busy.
    std::vector<std::string> removed;
    {
      std::lock_guard lock(data);
      for (const auto& [key, t] : local)
        if (!by_id.count(t.record.service_id)) removed.push_back(key);
    }
    for (const auto& key : removed) finish(key, false);

    const auto now = Clock::now();
    std::vector<std::string> ready;      // for the quorum: drained nodes count
    std::vector<std::string> eligible;   // for placement: not drained
    std::vector<std::string> paused;
    bool in_swarm = true;
    bool some_suspect = false;
    try {
      for (auto& node : ready_nodes()) {
        some_suspect = some_suspect || node.suspect;
        if (node.availability == "pause") paused.push_back(node.name);
        if (node.availability != "drain") eligible.push_back(node.name);
        ready.push_back(std::move(node.name));
      }
    } catch (const std::exception&) {
      // Not in a swarm: this node alone places every slot.
      in_swarm = false;
      ready.clear();
      eligible.clear();
      paused.clear();
    }
    if (std::find(ready.begin(), ready.end(), config.node_name) == ready.end()) {
      ready.push_back(config.node_name);
      eligible.push_back(config.node_name);
    }
    const bool may_start = track_quorum(ready, some_suspect, in_swarm, now);

    std::set<std::string> keep;  // local task keys that stay
    std::vector<std::pair<const Service*, std::uint64_t>> to_start;
    {
      std::lock_guard lock(data);
      for (const auto& [id, s] : by_id) {
        PlacementInput input{
            .service_id = id, .replicas = s.replicas, .ready_nodes = eligible, .paused_nodes = paused, .holders = {}};
        for (const auto& [key, r] : remote)
          if (r.service_id == id) input.holders[r.slot].push_back(SlotHolder{r.node, r.started_at});
        for (const auto& [key, t] : local)
          if (t.record.service_id == id && !t.stopping)
            input.holders[t.record.slot].push_back(SlotHolder{t.record.node, t.record.started_at});
        const auto placement = place(input);
        for (const auto& [slot, node] : placement) {
          if (node != config.node_name) continue;
          const std::string key = task_key(id, slot, node);
          if (local.count(key) && !local[key].stopping) {
            keep.insert(key);
          } else if (!local.count(key) && now >= settle_until && may_start) {
            auto wait = next_attempt.find(key);
            if (wait == next_attempt.end() || now >= wait->second) to_start.emplace_back(&s, slot);
          }
        }
      }
    }
    std::vector<std::pair<std::string, bool>> to_finish;  // key, drain
    {
      std::lock_guard lock(data);
      for (const auto& [key, t] : local)
        if (!keep.count(key)) to_finish.emplace_back(key, by_id.count(t.record.service_id) != 0);
    }
    for (const auto& [key, drain] : to_finish) finish(key, drain);
    for (const auto& key : keep) check_exit(key, by_id.at(local_service(key)));
    for (const auto& [s, slot] : to_start) start_task(*s, slot);
  }

  // StartGate (start_gate.h), logging when the majority comes or goes.
  bool track_quorum(const std::vector<std::string>& ready, bool some_suspect, bool in_swarm, Clock::time_point now) {
    if (!in_swarm) {
      gate.reset();
      return true;
    }
    const std::set<std::string> ready_set(ready.begin(), ready.end());
    const bool had = gate.has_majority();
    const bool may = gate.observe(ready_set, now, some_suspect);
    if (gate.has_majority() != had) {
      if (gate.has_majority())
        spdlog::info("tasks: {} of the {} nodes seen lately are Ready: starting tasks again", ready_set.size(),
                     gate.remembered());
      else
        spdlog::warn("tasks: only {} of the {} nodes seen lately are Ready, no majority: starting no tasks "
                     "(this node's keep running)",
                     ready_set.size(), gate.remembered());
    }
    return may;
  }

  std::string local_service(const std::string& key) {
    std::lock_guard lock(data);
    return local.at(key).record.service_id;
  }

  void load_and_adopt() {
    std::lock_guard lock(data);
    local.clear();
    auto text = network::read_file(state_path());
    if (!text) return;
    std::vector<LocalTask> loaded;
    try {
      const json state = json::parse(*text);  // named: a temporary would die before the loop
      for (const auto& j : state.at("tasks")) {
        LocalTask t;
        t.record = task_from_record(j);
        t.service_name = j.value("service_name", "");
        t.netns_name = j.at("netns_name").get<std::string>();
        t.network_ids = j.value("network_ids", std::vector<std::string>{});
        t.start_ticks = j.value("start_ticks", std::uint64_t{0});
        t.stopping = j.value("stopping", false);
        loaded.push_back(std::move(t));
      }
    } catch (const std::exception& e) {
      throw std::runtime_error("state file " + state_path().string() + " is corrupt: " + e.what());
    }
    std::size_t adopted = 0, cleaned = 0;
    for (auto& t : loaded) {
      const bool alive = t.record.state == "running" && t.record.pid > 0 &&
                         leader_state(processes, process_of(t)) == LeaderState::verified;
      if (alive && !t.stopping) {
        t.child = false;
        t.started = Clock::now();
        local[t.record.key()] = t;
        ++adopted;
        continue;
      }
      t.child = false;
      if ((t.record.state == "complete" || t.record.state == "failed") && !t.stopping) {
        // Ended for good (its restart condition said so): it stays ended.
        if (stop_processes(t)) teardown(t);
        local[t.record.key()] = t;
        continue;
      }
      // Half made (a crash before the pid was recorded), exited, or being
      // stopped: its processes stopped (by start time, or by namespace when
      // that does not match), then torn down; the loop starts it again if it
      // is still due. One whose processes outlive SIGKILL stays, stopping.
      if (!stop_processes(t)) {
        t.stopping = true;
        t.stop_at = Clock::now() + kStopRetry;
        t.record.state = "stopping";
        local[t.record.key()] = t;
        continue;
      }
      teardown(t);
      ++cleaned;
    }
    persist();
    spdlog::info("tasks: adopted {} running tasks, cleaned up {}", adopted, cleaned);
  }

  // The last `max_bytes` of a file; `cut` when it starts past the beginning.
  std::string tail(const fs::path& path, std::uint64_t max_bytes, bool& cut) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    in.seekg(0, std::ios::end);
    const auto size = static_cast<std::uint64_t>(in.tellg());
    const auto from = size > max_bytes ? size - max_bytes : 0;
    cut = from > 0;
    in.seekg(static_cast<std::streamoff>(from));
    std::string out(size - from, '\0');
    in.read(out.data(), static_cast<std::streamsize>(out.size()));
    return out;
  }

  SupervisorConfig config;
  ProcessTable& processes = system_process_table();
  services::ServiceManager& services;
  NetworkService& networks;
  std::function<std::vector<ReadyNode>()> ready_nodes;

  std::mutex data;
  std::map<std::string, LocalTask> local;    // by TaskRecord::key()
  std::map<std::string, TaskRecord> remote;  // other nodes' records
  std::map<std::string, Clock::time_point> next_attempt;  // failed starts
  TaskClusterLink* cluster = nullptr;
  Clock::time_point settle_until{};
  StartGate gate{config.member_memory, config.settle};

  std::mutex run_mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::thread thread;
};

Supervisor::Supervisor(SupervisorConfig config, services::ServiceManager& services, NetworkService& networks,
                       std::function<std::vector<ReadyNode>()> ready_nodes)
    : impl_(std::make_unique<Impl>(std::move(config), services, networks, std::move(ready_nodes))) {
  if (const char* text = std::getenv(kRestartDelayEnv)) {
    char* end = nullptr;
    const long ms = std::strtol(text, &end, 10);
    if (end != text && *end == '\0' && ms >= kMinRestartDelayMs && ms <= kMaxRestartDelayMs) {
      impl_->config.restart_delay = std::chrono::milliseconds(ms);
      spdlog::warn("tasks: first restart delay {} ms ({}, meant for tests)", ms, kRestartDelayEnv);
    } else {
      spdlog::warn("tasks: ignoring {}={:.20}: not a number of ms from {} to {}", kRestartDelayEnv, text,
                   kMinRestartDelayMs, kMaxRestartDelayMs);
    }
  }
}

Supervisor::~Supervisor() { stop(); }

void Supervisor::reconcile() { impl_->load_and_adopt(); }

void Supervisor::start() {
  impl_->settle_until = Clock::now() + impl_->config.settle;
  impl_->thread = std::thread([impl = impl_.get()] {
    std::unique_lock lock(impl->run_mutex);
    while (!impl->stopping) {
      lock.unlock();
      try {
        impl->tick();
      } catch (const std::exception& e) {
        spdlog::error("tasks: {}", e.what());
      }
      lock.lock();
      impl->wake.wait_for(lock, impl->config.tick, [impl] { return impl->stopping; });
    }
  });
}

void Supervisor::stop() {
  {
    std::lock_guard lock(impl_->run_mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void Supervisor::attach_cluster(TaskClusterLink* link) {
  std::lock_guard lock(impl_->data);
  impl_->cluster = link;
}

void Supervisor::detach_cluster() {
  std::lock_guard lock(impl_->data);
  impl_->cluster = nullptr;
  impl_->remote.clear();
}

std::vector<TaskRecord> Supervisor::local_tasks() {
  std::lock_guard lock(impl_->data);
  std::vector<TaskRecord> out;
  for (const auto& [key, t] : impl_->local) out.push_back(t.record);
  return out;
}

void Supervisor::apply_task(const TaskRecord& task) {
  if (task.node == impl_->config.node_name) return;
  std::lock_guard lock(impl_->data);
  impl_->remote[task.key()] = task;
}

void Supervisor::forget_task(const std::string& key) {
  std::lock_guard lock(impl_->data);
  impl_->remote.erase(key);
}

std::vector<TaskRecord> Supervisor::tasks() {
  std::lock_guard lock(impl_->data);
  std::vector<TaskRecord> out;
  for (const auto& [key, t] : impl_->local) out.push_back(t.record);
  for (const auto& [key, r] : impl_->remote) out.push_back(r);
  return out;
}

// Each line prefixed as Docker does ("redis.2.<service id, 12>@node1 | "),
// so lines of several tasks (and of several nodes, merged by a client) tell
// whose they are. A tail that starts inside a line drops that partial line.
std::string Supervisor::local_logs(const std::string& service_id, std::uint64_t max_bytes) {
  std::string service_name;
  {
    std::lock_guard lock(impl_->data);
    for (const auto& [key, t] : impl_->local)
      if (t.record.service_id == service_id && !t.service_name.empty()) service_name = t.service_name;
  }
  if (service_name.empty()) {
    try {
      if (const auto s = impl_->services.find(service_id)) service_name = s->name;
    } catch (const std::exception&) {
      // Named by its id below.
    }
  }
  if (service_name.empty()) service_name = short_id(service_id);
  std::vector<std::pair<std::uint64_t, fs::path>> files;  // by slot
  std::error_code ec;
  const std::string prefix = service_id + ".";
  for (const auto& entry : fs::directory_iterator(impl_->dir() / "logs", ec)) {
    const auto name = entry.path().filename().string();
    if (!name.starts_with(prefix) || !name.ends_with(".log")) continue;
    const std::string slot = name.substr(prefix.size(), name.size() - prefix.size() - 4);
    if (slot.empty() || slot.size() > 19 || slot.find_first_not_of("0123456789") != std::string::npos) continue;
    files.emplace_back(std::stoull(slot), entry.path());
  }
  std::sort(files.begin(), files.end());
  std::string out;
  for (const auto& [slot, path] : files) {
    const std::string who = service_name + "." + std::to_string(slot) + "." + short_id(service_id) + "@" +
                            impl_->config.node_name + " | ";
    bool cut = false;
    const std::string text = impl_->tail(path, max_bytes, cut);
    std::size_t pos = 0;
    if (cut) {
      const auto nl = text.find('\n');
      pos = nl == std::string::npos ? text.size() : nl + 1;
    }
    while (pos < text.size()) {
      const auto nl = text.find('\n', pos);
      const auto end = nl == std::string::npos ? text.size() : nl + 1;
      out += who;
      out.append(text, pos, end - pos);
      pos = end;
    }
  }
  return out;
}

// The other Ready nodes' task logs of the service, by node, each as
// local_logs() formats them there; a node that does not answer in time is
// left out.
std::map<std::string, std::string> Supervisor::remote_logs(const std::string& service_id, std::uint64_t max_bytes) {
  TaskClusterLink* link = nullptr;
  {
    std::lock_guard lock(impl_->data);
    link = impl_->cluster;
  }
  if (!link) return {};
  auto answer = std::make_shared<std::promise<std::map<std::string, std::string>>>();
  auto got = answer->get_future();
  link->request_logs(service_id, max_bytes, kRemoteLogsTimeout,
                     [answer](std::map<std::string, std::string> texts) { answer->set_value(std::move(texts)); });
  // Bounded even if the cluster goes away without answering.
  if (got.wait_for(kRemoteLogsTimeout + std::chrono::seconds(1)) != std::future_status::ready) return {};
  return got.get();
}

// This node's task logs, then the other Ready nodes'.
std::string Supervisor::logs(const std::string& service_id, std::uint64_t max_bytes) {
  std::string out = local_logs(service_id, max_bytes);
  for (const auto& [node, text] : remote_logs(service_id, max_bytes)) out += text;
  return out;
}

std::vector<TaskLog> Supervisor::logs_by_slot(const std::string& service_id, std::uint64_t max_bytes) {
  std::vector<TaskLog> logs;
  std::error_code ec;
  const std::string prefix = service_id + ".";
  for (const auto& entry : fs::directory_iterator(impl_->dir() / "logs", ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix) || !name.ends_with(".log")) continue;
    const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - 4);
    std::uint64_t slot = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), slot);
    if (digits.empty() || error != std::errc{} || end != digits.data() + digits.size()) continue;
    bool cut = false;  // the older part beyond max_bytes is left out, as docker service logs --tail does
    logs.push_back(TaskLog{.slot = slot, .text = impl_->tail(entry.path(), max_bytes, cut)});
  }
  // The other nodes' lines, "NAME.SLOT.ID@NODE | text" (local_logs' form
  // there): back to their slot's log without the prefix. Names may hold
  // dots, so the slot is read backwards from the '@'.
  for (const auto& [node, text] : remote_logs(service_id, max_bytes)) {
    std::map<std::uint64_t, std::string> by_slot;
    std::size_t pos = 0;
    while (pos < text.size()) {
      const auto nl = text.find('\n', pos);
      const auto end = nl == std::string::npos ? text.size() : nl + 1;
      const std::string_view line(text.data() + pos, end - pos);
      pos = end;
      const auto bar = line.find(" | ");
      if (bar == std::string_view::npos) continue;
      const std::string_view who = line.substr(0, bar);
      const auto at = who.rfind('@');
      const auto id_dot = at == std::string_view::npos ? std::string_view::npos : who.rfind('.', at);
      const auto slot_dot = id_dot == std::string_view::npos || id_dot == 0 ? std::string_view::npos
                                                                            : who.rfind('.', id_dot - 1);
      if (slot_dot == std::string_view::npos) continue;
      const std::string_view digits = who.substr(slot_dot + 1, id_dot - slot_dot - 1);
      std::uint64_t slot = 0;
      const auto [stop, error] = std::from_chars(digits.data(), digits.data() + digits.size(), slot);
      if (digits.empty() || error != std::errc{} || stop != digits.data() + digits.size()) continue;
      by_slot[slot].append(line.substr(bar + 3));
    }
    for (auto& [slot, lines] : by_slot) {
      const auto same = std::find_if(logs.begin(), logs.end(), [&](const TaskLog& l) { return l.slot == slot; });
      if (same != logs.end()) {
        same->text += lines;  // the slot moved: its earlier log here, its later one there
      } else {
        logs.push_back(TaskLog{.slot = slot, .text = std::move(lines)});
      }
    }
  }
  std::sort(logs.begin(), logs.end(), [](const TaskLog& a, const TaskLog& b) { return a.slot < b.slot; });
  return logs;
}

}  // namespace weft::control::tasks
