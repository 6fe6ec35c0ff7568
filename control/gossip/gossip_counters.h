// Gossip messages received by type and member flaps, for weftd's /metrics
// (weft_gossip_messages_total{type}, weft_gossip_member_flaps_total).
// Process-wide, relaxed atomics: the gossip thread bumps them, a scrape reads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "control/gossip/messages.h"

namespace weft::control::gossip {

struct GossipCounters {
  static constexpr std::size_t kTypes = static_cast<std::size_t>(MessageType::kErr) + 1;
  std::array<std::atomic<std::uint64_t>, kTypes> received{};  // by MessageType
  // A member that was alive turned suspect or dead (a member that comes and
  // goes shows here; a graceful leave does not).
  std::atomic<std::uint64_t> member_flaps{0};

  void count(MessageType type) {
    const auto index = static_cast<std::size_t>(type);
    if (index < kTypes) received[index].fetch_add(1, std::memory_order_relaxed);
  }
};

inline GossipCounters& gossip_counters() {
  static GossipCounters counters;
  return counters;
}

}  // namespace weft::control::gossip
