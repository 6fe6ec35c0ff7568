// GET /events over the agent's real socket: a chunked stream of Docker
// events, filtered, bounded by `until`, ended when the client goes, and at
// most a bounded number at once.
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/api/docker_engine.h"
#include "control/api/events.h"
#include "control/api/server.h"
#include "tests/unit/fake_network_service.h"

namespace weft::control::api {
namespace {

namespace asio = boost::asio;
using nlohmann::json;
using test_support::FakeNetworkService;
using namespace std::chrono_literals;

class ApiEventsStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/weft-api-events-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    socket_path_ = dir_ + "/weftd.sock";
    server_ = std::make_unique<ApiServer>(io_, socket_path_, Services{.networks = service_, .docker = &docker_});
    server_->start();
    io_thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    for (int fd : fds_) ::close(fd);
    asio::post(io_, [this] { server_->stop(); });
    io_thread_.join();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  int connect_and_send(const std::string& target) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path_.c_str());
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    const std::string request = "GET " + target + " HTTP/1.1\r\nHost: docker\r\n\r\n";
    EXPECT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
    fds_.push_back(fd);
    return fd;
  }

  // Reads until `needle` shows up, the peer closes, or `timeout` passes.
  static std::string read_until(int fd, const std::string& needle, std::chrono::milliseconds timeout = 3s,
                                bool* closed = nullptr) {
    std::string text;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (text.find(needle) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buffer[4096];
      const ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n <= 0) {
        if (closed) *closed = true;
        break;
      }
      text.append(buffer, static_cast<std::size_t>(n));
    }
    return text;
  }

  bool wait_for_subscribers(std::size_t count) {
    for (int i = 0; i < 200; ++i) {
      if (docker_.events.subscribers() == count) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::string dir_;
  std::string socket_path_;
  FakeNetworkService service_;
  DockerEngineState docker_;
  asio::io_context io_;
  std::unique_ptr<ApiServer> server_;
  std::thread io_thread_;
  std::vector<int> fds_;
};

TEST_F(ApiEventsStreamTest, StreamsFilteredEventsAsChunkedJsonLines) {
  const int fd = connect_and_send("/v1.41/events?filters=%7B%22type%22%3A%7B%22network%22%3Atrue%7D%7D");
  const std::string head = read_until(fd, "\r\n\r\n");
  EXPECT_NE(head.find("HTTP/1.1 200 OK"), std::string::npos) << head;
  EXPECT_NE(head.find("Transfer-Encoding: chunked"), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Type: application/json"), std::string::npos) << head;
  ASSERT_TRUE(wait_for_subscribers(1));

  docker_.events.publish({.type = "node", .action = "create", .actor_id = "n1"});  // filtered out
  docker_.events.publish({.type = "network", .action = "create", .actor_id = "net1", .attributes = {{"name", "a"}}});
  const std::string body = read_until(fd, "}\n");
  EXPECT_EQ(body.find("\"node\""), std::string::npos) << body;
  const auto start = body.find('{');
  ASSERT_NE(start, std::string::npos) << body;
  // One chunk: its size in hex, the JSON line, CRLF.
  const std::string line = body.substr(start, body.find('\n', start) - start + 1);
  char size[20];
  std::snprintf(size, sizeof size, "%zx\r\n", line.size());
  EXPECT_EQ(body.substr(0, start), size);
  const json event = json::parse(line);
  EXPECT_EQ(event["Type"], "network");
  EXPECT_EQ(event["Action"], "create");
  EXPECT_EQ(event["Actor"]["ID"], "net1");
}

TEST_F(ApiEventsStreamTest, UntilInThePastSendsTheHistoryAndEnds) {
  docker_.events.publish({.type = "network", .action = "create", .actor_id = "old"});
  const auto until = now_nano() / 1'000'000'000 + 1;
  std::this_thread::sleep_for(1100ms);
  docker_.events.publish({.type = "network", .action = "destroy", .actor_id = "later"});
  bool closed = false;
  const std::string text =
      read_until(connect_and_send("/v1.41/events?since=1&until=" + std::to_string(until)), "no such text", 3s, &closed);
  EXPECT_TRUE(closed) << text;
  EXPECT_NE(text.find("\"old\""), std::string::npos) << text;
  EXPECT_EQ(text.find("\"later\""), std::string::npos) << text;
  EXPECT_NE(text.find("\r\n0\r\n\r\n"), std::string::npos) << "the last chunk ends the stream: " << text;
  EXPECT_TRUE(wait_for_subscribers(0));
}

TEST_F(ApiEventsStreamTest, ClientGoneEndsTheSubscription) {
  const int fd = connect_and_send("/events");
  read_until(fd, "\r\n\r\n");
  ASSERT_TRUE(wait_for_subscribers(1));
  ::close(fd);
  fds_.clear();
  EXPECT_TRUE(wait_for_subscribers(0));
  // The server goes on serving.
  docker_.events.publish({.type = "network", .action = "create", .actor_id = "x"});
}

TEST_F(ApiEventsStreamTest, BadQueryIs400AndTooManyStreamsAre503) {
  const std::string bad = read_until(connect_and_send("/v1.41/events?filters=%7B%22bogus%22%3A%5B%5D%7D"), "}");
  EXPECT_NE(bad.find("400 Bad Request"), std::string::npos) << bad;
  EXPECT_NE(bad.find("invalid filter 'bogus'"), std::string::npos) << bad;
  const std::string too_new = read_until(connect_and_send("/v1.99/events"), "}");
  EXPECT_NE(too_new.find("is too new"), std::string::npos) << too_new;

  for (int i = 0; i < 32; ++i) read_until(connect_and_send("/events"), "\r\n\r\n");
  ASSERT_TRUE(wait_for_subscribers(32));
  const std::string refused = read_until(connect_and_send("/events"), "}");
  EXPECT_NE(refused.find("503"), std::string::npos) << refused;
  EXPECT_EQ(docker_.events.subscribers(), 32u);
}

}  // namespace
}  // namespace weft::control::api
