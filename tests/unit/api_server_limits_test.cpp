// ApiServer under clients that hold connections: the connection cap, idle
// and slow-request timeouts, running out of descriptors.
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "control/api/server.h"
#include "tests/unit/fake_network_service.h"
#include "tools/api_client.h"

namespace weft::control::api {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using test_support::FakeNetworkService;
using tools::ApiClient;
using verb = boost::beast::http::verb;
using Clock = std::chrono::steady_clock;

// A raw client connection; -1 when the connect failed.
int connect_raw(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_text(int fd, const std::string& text) {
  ASSERT_EQ(::send(fd, text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()));
}

// True when the server closed `fd` within `timeout` (EOF or reset, with no
// data before it).
bool closed_by_server(int fd, std::chrono::milliseconds timeout) {
  pollfd entry{fd, POLLIN, 0};
  if (::poll(&entry, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char byte;
  const ssize_t got = ::recv(fd, &byte, 1, MSG_DONTWAIT);
  return got == 0 || (got < 0 && errno == ECONNRESET);
}

// Everything the server sends until it closes or `timeout` passes.
std::string read_reply(int fd, std::chrono::milliseconds timeout) {
  std::string reply;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    pollfd entry{fd, POLLIN, 0};
    if (::poll(&entry, 1, 50) <= 0) continue;
    char chunk[4096];
    const ssize_t got = ::recv(fd, chunk, sizeof(chunk), 0);
    if (got <= 0) break;
    reply.append(chunk, static_cast<std::size_t>(got));
    if (reply.find("\r\n\r\nOK") != std::string::npos) break;
  }
  return reply;
}

class ApiServerLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/weft-api-limits-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    socket_path_ = dir_ + "/weftd.sock";
  }

  void TearDown() override {
    for (int fd : raw_) ::close(fd);
    stop_server();
    std::filesystem::remove_all(dir_);
  }

  void start_server(ApiServerLimits limits) {
    server_ = std::make_unique<ApiServer>(io_, socket_path_, service_, nullptr, limits);
    server_->start();
    io_thread_ = std::thread([this] { io_.run(); });
  }

  void stop_server() {
    if (!io_thread_.joinable()) return;
    asio::post(io_, [this] { server_->stop(); });
    io_thread_.join();
    server_.reset();
    io_.restart();
  }

  int raw() {
    const int fd = connect_raw(socket_path_);
    if (fd >= 0) raw_.push_back(fd);
    return fd;
  }

  // A ping on a fresh client: the status, and how long it took.
  std::pair<unsigned, std::chrono::milliseconds> timed_ping() {
    const auto started = Clock::now();
    const unsigned status = ApiClient("unix://" + socket_path_).request(verb::get, "/_ping").status;
    return {status, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started)};
  }

  std::string dir_;
  std::string socket_path_;
  FakeNetworkService service_;
  asio::io_context io_;
  std::unique_ptr<ApiServer> server_;
  std::thread io_thread_;
  std::vector<int> raw_;
};

TEST(ApiServerLimitsDefaultTest, DefaultCapLeavesMostDescriptorsToTheRest) {
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  struct rlimit limit = saved;
  for (const auto& [soft, expected] : {std::pair<rlim_t, std::size_t>{1024, 256}, {20000, 512}, {16, 4}}) {
    if (soft > saved.rlim_max) continue;
    limit.rlim_cur = soft;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &limit), 0);
    EXPECT_EQ(default_max_api_connections(), expected) << soft;
  }
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
}

// Idle clients beyond the cap displace the oldest idle ones instead of
// starving everyone else.
TEST_F(ApiServerLimitsTest, AtTheCapTheLongestIdleConnectionMakesRoom) {
  start_server({.max_connections = 8});
  for (int i = 0; i < 12; ++i) ASSERT_GE(raw(), 0);

  const auto [status, took] = timed_ping();
  EXPECT_EQ(status, 200u);
  EXPECT_LT(took, 1000ms);

  // 12 idle + the ping's connection against a cap of 8: the first five went.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(closed_by_server(raw_[i], 2000ms)) << "connection " << i;
  for (int i = 5; i < 12; ++i) EXPECT_FALSE(closed_by_server(raw_[i], 50ms)) << "connection " << i;
}

TEST_F(ApiServerLimitsTest, ARequestInProgressOutlastsIdleConnections) {
  start_server({.max_connections = 4});
  const int busy = raw();
  ASSERT_GE(busy, 0);
  send_text(busy, "GET /_ping HTTP/1.1\r\n");
  std::this_thread::sleep_for(200ms);  // the server sees the request begin
  for (int i = 0; i < 3; ++i) ASSERT_GE(raw(), 0);

  EXPECT_EQ(timed_ping().first, 200u);
  EXPECT_TRUE(closed_by_server(raw_[1], 2000ms));  // the oldest idle one, not the older busy one
  send_text(busy, "Host: weftd\r\n\r\n");
  EXPECT_NE(read_reply(busy, 2000ms).find("HTTP/1.1 200 OK"), std::string::npos);
}

TEST_F(ApiServerLimitsTest, ManyMoreIdleClientsThanTheCapStillLetRequestsThrough) {
  start_server({.max_connections = 16});
  for (int i = 0; i < 400; ++i) ASSERT_GE(raw(), 0);
  for (int round = 0; round < 3; ++round) {
    const auto [status, took] = timed_ping();
    EXPECT_EQ(status, 200u);
    EXPECT_LT(took, 1000ms);
  }
}

TEST_F(ApiServerLimitsTest, IdleConnectionsTimeOut) {
  start_server({.idle_timeout = 200ms});
  const int fd = raw();
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(closed_by_server(fd, 3000ms));
}

// A client dribbling its headers (slowloris) is cut off after the request
// timeout even though it is never idle for long.
TEST_F(ApiServerLimitsTest, SlowRequestsAreCutOff) {
  start_server({.idle_timeout = 10s, .request_timeout = 300ms});
  const int fd = raw();
  ASSERT_GE(fd, 0);
  send_text(fd, "GET /_ping HTTP/1.1\r\n");
  const auto started = Clock::now();
  bool closed = false;
  while (!closed && Clock::now() - started < 5s) {
    ::send(fd, "X", 1, MSG_NOSIGNAL);
    closed = closed_by_server(fd, 100ms);
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(Clock::now() - started, 3s);
}

// With the descriptors gone, accept fails again and again: the server must
// neither spin nor log each failure, and must serve again afterwards.
TEST_F(ApiServerLimitsTest, RunningOutOfDescriptorsIsLoggedSparsely) {
  std::ostringstream log;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));

  start_server({.max_connections = 100000});
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  const int probe = ::dup(0);
  ASSERT_GE(probe, 0);
  ::close(probe);
  struct rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(probe) + 8;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  int connected = 0;
  for (int i = 0; i < 40; ++i) connected += raw() >= 0 ? 1 : 0;
  std::this_thread::sleep_for(2s);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_GT(connected, 0);

  EXPECT_EQ(timed_ping().first, 200u);
  stop_server();
  spdlog::set_default_logger(previous);

  const std::string text = log.str();
  std::size_t accept_failures = 0;
  for (std::size_t at = text.find("accept on"); at != std::string::npos; at = text.find("accept on", at + 1)) {
    ++accept_failures;
  }
  EXPECT_GE(accept_failures, 1u) << text;  // the test did exhaust the descriptors
  EXPECT_LE(accept_failures, 1u) << text;
}

}  // namespace
}  // namespace weft::control::api
