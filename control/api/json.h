// JSON shapes of the local API. They follow Docker's Engine API (network
// create/inspect/connect/disconnect) so Docker-literate users and tools can
// read them; fields Docker has but weft does not model are left out.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/model/model.h"
#include "control/model/swarm_model.h"

namespace weft::control {

// Found by ADL, so `nlohmann::json j = network;` and vectors of them work.
void to_json(nlohmann::json& j, const Network& network);
void to_json(nlohmann::json& j, const Endpoint& endpoint);

namespace api {

// `GET /networks/{id}`: the network plus a "Containers" map of the endpoints
// in `endpoints` that belong to it (others are ignored).
nlohmann::json network_detail_json(const Network& network, const std::vector<Endpoint>& endpoints);

// "10.0.0.3/24"; empty when the endpoint has no address.
std::string ipv4_with_prefix(const Endpoint& endpoint);

// Request bodies. An empty body counts as `{}`; unknown fields are ignored
// (Docker clients send more than weft models). Every malformed body throws
// ApiError(BadRequest) naming the offending field.
NetworkSpec parse_network_create(std::string_view body);
// weft's extensions to Docker's bodies: connect takes a top-level "Service"
// (name, id or id prefix; the endpoint becomes its backend), disconnect a
// "DrainSeconds" (0..2^32-1). Endpoints that are service backends show
// "Service" (its id), "BackendState" and, while draining, "DrainUntil".
// Connect takes Docker's "EndpointConfig.Aliases" (at most 16 DNS names);
// every endpoint shows "DNS" (the embedded DNS address, 127.0.0.11) and
// "Aliases" (a list, maybe empty).
AttachRequest parse_network_connect(std::string_view network, std::string_view body);
DetachRequest parse_network_disconnect(std::string_view network, std::string_view body);
// `POST /swarm/leave`: Docker's clients send no body (force is a query
// parameter, ignored: leaving never strands anything here); weft's
// extension `{"DrainSeconds": N}`, at most kMaxLeaveDrainSeconds.
SwarmLeaveRequest parse_swarm_leave(std::string_view body);
// `POST /nodes/{id}/update`: the node's new availability, from weft's
// `{"Availability": "drain"}` or the NodeSpec the docker CLI sends back
// whole (`Name`, `Labels`, `Role`, `Availability`). `current_role` is the
// role the node is shown with: a different one, or any label, is refused
// (weft nodes are peers and carry no labels).
std::string parse_node_update(std::string_view body, const std::string& current_role);

// Serialises for the wire. Strings that are not valid UTF-8 (a netns path is
// whatever the user typed) are replaced rather than failing the response.
std::string dump(const nlohmann::json& j, int indent = -1);

}  // namespace api
}  // namespace weft::control
