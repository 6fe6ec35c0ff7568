// A task's processes: telling them from whatever else holds their pid, and
// stopping all of them before their namespace goes.
//
// A task is its command's process (its pid and start time, read from /proc
// when it started; a session and process group of its own) and whatever
// that process forked, all in the task's network namespace. Two things
// identify them:
//  - pid + start time (field 22 of /proc/PID/stat): a later process that got
//    the same pid has a later start time, so it is never signalled;
//  - the task's network namespace (device and inode of its nsfs file): every
//    process in it belongs to the task, whatever its pid or start time.
// Stopping signals the command's process group when pid + start time match,
// or, when they do not (a start time recorded wrong or unreadable), when the
// process is in the task's namespace (logged at warn); and every other
// process in the namespace. The caller removes the namespace only once
// nothing is left in it, so a task is never left running without its
// supervisor knowing.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weft::control::tasks {

// A network namespace's identity: its nsfs file's device and inode.
struct NetnsId {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  bool known() const { return inode != 0; }
  bool operator==(const NetnsId&) const = default;
};

// A live process as /proc shows it. Its main thread may have ended (a
// zombie leader) while others run on: the process runs until the last one
// ends, so it counts as live.
struct ProcessFacts {
  std::uint64_t start_ticks = 0;  // field 22 of /proc/PID/stat
  NetnsId netns;                  // of /proc/PID/ns/net; unknown when unreadable
};

// Fields 3 (state) and 22 (start time, in clock ticks since boot) of a
// /proc/PID/stat line. The command name (field 2) may hold spaces and ')',
// so fields are counted from the last ')'. nullopt when malformed.
struct StatFields {
  char state = '?';  // R, S, D, Z (zombie), X (dead), ...
  std::uint64_t start_ticks = 0;
};
std::optional<StatFields> parse_stat(std::string_view stat_line);

// What the stop needs of the kernel; tests give a fake.
class ProcessTable {
 public:
  using Clock = std::chrono::steady_clock;
  virtual ~ProcessTable() = default;
  // nullopt when there is no such process, or only its zombie (all its
  // threads ended).
  virtual std::optional<ProcessFacts> facts(pid_t pid) = 0;
  // The live processes whose network namespace is `netns`.
  virtual std::vector<pid_t> in_netns(const NetnsId& netns) = 0;
  // kill(2): a negative pid names a process group.
  virtual void signal(pid_t pid, int sig) = 0;
  // waitpid(pid, WNOHANG) for a child of this process: true when it is
  // collected now or there is no such child; false while it runs or is
  // still ending (a zombie main thread with other threads still exiting is
  // not collectable yet). Until collected, a child's pid is not reused.
  virtual bool reap(pid_t pid) = 0;
  virtual Clock::time_point now() = 0;
  virtual void pause(std::chrono::milliseconds duration) = 0;
};

// The kernel's: /proc, kill(2), waitpid(2), the steady clock.
ProcessTable& system_process_table();

// The identity of the namespace pinned at `path` (a bind mount of an nsfs
// file); unknown when it is not there.
NetnsId netns_id_of(const std::filesystem::path& path);

// What the supervisor recorded of a task's process.
struct TaskProcess {
  pid_t pid = 0;                // 0: none recorded (not started yet, or exited)
  std::uint64_t start_ticks = 0;
  bool child = false;           // forked by this agent: it must be collected here, or it
                                // stays a zombie of the agent (and `kill -0` finds it) for good
  NetnsId netns;                // the task's namespace, when it still exists
};

// What the recorded pid is now.
enum class LeaderState {
  gone,        // no process (or a collected child, or a zombie not ours), or one that is not the task's
  verified,    // pid and start time match, or a child of this agent not collected yet
  unverified,  // the start time does not match, but the process is in the task's namespace
};
LeaderState leader_state(ProcessTable& table, const TaskProcess& task);

struct StopOutcome {
  LeaderState leader = LeaderState::gone;  // before the stop
  std::size_t others = 0;                  // other processes found in the namespace
  std::vector<pid_t> left;                 // still running after SIGKILL and `kill_wait`
};

// SIGTERM to the task's processes (the leader's process group, and every
// process in the namespace), SIGKILL to those still there after `grace`,
// then up to `kill_wait` for them to go. Never signals a process that is
// not the task's.
StopOutcome stop_task_processes(ProcessTable& table, const TaskProcess& task, std::chrono::milliseconds grace,
                                std::chrono::milliseconds kill_wait);

}  // namespace weft::control::tasks
