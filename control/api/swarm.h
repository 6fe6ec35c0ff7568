// JSON of the swarm and node API (`/swarm/*`, `/nodes`), Docker-shaped where
// Docker has the same thing.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "control/model/swarm_model.h"

namespace weft::control::api {

nlohmann::json node_json(const NodeInfo& node);
nlohmann::json swarm_json(const SwarmInfo& info);
nlohmann::json swarm_init_json(const SwarmInitResult& result);
// Throw ApiError(BadRequest) on a body that is not what the route takes.
SwarmInitRequest parse_swarm_init(const std::string& body);
SwarmJoinRequest parse_swarm_join(const std::string& body);

}  // namespace weft::control::api
