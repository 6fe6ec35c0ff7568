// Test helpers: memberlist timings for in-process clusters on 127.0.0.1,
// fast enough that a death is confirmed in about a second.
#pragma once

#include <chrono>

#include "control/gossip/memberlist.h"

namespace weft::testing {

inline control::gossip::Config fast_gossip_timings() {
  using namespace std::chrono_literals;
  control::gossip::Config c;
  c.probe_interval = 100ms;
  c.probe_timeout = 40ms;
  c.gossip_interval = 20ms;
  c.push_pull_interval = 500ms;
  c.tcp_timeout = 500ms;
  c.gossip_to_the_dead_time = 10s;
  return c;
}

}  // namespace weft::testing
