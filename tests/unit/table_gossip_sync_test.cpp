// Anti-entropy of copies far bigger than one stream message (issue 9): a
// node holding ~20 000 entries (a few MB) and a peer that missed them all
// converge through push/pulls alone, with max_stream_size at 64 KiB so each
// test stays cheap. Pushes and gossip are off (fanout 0, gossip interval an
// hour): only anti-entropy can deliver. Before the sync was split, one Sync
// message carried an owner's entries whole and the receiver refused it
// (the stream limit): none of these converged.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <boost/asio/io_context.hpp>

#include "control/cluster/table_gossip.h"
#include "control/cluster/weft_messages.h"
#include "control/gossip/serf_compat.h"
#include "tests/support/table_gossip_node.h"

namespace cluster = weft::control::cluster;
namespace gossip = weft::control::gossip;
namespace tables = weft::control::tables;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t kMaxStream = 64 * 1024;
constexpr auto kNever = std::chrono::hours(1);

using Node = weft::testing::TableGossipNode;
weft::testing::TableGossipTimings timings(std::chrono::milliseconds push_pull_interval) {
  return {.gossip_interval = kNever, .push_pull_interval = push_pull_interval, .push_fanout = 0, .tcp_timeout = 5s,
          .max_stream_size = kMaxStream};
}

// ~130 bytes an entry: 20 000 of them are ~2.6 MB, forty times a message.
std::string value(int i) { return R"({"ip":"10.0.)" + std::to_string(i) + R"(","mac":"02:42:0a:00:00:01","pad":")" + std::string(60, 'x') + "\"}"; }

class TableGossipSyncTest : public ::testing::Test {
 protected:
  template <class Pred>
  bool run_until(Pred done, std::chrono::milliseconds timeout, std::chrono::milliseconds step = 5ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io.run_for(step);
    }
    return true;
  }

  Node& add(const std::string& name, std::chrono::milliseconds push_pull_interval) {
    nodes.push_back(std::make_unique<Node>(io, name, timings(push_pull_interval)));
    return *nodes.back();
  }

  // `joiner` joins `seed`; true once both see each other.
  bool join(Node& joiner, Node& seed) {
    int joined = -1;
    joiner.ml.join({seed.address()}, [&](int contacted, std::string) { joined = contacted; });
    if (!run_until([&] { return joined >= 0; }, 5s) || joined != 1) return false;
    return run_until([&] { return joiner.ml.num_alive() == 2 && seed.ml.num_alive() == 2; }, 5s);
  }

  bool converged(std::chrono::milliseconds timeout) {
    // Digests of 20 000 entries are not free (under ASan): not every 5 ms.
    return run_until([&] { return nodes[0]->tables.digest() == nodes[1]->tables.digest(); }, timeout, 100ms);
  }

  static void fill(Node& node, int n) {
    for (int i = 0; i < n; ++i) node.tables.put("endpoints", "ep-" + std::to_string(i), value(i));
  }

  asio::io_context io;
  std::vector<std::unique_ptr<Node>> nodes;
};

// Which of the two nodes holds the entries: node0 (whose name is smaller)
// starts the exchange after a push/pull, so both roles are covered (the
// holder sending Syncs, or the holder answering empty Syncs with repairs).
class BigCopyTest : public TableGossipSyncTest, public ::testing::WithParamInterface<int> {};

TEST_P(BigCopyTest, PeerThatMissedEverythingConvergesByAntiEntropyAlone) {
  add("node0", 300ms);
  add("node1", 300ms);
  ASSERT_TRUE(join(*nodes[1], *nodes[0]));
  // Written after the join, never pushed or gossiped.
  auto& holder = *nodes[GetParam()];
  auto& peer = *nodes[1 - GetParam()];
  fill(holder, 20000);
  ASSERT_GT(cluster::encode_snapshot(holder.tables.snapshot()).size(), 40 * kMaxStream);
  EXPECT_TRUE(converged(60s));
  EXPECT_EQ(peer.tables.entries("endpoints").size(), 20000u);
  EXPECT_EQ(peer.tables.get("endpoints", "ep-19999"), holder.tables.get("endpoints", "ep-19999"));
  // In many messages, each within the limit (a bigger one is refused), each
  // Sync waiting for the last one's repair: nothing was dropped.
  EXPECT_GT(nodes[0]->table_gossip.counters().syncs_sent.load(), 40);
  EXPECT_EQ(holder.table_gossip.counters().repairs_dropped.load() + peer.table_gossip.counters().repairs_dropped.load(), 0);
}

TEST_P(BigCopyTest, JoiningNodeConvergesThroughTheJoinAlone) {
  // No periodic push/pull: only the join's can start the sync. The join's
  // push/pull carries a digest (the copy does not fit), and the chunked
  // sync brings the rest. GetParam() 0: the seed holds the entries; 1: the
  // joiner does (a node coming back with its saved copy).
  auto& seed = add("node0", kNever);
  auto& joiner = add("node1", kNever);
  auto& holder = *nodes[GetParam()];
  fill(holder, 20000);
  ASSERT_TRUE(join(joiner, seed));
  EXPECT_TRUE(converged(60s));
  EXPECT_EQ(seed.tables.entries("endpoints").size(), 20000u);
  EXPECT_EQ(joiner.tables.entries("endpoints").size(), 20000u);
}

INSTANTIATE_TEST_SUITE_P(Holder, BigCopyTest, ::testing::Values(0, 1),
                         [](const auto& info) { return info.param == 0 ? "Node0Holds" : "Node1Holds"; });

TEST_F(TableGossipSyncTest, PeerHoldingNewerVersionsGetsThemBack) {
  // node1 missed node0's 20 000 entries except 50, which it has since
  // overwritten (newer versions, now owned by node1) and node0 never heard
  // of. Each Sync's repair covers just its scope: the newer versions still
  // reach node0, and node1 gets every other entry.
  auto& n0 = add("node0", 300ms);
  auto& n1 = add("node1", 300ms);
  ASSERT_TRUE(join(n1, n0));
  fill(n0, 20000);
  for (int i = 0; i < 20000; i += 400) {
    const auto key = "ep-" + std::to_string(i);
    n1.tables.apply(*n0.tables.get("endpoints", key));
    n1.tables.put("endpoints", key, R"({"newer":true})");
  }
  EXPECT_TRUE(converged(60s));
  EXPECT_EQ(n0.tables.entries("endpoints").size(), 20000u);
  for (int i = 0; i < 20000; i += 400) {
    const auto got = n0.tables.get("endpoints", "ep-" + std::to_string(i));
    ASSERT_TRUE(got);
    EXPECT_EQ(got->owner, "node1");
    EXPECT_EQ(got->value, R"({"newer":true})");
  }
}

class BigBucketTest : public TableGossipSyncTest, public ::testing::WithParamInterface<int> {};

TEST_P(BigBucketTest, BucketBiggerThanAMessageConverges) {
  // 120 entries of ~1 KB in ONE bucket: ~120 KB, above the stream limit
  // itself. The holder sends it in parts by key range (node0 holds) or
  // answers one Sync with several repairs (node1 holds). The other node
  // also holds, in that bucket, newer versions of some of the holder's
  // entries and keys the holder lacks: each part's repair returns those
  // of its range.
  auto& n0 = add("node0", 300ms);
  auto& n1 = add("node1", 300ms);
  ASSERT_TRUE(join(n1, n0));
  auto& holder = *nodes[GetParam()];
  auto& peer = *nodes[1 - GetParam()];
  const auto bucket = tables::ReplicatedTables::bucket_of("endpoints", "big-0");
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 130; ++i) {
    auto key = "big-" + std::to_string(i);
    if (tables::ReplicatedTables::bucket_of("endpoints", key) == bucket) keys.push_back(key);
  }
  for (std::size_t i = 0; i < 120; ++i) holder.tables.put("endpoints", keys[i], std::string(1000, 'a' + i % 26));
  // The peer: 3 newer versions in the holder's name, and 10 keys the holder
  // lacks (all in the same scope as the holder's).
  const std::string owner = holder.tables.local_node();
  for (std::size_t i : {5u, 60u, 119u})
    peer.tables.apply({.table = "endpoints", .key = keys[i], .owner = owner, .lamport = 100000 + i, .deleted = false,
                       .value = "newer"});
  for (std::size_t i = 120; i < 130; ++i)
    peer.tables.apply({.table = "endpoints", .key = keys[i], .owner = owner, .lamport = 1, .deleted = false,
                       .value = "only-at-peer"});
  EXPECT_TRUE(converged(60s));
  EXPECT_EQ(holder.tables.entries("endpoints").size(), 130u);
  EXPECT_EQ(peer.tables.entries("endpoints").size(), 130u);
  EXPECT_EQ(holder.tables.get("endpoints", keys[60])->value, "newer");
  EXPECT_EQ(holder.tables.get("endpoints", keys[125])->value, "only-at-peer");
  // node0 sent the bucket in parts (node1 holding: one Sync, repairs in parts).
  if (GetParam() == 0) {
    EXPECT_GE(n0.table_gossip.counters().syncs_sent.load(), 120 * 1000 / static_cast<int>(kMaxStream / 4));
  }
}

INSTANTIATE_TEST_SUITE_P(Holder, BigBucketTest, ::testing::Values(0, 1),
                         [](const auto& info) { return info.param == 0 ? "Node0Holds" : "Node1Holds"; });

TEST_F(TableGossipSyncTest, EveryEntryOfASyncIsAppliedAsAntiEntropy) {
  // A table listener can tell anti-entropy from gossip for every entry of a
  // sync (slices: BigSyncIsAppliedInSlicesBetweenOtherWork).
  auto& n0 = add("node0", 300ms);
  auto& n1 = add("node1", 300ms);
  ASSERT_TRUE(join(n1, n0));
  int applied = 0, outside = 0;
  n1.tables.subscribe([&](const auto&, const auto& now) {
    if (!now) return;
    ++applied;
    if (!n1.table_gossip.applying_anti_entropy()) ++outside;
  });
  fill(n0, 5000);
  EXPECT_TRUE(converged(30s));
  EXPECT_EQ(applied, 5000);
  EXPECT_EQ(outside, 0);
}

TEST_F(TableGossipSyncTest, OneSyncAtATimePerPeer) {
  // A peer sending its bucket digests again while a sync to it is going
  // does not start a second one (which would encode the copy again).
  auto& n0 = add("node0", kNever);
  auto& n1 = add("node1", kNever);
  ASSERT_TRUE(join(n1, n0));
  fill(n0, 5000);
  const auto ask = cluster::encode(cluster::BucketDigests{.node = "node1", .owners = {{"node0", {}}}, .withdrawn_mark = 0});
  n0.table_gossip.notify_msg(ask);
  const int sent = n0.table_gossip.counters().syncs_sent.load();
  EXPECT_EQ(sent, 1);  // the first message; the next once it is sent
  n0.table_gossip.notify_msg(ask);
  EXPECT_EQ(n0.table_gossip.counters().syncs_refused.load(), 1);
  EXPECT_TRUE(converged(30s));
  EXPECT_EQ(n1.tables.entries("endpoints").size(), 5000u);
  // Once done (the last ack back), a new request is served.
  run_until([] { return false; }, 300ms);
  const int before = n0.table_gossip.counters().syncs_sent.load();
  n0.table_gossip.notify_msg(ask);
  EXPECT_EQ(n0.table_gossip.counters().syncs_refused.load(), 1);
  EXPECT_EQ(n0.table_gossip.counters().syncs_sent.load(), before + 1);
}

TEST(TableGossipSyncPeer, SyncToAPeerThatNeverAcksIsGivenUp) {
  // The peer is a plain serf member that drops weft's messages: it never
  // acknowledges the first Sync. The sync is given up after the timeout, so
  // a later request is served instead of refused for good.
  asio::io_context io;
  tables::ReplicatedTables t("node0", {"endpoints"});
  for (int i = 0; i < 500; ++i) t.put("endpoints", "ep-" + std::to_string(i), value(i));
  cluster::TableGossip g(io,
                         cluster::TableGossipConfig{.node_name = "node0", .node_scoped_tables = {"endpoints"},
                                                    .push_fanout = 0, .sync_ack_timeout = 300ms},
                         t);
  gossip::SerfCompat serf0(io, "node0", {{"role", "weft"}}, &g, &g);
  gossip::Memberlist ml0(io, weft::testing::table_gossip_config("node0", timings(kNever)), &serf0, &serf0);
  serf0.attach(&ml0);
  g.attach(&ml0);
  ml0.start();
  gossip::SerfCompat serf1(io, "node1", {});
  gossip::Memberlist ml1(io, weft::testing::table_gossip_config("node1", timings(kNever)), &serf1, &serf1);
  serf1.attach(&ml1);
  ml1.start();
  int joined = -1;
  ml1.join({"127.0.0.1:" + std::to_string(ml0.bound_port())}, [&](int n, std::string) { joined = n; });
  auto run_until = [&](auto done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done() && std::chrono::steady_clock::now() < deadline) io.run_for(5ms);
    return done();
  };
  ASSERT_TRUE(run_until([&] { return joined == 1 && ml0.num_alive() == 2; }, 5s));

  const auto ask = cluster::encode(cluster::BucketDigests{.node = "node1", .owners = {{"node0", {}}}, .withdrawn_mark = 0});
  g.notify_msg(ask);
  EXPECT_EQ(g.counters().syncs_sent.load(), 1);
  run_until([] { return false; }, 100ms);
  g.notify_msg(ask);  // still waiting for the ack
  EXPECT_EQ(g.counters().syncs_refused.load(), 1);
  run_until([] { return false; }, 500ms);
  g.notify_msg(ask);  // given up: served again
  EXPECT_EQ(g.counters().syncs_refused.load(), 1);
  EXPECT_EQ(g.counters().syncs_sent.load(), 2);
  ml1.shutdown();
  ml0.shutdown();
}

TEST_F(TableGossipSyncTest, JoinCarriesTheWholeCopyWhileItFits) {
  // A small copy still travels in the join's push/pull (no sync needed).
  auto& seed = add("node0", kNever);
  auto& joiner = add("node1", kNever);
  fill(seed, 20);
  ASSERT_TRUE(join(joiner, seed));
  EXPECT_TRUE(converged(5s));
  EXPECT_EQ(seed.table_gossip.counters().syncs_sent.load() + joiner.table_gossip.counters().syncs_sent.load(), 0);
}

TEST(TableGossipSyncInput, BigSyncIsAppliedInSlicesBetweenOtherWork) {
  // 100 entries, 10 a turn: each turn of the loop applies one slice, so
  // what else waits (memberlist's probes) runs in between; every entry is
  // applied as anti-entropy.
  asio::io_context io;
  tables::ReplicatedTables t("node0", {"endpoints"});
  cluster::TableGossip g(
      io, cluster::TableGossipConfig{.node_name = "node0", .node_scoped_tables = {"endpoints"}, .apply_slice = 10}, t);
  int applied = 0, outside = 0;
  t.subscribe([&](const auto&, const auto& now) {
    if (!now) return;
    ++applied;
    if (!g.applying_anti_entropy()) ++outside;
  });
  cluster::Sync sync{.node = "node1", .withdrawn_mark = 0, .owners = {}, .buckets = {}, .after = {}, .upto = {},
                     .entries = {}};
  for (int i = 0; i < 100; ++i)
    sync.entries.push_back({.table = "endpoints", .key = fmt::format("k{}", i), .owner = "node1",
                            .lamport = static_cast<std::uint64_t>(i + 1), .deleted = false, .value = "{}"});
  g.notify_msg(cluster::encode(sync));
  EXPECT_EQ(applied, 0);  // posted, not applied in the receiving handler
  EXPECT_EQ(io.run_one(), 1u);
  EXPECT_EQ(applied, 10);
  EXPECT_EQ(io.run_one(), 1u);
  EXPECT_EQ(applied, 20);
  io.run();
  EXPECT_EQ(applied, 100);
  EXPECT_EQ(outside, 0);
  EXPECT_FALSE(g.applying_anti_entropy());
}

TEST(TableGossipSyncInput, MalformedSyncMessagesAreDroppedCleanly) {
  asio::io_context io;
  tables::ReplicatedTables t("node0", {"endpoints"});
  cluster::TableGossip g(io, cluster::TableGossipConfig{.node_name = "node0", .node_scoped_tables = {"endpoints"}}, t);
  const tables::TableEntry entry{.table = "endpoints", .key = "k", .owner = "node1", .lamport = 1, .deleted = false,
                                 .value = "{}"};
  // The previous format: [node, all, owners, withdrawn_mark, entries].
  g.notify_msg(gossip::Bytes{0x7A, 0x95, 0xa1, 'n', 0xc3, 0x91, 0xa1, 'a', 0x09, 0x90});
  // Scopes whose owners and buckets differ in number, or a bucket out of range.
  g.notify_msg(cluster::encode(cluster::Sync{.node = "node1", .withdrawn_mark = 0, .owners = {"node1"},
                                             .buckets = {}, .after = {}, .upto = {}, .entries = {entry}}));
  g.notify_msg(cluster::encode(cluster::Sync{.node = "node1", .withdrawn_mark = 0, .owners = {"node1"},
                                             .buckets = {tables::ReplicatedTables::kBuckets}, .after = {}, .upto = {},
                                             .entries = {entry}}));
  // A range bound that is not [table, key].
  g.notify_msg(cluster::encode(cluster::Sync{.node = "node1", .withdrawn_mark = 0, .owners = {"node1"}, .buckets = {1},
                                             .after = {"endpoints"}, .upto = {}, .entries = {entry}}));
  g.notify_msg(cluster::encode(cluster::BucketDigests{
      .node = "node1", .owners = {{"node1", {{tables::ReplicatedTables::kBuckets, {}}}}}, .withdrawn_mark = 0}));
  EXPECT_FALSE(t.get("endpoints", "k"));
  // A well-formed one is applied (without a memberlist to answer through).
  g.notify_msg(cluster::encode(cluster::Sync{.node = "node1", .withdrawn_mark = 0, .owners = {"node1"},
                                             .buckets = {tables::ReplicatedTables::bucket_of("endpoints", "k")},
                                             .after = {}, .upto = {}, .entries = {entry}}));
  EXPECT_TRUE(t.get("endpoints", "k"));
}

}  // namespace
