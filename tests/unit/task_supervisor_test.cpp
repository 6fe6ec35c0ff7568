// The task supervisor (control/tasks/supervisor.h) without root: a task it
// adopts from its state file (a real process, a child of this test standing
// in for the task) and what it does with it.
#include "control/tasks/supervisor.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <thread>
#include <nlohmann/json.hpp>

#include "control/model/record_json.h"
#include "control/network/state_file.h"
#include "control/services/service_manager.h"
#include "control/tasks/task_process.h"
#include "tests/support/fake_service_networks.h"
#include "tests/support/scratch_netns.h"
#include "tests/unit/fake_network_service.h"

namespace weft::control::tasks {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kServiceId = "5d0335d0c0ffee00112233445566778899aabbccddeeff001122334455667788";

// A process standing in for a task's, a child of this test: `sleep`, or
// one whose main thread ended while another thread runs on (/proc/PID/stat
// says Z for it).
class StandIn {
 public:
  enum class Kind { sleep, main_thread_ended };
  explicit StandIn(Kind kind = Kind::sleep) {
    pid_ = ::fork();
    if (pid_ == 0 && kind == Kind::sleep) {
      ::execlp("sleep", "sleep", "60", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (pid_ == 0) {
      pthread_t thread;
      if (::pthread_create(&thread, nullptr, [](void*) -> void* {
            for (;;) ::pause();
          }, nullptr) != 0)
        ::_exit(1);
      ::syscall(SYS_exit, 0);  // this thread alone
    }
  }
  ~StandIn() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // Its wait status once it ended within `timeout`.
  std::optional<int> ended_within(std::chrono::milliseconds timeout) {
    for (const auto until = std::chrono::steady_clock::now() + timeout; !status_;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        status_ = status;
        break;
      }
      if (std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(20ms);
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

class TaskSupervisorTest : public ::testing::Test {
 protected:
  fs::path state_dir() const { return dir.path() / "state"; }

  // The supervisor's state file with one running task of kServiceId.
  void record_task(pid_t pid, std::uint64_t start_ticks) {
    TaskRecord record{.service_id = kServiceId,
                      .slot = 2,
                      .node = "node1",
                      .endpoint_id = {},
                      .state = "running",
                      .started_at = "2026-11-27T08:00:00.000000000Z",
                      .error = {},
                      .pid = pid,
                      .netns = (dir.path() / "netns" / "weft-node1-5d0335d0c0ff-2").string()};
    nlohmann::json task = task_record(record);
    task["service_name"] = "redis";
    task["netns_name"] = "weft-node1-5d0335d0c0ff-2";
    task["network_ids"] = nlohmann::json::array();
    task["start_ticks"] = start_ticks;
    task["stopping"] = false;
    fs::create_directories(state_dir() / "tasks");
    network::write_file_atomically(state_dir() / "tasks" / "state.json",
                                   nlohmann::json{{"version", 1}, {"tasks", {task}}}.dump());
  }

  SupervisorConfig config() const {
    return SupervisorConfig{.node_name = "node1",
                            .state_dir = state_dir(),
                            .tick = 20ms,
                            .settle = 0ms,
                            .member_memory = std::chrono::minutes(10),
                            .drain = std::chrono::seconds(0),
                            .restart_delay = 100ms,
                            .max_restart_delay = 1s,
                            .netns_dir = dir.path() / "netns",
                            .resolv_conf_wait = 0ms,
                            .netns_etc_dir = dir.path() / "etc"};
  }

  // The cluster's node list: it hangs (the gossip thread busy) until released.
  std::vector<ReadyNode> hanging_ready_nodes() {
    std::unique_lock lock(mutex);
    released.wait_for(lock, 30s, [this] { return release; });
    return {ReadyNode{.name = "node1", .availability = "active"}};
  }
  void release_ready_nodes() {
    {
      std::lock_guard lock(mutex);
      release = true;
    }
    released.notify_all();
  }

  testing::ScratchDir dir;
  testing::FakeServiceNetworks service_networks;
  test_support::FakeNetworkService networks;
  std::mutex mutex;
  std::condition_variable released;
  bool release = false;
};

// A removed service's task stops at once, even while the cluster's node
// list (asked of the gossip thread) does not come: before, each tick asked
// for it first, and a busy gossip thread held the stop back.
TEST_F(TaskSupervisorTest, ARemovedServicesTaskStopsWhileTheNodeListHangs) {
  StandIn task;
  const auto facts = system_process_table().facts(task.pid());
  ASSERT_TRUE(facts.has_value());
  record_task(task.pid(), facts->start_ticks);

  services::ServiceManager services({.node_name = "node1", .state_dir = state_dir()}, service_networks);
  services.reconcile();  // no service: the task's was removed
  Supervisor supervisor(config(), services, networks, [this] { return hanging_ready_nodes(); });
  supervisor.reconcile();
  ASSERT_EQ(supervisor.tasks().size(), 1u) << "adopted: same pid, same start time";
  supervisor.start();

  const auto status = task.ended_within(5s);
  release_ready_nodes();
  supervisor.stop();
  ASSERT_TRUE(status.has_value()) << "the removed service's task still ran 5 s later";
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM);
  EXPECT_TRUE(supervisor.tasks().empty());
}

// A task whose main thread ended while its other threads run (as a
// multi-threaded command's does for a moment while it exits) still runs:
// before, it read as gone, was not adopted, and was left running with its
// namespace removed.
TEST_F(TaskSupervisorTest, ATaskWhoseMainThreadEndedIsAdoptedAndStoppedWithItsService) {
  StandIn task(StandIn::Kind::main_thread_ended);
  std::optional<ProcessFacts> facts;
  for (int i = 0; i < 200 && !facts; ++i) {
    std::this_thread::sleep_for(10ms);
    std::ifstream in("/proc/" + std::to_string(task.pid()) + "/stat");
    const std::string line{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (const auto stat = parse_stat(line); stat && stat->state == 'Z') facts = system_process_table().facts(task.pid());
  }
  ASSERT_TRUE(facts.has_value()) << "its main thread did not end, or it reads as gone";
  record_task(task.pid(), facts->start_ticks);

  services::ServiceManager services({.node_name = "node1", .state_dir = state_dir()}, service_networks);
  services.reconcile();
  Supervisor supervisor(config(), services, networks, [] { return std::vector<ReadyNode>{{.name = "node1"}}; });
  supervisor.reconcile();
  EXPECT_EQ(supervisor.tasks().size(), 1u) << "adopted: it runs";
  supervisor.start();
  const auto status = task.ended_within(5s);
  supervisor.stop();
  ASSERT_TRUE(status.has_value()) << "the removed service's task still ran 5 s later";
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM);
}

// A recorded start time that is not the process's: not adopted, and the
// process, not provably the task's (no namespace to tell), is left alone.
TEST_F(TaskSupervisorTest, AProcessWithAnotherStartTimeAndNoNamespaceIsNotSignalled) {
  StandIn other;
  const auto facts = system_process_table().facts(other.pid());
  ASSERT_TRUE(facts.has_value());
  record_task(other.pid(), facts->start_ticks - 1);

  services::ServiceManager services({.node_name = "node1", .state_dir = state_dir()}, service_networks);
  services.reconcile();
  Supervisor supervisor(config(), services, networks, [] { return std::vector<ReadyNode>{{.name = "node1"}}; });
  supervisor.reconcile();
  EXPECT_TRUE(supervisor.tasks().empty()) << "cleaned up, not adopted";
  EXPECT_FALSE(other.ended_within(200ms).has_value()) << "another process with the pid was signalled";
}

}  // namespace
}  // namespace weft::control::tasks
