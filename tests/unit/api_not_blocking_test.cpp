// The API never blocks on slow work: while a handler waits (a swarm join, an
// attach waiting for an address donation), other requests are answered, and
// the rules of RequestScheduler keep the changes that must not overlap apart.
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include "control/api/scheduler.h"
#include "control/api/server.h"
#include "tests/unit/fake_network_service.h"
#include "tools/api_client.h"

namespace weft::control::api {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using api::RequestScheduler;
using api::Workload;
using nlohmann::json;
using test_support::FakeNetworkService;
using tools::ApiClient;
using verb = boost::beast::http::verb;
using Clock = std::chrono::steady_clock;
using Admission = RequestScheduler::Admission;

// A door handlers wait at (at most `limit`) until the test opens it; counts
// who arrived.
class Gate {
 public:
  void wait(std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mutex_);
    ++arrived_;
    changed_.notify_all();
    changed_.wait_for(lock, limit, [this] { return open_; });
  }
  bool wait_for_arrivals(int count, std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] { return arrived_ >= count; });
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }
  int arrived() {
    std::lock_guard lock(mutex_);
    return arrived_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int arrived_ = 0;
  bool open_ = false;
};

// FakeNetworkService made safe for the API's workers; connects to a network
// named "slow" wait at a gate, as an attach waiting for a donation does.
class ThreadSafeNetworkService : public NetworkService {
  template <class F>
  auto locked(F f) {
    std::lock_guard lock(mutex_);
    return f();
  }
  std::mutex mutex_;
  FakeNetworkService fake_;

 public:
  Gate slow_connect;

  Network create_network(const NetworkSpec& spec) override { return locked([&] { return fake_.create_network(spec); }); }
  std::vector<Network> list_networks() override { return locked([&] { return fake_.list_networks(); }); }
  Network get_network(const std::string& ref) override { return locked([&] { return fake_.get_network(ref); }); }
  void remove_network(const std::string& ref) override { locked([&] { fake_.remove_network(ref); }); }
  Endpoint connect(const AttachRequest& request) override {
    if (request.network == "slow") slow_connect.wait();
    return locked([&] { return fake_.connect(request); });
  }
  void disconnect(const DetachRequest& request) override { locked([&] { fake_.disconnect(request); }); }
  std::vector<Endpoint> list_endpoints() override { return locked([&] { return fake_.list_endpoints(); }); }
};

// A swarm whose join waits at a gate, as a join to an unreachable address
// waits for its timeout.
class SlowJoinSwarm : public SwarmService {
 public:
  Gate join_gate;

  SwarmInitResult init(const SwarmInitRequest&) override { return {}; }
  void join(const SwarmJoinRequest&) override { join_gate.wait(); }
  void leave(const SwarmLeaveRequest&) override {}
  SwarmInfo info() override {
    SwarmInfo info;
    info.node_name = "node1";
    return info;
  }
  std::vector<NodeInfo> list_nodes() override { return {}; }
  NodeInfo get_node(const std::string&) override { return {}; }
  void remove_node(const std::string&) override {}
};

const json kJoinBody = {{"JoinToken", "WEFT-1-abc"}, {"RemoteAddrs", {"198.51.100.99:7946"}}};

class ApiNotBlockingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/weft-api-async-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    socket_path_ = dir_ + "/weftd.sock";
  }

  void TearDown() override {
    // Handlers still waiting would hold stop() for their full wait.
    swarm_.join_gate.open();
    service_.slow_connect.open();
    for (auto& pending : background_) pending.wait();
    if (io_thread_.joinable()) {
      asio::post(io_, [this] { server_->stop(); });
      io_thread_.join();
    }
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void start_server(ApiServerLimits limits = {}) {
    server_ = std::make_unique<ApiServer>(io_, socket_path_, service_, &swarm_, limits);
    server_->start();
    io_thread_ = std::thread([this] { io_.run(); });
  }

  // Sends a request from a thread of its own; its status arrives later.
  std::shared_future<unsigned> in_background(verb method, std::string target, json body = nullptr) {
    auto pending = std::async(std::launch::async, [this, method, target, body] {
                     ApiClient client("unix://" + socket_path_);
                     return client.request(method, target, body.is_null() ? std::optional<json>{} : std::optional<json>{body}).status;
                   }).share();
    background_.push_back(pending);
    return pending;
  }

  // Status and duration of one request on a fresh connection, as `weft` makes them.
  std::pair<unsigned, std::chrono::milliseconds> timed(verb method, const std::string& target) {
    const auto started = Clock::now();
    const unsigned status = ApiClient("unix://" + socket_path_).request(method, target).status;
    return {status, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started)};
  }

  std::string dir_;
  std::string socket_path_;
  ThreadSafeNetworkService service_;
  SlowJoinSwarm swarm_;
  asio::io_context io_;
  std::unique_ptr<ApiServer> server_;
  std::thread io_thread_;
  std::vector<std::shared_future<unsigned>> background_;
};

TEST_F(ApiNotBlockingTest, PingAndNetworkListAnswerWhileAJoinIsPending) {
  start_server();
  auto join = in_background(verb::post, "/swarm/join", kJoinBody);
  ASSERT_TRUE(swarm_.join_gate.wait_for_arrivals(1)) << "the join never reached the swarm service";

  for (int round = 0; round < 5; ++round) {
    for (const auto* target : {"/_ping", "/networks", "/endpoints", "/swarm"}) {
      const auto [status, took] = timed(verb::get, target);
      EXPECT_EQ(status, 200u) << target;
      EXPECT_LT(took, 100ms) << target << " waited behind the pending join";
    }
  }
  EXPECT_EQ(join.wait_for(0s), std::future_status::timeout) << "the join should still be pending";

  swarm_.join_gate.open();
  EXPECT_EQ(join.get(), 200u);
}

TEST_F(ApiNotBlockingTest, ASlowAttachDelaysNoReadAndTheNextChangeTakesItsTurn) {
  start_server();
  ApiClient api("unix://" + socket_path_);
  api.call(verb::post, "/networks/create", json{{"Name", "slow"}});
  api.call(verb::post, "/networks/create", json{{"Name", "fast"}});

  auto slow = in_background(verb::post, "/networks/slow/connect", json{{"Container", "ns1"}});
  ASSERT_TRUE(service_.slow_connect.wait_for_arrivals(1));

  const auto started = Clock::now();
  EXPECT_EQ(api.request(verb::get, "/networks/fast").status, 200u);
  EXPECT_EQ(api.request(verb::get, "/endpoints").status, 200u);
  EXPECT_LT(Clock::now() - started, 100ms);
  // Network changes take turns (NetworkManager does not check names and
  // namespaces again after a donation wait).
  auto next = in_background(verb::post, "/networks/fast/connect", json{{"Container", "ns2"}});
  EXPECT_EQ(next.wait_for(300ms), std::future_status::timeout);

  service_.slow_connect.open();
  EXPECT_EQ(slow.get(), 200u);
  EXPECT_EQ(next.get(), 200u);
}

TEST_F(ApiNotBlockingTest, NetworkChangesWaitForAPendingJoinAndThenRun) {
  start_server();
  auto join = in_background(verb::post, "/swarm/join", kJoinBody);
  ASSERT_TRUE(swarm_.join_gate.wait_for_arrivals(1));
  // A join refuses a node with networks of its own: a create must not slip
  // in while one is under way, as it could not when the API had one thread.
  auto create = in_background(verb::post, "/networks/create", json{{"Name", "web"}});
  EXPECT_EQ(create.wait_for(300ms), std::future_status::timeout);
  EXPECT_EQ(ApiClient("unix://" + socket_path_).call(verb::get, "/networks"), json::array());

  swarm_.join_gate.open();
  EXPECT_EQ(join.get(), 200u);
  EXPECT_EQ(create.get(), 201u);
}

TEST_F(ApiNotBlockingTest, BeyondThePendingLimitRequestsGet503AtOnceAndPingStillAnswers) {
  ApiServerLimits limits;
  limits.max_pending_requests = 1;
  start_server(limits);
  auto join = in_background(verb::post, "/swarm/join", kJoinBody);
  ASSERT_TRUE(swarm_.join_gate.wait_for_arrivals(1));

  ApiClient api("unix://" + socket_path_);
  const auto started = Clock::now();
  const auto refused = api.request(verb::get, "/networks");
  EXPECT_LT(Clock::now() - started, 100ms);
  EXPECT_EQ(refused.status, 503u);
  EXPECT_EQ(refused.error_message(), "the agent is busy: 1 requests are in progress; try again");
  // The connection stays usable, and _ping needs no worker.
  EXPECT_EQ(api.request(verb::get, "/_ping").status, 200u);

  swarm_.join_gate.open();
  EXPECT_EQ(join.get(), 200u);
  EXPECT_EQ(api.request(verb::get, "/networks").status, 200u);
}

TEST_F(ApiNotBlockingTest, StopWaitsForRunningHandlersAndDropsTheirAnswers) {
  start_server();
  auto join = in_background(verb::post, "/swarm/join", kJoinBody);
  ASSERT_TRUE(swarm_.join_gate.wait_for_arrivals(1));
  std::thread opener([this] {
    std::this_thread::sleep_for(200ms);
    swarm_.join_gate.open();
  });
  const auto started = Clock::now();
  asio::post(io_, [this] { server_->stop(); });
  io_thread_.join();
  opener.join();
  // stop() returned only once the handler was done with the services.
  EXPECT_GE(Clock::now() - started, 150ms);
  EXPECT_FALSE(std::filesystem::exists(socket_path_));
  // The client's connection was closed without an answer.
  EXPECT_THROW(join.get(), tools::ApiConnectionError);
  background_.clear();
}

// --- RequestScheduler's rules, without threads ---------------------------------

struct Started {
  std::vector<std::string> order;
  std::function<void()> as(std::string name) {
    return [this, name] { order.push_back(name); };
  }
};

TEST(RequestSchedulerTest, ReadsStartBesideAnything) {
  RequestScheduler scheduler({.max_running_network_changes = 1, .max_pending = 10});
  Started started;
  EXPECT_EQ(scheduler.submit(Workload::kSwarmChange, started.as("join")), Admission::kStarted);
  EXPECT_EQ(scheduler.submit(Workload::kNetworkChange, started.as("create")), Admission::kDeferred);
  EXPECT_EQ(scheduler.submit(Workload::kRead, started.as("ls")), Admission::kStarted);
  EXPECT_EQ(scheduler.submit(Workload::kRead, started.as("inspect")), Admission::kStarted);
  EXPECT_EQ(started.order, (std::vector<std::string>{"join", "ls", "inspect"}));
}

TEST(RequestSchedulerTest, ASwarmChangeRunsAloneAmongChangesInArrivalOrder) {
  RequestScheduler scheduler({.max_running_network_changes = 3, .max_pending = 10});
  Started started;
  EXPECT_EQ(scheduler.submit(Workload::kNetworkChange, started.as("attach")), Admission::kStarted);
  EXPECT_EQ(scheduler.submit(Workload::kSwarmChange, started.as("join")), Admission::kDeferred);
  // Behind the waiting join, even though it could run beside the attach.
  EXPECT_EQ(scheduler.submit(Workload::kNetworkChange, started.as("create")), Admission::kDeferred);
  EXPECT_EQ(scheduler.submit(Workload::kSwarmChange, started.as("leave")), Admission::kDeferred);
  EXPECT_EQ(started.order, (std::vector<std::string>{"attach"}));

  scheduler.finished(Workload::kNetworkChange);
  EXPECT_EQ(started.order, (std::vector<std::string>{"attach", "join"}));
  scheduler.finished(Workload::kSwarmChange);
  EXPECT_EQ(started.order, (std::vector<std::string>{"attach", "join", "create"}));
  scheduler.finished(Workload::kNetworkChange);
  EXPECT_EQ(started.order, (std::vector<std::string>{"attach", "join", "create", "leave"}));
  scheduler.finished(Workload::kSwarmChange);
  EXPECT_EQ(scheduler.pending(), 0u);
  EXPECT_EQ(scheduler.running_changes(), 0u);
}

TEST(RequestSchedulerTest, NetworkChangesRunSideBySideUpToTheLimit) {
  RequestScheduler scheduler({.max_running_network_changes = 2, .max_pending = 10});
  Started started;
  EXPECT_EQ(scheduler.submit(Workload::kNetworkChange, started.as("a")), Admission::kStarted);
  EXPECT_EQ(scheduler.submit(Workload::kNetworkChange, started.as("b")), Admission::kStarted);
  EXPECT_EQ(scheduler.submit(Workload::kNetworkChange, started.as("c")), Admission::kDeferred);
  EXPECT_EQ(scheduler.running_changes(), 2u);
  scheduler.finished(Workload::kNetworkChange);
  EXPECT_EQ(started.order, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(RequestSchedulerTest, RefusesBeyondThePendingLimitAndClearDropsTheWaiting) {
  RequestScheduler scheduler({.max_running_network_changes = 1, .max_pending = 3});
  Started started;
  EXPECT_EQ(scheduler.submit(Workload::kSwarmChange, started.as("join")), Admission::kStarted);
  EXPECT_EQ(scheduler.submit(Workload::kNetworkChange, started.as("create")), Admission::kDeferred);
  EXPECT_EQ(scheduler.submit(Workload::kRead, started.as("ls")), Admission::kStarted);
  EXPECT_EQ(scheduler.submit(Workload::kRead, started.as("refused")), Admission::kRefused);
  EXPECT_EQ(scheduler.pending(), 3u);

  scheduler.clear();
  EXPECT_EQ(scheduler.waiting(), 0u);
  scheduler.finished(Workload::kSwarmChange);
  scheduler.finished(Workload::kRead);
  EXPECT_EQ(scheduler.pending(), 0u);
  EXPECT_EQ(started.order, (std::vector<std::string>{"join", "ls"}));
}

TEST(ApiWorkloadTest, RoutesSayWhatTheyNeed) {
  auto workload = [](verb method, const char* target) {
    api::Request request{method, target, 11};
    return api::workload_of(request);
  };
  EXPECT_EQ(workload(verb::get, "/_ping"), Workload::kImmediate);
  EXPECT_EQ(workload(verb::head, "/_ping"), Workload::kImmediate);
  EXPECT_EQ(workload(verb::get, "/v1.41/version"), Workload::kImmediate);
  EXPECT_EQ(workload(verb::get, "/nope"), Workload::kImmediate);
  EXPECT_EQ(workload(verb::put, "/networks"), Workload::kImmediate);  // 405
  EXPECT_EQ(workload(verb::get, "/networks"), Workload::kRead);
  EXPECT_EQ(workload(verb::get, "/networks/web"), Workload::kRead);
  EXPECT_EQ(workload(verb::get, "/nodes"), Workload::kRead);
  EXPECT_EQ(workload(verb::post, "/networks/create"), Workload::kNetworkChange);
  EXPECT_EQ(workload(verb::post, "/networks/web/connect"), Workload::kNetworkChange);
  EXPECT_EQ(workload(verb::delete_, "/networks/web"), Workload::kNetworkChange);
  EXPECT_EQ(workload(verb::post, "/swarm/join"), Workload::kSwarmChange);
  EXPECT_EQ(workload(verb::post, "/swarm/leave"), Workload::kSwarmChange);
  EXPECT_EQ(workload(verb::delete_, "/nodes/node2"), Workload::kSwarmChange);
}

}  // namespace
}  // namespace weft::control::api
