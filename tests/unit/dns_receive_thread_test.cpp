// The server's receive threads: a UDP socket the loop finds far behind is
// served by a thread of its own (blocking recvmmsg), which answers every
// query queued, hands forwarded ones to the loop, gives the socket back when
// it goes quiet, and is gone (thread and descriptor) when the context is
// removed under load. Plain sockets on 127.0.0.1; no root needed.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <set>

#include "tests/unit/dns_test_support.h"

namespace weft::dns::testing {
namespace {

Ipv4 ip(const char* text) { return asio::ip::make_address_v4(text); }

std::size_t threads_of_this_process() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// A client socket connected to the server's port.
class Client {
 public:
  explicit Client(uint16_t port) : fd_(::socket(AF_INET, SOCK_DGRAM, 0)) {
    const int size = 4 << 20;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::connect(fd_, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `count` A queries for `name`, IDs first..first+count-1, in one sendmmsg per 64.
  void send(const std::string& name, uint16_t first, std::size_t count) {
    std::vector<std::vector<uint8_t>> queries;
    for (std::size_t i = 0; i < count; ++i) queries.push_back(make_query(name, 1, static_cast<uint16_t>(first + i)));
    for (std::size_t at = 0; at < count;) {
      const std::size_t n = std::min<std::size_t>(64, count - at);
      std::vector<mmsghdr> msgs(n);
      std::vector<iovec> iovs(n);
      for (std::size_t i = 0; i < n; ++i) {
        iovs[i] = iovec{queries[at + i].data(), queries[at + i].size()};
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      const int sent = ::sendmmsg(fd_, msgs.data(), static_cast<unsigned>(n), 0);
      if (sent <= 0) return;
      at += static_cast<std::size_t>(sent);
    }
  }
  // The IDs of the NOERROR answers that arrive within `wait` of the last one.
  std::set<uint16_t> receive(std::size_t expected, std::chrono::milliseconds wait = std::chrono::milliseconds(2000)) {
    std::set<uint16_t> ids;
    std::array<uint8_t, 1024> buffer{};
    timeval tv{0, static_cast<suseconds_t>(std::chrono::microseconds(wait).count() % 1000000)};
    tv.tv_sec = static_cast<time_t>(wait.count() / 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (ids.size() < expected) {
      const auto n = ::recv(fd_, buffer.data(), buffer.size(), 0);
      if (n < 0) break;
      if (n >= 12 && (buffer[3] & 0x0f) == 0 && (buffer[7] > 0)) ids.insert(static_cast<uint16_t>(buffer[0] << 8 | buffer[1]));
    }
    return ids;
  }
  // Queries and answers as fast as the server goes, until stopped: a busy socket.
  void flood(const std::atomic<bool>& stop, const std::string& name) {
    std::array<uint8_t, 1024> buffer{};
    uint16_t id = 0;
    while (!stop.load()) {
      send(name, id, 64);
      id = static_cast<uint16_t>(id + 64);
      pollfd p{fd_, POLLIN, 0};
      ::poll(&p, 1, 1);
      while (::recv(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT) > 0) answers_.fetch_add(1);
    }
  }
  uint64_t answers() const { return answers_.load(); }

 private:
  int fd_;
  std::atomic<uint64_t> answers_{0};
};

class DnsReceiveThreadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    view_.set_network("front", {Service{"web", EndpointMode::dnsrr, {}, {ip("10.0.1.5"), ip("10.0.1.6")}, {}}},
                      {Endpoint{"client", {}, ip("10.0.1.20")}});
    view_.set_context("ep-front", {"front"});
  }
  void create(ServerLimits limits, ForwarderConfig forwarder = {}) {
    harness_ = std::make_unique<ServerHarness>(view_, ResponderConfig{}, std::move(forwarder), limits);
    port_ = harness_->listen("ep-front");
  }
  ServerStats stats() {
    return harness_->on_loop([&] { return harness_->server().stats(); });
  }
  bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return done();
  }

  StaticNameView view_;
  std::unique_ptr<ServerHarness> harness_;
  uint16_t port_ = 0;
};

TEST_F(DnsReceiveThreadTest, ABacklogIsAllAnsweredAndItsSocketGetsAThread) {
  create(ServerLimits{.udp_threads = 1, .promote_after = 32});
  Client client(port_);
  // Queued before the loop runs: its first wake-up finds them all.
  client.send("web", 0, 150);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  harness_->start();
  EXPECT_EQ(client.receive(150).size(), 150u);
  ASSERT_TRUE(wait_for([&] { return stats().udp_threads == 1; })) << "no receive thread";
  EXPECT_EQ(stats().promotions, 1u);
  // Now the thread serves the socket: bursts queued faster than it wakes
  // are all answered, each with the records.
  for (int burst = 0; burst < 5; ++burst) {
    // 120: well within the server socket's default buffer (rmem_default).
    const uint16_t first = static_cast<uint16_t>(1000 + burst * 120);
    client.send(burst % 2 ? "client" : "web", first, 120);
    const auto ids = client.receive(120);
    EXPECT_EQ(ids.size(), 120u) << "burst " << burst;
    if (!ids.empty()) {
      EXPECT_EQ(*ids.begin(), first);
      EXPECT_EQ(*ids.rbegin(), first + 119);
    }
  }
  const auto after = stats();
  EXPECT_EQ(after.udp_threads, 1u);
  EXPECT_EQ(after.udp_queries, 150u + 5 * 120);
  EXPECT_EQ(after.dropped, 0u);
  // The metrics count them too (relaxed atomics bumped from both threads).
  EXPECT_EQ(harness_->server().metrics().requests(0, 0), 150u + 5 * 120);
  EXPECT_EQ(harness_->server().metrics().responses(0), 150u + 5 * 120);
}

TEST_F(DnsReceiveThreadTest, RemovingTheContextUnderLoadLeavesNoThreadAndNoDescriptor) {
  create(ServerLimits{.udp_threads = 2, .promote_after = 32});
  harness_->start();
  Client client(port_);
  std::atomic<bool> stop{false};
  std::thread load([&] { client.flood(stop, "web"); });
  ASSERT_TRUE(wait_for([&] { return stats().udp_threads == 1; })) << "no receive thread under load";
  ASSERT_TRUE(wait_for([&] { return client.answers() > 1000; }));
  const std::size_t threads_served = threads_of_this_process();
  harness_->on_loop([&] {
    harness_->server().remove_context("ep-front");
    return 0;
  });
  EXPECT_EQ(stats().udp_threads, 0u);
  EXPECT_EQ(threads_of_this_process(), threads_served - 1) << "the receive thread is still there";
  // The descriptor is closed: the port binds again (no SO_REUSEADDR for UDP).
  asio::io_context io;
  udp::socket again(io);
  again.open(udp::v4());
  boost::system::error_code ec;
  again.bind(udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port_), ec);
  EXPECT_FALSE(ec) << "127.0.0.1:" << port_ << " still taken: " << ec.message();
  stop = true;
  load.join();
}

TEST_F(DnsReceiveThreadTest, AQuietThreadHandsItsSocketBackToTheLoop) {
  create(ServerLimits{.udp_threads = 1,
                      .promote_after = 32,
                      .thread_check = std::chrono::milliseconds(100),
                      .thread_min_answers = 1000});
  harness_->start();
  const std::size_t threads_idle = threads_of_this_process();
  for (int cycle = 1; cycle <= 2; ++cycle) {
    Client client(port_);
    std::atomic<bool> stop{false};
    std::thread load([&] { client.flood(stop, "web"); });
    ASSERT_TRUE(wait_for([&] { return stats().udp_threads == 1; })) << "cycle " << cycle;
    stop = true;
    load.join();
    ASSERT_TRUE(wait_for([&] { return stats().udp_threads == 0; })) << "the thread kept the quiet socket";
    const auto s = stats();
    EXPECT_EQ(s.promotions, static_cast<uint64_t>(cycle));
    EXPECT_EQ(s.demotions, static_cast<uint64_t>(cycle));
    EXPECT_EQ(threads_of_this_process(), threads_idle);
    // The loop serves it again.
    auto answer = send_query(port_, make_query("client", 1));
    ASSERT_TRUE(answer) << "cycle " << cycle;
    EXPECT_EQ(rcode_of(*answer), 0);
  }
}

TEST_F(DnsReceiveThreadTest, AThreadHandsNamesItDoesNotOwnToTheForwarder) {
  if (!have("dnsmasq") || !have("dig")) GTEST_SKIP() << "dnsmasq or dig missing: run scripts/setup";
  Dnsmasq upstream({"--address=/ext.example/192.0.2.55"});
  create(ServerLimits{.udp_threads = 1, .promote_after = 32}, ForwarderConfig{{upstream.endpoint()}});
  harness_->start();
  Client client(port_);
  std::atomic<bool> stop{false};
  std::thread load([&] { client.flood(stop, "web"); });
  ASSERT_TRUE(wait_for([&] { return stats().udp_threads == 1; }));
  // Same socket, while the thread serves it.
  Client asker(port_);
  asker.send("ext.example", 0x4242, 1);
  const auto ids = asker.receive(1);
  EXPECT_EQ(ids.count(0x4242), 1u) << "the forwarded answer did not come back";
  EXPECT_EQ(upstream.queries_for("ext.example"), 1);
  EXPECT_EQ(stats().udp_threads, 1u);
  stop = true;
  load.join();
  EXPECT_GE(stats().forwarded, 1u);
}

}  // namespace
}  // namespace weft::dns::testing
