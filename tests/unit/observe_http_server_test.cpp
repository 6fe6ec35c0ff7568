// The observability listener (observe/http_server.h) over real loopback TCP:
// routes, 404/405, HEAD, limits (header size, slow client, stream count),
// event streams, stop() with streams open, and listen-address parsing.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "observe/http_server.h"

namespace weft::observe {
namespace {

using namespace std::chrono_literals;
using tcp = boost::asio::ip::tcp;

class Client {
 public:
  explicit Client(const tcp::endpoint& to) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(to.port());
    address.sin_addr.s_addr = htonl(to.address().to_v4().to_uint());
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }
  void send(const std::string& text) { (void)::send(fd_, text.data(), text.size(), MSG_NOSIGNAL); }

  // Reads until `done(received)` or EOF or the timeout; returns what came.
  template <class Done>
  std::string read_until(Done done, std::chrono::milliseconds timeout = 3s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done(received_) && !eof_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) break;
      pollfd entry{fd_, POLLIN, 0};
      if (::poll(&entry, 1, static_cast<int>(left.count())) <= 0) break;
      char buffer[4096];
      const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n <= 0) {
        eof_ = true;
        break;
      }
      received_.append(buffer, static_cast<std::size_t>(n));
    }
    return received_;
  }
  std::string read_all(std::chrono::milliseconds timeout = 3s) {
    return read_until([](const std::string&) { return false; }, timeout);
  }
  // One whole response with a Content-Length (or headers only, for HEAD).
  std::string read_response(bool head = false) {
    return read_until([head](const std::string& r) {
      const auto end = r.find("\r\n\r\n");
      if (end == std::string::npos) return false;
      if (head) return true;
      const auto length_at = r.find("Content-Length: ");
      if (length_at == std::string::npos || length_at > end) return true;
      const std::size_t length = std::stoul(r.substr(length_at + 16));
      return r.size() >= end + 4 + length;
    });
  }
  bool eof() const { return eof_; }
  void clear() { received_.clear(); }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string received_;
};

tcp::endpoint loopback() { return {boost::asio::ip::make_address("127.0.0.1"), 0}; }

std::string get(const std::string& path, const std::string& method = "GET") {
  return method + " " + path + " HTTP/1.1\r\nHost: test\r\n\r\n";
}

struct ObserveHttpServer : ::testing::Test {
  void start(ObserveServerLimits limits = {}) {
    server = std::make_unique<ObserveServer>(loopback(), limits);
    server->add_route("/metrics", [](const HttpGet& request) {
      return HttpReply{200, "text/plain; version=0.0.4", "up 1\nquery " + request.query + "\n"};
    });
    server->add_stream("/events", [this](std::shared_ptr<EventSink> sink) {
      std::lock_guard lock(mutex);
      sinks.push_back(std::move(sink));
    });
    server->start();
  }
  std::size_t sink_count() {
    std::lock_guard lock(mutex);
    return sinks.size();
  }
  bool wait_sinks(std::size_t n) {
    for (int i = 0; i < 300 && sink_count() < n; ++i) std::this_thread::sleep_for(10ms);
    return sink_count() >= n;
  }

  std::unique_ptr<ObserveServer> server;
  std::mutex mutex;
  std::vector<std::shared_ptr<EventSink>> sinks;
};

TEST_F(ObserveHttpServer, ServesRouteWithQueryAndKeepsTheConnection) {
  start();
  Client c(server->local_endpoint());
  ASSERT_TRUE(c.connected());
  c.send(get("/metrics?x=1"));
  const std::string first = c.read_response();
  EXPECT_TRUE(first.starts_with("HTTP/1.1 200 OK\r\n")) << first;
  EXPECT_NE(first.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << first;
  EXPECT_NE(first.find("up 1\nquery x=1\n"), std::string::npos) << first;
  c.clear();
  c.send(get("/metrics"));  // the same connection
  EXPECT_TRUE(c.read_response().starts_with("HTTP/1.1 200 OK\r\n"));
}

TEST_F(ObserveHttpServer, UnknownPathIs404) {
  start();
  Client c(server->local_endpoint());
  c.send(get("/nope"));
  EXPECT_TRUE(c.read_response().starts_with("HTTP/1.1 404 ")) << c.read_response();
}

TEST_F(ObserveHttpServer, OtherMethodsAre405WithAllow) {
  start();
  for (const std::string method : {"POST", "PUT", "DELETE", "PATCH"}) {
    Client c(server->local_endpoint());
    c.send(method + " /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    const std::string reply = c.read_response();
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 405 ")) << method << ": " << reply;
    EXPECT_NE(reply.find("Allow: GET, HEAD\r\n"), std::string::npos) << reply;
  }
}

TEST_F(ObserveHttpServer, HeadHasHeadersAndNoBody) {
  start();
  Client c(server->local_endpoint());
  c.send(get("/metrics", "HEAD") + get("/nope"));
  // Both replies come; the HEAD one has Content-Length of the GET body but no body,
  // so the next response follows its headers at once.
  const std::string both = c.read_until([](const std::string& r) { return r.find("HTTP/1.1 404") != std::string::npos; });
  ASSERT_TRUE(both.starts_with("HTTP/1.1 200 OK\r\n")) << both;
  const auto end = both.find("\r\n\r\n");
  EXPECT_NE(both.substr(0, end).find("Content-Length: 12"), std::string::npos) << both;
  EXPECT_TRUE(both.substr(end + 4).starts_with("HTTP/1.1 404")) << both;
}

TEST_F(ObserveHttpServer, OversizedHeaderIs431AndClosed) {
  ObserveServerLimits limits;
  limits.max_request_header_bytes = 1024;
  start(limits);
  Client c(server->local_endpoint());
  c.send("GET /metrics HTTP/1.1\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n");
  const std::string reply = c.read_all();
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 431 ")) << reply;
  EXPECT_TRUE(c.eof());
}

TEST_F(ObserveHttpServer, SlowClientIsClosed) {
  ObserveServerLimits limits;
  limits.request_timeout = 200ms;
  start(limits);
  Client c(server->local_endpoint());
  c.send("GET /metrics HTTP/1.1\r\nHost:");  // and never the rest
  const auto started = std::chrono::steady_clock::now();
  c.read_all(3s);
  EXPECT_TRUE(c.eof());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
}

TEST_F(ObserveHttpServer, IdleKeepAliveConnectionIsClosed) {
  ObserveServerLimits limits;
  limits.idle_timeout = 200ms;
  start(limits);
  Client c(server->local_endpoint());
  c.send(get("/metrics"));
  c.read_response();
  c.read_all(3s);
  EXPECT_TRUE(c.eof());
}

TEST_F(ObserveHttpServer, OverConnectionLimitTheIdlestGoes) {
  ObserveServerLimits limits;
  limits.max_connections = 2;
  start(limits);
  Client a(server->local_endpoint());
  std::this_thread::sleep_for(50ms);
  Client b(server->local_endpoint());
  std::this_thread::sleep_for(50ms);
  Client c(server->local_endpoint());
  a.read_all(1s);
  EXPECT_TRUE(a.eof());
  c.send(get("/metrics"));
  EXPECT_TRUE(c.read_response().starts_with("HTTP/1.1 200"));
}

TEST_F(ObserveHttpServer, StreamReceivesFrames) {
  start();
  Client c(server->local_endpoint());
  c.send(get("/events"));
  ASSERT_TRUE(wait_sinks(1));
  EXPECT_TRUE(sinks[0]->open());
  EXPECT_TRUE(sinks[0]->send("data: one\n\n"));
  EXPECT_TRUE(sinks[0]->send("data: two\n\n"));
  const std::string got = c.read_until([](const std::string& r) { return r.find("data: two\n\n") != std::string::npos; });
  EXPECT_TRUE(got.starts_with("HTTP/1.1 200 OK\r\n")) << got;
  EXPECT_NE(got.find("Content-Type: text/event-stream\r\n"), std::string::npos) << got;
  EXPECT_NE(got.find("Cache-Control: no-cache\r\n"), std::string::npos) << got;
  EXPECT_NE(got.find("\r\n\r\ndata: one\n\ndata: two\n\n"), std::string::npos) << got;
}

TEST_F(ObserveHttpServer, StreamSinkClosesWhenClientGoes) {
  start();
  {
    Client c(server->local_endpoint());
    c.send(get("/events"));
    ASSERT_TRUE(wait_sinks(1));
  }
  bool closed = false;
  for (int i = 0; i < 300 && !closed; ++i) {
    closed = !sinks[0]->open();
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(closed);
  EXPECT_FALSE(sinks[0]->send("data: late\n\n"));
}

TEST_F(ObserveHttpServer, StreamOverBacklogIsClosed) {
  ObserveServerLimits limits;
  limits.max_stream_backlog_bytes = 64 * 1024;
  start(limits);
  Client c(server->local_endpoint());  // never reads
  c.send(get("/events"));
  ASSERT_TRUE(wait_sinks(1));
  const std::string frame = "data: " + std::string(8000, 'x') + "\n\n";
  bool refused = false;
  for (int i = 0; i < 10000 && !refused; ++i) refused = !sinks[0]->send(frame);
  EXPECT_TRUE(refused);
  EXPECT_FALSE(sinks[0]->open());
}

TEST_F(ObserveHttpServer, StreamLimitGives503) {
  ObserveServerLimits limits;
  limits.max_streams = 2;
  start(limits);
  Client a(server->local_endpoint()), b(server->local_endpoint()), c(server->local_endpoint());
  a.send(get("/events"));
  b.send(get("/events"));
  ASSERT_TRUE(wait_sinks(2));
  c.send(get("/events"));
  const std::string reply = c.read_response();
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 503 ")) << reply;
  EXPECT_EQ(sink_count(), 2u);
}

TEST_F(ObserveHttpServer, StopWithOpenStreamsReturnsAndClosesThem) {
  start();
  Client a(server->local_endpoint()), b(server->local_endpoint());
  a.send(get("/events"));
  b.send(get("/events"));
  ASSERT_TRUE(wait_sinks(2));
  const auto started = std::chrono::steady_clock::now();
  server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  a.read_all(2s);
  EXPECT_TRUE(a.eof());
  for (auto& sink : sinks) {
    EXPECT_FALSE(sink->open());
    EXPECT_FALSE(sink->send("data: after\n\n"));
  }
  server->stop();  // idempotent
  server.reset();
  // A sink outliving its server stays safe to call.
  EXPECT_FALSE(sinks[0]->send("data: gone\n\n"));
}

TEST(ObserveHttpServerStart, TakenPortFailsWithTheAddressAndCause) {
  ObserveServer first(loopback());
  first.start();
  ObserveServer second(first.local_endpoint());
  try {
    second.start();
    FAIL() << "expected the second start to fail";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("127.0.0.1:" + std::to_string(first.local_endpoint().port())), std::string::npos)
        << message;
    EXPECT_NE(message.find("in use"), std::string::npos) << message;
  }
}

TEST(ParseListenAddress, Good) {
  EXPECT_EQ(parse_listen_address("192.0.2.1:9323"),
            tcp::endpoint(boost::asio::ip::make_address("192.0.2.1"), 9323));
  EXPECT_EQ(parse_listen_address("0.0.0.0:1"), tcp::endpoint(boost::asio::ip::make_address("0.0.0.0"), 1));
  EXPECT_EQ(parse_listen_address("[::1]:65535"), tcp::endpoint(boost::asio::ip::make_address("::1"), 65535));
}

TEST(ParseListenAddress, Bad) {
  for (const char* text : {"", "9323", ":9323", "192.0.2.1", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:65536",
                           "192.0.2.1:99999999", "192.0.2.1:12a", "192.0.2.1:-1", "localhost:9323", "::1:9323",
                           "[192.0.2.1]:9323", "[::1]", "300.0.0.1:9323", "192.0.2.1:+80"}) {
    EXPECT_THROW(parse_listen_address(text), ListenAddressError) << text;
  }
}

}  // namespace
}  // namespace weft::observe
