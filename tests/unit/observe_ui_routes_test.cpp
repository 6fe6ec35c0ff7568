// The live page's routes on the real observability listener, over loopback
// TCP: /ui, /api/v1/state, and /api/v1/events pushing the state when it
// changes; nothing but GET/HEAD.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "observe/event_feed.h"
#include "observe/http_server.h"
#include "observe/ui_routes.h"

namespace weft::observe {
namespace {

using namespace std::chrono_literals;

// Sends one request and reads what comes until `enough` or the timeout.
std::string exchange(const boost::asio::ip::tcp::endpoint& to, const std::string& request,
                     const std::function<bool(const std::string&)>& enough, std::chrono::milliseconds timeout = 3s) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(to.port());
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string received;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!enough(received)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd entry{fd, POLLIN, 0};
      if (left <= 0ms || ::poll(&entry, 1, static_cast<int>(left.count())) <= 0) break;
      char buffer[8192];
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      received.append(buffer, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return received;
}

std::string get(const boost::asio::ip::tcp::endpoint& to, const std::string& path, const std::string& method = "GET") {
  return exchange(to, method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                  [](const std::string&) { return false; });
}

class TwoNodes : public StateSource {
 public:
  ClusterSnapshot snapshot;
  TwoNodes() {
    snapshot.node = "node1";
    snapshot.nodes = {{"node1", "192.0.2.1", "Ready", "weft", true}, {"node2", "192.0.2.2", "Ready", "weft", false}};
  }
  ClusterSnapshot read() override { return snapshot; }
};

TEST(ObserveUiRoutes, ServeThePageTheStateAndTheEventStream) {
  TwoNodes source;
  EventFeed feed(source);
  ObserveServer server(boost::asio::ip::tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0));
  add_ui_routes(server, feed);
  server.start();
  const auto at = server.local_endpoint();
  const auto t0 = std::chrono::steady_clock::now();
  feed.refresh(t0);

  const std::string page = get(at, "/ui");
  EXPECT_NE(page.find("HTTP/1.1 200"), std::string::npos) << page.substr(0, 200);
  EXPECT_NE(page.find("text/html"), std::string::npos);
  EXPECT_NE(page.find("data-node"), std::string::npos);

  const std::string state = get(at, "/api/v1/state");
  ASSERT_NE(state.find("\r\n\r\n"), std::string::npos);
  const auto json = nlohmann::json::parse(state.substr(state.find("\r\n\r\n") + 4));
  EXPECT_EQ(json["nodes"].size(), 2u);
  EXPECT_EQ(json["events"].size(), 0u);

  // Read-only: the listener refuses anything but GET and HEAD.
  EXPECT_NE(get(at, "/api/v1/state", "POST").find("HTTP/1.1 405"), std::string::npos);

  // A stream gets the state at once, then the change (node2 down), pushed.
  std::thread change([&] {
    std::this_thread::sleep_for(300ms);
    source.snapshot.nodes[1].state = "Down";
    feed.refresh(t0 + 2s);
  });
  const std::string stream =
      exchange(at, "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
               [](const std::string& r) { return r.find("node-down") != std::string::npos; });
  change.join();
  EXPECT_NE(stream.find("text/event-stream"), std::string::npos) << stream.substr(0, 300);
  const auto first = stream.find("event: state\ndata: ");
  ASSERT_NE(first, std::string::npos) << stream.substr(0, 300);
  const auto second = stream.find("event: state\ndata: ", first + 1);
  ASSERT_NE(second, std::string::npos) << stream;
  EXPECT_NE(stream.find(R"("kind":"node-down")", second), std::string::npos);
  server.stop();
}

}  // namespace
}  // namespace weft::observe
