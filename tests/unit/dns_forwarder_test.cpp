// The forwarder's UDP path: pooled upstream sockets (not one per query),
// their rotation to new ports, answers matched on ID, socket and question,
// and the single deadline timer moving every query on.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>

#include "dns/forwarder.h"
#include "dns_test_support.h"

namespace weft::dns::testing {
namespace {

using ::testing::Le;

// A UDP upstream on loopback that records the source port of every query
// and answers each with one A record. With `forge_first`, every query first
// gets an answer with the right ID but another question (what a spoofer
// who guessed the ID would send), then the real one.
class RecordingUpstream {
 public:
  explicit RecordingUpstream(bool forge_first = false)
      : forge_first_(forge_first), socket_(io_, udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0)) {
    serve();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~RecordingUpstream() {
    io_.stop();
    thread_.join();
  }
  udp::endpoint endpoint() const { return socket_.local_endpoint(); }
  std::set<uint16_t> ports() {
    std::lock_guard lock(mutex_);
    return ports_;
  }
  int queries() const { return queries_; }

 private:
  static std::vector<uint8_t> answer(std::vector<uint8_t> q) {
    q[2] |= 0x80;
    q[3] = 0x80;
    q[7] = 1;  // one answer
    q[10] = q[11] = 0;
    std::size_t at = 12;
    while (at < q.size() && q[at] != 0) at += q[at] + 1u;
    q.resize(std::min(q.size(), at + 5));
    const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7};
    q.insert(q.end(), std::begin(rr), std::end(rr));
    return q;
  }
  void serve() {
    socket_.async_receive_from(asio::buffer(buffer_), peer_, [this](boost::system::error_code ec, std::size_t n) {
      if (ec) return;
      ++queries_;
      {
        std::lock_guard lock(mutex_);
        ports_.insert(peer_.port());
      }
      auto a = answer({buffer_.begin(), buffer_.begin() + static_cast<long>(n)});
      if (forge_first_) {
        auto forged = a;
        forged[13] ^= 0x01;  // the first letter of the name changes (not only its case)
        forged.back() = 66;  // and the address
        socket_.send_to(asio::buffer(forged), peer_);
      }
      socket_.send_to(asio::buffer(a), peer_);
      serve();
    });
  }
  bool forge_first_;
  asio::io_context io_;
  udp::socket socket_;
  std::array<uint8_t, 4096> buffer_{};
  udp::endpoint peer_;
  std::mutex mutex_;
  std::set<uint16_t> ports_;
  std::atomic<int> queries_{0};
  std::thread thread_;
};

// Forwards `count` queries at once on a forwarder of its own and runs its
// loop until every answer is in (or 5 s pass).
struct Run {
  std::vector<std::vector<uint8_t>> answers;
  std::size_t in_flight_after = 0;
  std::size_t sockets_after = 0;
};
Run forward_all(ForwarderConfig config, int count, int concurrently = 0) {
  asio::io_context io;
  Forwarder forwarder(io, std::move(config));
  Run run;
  int started = 0;
  std::function<void()> start_one = [&] {
    const int i = started++;
    forwarder.forward(make_query("host" + std::to_string(i) + ".example", 1, static_cast<uint16_t>(0x4000 + i)),
                      [&](std::vector<uint8_t> answer) {
                        run.answers.push_back(std::move(answer));
                        if (started < count) start_one();  // one after another when not concurrent
                      });
  };
  for (int i = 0; i < std::max(concurrently, 1) && started < count; ++i) start_one();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (static_cast<int>(run.answers.size()) < count && std::chrono::steady_clock::now() < until)
    io.run_for(std::chrono::milliseconds(20));
  run.in_flight_after = forwarder.in_flight();
  run.sockets_after = forwarder.upstream_sockets();
  return run;
}

TEST(DnsForwarderTest, QueriesShareAFewSocketsInsteadOfOneEach) {
  RecordingUpstream upstream;
  ForwarderConfig config{{upstream.endpoint()}};
  config.cache_entries = 0;
  config.sockets_per_upstream = 3;
  auto run = forward_all(config, 200, 50);
  ASSERT_EQ(run.answers.size(), 200u);
  for (const auto& a : run.answers) EXPECT_EQ(rcode_of(a), 0);
  EXPECT_EQ(upstream.queries(), 200);
  // A socket per query would have come from ~200 ports.
  EXPECT_THAT(upstream.ports().size(), Le(3u));
  EXPECT_EQ(run.in_flight_after, 0u);
}

TEST(DnsForwarderTest, SocketsMoveToNewPortsAfterTheirShareOfQueries) {
  RecordingUpstream upstream;
  ForwarderConfig config{{upstream.endpoint()}};
  config.cache_entries = 0;
  config.sockets_per_upstream = 2;
  config.queries_per_socket = 10;
  auto run = forward_all(config, 100);
  ASSERT_EQ(run.answers.size(), 100u);
  // 100 queries, 10 per socket: 10 sockets over time, each on its own port
  // (ports are random, so two may collide by chance: allow a little).
  EXPECT_GE(upstream.ports().size(), 8u);
  // Retired sockets are closed once their answers are in.
  EXPECT_THAT(run.sockets_after, Le(2u));
}

// Answers are read a batch at a time (recvmmsg) with no call that only
// finds the socket empty: answers queued beyond one batch, and beyond one
// wake-up's bound, must still all be taken (the wait re-arms the socket).
TEST(DnsForwarderTest, AnswersQueuedBeyondABatchAreAllTaken) {
  RecordingUpstream upstream;
  ForwarderConfig config{{upstream.endpoint()}};
  config.cache_entries = 0;
  config.sockets_per_upstream = 1;
  asio::io_context io;
  Forwarder forwarder(io, config);
  constexpr int count = 150;  // > 8 rounds of 8 per wake-up
  int answered = 0;
  for (int i = 0; i < count; ++i)
    forwarder.forward(make_query("queued" + std::to_string(i) + ".example", 1, static_cast<uint16_t>(i)),
                      [&](std::vector<uint8_t> answer) {
                        if (rcode_of(answer) == 0) ++answered;
                      });
  // Every answer waits in the one socket's queue before the loop first runs.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (upstream.queries() < count && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(upstream.queries(), count);
  while (answered < count && std::chrono::steady_clock::now() < until) io.run_for(std::chrono::milliseconds(20));
  EXPECT_EQ(answered, count);
  EXPECT_EQ(forwarder.in_flight(), 0u);
}

TEST(DnsForwarderTest, AnswerWithTheRightIdButAnotherQuestionIsIgnored) {
  RecordingUpstream upstream(/*forge_first=*/true);
  ForwarderConfig config{{upstream.endpoint()}};
  config.cache_entries = 0;
  auto run = forward_all(config, 20, 5);
  ASSERT_EQ(run.answers.size(), 20u);
  for (const auto& a : run.answers) {
    ASSERT_GE(a.size(), 4u);
    EXPECT_EQ(rcode_of(a), 0);
    EXPECT_EQ(a.back(), 7) << "the forged answer (address ...66) got through";
  }
}

TEST(DnsForwarderTest, ClientIdsComeBackAndUpstreamIdsDiffer) {
  RecordingUpstream upstream;
  ForwarderConfig config{{upstream.endpoint()}};
  config.cache_entries = 0;
  auto run = forward_all(config, 30, 30);
  ASSERT_EQ(run.answers.size(), 30u);
  std::set<uint16_t> ids;
  for (const auto& a : run.answers) ids.insert(static_cast<uint16_t>(a[0] << 8 | a[1]));
  EXPECT_EQ(ids.size(), 30u);
  EXPECT_EQ(*ids.begin(), 0x4000);
  EXPECT_EQ(*ids.rbegin(), 0x4000 + 29);
}

TEST(DnsForwarderTest, ManyQueriesOnASilentUpstreamAllFailAfterOneTimeout) {
  asio::io_context silent_io;
  udp::socket silent(silent_io, udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0));  // never reads
  ForwarderConfig config{{silent.local_endpoint(), silent.local_endpoint()}, std::chrono::milliseconds(200)};
  config.cache_entries = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto run = forward_all(config, 100, 100);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(run.answers.size(), 100u);
  for (const auto& a : run.answers) EXPECT_EQ(rcode_of(a), 2);  // SERVFAIL
  // Two upstreams, 200 ms each: all done after ~400 ms, not 100 x that.
  EXPECT_GE(took, std::chrono::milliseconds(400));
  EXPECT_LT(took, std::chrono::milliseconds(2000));
  EXPECT_EQ(run.in_flight_after, 0u);
}

TEST(DnsForwarderTest, StopAnswersWhatIsInFlightAndLeavesTheLoopIdle) {
  asio::io_context silent_io;
  udp::socket silent(silent_io, udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0));  // never reads
  asio::io_context io;
  Forwarder forwarder(io, ForwarderConfig{{silent.local_endpoint()}, std::chrono::seconds(30)});
  std::vector<int> rcodes;
  for (int i = 0; i < 3; ++i)
    forwarder.forward(make_query("q" + std::to_string(i) + ".example", 1),
                      [&](std::vector<uint8_t> answer) { rcodes.push_back(rcode_of(answer)); });
  io.run_for(std::chrono::milliseconds(50));
  ASSERT_EQ(forwarder.in_flight(), 3u);
  ASSERT_GE(forwarder.upstream_sockets(), 1u);
  forwarder.stop();
  EXPECT_EQ(rcodes, (std::vector<int>{2, 2, 2}));  // SERVFAIL
  EXPECT_EQ(forwarder.in_flight(), 0u);
  EXPECT_EQ(forwarder.upstream_sockets(), 0u);
  // No socket wait and no timer left: run() returns instead of waiting 30 s.
  io.restart();
  const auto t0 = std::chrono::steady_clock::now();
  io.run_for(std::chrono::seconds(5));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
}

TEST(DnsForwarderTest, UnreachableUpstreamMovesOnAtOnceNotAfterTheTimeout) {
  RecordingUpstream upstream;
  udp::endpoint closed;
  {
    asio::io_context io;
    udp::socket s(io, udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0));
    closed = s.local_endpoint();
  }  // nothing listens there now: the kernel answers ICMP port unreachable
  ForwarderConfig config{{closed, upstream.endpoint()}, std::chrono::seconds(3)};
  config.cache_entries = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto run = forward_all(config, 10, 10);
  ASSERT_EQ(run.answers.size(), 10u);
  for (const auto& a : run.answers) EXPECT_EQ(rcode_of(a), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(upstream.queries(), 10);
}

}  // namespace
}  // namespace weft::dns::testing
