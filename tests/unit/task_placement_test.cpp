// Placement of service task slots without a manager (control/tasks/placement.h):
// the same answer on every node, spread, moves on death, no flap on return,
// one holder kept after a partition heals.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "control/tasks/placement.h"

namespace weft::control::tasks {
namespace {

const std::string kService(64, 'a');

std::map<std::string, int> load_of(const std::map<std::uint64_t, std::string>& placement) {
  std::map<std::string, int> load;
  for (const auto& [slot, node] : placement) ++load[node];
  return load;
}

// Holders as the running placement records them.
std::map<std::uint64_t, std::vector<SlotHolder>> holders_of(const std::map<std::uint64_t, std::string>& placement,
                                                            const std::string& started_at = "2026-01-01T00:00:00.000000000Z") {
  std::map<std::uint64_t, std::vector<SlotHolder>> holders;
  for (const auto& [slot, node] : placement) holders[slot].push_back(SlotHolder{node, started_at});
  return holders;
}

TEST(TaskPlacement, EveryNodeComputesTheSameAnswerWhateverTheOrderOfItsInputs) {
  PlacementInput a{.service_id = kService, .replicas = 7, .ready_nodes = {"node1", "node2", "node3"}, .paused_nodes = {}, .holders = {}};
  PlacementInput b = a;
  b.ready_nodes = {"node3", "node1", "node2", "node1"};
  EXPECT_EQ(place(a), place(b));
  EXPECT_EQ(place(a).size(), 7u);
}

TEST(TaskPlacement, SpreadsFourReplicasOverThreeNodesTwoOneOne) {
  const auto placement =
      place({.service_id = kService, .replicas = 4, .ready_nodes = {"node1", "node2", "node3"}, .paused_nodes = {}, .holders = {}});
  ASSERT_EQ(placement.size(), 4u);
  auto load = load_of(placement);
  ASSERT_EQ(load.size(), 3u);
  std::vector<int> counts;
  for (const auto& [node, n] : load) counts.push_back(n);
  std::sort(counts.begin(), counts.end());
  EXPECT_EQ(counts, (std::vector<int>{1, 1, 2}));
}

TEST(TaskPlacement, DifferentServicesDoNotAllStartOnTheSameNode) {
  std::set<std::string> first_nodes;
  for (char c : std::string("abcdefghij")) {
    const auto placement = place({.service_id = std::string(64, c), .replicas = 1,
                                  .ready_nodes = {"node1", "node2", "node3"}, .paused_nodes = {}, .holders = {}});
    first_nodes.insert(placement.at(1));
  }
  EXPECT_GT(first_nodes.size(), 1u);
}

TEST(TaskPlacement, SlotsOfADeadNodeMoveToTheSurvivorsAndTheOthersStay) {
  PlacementInput input{.service_id = kService, .replicas = 4, .ready_nodes = {"node1", "node2", "node3"}, .paused_nodes = {}, .holders = {}};
  const auto before = place(input);
  const std::string victim = before.at(1);
  input.holders = holders_of(before);
  input.ready_nodes.erase(std::find(input.ready_nodes.begin(), input.ready_nodes.end(), victim));
  const auto after = place(input);
  ASSERT_EQ(after.size(), 4u);
  for (const auto& [slot, node] : after) {
    EXPECT_NE(node, victim) << slot;
    if (before.at(slot) != victim) {
      EXPECT_EQ(node, before.at(slot)) << "slot " << slot << " moved needlessly";
    }
  }
  auto load = load_of(after);
  EXPECT_EQ(load.size(), 2u);
  for (const auto& [node, n] : load) EXPECT_EQ(n, 2) << node;
}

TEST(TaskPlacement, ANodeThatComesBackDoesNotPullItsSlotsBack) {
  PlacementInput input{.service_id = kService, .replicas = 4, .ready_nodes = {"node1", "node2", "node3"}, .paused_nodes = {}, .holders = {}};
  const auto before = place(input);
  const std::string victim = before.at(1);
  PlacementInput without = input;
  without.holders = holders_of(before);
  without.ready_nodes.erase(std::find(without.ready_nodes.begin(), without.ready_nodes.end(), victim));
  // Its records are withdrawn when it is confirmed dead.
  for (auto& [slot, holders] : without.holders)
    holders.erase(std::remove_if(holders.begin(), holders.end(), [&](const auto& h) { return h.node == victim; }),
                  holders.end());
  const auto moved = place(without);
  PlacementInput back = input;
  back.holders = holders_of(moved, "2026-01-01T00:01:00.000000000Z");
  EXPECT_EQ(place(back), moved);
}

TEST(TaskPlacement, AfterAPartitionHealsTheTaskStartedLastKeepsTheSlot) {
  PlacementInput input{.service_id = kService, .replicas = 1, .ready_nodes = {"node1", "node2"}, .paused_nodes = {}, .holders = {}};
  input.holders[1] = {SlotHolder{"node1", "2026-01-01T00:00:00.000000000Z"},
                      SlotHolder{"node2", "2026-01-01T00:05:00.000000000Z"}};
  EXPECT_EQ(place(input).at(1), "node2");
  std::swap(input.holders[1][0].started_at, input.holders[1][1].started_at);
  EXPECT_EQ(place(input).at(1), "node1");
  // Same start: the rendezvous score decides, the same way everywhere.
  input.holders[1][0].started_at = input.holders[1][1].started_at;
  const auto winner = place(input).at(1);
  std::reverse(input.holders[1].begin(), input.holders[1].end());
  EXPECT_EQ(place(input).at(1), winner);
}

TEST(TaskPlacement, ScalingDownDropsTheHighestSlots) {
  PlacementInput input{.service_id = kService, .replicas = 4, .ready_nodes = {"node1", "node2", "node3"}, .paused_nodes = {}, .holders = {}};
  const auto four = place(input);
  input.holders = holders_of(four);
  input.replicas = 2;
  const auto two = place(input);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two.at(1), four.at(1));
  EXPECT_EQ(two.at(2), four.at(2));
}

TEST(TaskPlacement, HoldersOnNodesThatAreNotReadyDoNotCount) {
  PlacementInput input{.service_id = kService, .replicas = 1, .ready_nodes = {"node1"}, .paused_nodes = {}, .holders = {}};
  input.holders[1] = {SlotHolder{"node9", "2026-01-01T00:00:00.000000000Z"}};
  EXPECT_EQ(place(input).at(1), "node1");
  input.ready_nodes.clear();
  EXPECT_TRUE(place(input).empty());
}

// Swarm's `node update --availability pause`: a paused node keeps the slots
// it runs but gets none of those that move (drain is the caller leaving the
// node out of ready_nodes: its slots move like a dead node's).
TEST(TaskPlacement, APausedNodeKeepsItsSlotsButGetsNoNewOnes) {
  PlacementInput input{.service_id = kService, .replicas = 6, .ready_nodes = {"node1", "node2", "node3"}, .paused_nodes = {}, .holders = {}};
  const auto before = place(input);
  input.holders = holders_of(before);
  input.paused_nodes = {"node2"};
  EXPECT_EQ(place(input), before);  // nothing moves off a paused node

  input.replicas = 9;  // three new slots: none on node2
  const auto scaled = place(input);
  EXPECT_EQ(load_of(scaled)["node2"], load_of(before)["node2"]);
  EXPECT_EQ(scaled.size(), 9u);

  input.replicas = 6;
  input.ready_nodes = {"node1", "node2"};  // node3 died
  const auto moved = place(input);
  for (const auto& [slot, node] : before) {
    if (node == "node3") {
      EXPECT_EQ(moved.at(slot), "node1") << "slot " << slot;
    }
  }

  input.ready_nodes = {"node2"};
  input.holders.clear();
  EXPECT_TRUE(place(input).empty()) << "only a paused node is Ready: nothing placed";
}

TEST(TaskPlacement, ADrainedNodesSlotsMoveAndDoNotComeBackWhenItIsActiveAgain) {
  PlacementInput input{.service_id = kService, .replicas = 6, .ready_nodes = {"node1", "node2", "node3"}, .paused_nodes = {}, .holders = {}};
  const auto before = place(input);
  input.holders = holders_of(before);
  input.ready_nodes = {"node1", "node3"};  // node2 drained
  const auto drained = place(input);
  EXPECT_EQ(load_of(drained).count("node2"), 0u);
  EXPECT_EQ(drained.size(), 6u);
  // Active again: the moved slots stay where they now run.
  input.holders = holders_of(drained, "2026-01-01T00:01:00.000000000Z");
  input.ready_nodes = {"node1", "node2", "node3"};
  EXPECT_EQ(place(input), drained);
}

TEST(TaskPlacement, RendezvousScoresDependOnKeyAndNode) {
  EXPECT_EQ(rendezvous_score("s/1", "node1"), rendezvous_score("s/1", "node1"));
  EXPECT_NE(rendezvous_score("s/1", "node1"), rendezvous_score("s/1", "node2"));
  EXPECT_NE(rendezvous_score("s/1", "node1"), rendezvous_score("s/2", "node1"));
}

}  // namespace
}  // namespace weft::control::tasks
