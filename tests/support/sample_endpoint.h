// Test helper: another node's endpoint with every field set (a draining
// backend with a drain time and aliases, one of them 200 characters), for
// the tests of the forms the network manager packs endpoints into.
#pragma once

#include <string>
#include <vector>

#include "control/model/model.h"
#include "tests/support/addresses.h"

namespace weft::testing {

inline control::Endpoint sample_remote_endpoint(const std::string& id, const std::string& service_id,
                                                std::vector<std::string> aliases) {
  return control::Endpoint{.id = id,
                           .name = "redis-1",
                           .network_id = std::string(64, 'e'),
                           .network_name = "net-record",
                           .netns = "/run/netns/weft-node2-0123456789ab-1",
                           .ifname = "eth0",
                           .ip = ipv4("10.0.7.9"),
                           .prefix_len = 24,
                           .mac = mac("02:42:0a:00:07:09"),
                           .node = "node2",
                           .service_id = service_id,
                           .backend_state = control::BackendState::draining,
                           .drain_until = "2026-11-26T18:00:00Z",
                           .aliases = std::move(aliases)};
}

}  // namespace weft::testing
