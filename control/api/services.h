// JSON of the service and load-balancer API (`/services`, `/lb/lookup`),
// Docker-shaped where Docker has the same thing (`docker service create`,
// `docker service inspect`); weft's additions (Backends, Node, /lb/lookup)
// use Docker's naming style.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "control/model/service_model.h"

namespace weft::control::api {

// A service's name, id or id prefix as a request gives it (path segment,
// query, connect body): a name is at most names::kMaxServiceName, an id 64.
inline constexpr std::size_t kMaxServiceRef = 64;
// How many networks and ports one create request may list: far more than a
// service needs, few enough that a hostile body costs little.
inline constexpr std::size_t kMaxServiceNetworks = 32;
inline constexpr std::size_t kMaxServicePorts = 128;

// `GET /services/{id}` and each element of `GET /services`:
// {"ID", "CreatedAt", "Spec": {"Name", "TaskTemplate": {"Networks":
// [{"Target"}]}, "EndpointSpec": {"Mode", "Ports": [{"Protocol",
// "TargetPort"}]}}, "Endpoint": {"Spec": {...}, "VirtualIPs": [{"NetworkID",
// "Addr": "10.0.0.2/24"}]}, "Backends": [...], "Node"}.
nlohmann::json service_json(const ServiceDetail& detail);

// `GET /lb/lookup`; `service_name` is shown as "Service".
nlohmann::json lb_lookup_json(const LbLookupResult& result, const std::string& service_name);

// Throws ApiError(BadRequest) naming the field: "Name", the networks of
// "TaskTemplate.Networks" (or the top-level "Networks" older Docker clients
// send), "EndpointSpec.Mode" and "EndpointSpec.Ports[i]".
// Tasks: "TaskTemplate.ContainerSpec.Command" + ".Args" (the argv, joined),
// "Mode.Replicated.Replicas", "TaskTemplate.RestartPolicy.Condition".
ServiceSpec parse_service_create(std::string_view body);

// `POST /services/{id}/update`: Docker's body is a whole spec; weft reads
// what it can change, "Mode.Replicated.Replicas".
ServiceUpdate parse_service_update(std::string_view body);

// `GET /services/{id}/tasks`, each element Docker's task shape:
// {"ID", "ServiceID", "Slot", "NodeID", "DesiredState", "Status": {"State",
// "Timestamp", "Err", "PID"}, "EndpointID", "Netns"}; desired state is
// "running" for slots the service still has, "shutdown" for others.
nlohmann::json task_json(const TaskRecord& task, const Service& service);

// The query of `/lb/lookup?service=S&src=IP:PORT&dport=N[&proto=P][&network=NET]`
// (the part after '?', percent-encoded). Unknown parameters are ignored, a
// missing or repeated one is refused (ApiError(BadRequest)).
LbLookupRequest parse_lb_lookup_query(std::string_view query);

// Throws ApiError(BadRequest) for a service reference no service can have.
void validate_service_ref(std::string_view name_or_id);

}  // namespace weft::control::api
