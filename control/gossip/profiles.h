// memberlist's three timing profiles (DefaultLANConfig, DefaultWANConfig,
// DefaultLocalConfig), so an agent can be tuned the way serf's -profile flag
// tunes a serf agent, and a check that a set of timings can work.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "control/gossip/memberlist.h"

namespace weft::control::gossip {

// Timings of the named profile ("lan", "wan", "local"); nullopt for any other.
std::optional<Config> profile_config(std::string_view profile);

// Empty when the timings can work; otherwise what is wrong, in words that
// name the agent's flags (--probe-interval ...).
std::string timing_problem(const Config& config);

}  // namespace weft::control::gossip
