// The stored form of networks and endpoints: used for the agent's state
// file and for the replicated tables, separate from the API's Docker-shaped
// JSON so either can change without breaking the other.
#pragma once

#include <nlohmann/json.hpp>

#include "control/model.h"

namespace weft::control {

nlohmann::json network_record(const Network& n);
Network network_from_record(const nlohmann::json& j);  // throws nlohmann::json::exception
nlohmann::json endpoint_record(const Endpoint& e);
Endpoint endpoint_from_record(const nlohmann::json& j);

}  // namespace weft::control
