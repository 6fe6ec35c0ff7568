#include "control/gossip/profiles.h"

namespace weft::control::gossip {

std::optional<Config> profile_config(std::string_view profile) {
  Config c;  // the LAN profile is Config's default
  if (profile == "lan") return c;
  if (profile == "wan") {
    c.tcp_timeout = milliseconds(30'000);
    c.suspicion_mult = 6;
    c.push_pull_interval = milliseconds(60'000);
    c.probe_timeout = milliseconds(3'000);
    c.probe_interval = milliseconds(5'000);
    c.gossip_nodes = 4;
    c.gossip_interval = milliseconds(500);
    c.gossip_to_the_dead_time = milliseconds(60'000);
    return c;
  }
  if (profile == "local") {
    c.tcp_timeout = milliseconds(1'000);
    c.indirect_checks = 1;
    c.retransmit_mult = 2;
    c.suspicion_mult = 3;
    c.push_pull_interval = milliseconds(15'000);
    c.probe_timeout = milliseconds(200);
    c.probe_interval = milliseconds(1'000);
    c.gossip_interval = milliseconds(100);
    c.gossip_to_the_dead_time = milliseconds(15'000);
    return c;
  }
  return std::nullopt;
}

std::string timing_problem(const Config& c) {
  if (c.probe_interval.count() <= 0) return "--probe-interval must be positive";
  if (c.probe_timeout.count() <= 0) return "--probe-timeout must be positive";
  // memberlist waits for an ack until the next probe: a timeout past the
  // interval would overlap probes.
  if (c.probe_timeout >= c.probe_interval) return "--probe-timeout must be shorter than --probe-interval";
  if (c.gossip_interval.count() <= 0) return "--gossip-interval must be positive";
  if (c.push_pull_interval.count() <= 0) return "--push-pull-interval must be positive";
  if (c.suspicion_mult < 1) return "--suspicion-mult must be at least 1";
  if (c.retransmit_mult < 1) return "--retransmit-mult must be at least 1";
  return {};
}

}  // namespace weft::control::gossip
