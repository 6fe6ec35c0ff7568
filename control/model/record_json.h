// The stored form of networks and endpoints: used for the agent's state
// file and for the replicated tables, separate from the API's Docker-shaped
// JSON so either can change without breaking the other. Addresses are
// stored as text ("10.0.0.0/24", "10.0.0.2", "02:42:0a:00:00:02").
#pragma once

#include <nlohmann/json.hpp>

#include "control/model/model.h"

namespace weft::control {

// Readers throw nlohmann::json::exception for a missing field, a wrong type
// or an address that does not parse: a record is whole or refused.
nlohmann::json network_record(const Network& n);
Network network_from_record(const nlohmann::json& j);
nlohmann::json endpoint_record(const Endpoint& e);
Endpoint endpoint_from_record(const nlohmann::json& j);

// An endpoint as the cluster publishes it: its record plus "vtep", the
// underlay address of the node hosting it.
nlohmann::json endpoint_record(const Endpoint& e, dataplane::Ipv4 vtep);
dataplane::Ipv4 vtep_from_record(const nlohmann::json& j);

}  // namespace weft::control
