// The stored form of networks and endpoints: used for the agent's state
// file and for the replicated tables, separate from the API's Docker-shaped
// JSON so either can change without breaking the other. Addresses are
// stored as text ("10.0.0.0/24", "10.0.0.2", "02:42:0a:00:00:02").
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "control/model/model.h"
#include "control/model/service_model.h"

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

// Services as the service manager's state file and the cluster's services
// table keep them.
nlohmann::json service_record(const Service& s);
Service service_from_record(const nlohmann::json& j);
// A task as the cluster's tasks table and the task supervisor's state keep it.
nlohmann::json task_record(const TaskRecord& t);
TaskRecord task_from_record(const nlohmann::json& j);
std::string restart_condition_name(RestartCondition condition);
std::optional<RestartCondition> parse_restart_condition(std::string_view text);

// The text forms of the service model's enums and ports ("active",
// "draining"; "vip", "dnsrr"; "6379/tcp"): nullopt for anything else.
std::string backend_state_name(BackendState state);
std::optional<BackendState> parse_backend_state(std::string_view text);
std::string endpoint_mode_name(EndpointMode mode);
std::optional<EndpointMode> parse_endpoint_mode(std::string_view text);
std::string port_text(const PublishedPort& p);
// "P", "P/tcp" or "P/udp" with P in 1..65535 (no sign, at most 5 digits).
std::optional<PublishedPort> parse_port(std::string_view text);

}  // namespace weft::control
