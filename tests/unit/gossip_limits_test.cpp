// What an unauthenticated gossip peer can cost: the rate-limited warnings,
// the stream reader's size and buffer limits, and a memberlist node's
// inbound stream cap, driven over loopback.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <iostream>
#include <nlohmann/json.hpp>

#include "control/gossip/log_limiter.h"
#include "control/gossip/memberlist.h"
#include "control/gossip/security.h"
#include "control/gossip/serf_compat.h"
#include "control/gossip/stream.h"
#include "control/cluster/weft_messages.h"
#include "control/tables/replicated_tables.h"

namespace gossip = weft::control::gossip;
namespace asio = boost::asio;
using gossip::Bytes;
using gossip::ByteView;
using weft::control::LogLimiter;
using namespace std::chrono_literals;

namespace {

// [encrypt][u32 BE length]: all a hostile peer needs to send to make an
// agent that trusts the length wait for (and buffer) that much.
Bytes encrypted_header(std::uint32_t len) {
  return {10, static_cast<std::uint8_t>(len >> 24), static_cast<std::uint8_t>(len >> 16),
          static_cast<std::uint8_t>(len >> 8), static_cast<std::uint8_t>(len)};
}

struct Lines {
  std::vector<std::string> lines;
  LogLimiter::Sink sink() {
    return [this](const std::string& l) { lines.push_back(l); };
  }
};

}  // namespace

// ---- LogLimiter ------------------------------------------------------------

TEST(LogLimiter, FirstIsLoggedThenOneSummaryPerInterval) {
  Lines out;
  LogLimiter limiter(10s, 16, out.sink());
  const auto t0 = LogLimiter::Clock::now();
  EXPECT_TRUE(limiter.allow("bad packets", "192.0.2.9", t0));
  for (int i = 1; i <= 1000; ++i) EXPECT_FALSE(limiter.allow("bad packets", "192.0.2.9", t0 + i * 1ms));
  EXPECT_TRUE(out.lines.empty());
  // The next interval starts with a full line again, after the summary.
  EXPECT_TRUE(limiter.allow("bad packets", "192.0.2.9", t0 + 10s));
  ASSERT_EQ(out.lines.size(), 1u);
  EXPECT_EQ(out.lines[0], "1000 more bad packets from 192.0.2.9 in the last 10s");
}

TEST(LogLimiter, KeysAreKindAndSource) {
  Lines out;
  LogLimiter limiter(10s, 16, out.sink());
  const auto t0 = LogLimiter::Clock::now();
  EXPECT_TRUE(limiter.allow("bad packets", "192.0.2.9", t0));
  EXPECT_TRUE(limiter.allow("bad packets", "192.0.2.10", t0));
  EXPECT_TRUE(limiter.allow("bad streams", "192.0.2.9", t0));
  EXPECT_FALSE(limiter.allow("bad streams", "192.0.2.9", t0));
  EXPECT_EQ(limiter.tracked(), 3u);
}

TEST(LogLimiter, FlushReportsAFloodThatStopped) {
  Lines out;
  LogLimiter limiter(10s, 16, out.sink());
  const auto t0 = LogLimiter::Clock::now();
  limiter.allow("bad packets", "192.0.2.9", t0);
  limiter.allow("bad packets", "192.0.2.9", t0);
  limiter.allow("bad packets", "192.0.2.9", t0);
  limiter.allow("lonely", "192.0.2.1", t0);
  limiter.flush(t0 + 5s);
  EXPECT_TRUE(out.lines.empty());
  limiter.flush(t0 + 10s);
  // Nothing was suppressed for "lonely": no summary line for it.
  ASSERT_EQ(out.lines.size(), 1u);
  EXPECT_EQ(out.lines[0], "2 more bad packets from 192.0.2.9 in the last 10s");
  EXPECT_EQ(limiter.tracked(), 0u);
}

TEST(LogLimiter, SpoofedSourcesShareOneKeyPastTheLimit) {
  Lines out;
  LogLimiter limiter(10s, 4, out.sink());
  const auto t0 = LogLimiter::Clock::now();
  int logged = 0;
  for (int i = 0; i < 10000; ++i) {
    if (limiter.allow("bad packets", "198.18." + std::to_string(i / 256) + "." + std::to_string(i % 256), t0)) ++logged;
  }
  // Four sources in full, then one line for all the others together.
  EXPECT_EQ(logged, 5);
  EXPECT_LE(limiter.tracked(), 5u);
  limiter.flush(t0 + 10s);
  ASSERT_EQ(out.lines.size(), 1u);
  EXPECT_EQ(out.lines[0], "9995 more bad packets from other sources in the last 10s");
}

// ---- StreamReader ----------------------------------------------------------

TEST(GossipStreamLimits, OversizedEncryptedLengthIsRefusedFromTheHeader) {
  gossip::Keyring ring(Bytes(32, 7));
  gossip::StreamReader reader(&ring, true, 1024 * 1024);
  const Bytes header = encrypted_header(20 * 1024 * 1024);
  // Four bytes say nothing yet; the fifth completes the length.
  EXPECT_FALSE(reader.feed(ByteView(header).first(4)));
  EXPECT_THROW(reader.feed(ByteView(header).subspan(4)), gossip::DecodeError);
  EXPECT_LE(reader.capacity(), 16u * 1024);
}

TEST(GossipStreamLimits, OversizedLengthIsRefusedEvenWhenTheGarbageArrivesWithIt) {
  gossip::Keyring ring(Bytes(32, 7));
  gossip::StreamBufferBudget budget(64 * 1024 * 1024);
  gossip::StreamReader reader(&ring, true, 16 * 1024 * 1024, &budget);
  Bytes chunk = encrypted_header(20 * 1024 * 1024);
  chunk.resize(16 * 1024, 0xab);
  EXPECT_THROW(reader.feed(chunk), gossip::DecodeError);
  EXPECT_LE(budget.in_use(), 16u * 1024);
  reader.release();
  EXPECT_EQ(budget.in_use(), 0u);
}

TEST(GossipStreamLimits, BufferGrowsAsBytesArriveNotAsTheLengthClaims) {
  gossip::Keyring ring(Bytes(32, 7));
  gossip::StreamReader reader(&ring, true, 16 * 1024 * 1024);
  Bytes chunk = encrypted_header(8 * 1024 * 1024);  // allowed, but only 1 KiB of it comes
  chunk.resize(1024, 0xab);
  EXPECT_FALSE(reader.feed(chunk));
  EXPECT_EQ(reader.buffered(), 1024u);
  EXPECT_LE(reader.capacity(), 16u * 1024);
}

TEST(GossipStreamLimits, FirstByteThatIsNoStreamTypeIsRefusedAtOnce) {
  gossip::Keyring ring(Bytes(32, 7));
  gossip::StreamReader plain(nullptr, false, 1024 * 1024);
  EXPECT_THROW(plain.feed(Bytes{0xee}), gossip::DecodeError);
  gossip::StreamReader encrypted(&ring, true, 1024 * 1024);
  EXPECT_THROW(encrypted.feed(Bytes{static_cast<std::uint8_t>(gossip::MessageType::kPushPull)}), gossip::DecodeError);
}

TEST(GossipStreamLimits, PlaintextLargerThanTheLimitIsRefused) {
  gossip::StreamReader reader(nullptr, false, 64 * 1024);
  // A user message whose header claims 1 MiB.
  const Bytes big = gossip::encode_user_stream(Bytes(1024 * 1024, 'x'));
  EXPECT_THROW(reader.feed(ByteView(big).first(64)), gossip::DecodeError);
  // One that does not say its size in advance (push/pull node states)
  // still cannot make the buffer pass the limit.
  gossip::StreamReader nodes_reader(nullptr, false, 64 * 1024);
  std::vector<gossip::PushNodeState> nodes(2000, {"n", {127, 0, 0, 1}, 1, {}, 1, gossip::NodeStateKind::kAlive, {}});
  const Bytes pp = gossip::encode_push_pull({2000, 0, false}, nodes, {});
  ASSERT_GT(pp.size(), 64u * 1024);
  bool refused = false;
  for (std::size_t off = 0; off < pp.size() && !refused; off += 4096) {
    try {
      EXPECT_FALSE(nodes_reader.feed(ByteView(pp).subspan(off, std::min<std::size_t>(4096, pp.size() - off))));
    } catch (const gossip::DecodeError&) {
      refused = true;
    }
    EXPECT_LE(nodes_reader.capacity(), 64u * 1024);
  }
  EXPECT_TRUE(refused);
}

TEST(GossipStreamLimits, BudgetBoundsAllReadersTogether) {
  gossip::Keyring ring(Bytes(32, 7));
  gossip::StreamBufferBudget budget(256 * 1024);
  std::vector<std::unique_ptr<gossip::StreamReader>> readers;
  Bytes chunk = encrypted_header(1024 * 1024);
  chunk.resize(16 * 1024, 0xab);
  const Bytes more(16 * 1024, 0xcd);
  int refused = 0;
  for (int i = 0; i < 8; ++i) {
    readers.push_back(std::make_unique<gossip::StreamReader>(&ring, true, 1024 * 1024, &budget));
    try {
      readers.back()->feed(chunk);
      for (int j = 0; j < 8; ++j) readers.back()->feed(more);
    } catch (const gossip::DecodeError&) {
      ++refused;
    }
    EXPECT_LE(budget.in_use(), budget.limit());
  }
  EXPECT_GT(refused, 0);
  readers.clear();
  EXPECT_EQ(budget.in_use(), 0u);
}

TEST(GossipStreamLimits, WholeFramesPassInAnyChunksAndIdleIsReported) {
  auto ring = std::make_shared<gossip::Keyring>(Bytes(16, 1));
  std::vector<gossip::PushNodeState> nodes{{"a", {127, 0, 0, 1}, 1000, {}, 3, gossip::NodeStateKind::kAlive, {1, 5, 2, 2, 5, 5}}};
  const Bytes user(300 * 1024, 'u');
  const Bytes wire = gossip::frame_stream(
      gossip::encode_push_pull({1, static_cast<std::int64_t>(user.size()), true}, nodes, user), ring.get(), false);
  gossip::StreamBufferBudget budget(1024 * 1024);
  int idle = 0;
  budget.on_idle(256 * 1024, [&] { ++idle; });
  for (std::size_t chunk : {std::size_t{1}, std::size_t{4093}, wire.size()}) {
    gossip::StreamReader reader(ring.get(), true, 1024 * 1024, &budget);
    std::optional<gossip::StreamMessage> msg;
    for (std::size_t off = 0; off < wire.size(); off += chunk) {
      ASSERT_FALSE(msg);
      msg = reader.feed(ByteView(wire).subspan(off, std::min(chunk, wire.size() - off)));
    }
    ASSERT_TRUE(msg) << chunk;
    EXPECT_EQ(msg->user_state, user);
    EXPECT_EQ(budget.in_use(), 0u);  // released with the message
    EXPECT_LE(reader.capacity(), 0u);
  }
  EXPECT_EQ(idle, 3);
  // Bytes after the frame are not this message's.
  Bytes trailing = wire;
  trailing.resize(wire.size() + 100, 0);
  gossip::StreamReader reader(ring.get(), true, 1024 * 1024);
  EXPECT_TRUE(reader.feed(trailing));
}

// The default limit must hold a real push/pull: serf's state around weft's
// tables with 10 000 endpoint entries (what a join exchanges), uncompressed,
// with 100 members.
TEST(GossipStreamLimits, PushPullOf10000EntriesFitsTheDefault) {
  auto hex = [](std::size_t i, std::size_t len) {
    std::string s = fmt::format("{:016x}", i * 0x9e3779b97f4a7c15ull);
    while (s.size() < len) s += s;
    return s.substr(0, len);
  };
  weft::control::tables::ReplicatedTables tables("node-17", {"endpoints"});
  for (std::size_t i = 0; i < 10000; ++i) {
    const nlohmann::json record = {{"id", hex(i, 64)},
                                   {"name", fmt::format("svc-frontend-{}.replica-{}", i % 500, i)},
                                   {"network_id", hex(i % 50, 64)},
                                   {"netns", fmt::format("/var/run/docker/netns/{}", hex(i + 7, 12))},
                                   {"ifname", "eth0"},
                                   {"ip", fmt::format("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)},
                                   {"prefix_len", 16},
                                   {"mac", "02:42:0a:00:27:04"},
                                   {"node", fmt::format("node-{}", i % 100)},
                                   {"vtep", fmt::format("192.0.2.{}", i % 100)}};
    tables.put("endpoints", hex(i, 64), record.dump());
  }
  const std::string entries = weft::control::cluster::encode_snapshot(tables.snapshot());
  gossip::SerfPushPull serf;
  serf.ltime = 12345;
  for (int n = 0; n < 100; ++n) serf.status_ltimes[fmt::format("node-{}", n)] = 100 + n;
  serf.weft_state = Bytes(entries.begin(), entries.end());
  const Bytes user = gossip::encode_serf_push_pull(serf);
  std::vector<gossip::PushNodeState> nodes;
  for (int n = 0; n < 100; ++n) {
    nodes.push_back({fmt::format("node-{}", n), {192, 0, 2, static_cast<std::uint8_t>(n)}, 7946,
                     Bytes(40, 'm'), 5, gossip::NodeStateKind::kAlive, {1, 5, 2, 2, 5, 5}});
  }
  const Bytes plain = gossip::encode_push_pull({100, static_cast<std::int64_t>(user.size()), true}, nodes, user);
  const auto ring = std::make_shared<gossip::Keyring>(Bytes(32, 1));
  const Bytes wire = gossip::frame_stream(plain, ring.get(), true);
  std::cout << "push/pull of 10000 entries: " << plain.size() << " bytes uncompressed, " << wire.size()
            << " on the wire (compressed, encrypted); default limit " << gossip::kDefaultMaxStreamBytes << "\n";
  // At least twice the room, for larger entries and tombstones.
  EXPECT_LT(2 * plain.size(), gossip::kDefaultMaxStreamBytes);
  gossip::StreamReader reader(ring.get(), true, gossip::kDefaultMaxStreamBytes);
  auto msg = reader.feed(wire);
  ASSERT_TRUE(msg);
  EXPECT_EQ(msg->user_state, user);
}

// ---- a memberlist node against hostile TCP peers ------------------------------

namespace {

class HostileStreams : public ::testing::Test {
 protected:
  void SetUp() override {
    gossip::Config c;
    c.name = "target";
    c.bind_addr = "127.0.0.1";
    c.bind_port = 0;
    c.tcp_timeout = 5s;  // far longer than any wait below: a close is the node's decision
    c.max_inbound_streams = 4;
    c.keyring = std::make_shared<gossip::Keyring>(Bytes(32, 0x5a));
    ml = std::make_unique<gossip::Memberlist>(io, c);
    ml->start();
  }
  void TearDown() override {
    ml->shutdown();
    io.run_for(50ms);
  }

  // A peer connection with a read pending: `closed` once the node closes it.
  struct Peer {
    explicit Peer(asio::io_context& io) : socket(io) {}
    asio::ip::tcp::socket socket;
    std::array<std::uint8_t, 4096> buf{};
    bool closed = false;
  };

  std::shared_ptr<Peer> connect(const Bytes& send = {}) {
    auto p = std::make_shared<Peer>(io);
    p->socket.connect({asio::ip::make_address("127.0.0.1"), ml->bound_port()});
    if (!send.empty()) asio::write(p->socket, asio::buffer(send));
    read_until_closed(p);
    return p;
  }
  void read_until_closed(const std::shared_ptr<Peer>& p) {
    p->socket.async_read_some(asio::buffer(p->buf), [this, p](const boost::system::error_code& ec, std::size_t) {
      if (ec) {
        p->closed = true;
        return;
      }
      read_until_closed(p);
    });
  }
  template <class Pred>
  bool run_until(Pred done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io.run_for(10ms);
    }
    return true;
  }

  asio::io_context io;
  std::unique_ptr<gossip::Memberlist> ml;
};

}  // namespace

TEST_F(HostileStreams, OversizedLengthIsClosedAfterTheHeader) {
  // memberlist's own cap on state is 20 MiB; a frame that long is over ours.
  auto peer = connect(encrypted_header(20 * 1024 * 1024));
  EXPECT_TRUE(run_until([&] { return peer->closed; }, 2s)) << "the node waited for 20 MiB it would have buffered";
}

TEST_F(HostileStreams, GarbageTypeByteIsClosedAtOnce) {
  auto peer = connect(Bytes{0xee, 1, 2, 3});
  EXPECT_TRUE(run_until([&] { return peer->closed; }, 2s));
}

TEST_F(HostileStreams, ConcurrentInboundStreamsAreCapped) {
  std::vector<std::shared_ptr<Peer>> holders;
  for (int i = 0; i < 4; ++i) holders.push_back(connect());
  io.run_for(200ms);
  for (const auto& h : holders) EXPECT_FALSE(h->closed);
  // A fifth is closed as soon as it is accepted, without waiting for anything.
  auto extra = connect();
  EXPECT_TRUE(run_until([&] { return extra->closed; }, 2s));
  for (const auto& h : holders) EXPECT_FALSE(h->closed);
  // Slots come back when their connections go.
  for (const auto& h : holders) h->socket.close();
  io.run_for(200ms);
  auto later = connect();
  io.run_for(300ms);
  EXPECT_FALSE(later->closed);
}

TEST_F(HostileStreams, RealStreamStillWorks) {
  // A well-formed, encrypted TCP ping gets its ack under the limits.
  gossip::Ping ping{77, "target", {}, 0, "prober"};
  const Bytes wire = gossip::frame_stream(gossip::encode_message(ping), ml->config().keyring.get(), false);
  auto p = std::make_shared<Peer>(io);
  p->socket.connect({asio::ip::make_address("127.0.0.1"), ml->bound_port()});
  asio::write(p->socket, asio::buffer(wire));
  Bytes received;
  std::function<void()> next = [&] {
    p->socket.async_read_some(asio::buffer(p->buf), [&](const boost::system::error_code& ec, std::size_t n) {
      if (ec) {
        p->closed = true;
        return;
      }
      received.insert(received.end(), p->buf.begin(), p->buf.begin() + static_cast<std::ptrdiff_t>(n));
      next();
    });
  };
  next();
  ASSERT_TRUE(run_until([&] { return p->closed; }, 2s));
  auto parsed = gossip::parse_stream(received, ml->config().keyring.get(), true);
  ASSERT_TRUE(parsed.complete);
  EXPECT_EQ(parsed.message.type, gossip::MessageType::kAck);
  EXPECT_EQ(parsed.message.ack.seq_no, 77u);
}
