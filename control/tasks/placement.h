// Where a service's task slots run, computed without a manager: every node
// runs the same pure function over the same replicated inputs (the service's
// replica count, the Ready weft nodes, the task records of the cluster's
// tasks table) and so reaches the same answer; each node then runs the slots
// that fall to it.
//
// Rules, in order:
//  1. A slot stays where it runs (or last ran) while that node is Ready: a
//     node that comes back does not pull slots back, nothing flaps.
//  2. A slot held by several Ready nodes at once (a partition healed, or two
//     nodes started it in the same instant) keeps the holder whose task
//     started last (it was started because the other holder was seen gone),
//     ties broken by the rendezvous score; the other holders stop theirs.
//  3. Every other slot (new, or its node died or was drained) goes to the
//     Ready node that is not paused with
//     the fewest of the service's slots so far, ties broken by the
//     rendezvous score of "service-id/slot" over the node names: 4 replicas
//     on 3 nodes go 2/1/1, and which node gets a slot does not depend on
//     which node computes it.
// Slots above the replica count are placed nowhere: their holders stop them.
// A drained node (Swarm's `node update --availability drain`) is left out of
// `ready_nodes` by the caller: its slots move. A paused one keeps its slots
// (rules 1 and 2) but gets no new ones; a slot with only paused nodes Ready
// is placed nowhere until one is active again.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace weft::control::tasks {

// One task record of a slot, as the placement needs it.
struct SlotHolder {
  std::string node;
  std::string started_at;  // RFC 3339, fixed width (nanoseconds): compares as text
};

struct PlacementInput {
  std::string service_id;
  std::uint64_t replicas = 0;
  std::vector<std::string> ready_nodes;  // any order, duplicates ignored
  std::vector<std::string> paused_nodes;  // of the ready ones: keep their slots, get no new ones
  std::map<std::uint64_t, std::vector<SlotHolder>> holders;  // slot -> its task records
};

// The rendezvous (highest random weight) score of `node` for `key`; the same
// on every machine (FNV-1a, then a 64-bit mixer).
std::uint64_t rendezvous_score(std::string_view key, std::string_view node);

// Slot (1..replicas) -> node. Empty when no node is Ready.
std::map<std::uint64_t, std::string> place(const PlacementInput& input);

}  // namespace weft::control::tasks
