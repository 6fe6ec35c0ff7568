// TableGossip over real memberlist instances on 127.0.0.1, all on one
// io_context driven by the test thread. Timings are chosen so that only the
// mechanism under test can deliver an entry within the deadline.
#include "control/cluster/table_gossip.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "control/gossip/serf_compat.h"
#include "tests/support/table_gossip_node.h"

namespace cluster = weft::control::cluster;
namespace gossip = weft::control::gossip;
namespace tables = weft::control::tables;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

using Timings = weft::testing::TableGossipTimings;
using Node = weft::testing::TableGossipNode;

class TableGossipTest : public ::testing::Test {
 protected:
  template <class Pred>
  bool run_until(Pred done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io.run_for(5ms);
    }
    return true;
  }

  // Every node joins every earlier one, so membership is complete through
  // the joins' push/pulls alone, whatever the gossip interval.
  void form(std::size_t n, const Timings& t) {
    for (std::size_t i = 0; i < n; ++i) {
      nodes.push_back(std::make_unique<Node>(io, "node" + std::to_string(i), t));
      if (i == 0) continue;
      std::vector<std::string> seeds;
      for (std::size_t j = 0; j < i; ++j) seeds.push_back(nodes[j]->address());
      int joined = -1;
      nodes[i]->ml.join(seeds, [&](int contacted, std::string) { joined = contacted; });
      ASSERT_TRUE(run_until([&] { return joined >= 0; }, 3s));
      ASSERT_EQ(joined, static_cast<int>(i));
    }
    ASSERT_TRUE(run_until(
        [&] {
          for (auto& node : nodes)
            if (node->ml.num_alive() != n) return false;
          return true;
        },
        3s));
  }

  bool everyone_has(const std::string& key) {
    for (auto& node : nodes)
      if (!node->tables.get("endpoints", key)) return false;
    return true;
  }

  asio::io_context io;
  std::vector<std::unique_ptr<Node>> nodes;
};

constexpr auto kNever = std::chrono::hours(1);

TEST_F(TableGossipTest, ChangeIsPushedAtOnceWithoutWaitingForGossip) {
  // No gossip or push/pull for an hour: only the push can deliver within the
  // deadline.
  form(4, {.gossip_interval = kNever, .push_pull_interval = kNever, .push_fanout = 3});
  auto& origin = *nodes[0];
  origin.table_gossip.broadcast({origin.tables.put("endpoints", "ep-1", "{}")});
  EXPECT_TRUE(run_until([&] { return everyone_has("ep-1"); }, 1s));
  // Every node pushed it on once, as news (each push is queued when the news
  // arrives, so the last receivers' may still be pending when all have it).
  auto all_pushed = [&] {
    for (auto& node : nodes)
      if (node->table_gossip.counters().pushed_packets.load() == 0) return false;
    return true;
  };
  run_until(all_pushed, 1s);
  for (auto& node : nodes) EXPECT_GT(node->table_gossip.counters().pushed_packets.load(), 0) << node->ml.config().name;
  // A second change goes out too (the push is not a one-off).
  origin.table_gossip.broadcast({origin.tables.put("endpoints", "ep-2", "{}")});
  EXPECT_TRUE(run_until([&] { return everyone_has("ep-2"); }, 1s));
}

TEST_F(TableGossipTest, NothingIsPushedWithFanoutZero) {
  // The control for the test above: the same cluster without pushes does not
  // deliver within the same deadline, so that test cannot pass by gossip.
  form(3, {.gossip_interval = kNever, .push_pull_interval = kNever, .push_fanout = 0});
  auto& origin = *nodes[0];
  origin.table_gossip.broadcast({origin.tables.put("endpoints", "ep-1", "{}")});
  EXPECT_FALSE(run_until([&] { return everyone_has("ep-1"); }, 1s));
}

TEST_F(TableGossipTest, AntiEntropySendsOnlyTheOwnersThatDiffer) {
  form(3, {.gossip_interval = kNever, .push_pull_interval = 300ms, .push_fanout = 0});
  // 40 entries of node1 and node2, already in every copy.
  std::vector<tables::TableEntry> shared;
  for (int owner = 1; owner <= 2; ++owner)
    for (int i = 0; i < 20; ++i)
      shared.push_back(nodes[owner]->tables.put("endpoints", "n" + std::to_string(owner) + "-" + std::to_string(i), "{}"));
  for (auto& node : nodes) node->tables.merge(shared);
  ASSERT_EQ(nodes[0]->tables.digest(), nodes[2]->tables.digest());

  // One change on node0, never gossiped or pushed: anti-entropy repairs it.
  nodes[0]->tables.put("endpoints", "n0-new", "{}");
  ASSERT_TRUE(run_until([&] { return everyone_has("n0-new"); }, 5s));
  long sent = 0;
  int syncs = 0;
  for (auto& node : nodes) {
    sent += node->table_gossip.counters().sync_entries_sent.load();
    syncs += node->table_gossip.counters().syncs_sent.load();
  }
  EXPECT_GT(syncs, 0);
  // Only node0's group differs: at most its one entry per sync, never the
  // 41-entry copy.
  EXPECT_LE(sent, syncs);
}

TEST_F(TableGossipTest, TombstoneByAnotherOwnerIsRepaired) {
  // A slot whose versions have different owners on the two sides: node1
  // deleted node0's entry and nobody heard. Both owners' groups differ, so
  // the repair still reaches everyone.
  form(3, {.gossip_interval = kNever, .push_pull_interval = 300ms, .push_fanout = 0});
  auto entry = nodes[0]->tables.put("endpoints", "ep-x", "{}");
  for (auto& node : nodes) node->tables.merge({entry});
  ASSERT_TRUE(nodes[1]->tables.remove("endpoints", "ep-x"));
  EXPECT_TRUE(run_until(
      [&] {
        for (auto& node : nodes)
          if (node->tables.get("endpoints", "ep-x")) return false;
        return true;
      },
      5s));
}

TEST_F(TableGossipTest, NodeRepublishesWhatAPeerWithdrewByMistake) {
  // node2 took node0 for dead (a one-sided partition) and withdrew its
  // endpoint; node0 never noticed. Anti-entropy shows node0 the withdrawal
  // and it republishes, so node2 accepts the entry again.
  form(3, {.gossip_interval = kNever, .push_pull_interval = 300ms, .push_fanout = 0});
  auto entry = nodes[0]->tables.put("endpoints", "ep-0", "{}");
  for (auto& node : nodes) node->tables.merge({entry});
  nodes[2]->tables.withdraw_node("node0");
  ASSERT_FALSE(nodes[2]->tables.get("endpoints", "ep-0"));
  EXPECT_TRUE(run_until([&] { return everyone_has("ep-0"); }, 5s));
  EXPECT_GT(nodes[0]->tables.get("endpoints", "ep-0")->lamport, entry.lamport);
}

TEST(TableGossipLifetime, PushPendingWhenDestroyedDoesNothing) {
  // The agent leaving the swarm destroys its TableGossip on the io thread,
  // possibly with a push already posted; under ASan a use after free shows.
  asio::io_context io;
  tables::ReplicatedTables t("a");
  {
    cluster::TableGossip g(io, cluster::TableGossipConfig{.node_name = "a", .node_scoped_tables = {}}, t);
    g.broadcast({t.put("endpoints", "k", "v")});
  }
  EXPECT_EQ(io.run(), 1u);
}

}  // namespace
