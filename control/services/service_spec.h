// The parsing and checks of what users type for services: `service create`
// arguments and `lb lookup` arguments, with the messages the API returns
// (ApiError, 400) for each mistake.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "control/model/service_model.h"
#include "dataplane/address.h"

namespace weft::control::services {

// Bounds on a request (everything from outside has limits).
inline constexpr std::size_t kMaxServiceNetworks = 16;
inline constexpr std::size_t kMaxServicePorts = 128;
// A task's command: a few thousand arguments of a few KiB are more than any
// server needs, and bound what one record costs every node of the cluster.
inline constexpr std::size_t kMaxCommandArgs = 256;
inline constexpr std::size_t kMaxCommandBytes = 64 * 1024;
inline constexpr std::uint64_t kMaxReplicas = 1000;

struct CheckedSpec {
  std::string name;
  EndpointMode mode = EndpointMode::vip;
  std::vector<PublishedPort> ports;    // sorted, no duplicates
  std::vector<std::string> networks;   // as typed, no duplicates, at least one
  std::vector<std::string> command;    // empty: no tasks
  std::uint64_t replicas = 0;          // 0 without a command
  RestartCondition restart_condition = RestartCondition::any;
};
CheckedSpec check_spec(const ServiceSpec& spec);
// The replica count of `service create` and `service update`.
void check_replicas(std::uint64_t replicas);

struct CheckedLookup {
  dataplane::Ipv4 src{};
  std::uint16_t sport = 0;
  std::uint16_t dport = 0;
  PortProtocol proto = PortProtocol::tcp;
};
CheckedLookup check_lookup(const LbLookupRequest& request);

}  // namespace weft::control::services
