// When a node may start tasks (control/tasks/start_gate.h): with a majority
// of the nodes seen lately, not when cut off alone, not while the Ready set
// has just changed, and a tie goes to the side with the first name.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>

#include "control/tasks/start_gate.h"

namespace weft::control::tasks {
namespace {

using namespace std::chrono_literals;
using Set = std::set<std::string>;

constexpr auto kMemory = std::chrono::milliseconds(10min);
constexpr auto kSettle = std::chrono::milliseconds(5s);

TEST(TaskStartGate, StableClusterMayStart) {
  StartGate gate(kMemory, kSettle);
  const auto t0 = StartGate::Clock::time_point{} + 1h;
  EXPECT_TRUE(gate.observe({"node1", "node2", "node3"}, t0));
  EXPECT_TRUE(gate.observe({"node1", "node2", "node3"}, t0 + 1s));
}

TEST(TaskStartGate, MajorityStartsAfterSettleWhenOneNodeGoes) {
  StartGate gate(kMemory, kSettle);
  const auto t0 = StartGate::Clock::time_point{} + 1h;
  gate.observe({"node1", "node2", "node3"}, t0);
  EXPECT_FALSE(gate.observe({"node1", "node2"}, t0 + 1s)) << "held while the change settles";
  EXPECT_TRUE(gate.has_majority());
  EXPECT_TRUE(gate.observe({"node1", "node2"}, t0 + 7s));
}

TEST(TaskStartGate, NodeCutOffAloneStartsNothing) {
  StartGate gate(kMemory, kSettle);
  const auto t0 = StartGate::Clock::time_point{} + 1h;
  gate.observe({"node1", "node2", "node3"}, t0);
  // Its peers fail one by one: with one still suspect (Ready) it has two of
  // three for a moment, but the change holds it.
  EXPECT_FALSE(gate.observe({"node2", "node3"}, t0 + 1s));
  EXPECT_FALSE(gate.observe({"node3"}, t0 + 3s));
  EXPECT_FALSE(gate.has_majority());
  EXPECT_FALSE(gate.observe({"node3"}, t0 + 60s)) << "still no majority long after the settle";
  EXPECT_FALSE(gate.observe({"node3"}, t0 + 9min));
  // The others long gone (or left): it takes over.
  EXPECT_TRUE(gate.observe({"node3"}, t0 + 11min));
}

TEST(TaskStartGate, NodeCutOffWhosePeersDieFarApartStartsNothing) {
  StartGate gate(kMemory, kSettle);
  const auto t0 = StartGate::Clock::time_point{} + 1h;
  gate.observe({"node1", "node2", "node3"}, t0);
  // node1 is declared dead; node2 still Ready but suspect, and declared dead
  // only 8 s later (longer than the settle): two of three the whole time.
  EXPECT_FALSE(gate.observe({"node2", "node3"}, t0 + 1s, true));
  EXPECT_FALSE(gate.observe({"node2", "node3"}, t0 + 7s, true)) << "a suspect peer holds starts past the settle";
  EXPECT_FALSE(gate.observe({"node3"}, t0 + 9s));
  EXPECT_FALSE(gate.observe({"node3"}, t0 + 60s));
}

TEST(TaskStartGate, SuspectThatRecoversHoldsStartsForTheSettleAfter) {
  StartGate gate(kMemory, kSettle);
  const auto t0 = StartGate::Clock::time_point{} + 1h;
  gate.observe({"node1", "node2", "node3"}, t0);
  EXPECT_FALSE(gate.observe({"node1", "node2", "node3"}, t0 + 1s, true));
  EXPECT_FALSE(gate.observe({"node1", "node2", "node3"}, t0 + 3s)) << "cleared, settling";
  EXPECT_TRUE(gate.observe({"node1", "node2", "node3"}, t0 + 7s));
}

TEST(TaskStartGate, HealHoldsStartsForTheSettleTime) {
  StartGate gate(kMemory, kSettle);
  const auto t0 = StartGate::Clock::time_point{} + 1h;
  gate.observe({"node1", "node2", "node3"}, t0);
  gate.observe({"node3"}, t0 + 1s);
  EXPECT_FALSE(gate.observe({"node1", "node2", "node3"}, t0 + 30s)) << "task records of the peers not in yet";
  EXPECT_TRUE(gate.observe({"node1", "node2", "node3"}, t0 + 36s));
}

TEST(TaskStartGate, TieGoesToTheSideWithTheFirstName) {
  const auto t0 = StartGate::Clock::time_point{} + 1h;
  StartGate a(kMemory, kSettle), b(kMemory, kSettle);
  a.observe({"node1", "node2"}, t0);
  b.observe({"node1", "node2"}, t0);
  EXPECT_TRUE(a.observe({"node1"}, t0 + 10s) || a.observe({"node1"}, t0 + 20s));
  EXPECT_FALSE(b.observe({"node2"}, t0 + 10s) || b.observe({"node2"}, t0 + 20s));
}

TEST(TaskStartGate, ResetForgetsTheCluster) {
  StartGate gate(kMemory, kSettle);
  const auto t0 = StartGate::Clock::time_point{} + 1h;
  gate.observe({"node1", "node2", "node3"}, t0);
  gate.reset();
  EXPECT_TRUE(gate.observe({"node3"}, t0 + 1s)) << "outside a swarm a node places every slot";
}

}  // namespace
}  // namespace weft::control::tasks
