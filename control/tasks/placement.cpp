#include "control/tasks/placement.h"

#include <algorithm>
#include <set>

namespace weft::control::tasks {

namespace {

std::uint64_t fnv1a(std::uint64_t hash, std::string_view text) {
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

// splitmix64's finaliser: FNV alone scores similar node names similarly.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

std::string slot_key(const std::string& service_id, std::uint64_t slot) {
  return service_id + "/" + std::to_string(slot);
}

}  // namespace

std::uint64_t rendezvous_score(std::string_view key, std::string_view node) {
  std::uint64_t hash = fnv1a(0xcbf29ce484222325ULL, key);
  hash = fnv1a(hash, std::string_view("\0", 1));
  return mix(fnv1a(hash, node));
}

std::map<std::uint64_t, std::string> place(const PlacementInput& input) {
  std::map<std::uint64_t, std::string> placement;
  const std::set<std::string> ready(input.ready_nodes.begin(), input.ready_nodes.end());
  if (ready.empty()) return placement;
  std::map<std::string, std::uint64_t> load;
  for (const auto& node : ready) load[node] = 0;

  // 1 and 2: slots that run somewhere Ready stay there.
  for (std::uint64_t slot = 1; slot <= input.replicas; ++slot) {
    auto it = input.holders.find(slot);
    if (it == input.holders.end()) continue;
    const std::string key = slot_key(input.service_id, slot);
    const SlotHolder* best = nullptr;
    for (const auto& holder : it->second) {
      if (!ready.count(holder.node)) continue;
      if (!best || holder.started_at > best->started_at ||
          (holder.started_at == best->started_at &&
           rendezvous_score(key, holder.node) > rendezvous_score(key, best->node)))
        best = &holder;
    }
    if (!best) continue;
    placement[slot] = best->node;
    ++load[best->node];
  }

  // 3: the rest to the least loaded node that is not paused, by rendezvous
  // score among equals.
  const std::set<std::string> paused(input.paused_nodes.begin(), input.paused_nodes.end());
  for (std::uint64_t slot = 1; slot <= input.replicas; ++slot) {
    if (placement.count(slot)) continue;
    const std::string key = slot_key(input.service_id, slot);
    const std::string* chosen = nullptr;
    std::uint64_t chosen_score = 0;
    for (const auto& [node, count] : load) {
      if (paused.count(node)) continue;
      const std::uint64_t score = rendezvous_score(key, node);
      if (!chosen || count < load[*chosen] || (count == load[*chosen] && score > chosen_score)) {
        chosen = &node;
        chosen_score = score;
      }
    }
    if (!chosen) continue;  // every Ready node is paused
    placement[slot] = *chosen;
    ++load[*chosen];
  }
  return placement;
}

}  // namespace weft::control::tasks
