// Stopping a task's processes (control/tasks/task_process.h) over a fake
// process table and clock: which processes are the task's (pid + start
// time, or its namespace), that nothing else is signalled, and that what is
// in the namespace is stopped whatever the recorded start time says.
#include "control/tasks/task_process.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <map>
#include <thread>
#include <utility>
#include <vector>

namespace weft::control::tasks {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr NetnsId kTaskNs{.device = 4, .inode = 4026532001};
constexpr NetnsId kHostNs{.device = 4, .inode = 4026531840};

class FakeProcessTable final : public ProcessTable {
 public:
  struct Process {
    std::uint64_t start_ticks = 0;
    NetnsId netns{};
    pid_t group = 0;            // process group (0: its own pid)
    bool ignores_term = false;  // a handler that does not exit
    bool unkillable = false;    // stuck in the kernel: not even SIGKILL
    bool child = false;         // the agent's: a zombie until collected
    // After a fatal signal: how long its threads take to exit. Meanwhile its
    // main thread is a zombie already and it cannot be collected.
    std::chrono::milliseconds exit_takes{0};
    std::optional<Clock::time_point> ends_at{};  // set by a fatal signal
    // /proc shows no live process while it ends (what a zombie main thread
    // read as before): only collecting it tells when it is over.
    bool hidden_while_ending = false;
  };

  void add(pid_t pid, Process p) {
    if (p.group == 0) p.group = pid;
    processes[pid] = p;
  }
  bool ended(const Process& p) const { return p.ends_at && clock >= *p.ends_at; }
  // Running or ending: not just a zombie, and not collected.
  bool running(pid_t pid) const {
    auto it = processes.find(pid);
    return it != processes.end() && !ended(it->second);
  }
  bool zombie(pid_t pid) const {
    auto it = processes.find(pid);
    return it != processes.end() && ended(it->second);
  }
  // Signals sent to `pid` (negative: a group).
  std::vector<int> signals_to(pid_t pid) const {
    std::vector<int> out;
    for (const auto& [target, sig] : sent)
      if (target == pid) out.push_back(sig);
    return out;
  }

  std::optional<ProcessFacts> facts(pid_t pid) override {
    if (!running(pid)) return std::nullopt;
    const auto& p = processes.at(pid);
    if (p.ends_at && p.hidden_while_ending) return std::nullopt;
    return ProcessFacts{.start_ticks = p.start_ticks, .netns = p.netns};
  }
  std::vector<pid_t> in_netns(const NetnsId& netns) override {
    std::vector<pid_t> out;
    for (const auto& [pid, p] : processes)
      if (!ended(p) && p.netns == netns) out.push_back(pid);
    return out;
  }
  void signal(pid_t pid, int sig) override {
    sent.emplace_back(pid, sig);
    std::vector<pid_t> hit;
    for (const auto& [p, process] : processes)
      if (pid > 0 ? p == pid : process.group == -pid) hit.push_back(p);
    for (const pid_t p : hit) {
      auto& process = processes.at(p);
      if (process.ends_at || process.unkillable || (sig == SIGTERM && process.ignores_term)) continue;
      if (sig != SIGTERM && sig != SIGKILL) continue;
      process.ends_at = clock + process.exit_takes;
    }
    // Not the agent's children: their parent collects them once ended.
    std::erase_if(processes, [&](const auto& entry) { return !entry.second.child && ended(entry.second); });
  }
  bool reap(pid_t pid) override {
    auto it = processes.find(pid);
    if (it == processes.end() || !it->second.child) return true;  // ECHILD
    if (!ended(it->second)) return false;
    processes.erase(it);
    return true;
  }
  Clock::time_point now() override { return clock; }
  void pause(std::chrono::milliseconds duration) override {
    clock += duration;
    std::erase_if(processes, [&](const auto& entry) { return !entry.second.child && ended(entry.second); });
  }

  std::map<pid_t, Process> processes;
  std::vector<std::pair<pid_t, int>> sent;
  Clock::time_point clock{};
};

TEST(TaskProcessStartTicks, Field22IsReadAfterTheLastParenthesis) {
  // A command name with spaces and ')' (comm may hold any byte but NUL).
  const std::string line =
      "9580 (my) (odd) name) S 9502 9580 9580 0 -1 4194560 1087 0 0 0 3 2 0 0 20 0 5 0 6684862 62283776 3044 "
      "18446744073709551615 0 0\n";
  const auto fields = parse_stat(line);
  ASSERT_TRUE(fields.has_value());
  EXPECT_EQ(fields->state, 'S');
  EXPECT_EQ(fields->start_ticks, 6684862u);
  EXPECT_EQ(parse_stat("1 (init) S 0 1 1 0 -1 4194560 1 0 0 0 3 2 0 0 20 0 1 0 42 0 0")->start_ticks, 42u);
  // A zombie main thread keeps its start time (its other threads may run on).
  const auto zombie = parse_stat("7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0");
  ASSERT_TRUE(zombie.has_value());
  EXPECT_EQ(zombie->state, 'Z');
  EXPECT_EQ(zombie->start_ticks, 99u);
}

TEST(TaskProcessStartTicks, MalformedLinesHaveNone) {
  EXPECT_EQ(parse_stat("7 (x) S 1 7 7 0"), std::nullopt) << "too few fields";
  EXPECT_EQ(parse_stat("7 x S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0"), std::nullopt) << "no ')'";
  EXPECT_EQ(parse_stat("7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9x9 0 0"), std::nullopt);
  EXPECT_EQ(parse_stat("7 (x) SS 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0"), std::nullopt);
  EXPECT_EQ(parse_stat(""), std::nullopt);
}

TEST(TaskProcessStartTicks, TheSystemTableReadsThisProcess) {
  const auto self = system_process_table().facts(::getpid());
  ASSERT_TRUE(self.has_value());
  EXPECT_GT(self->start_ticks, 0u);
  EXPECT_TRUE(self->netns.known());
  EXPECT_EQ(system_process_table().facts(::getpid())->start_ticks, self->start_ticks) << "stable";
}

// A child of this test whose main thread ends at once while another
// thread runs on: /proc/PID/stat says Z for it, yet it runs.
// Kills and collects a forked child the test did not collect (a failed
// assertion), so none outlives the test.
struct ForkedChild {
  pid_t pid = -1;
  ~ForkedChild() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};

pid_t fork_with_main_thread_ended() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    pthread_t thread;
    if (::pthread_create(&thread, nullptr, [](void*) -> void* {
          for (;;) ::pause();
        }, nullptr) != 0)
      ::_exit(1);
    // The main thread alone ends (exit(2), not exit_group(2)); no unwinding
    // through the test framework as pthread_exit would do.
    ::syscall(SYS_exit, 0);
  }
  return pid;
}

char main_thread_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string line{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const auto fields = parse_stat(line);
  return fields ? fields->state : '?';
}

bool main_thread_ends(pid_t pid) {
  for (int i = 0; i < 200 && main_thread_state(pid) != 'Z'; ++i) std::this_thread::sleep_for(10ms);
  return main_thread_state(pid) == 'Z';
}

// Before, a zombie main thread read as "no start time": the stop took such a
// process for gone (or not the task's) and left it running.
TEST(TaskProcessSystem, AProcessWhoseMainThreadEndedRunsAndIsStoppedAndCollected) {
  const pid_t pid = fork_with_main_thread_ended();
  ASSERT_GT(pid, 0);
  ForkedChild guard{pid};
  ASSERT_TRUE(main_thread_ends(pid));
  auto& table = system_process_table();
  const auto facts = table.facts(pid);
  ASSERT_TRUE(facts.has_value()) << "its other thread runs";
  const auto outcome = stop_task_processes(
      table, {.pid = pid, .start_ticks = facts->start_ticks, .child = true, .netns = {}}, 2s, 1s);
  EXPECT_EQ(outcome.leader, LeaderState::verified);
  EXPECT_THAT(outcome.left, IsEmpty());
  errno = 0;
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1) << "not collected";
  EXPECT_EQ(errno, ECHILD);
  if (errno == ECHILD) guard.pid = -1;  // collected: its pid may be anyone's now
}

TEST(TaskProcessSystem, AnAdoptedProcessWhoseMainThreadEndedIsStopped) {
  const pid_t pid = fork_with_main_thread_ended();
  ASSERT_GT(pid, 0);
  ForkedChild guard{pid};
  ASSERT_TRUE(main_thread_ends(pid));
  auto& table = system_process_table();
  const auto facts = table.facts(pid);
  ASSERT_TRUE(facts.has_value());
  // Not the agent's child (a restarted agent adopted it): its parent collects it.
  const auto outcome = stop_task_processes(
      table, {.pid = pid, .start_ticks = facts->start_ticks, .child = false, .netns = {}}, 2s, 1s);
  EXPECT_EQ(outcome.leader, LeaderState::verified);
  EXPECT_THAT(outcome.left, IsEmpty());
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  guard.pid = -1;
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
}

TEST(TaskProcessLeader, TellsTheTasksProcessFromALaterOneWithItsPid) {
  FakeProcessTable table;
  table.add(100, {.start_ticks = 500, .netns = kTaskNs});
  EXPECT_EQ(leader_state(table, {.pid = 100, .start_ticks = 500, .child = false, .netns = kTaskNs}),
            LeaderState::verified);
  EXPECT_EQ(leader_state(table, {.pid = 100, .start_ticks = 500, .child = false, .netns = {}}),
            LeaderState::verified);
  EXPECT_EQ(leader_state(table, {.pid = 100, .start_ticks = 499, .child = false, .netns = kTaskNs}),
            LeaderState::unverified);
  EXPECT_EQ(leader_state(table, {.pid = 100, .start_ticks = 0, .child = false, .netns = kTaskNs}),
            LeaderState::unverified);
  table.processes[100].netns = kHostNs;  // the pid now someone else's
  EXPECT_EQ(leader_state(table, {.pid = 100, .start_ticks = 499, .child = false, .netns = kTaskNs}),
            LeaderState::gone);
  EXPECT_EQ(leader_state(table, {.pid = 101, .start_ticks = 500, .child = false, .netns = kTaskNs}),
            LeaderState::gone);
  EXPECT_EQ(leader_state(table, {.pid = 0, .start_ticks = 0, .child = false, .netns = kTaskNs}), LeaderState::gone);
}

TEST(TaskProcessStop, SignalsTheVerifiedLeaderAndItsProcessGroup) {
  FakeProcessTable table;
  table.add(100, {.start_ticks = 500, .netns = kTaskNs});
  table.add(101, {.start_ticks = 510, .netns = kTaskNs, .group = 100});
  table.add(200, {.start_ticks = 520, .netns = kHostNs});
  const auto outcome = stop_task_processes(table, {.pid = 100, .start_ticks = 500, .child = false, .netns = kTaskNs},
                                           5s, 1s);
  EXPECT_EQ(outcome.leader, LeaderState::verified);
  EXPECT_THAT(outcome.left, IsEmpty());
  EXPECT_THAT(table.signals_to(-100), ElementsAre(SIGTERM));
  EXPECT_FALSE(table.running(100));
  EXPECT_FALSE(table.running(101));
  EXPECT_TRUE(table.running(200));
  EXPECT_THAT(table.signals_to(200), IsEmpty());
  EXPECT_EQ(table.clock, FakeProcessTable::Clock::time_point{}) << "gone at once: no waiting";
}

// The CI failure's shape: the task's process runs, but its start time does
// not match the recorded one. The old stop returned without a signal and the
// namespace was removed under the running process.
TEST(TaskProcessStop, ALeaderWhoseStartTimeDoesNotMatchButRunsInTheNamespaceIsStopped) {
  FakeProcessTable table;
  table.add(9580, {.start_ticks = 6684862, .netns = kTaskNs});
  const auto outcome = stop_task_processes(
      table, {.pid = 9580, .start_ticks = 6684861, .child = false, .netns = kTaskNs}, 5s, 1s);
  EXPECT_EQ(outcome.leader, LeaderState::unverified);
  EXPECT_THAT(table.signals_to(9580), ElementsAre(SIGTERM));
  EXPECT_FALSE(table.running(9580));
  EXPECT_THAT(outcome.left, IsEmpty());
}

TEST(TaskProcessStop, ALeaderWithoutARecordedStartTimeIsStoppedWhenInTheNamespace) {
  FakeProcessTable table;
  table.add(300, {.start_ticks = 700, .netns = kTaskNs});
  const auto outcome =
      stop_task_processes(table, {.pid = 300, .start_ticks = 0, .child = false, .netns = kTaskNs}, 5s, 1s);
  EXPECT_EQ(outcome.leader, LeaderState::unverified);
  EXPECT_FALSE(table.running(300));
}

TEST(TaskProcessStop, ALaterProcessThatGotThePidIsNeverSignalled) {
  FakeProcessTable table;
  table.add(100, {.start_ticks = 900, .netns = kHostNs});
  const auto outcome = stop_task_processes(table, {.pid = 100, .start_ticks = 500, .child = false, .netns = kTaskNs},
                                           5s, 1s);
  EXPECT_EQ(outcome.leader, LeaderState::gone);
  EXPECT_THAT(table.sent, IsEmpty());
  EXPECT_TRUE(table.running(100));
  EXPECT_THAT(outcome.left, IsEmpty());
}

TEST(TaskProcessStop, ProcessesLeftInTheNamespaceAreStoppedAfterTheLeaderIsGone) {
  FakeProcessTable table;
  // The command exited; what it started in a session of its own runs on.
  table.add(401, {.start_ticks = 800, .netns = kTaskNs});
  table.add(402, {.start_ticks = 801, .netns = kTaskNs, .group = 401});
  table.add(500, {.start_ticks = 802, .netns = kHostNs});
  const auto outcome =
      stop_task_processes(table, {.pid = 0, .start_ticks = 0, .child = false, .netns = kTaskNs}, 5s, 1s);
  EXPECT_EQ(outcome.leader, LeaderState::gone);
  EXPECT_EQ(outcome.others, 2u);
  EXPECT_FALSE(table.running(401));
  EXPECT_FALSE(table.running(402));
  EXPECT_TRUE(table.running(500));
  EXPECT_THAT(outcome.left, IsEmpty());
}

TEST(TaskProcessStop, SigkillFollowsWhenSigtermIsIgnoredForTheGrace) {
  FakeProcessTable table;
  table.add(100, {.start_ticks = 500, .netns = kTaskNs, .ignores_term = true});
  const auto outcome = stop_task_processes(table, {.pid = 100, .start_ticks = 500, .child = false, .netns = kTaskNs},
                                           5s, 1s);
  EXPECT_THAT(table.signals_to(100), ElementsAre(SIGTERM, SIGKILL));
  EXPECT_THAT(table.signals_to(-100), ElementsAre(SIGTERM, SIGKILL));
  EXPECT_FALSE(table.running(100));
  EXPECT_GE(table.clock - FakeProcessTable::Clock::time_point{}, 5s);
  EXPECT_LT(table.clock - FakeProcessTable::Clock::time_point{}, 6s);
  EXPECT_THAT(outcome.left, IsEmpty());
}

TEST(TaskProcessStop, AProcessThatOutlivesSigkillIsReportedLeft) {
  FakeProcessTable table;
  table.add(100, {.start_ticks = 500, .netns = kTaskNs, .unkillable = true});
  table.add(101, {.start_ticks = 501, .netns = kTaskNs});
  const auto outcome = stop_task_processes(table, {.pid = 100, .start_ticks = 500, .child = false, .netns = kTaskNs},
                                           5s, 1s);
  EXPECT_THAT(outcome.left, ElementsAre(100));
  EXPECT_FALSE(table.running(101));
  EXPECT_LT(table.clock - FakeProcessTable::Clock::time_point{}, 7s) << "bounded: grace + kill wait";
}

TEST(TaskProcessStop, TheAgentsOwnChildIsCollectedNotLeftAZombie) {
  FakeProcessTable table;
  table.add(100, {.start_ticks = 500, .netns = kTaskNs, .child = true});
  const auto outcome = stop_task_processes(table, {.pid = 100, .start_ticks = 500, .child = true, .netns = kTaskNs},
                                           5s, 1s);
  EXPECT_THAT(outcome.left, IsEmpty());
  EXPECT_EQ(table.processes.count(100), 0u) << "collected";
}

// The CI failure (task pid 9580 "still alive" after `service rm`, its
// namespace gone): redis-server, the agent's child, got SIGTERM; its main
// thread turned zombie at once while its other threads were still exiting.
// The stop took the zombie for gone, and nothing ever waited for the child:
// it stayed a zombie of the agent, which `kill -0` finds.
TEST(TaskProcessStop, AChildStillEndingIsWaitedForUntilCollected) {
  FakeProcessTable table;
  table.add(9580, {.start_ticks = 6684862,
                   .netns = kTaskNs,
                   .child = true,
                   .exit_takes = 300ms,
                   .hidden_while_ending = true});
  const auto outcome = stop_task_processes(
      table, {.pid = 9580, .start_ticks = 6684862, .child = true, .netns = kTaskNs}, 5s, 1s);
  EXPECT_EQ(outcome.leader, LeaderState::verified);
  EXPECT_THAT(outcome.left, IsEmpty());
  EXPECT_FALSE(table.zombie(9580)) << "left a zombie of the agent";
  EXPECT_EQ(table.processes.count(9580), 0u) << "collected";
  EXPECT_GE(table.clock - FakeProcessTable::Clock::time_point{}, 300ms);
  EXPECT_THAT(table.signals_to(9580), ElementsAre(SIGTERM)) << "no SIGKILL needed";
}

TEST(TaskProcessStop, AChildThatExitedBeforeTheStopIsCollected) {
  FakeProcessTable table;
  table.add(100, {.start_ticks = 500, .netns = kTaskNs, .child = true});
  table.processes[100].ends_at = table.clock;  // exited: a zombie of the agent
  const auto outcome = stop_task_processes(table, {.pid = 100, .start_ticks = 500, .child = true, .netns = kTaskNs},
                                           5s, 1s);
  EXPECT_EQ(table.processes.count(100), 0u) << "collected";
  EXPECT_THAT(table.sent, IsEmpty());
  EXPECT_THAT(outcome.left, IsEmpty());
}

TEST(TaskProcessStop, WithoutTheNamespaceOnlyAVerifiedLeaderIsStopped) {
  FakeProcessTable table;
  table.add(100, {.start_ticks = 501, .netns = kTaskNs});
  auto outcome =
      stop_task_processes(table, {.pid = 100, .start_ticks = 500, .child = false, .netns = {}}, 5s, 1s);
  EXPECT_EQ(outcome.leader, LeaderState::gone) << "nothing proves it is the task's";
  EXPECT_TRUE(table.running(100));
  outcome = stop_task_processes(table, {.pid = 100, .start_ticks = 501, .child = false, .netns = {}}, 5s, 1s);
  EXPECT_EQ(outcome.leader, LeaderState::verified);
  EXPECT_FALSE(table.running(100));
}

}  // namespace
}  // namespace weft::control::tasks
