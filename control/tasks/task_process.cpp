#include "control/tasks/task_process.h"

#include <dirent.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

namespace weft::control::tasks {

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(50);

std::optional<NetnsId> netns_of_file(const char* path) {
  struct stat st {};
  if (::stat(path, &st) != 0) return std::nullopt;
  return NetnsId{.device = static_cast<std::uint64_t>(st.st_dev), .inode = static_cast<std::uint64_t>(st.st_ino)};
}

// The threads of /proc/PID other than the main one, up to `max`.
std::vector<std::string> other_threads(const std::string& dir, const std::string& pid, std::size_t max) {
  std::vector<std::string> out;
  DIR* tasks = ::opendir((dir + "/task").c_str());
  if (!tasks) return out;
  while (const dirent* entry = ::readdir(tasks)) {
    const std::string name(entry->d_name);
    if (name == "." || name == ".." || name == pid) continue;
    out.push_back(name);
    if (out.size() >= max) break;
  }
  ::closedir(tasks);
  return out;
}

// The network namespace of the process /proc/PID: its main thread's, or,
// when that one has ended (a zombie leader has none), another thread's.
std::optional<NetnsId> process_netns(const std::string& pid) {
  const std::string dir = "/proc/" + pid;
  if (auto ns = netns_of_file((dir + "/ns/net").c_str())) return ns;
  for (const auto& tid : other_threads(dir, pid, 4))
    if (auto ns = netns_of_file((dir + "/task/" + tid + "/ns/net").c_str())) return ns;
  return std::nullopt;
}

class SystemProcessTable final : public ProcessTable {
 public:
  std::optional<ProcessFacts> facts(pid_t pid) override {
    if (pid <= 0) return std::nullopt;
    const std::string id = std::to_string(pid);
    const std::string dir = "/proc/" + id;
    std::ifstream in(dir + "/stat");
    // One line, however odd the command name: read it whole.
    const std::string line{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const auto stat = parse_stat(line);
    if (!stat || stat->state == 'X') return std::nullopt;
    // A zombie main thread: the process runs while another thread does
    // (its main thread called pthread_exit, or it is ending and the others
    // are still exiting).
    if (stat->state == 'Z' && other_threads(dir, id, 1).empty()) return std::nullopt;
    ProcessFacts f{.start_ticks = stat->start_ticks, .netns = {}};
    if (auto ns = process_netns(id)) f.netns = *ns;
    return f;
  }

  std::vector<pid_t> in_netns(const NetnsId& netns) override {
    std::vector<pid_t> out;
    if (!netns.known()) return out;
    DIR* proc = ::opendir("/proc");
    if (!proc) return out;
    const pid_t self = ::getpid();
    while (const dirent* entry = ::readdir(proc)) {
      const std::string_view name(entry->d_name);
      pid_t pid = 0;
      const auto [end, error] = std::from_chars(name.data(), name.data() + name.size(), pid);
      if (error != std::errc{} || end != name.data() + name.size() || pid <= 1 || pid == self) continue;
      if (const auto ns = process_netns(std::string(name)); ns && *ns == netns) out.push_back(pid);
    }
    ::closedir(proc);
    return out;
  }

  void signal(pid_t pid, int sig) override { ::kill(pid, sig); }

  bool reap(pid_t pid) override {
    if (pid <= 0) return true;
    const pid_t r = ::waitpid(pid, nullptr, WNOHANG);
    return r == pid || (r < 0 && errno == ECHILD);
  }

  Clock::time_point now() override { return Clock::now(); }
  void pause(std::chrono::milliseconds duration) override { std::this_thread::sleep_for(duration); }
};

// The recorded pid's process, when it is the task's.
std::optional<ProcessFacts> leader_facts(ProcessTable& table, const TaskProcess& task, LeaderState& state) {
  state = LeaderState::gone;
  if (task.pid <= 0) return std::nullopt;
  auto f = table.facts(task.pid);
  // A child of this agent not collected yet is the task's by its pid alone
  // (the pid cannot be reused before): running, or ending (a zombie, maybe
  // with threads still exiting), it is waited for until collected.
  if (task.child && !table.reap(task.pid)) {
    state = LeaderState::verified;
    return f ? *f : ProcessFacts{.start_ticks = task.start_ticks, .netns = {}};
  }
  if (task.child) f = table.facts(task.pid);  // collected just now: the pid is free
  if (!f) return std::nullopt;
  if (task.start_ticks != 0 && f->start_ticks == task.start_ticks) {
    state = LeaderState::verified;
  } else if (task.netns.known() && f->netns == task.netns) {
    state = LeaderState::unverified;
  } else {
    return std::nullopt;  // a later process that got the pid
  }
  return f;
}

struct Target {
  pid_t pid = 0;
  std::uint64_t start_ticks = 0;
  bool group = false;  // the task's process group leader: -pid too
  bool child = false;  // this agent's: running until collected
};

}  // namespace

std::optional<StatFields> parse_stat(std::string_view line) {
  const auto paren = line.rfind(')');
  if (paren == std::string_view::npos) return std::nullopt;
  std::string_view rest = line.substr(paren + 1);
  StatFields out;
  // Fields 3 (state) to 22 (start time): the 20th after the command name.
  std::string_view field;
  for (int index = 0; index < 20; ++index) {
    const auto from = rest.find_first_not_of(" \n");
    if (from == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(from);
    const auto to = std::min(rest.find_first_of(" \n"), rest.size());
    field = rest.substr(0, to);
    rest.remove_prefix(to);
    if (index == 0) {
      if (field.size() != 1) return std::nullopt;
      out.state = field[0];
    }
  }
  const auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), out.start_ticks);
  if (error != std::errc{} || end != field.data() + field.size()) return std::nullopt;
  return out;
}

ProcessTable& system_process_table() {
  static SystemProcessTable table;
  return table;
}

NetnsId netns_id_of(const std::filesystem::path& path) {
  struct statfs fs {};
  if (::statfs(path.c_str(), &fs) != 0 || static_cast<unsigned long>(fs.f_type) != NSFS_MAGIC) return {};
  return netns_of_file(path.c_str()).value_or(NetnsId{});
}

LeaderState leader_state(ProcessTable& table, const TaskProcess& task) {
  LeaderState state = LeaderState::gone;
  leader_facts(table, task, state);
  return state;
}

StopOutcome stop_task_processes(ProcessTable& table, const TaskProcess& task, std::chrono::milliseconds grace,
                                std::chrono::milliseconds kill_wait) {
  StopOutcome outcome;
  std::vector<Target> targets;
  if (const auto f = leader_facts(table, task, outcome.leader))
    targets.push_back({.pid = task.pid, .start_ticks = f->start_ticks, .group = true, .child = task.child});
  // Every process in the namespace is the task's: also what its command
  // forked, and what `weft exec` runs there.
  const auto add_namespace = [&] {
    if (!task.netns.known()) return;
    for (const pid_t pid : table.in_netns(task.netns)) {
      if (std::any_of(targets.begin(), targets.end(), [&](const Target& t) { return t.pid == pid; })) continue;
      const auto f = table.facts(pid);
      if (!f || f->netns != task.netns) continue;
      targets.push_back({.pid = pid, .start_ticks = f->start_ticks, .group = false, .child = false});
      if (pid != task.pid) ++outcome.others;
    }
  };
  // A child is waited for until collected: one left a zombie would stay the
  // agent's for good, and `kill -0` would find it.
  const auto running = [&](const Target& t) {
    if (t.child) return !table.reap(t.pid);
    const auto f = table.facts(t.pid);
    return f && f->start_ticks == t.start_ticks;
  };
  const auto send = [&](int sig) {
    for (const auto& t : targets) {
      if (!running(t)) continue;  // its pid may be someone else's by now
      if (t.group) table.signal(-t.pid, sig);
      table.signal(t.pid, sig);
    }
  };
  // True once all targets are gone; false at `deadline`.
  const auto wait_until = [&](ProcessTable::Clock::time_point deadline) {
    for (;;) {
      std::erase_if(targets, [&](const Target& t) { return !running(t); });
      if (targets.empty()) return true;
      if (table.now() >= deadline) return false;
      table.pause(kPollInterval);
    }
  };

  add_namespace();
  if (targets.empty()) return outcome;
  send(SIGTERM);
  wait_until(table.now() + grace);
  // Anything forked meanwhile is in the namespace too.
  add_namespace();
  if (!targets.empty()) {
    send(SIGKILL);
    wait_until(table.now() + kill_wait);
  }
  for (const auto& t : targets) outcome.left.push_back(t.pid);
  return outcome;
}

}  // namespace weft::control::tasks
