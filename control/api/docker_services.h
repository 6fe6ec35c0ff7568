// The services and tasks of the Docker Engine API as the docker CLI (20.10,
// API 1.41) and docker-swarm-visualizer read them: `GET /services` with
// filters and `?status=true`, `GET /tasks[/{id}]` with filters, `POST
// /services/{id}/update` with the whole spec the CLI sends back (`docker
// service scale|update --replicas`), `docker service logs` in Docker's
// multiplexed stream, and the refusal of an image in `docker service create`.
// weft's own shapes (services.h) stay what they are; this adds Docker's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/status.hpp>
#include <nlohmann/json.hpp>

#include "control/api/filters.h"
#include "control/model/model.h"
#include "control/model/service_model.h"
#include "control/model/swarm_model.h"

namespace weft::control::api {

// A task's Docker id: 25 hex digits derived from its weft key
// ("<service id>.<slot>@<node>"), so every node names it alike and the CLI's
// 12-character ids tell a service's tasks apart.
std::string docker_task_id(const TaskRecord& task);

// Docker's task states for weft's ("restarting" is "ready": the next start is
// waiting for its back-off; "stopping" is "running" with desired state
// "shutdown"); the weft word goes to Status.Message.
std::string docker_task_state(std::string_view weft_state);

// What a task's JSON needs beyond the task and its service.
struct TaskContext {
  std::map<std::string, std::string> node_ids;   // node name -> /nodes ID
  std::map<std::string, Network> networks;       // network id -> network
  std::vector<ServiceBackendInfo> backends;      // the service's, cluster-wide
};

// Docker's task: {"ID", "Version", "CreatedAt", "UpdatedAt", "Labels",
// "Spec": {"ContainerSpec", "RestartPolicy", "Networks"}, "ServiceID",
// "Slot", "NodeID", "Status": {"Timestamp", "State", "Message", "Err",
// "ContainerStatus": {"PID"}}, "DesiredState", "NetworksAttachments":
// [{"Network": {"ID", "Spec": {"Name"}}, "Addresses": ["10.0.0.3/24"]}]},
// plus weft's "EndpointID" and "Netns".
nlohmann::json docker_task_json(const TaskRecord& task, const Service& service, const TaskContext& context);

// A handler's answer; routes.cpp turns it into a response.
struct DockerAnswer {
  boost::beast::http::status status = boost::beast::http::status::ok;
  std::string body;
  std::string_view content_type;  // a string literal; empty: no body
};

// `GET /services?filters=...&status=true`: filters id (prefix), name
// (prefix, as swarmkit matches), label, mode.
DockerAnswer docker_list_services(std::string_view target, ServiceApi& services);

// `GET /tasks?filters=...`: filters id (prefix), name ("redis.1"), service
// (name, id or id prefix), node (id or name), desired-state, label,
// _up-to-date (every weft task is).
DockerAnswer docker_list_tasks(std::string_view target, ServiceApi& services, NetworkService& networks,
                               SwarmService* swarm);
// `GET /tasks/{id}`: a task's Docker id or a unique prefix of it, or its weft key.
DockerAnswer docker_inspect_task(const std::string& ref, ServiceApi& services, NetworkService& networks,
                                 SwarmService* swarm);

// `POST /services/{id}/update[?version=N]`: the body is a whole spec (the
// docker CLI sends back what it read, with its change) or weft's sparse one.
// Only Mode.Replicated.Replicas can change; any other field that differs from
// the service's is refused, naming it. A `version` other than the service's
// is refused as dockerd does ("update out of sequence").
DockerAnswer docker_update_service(const std::string& ref, std::string_view target, std::string_view body,
                                   ServiceApi& services);

// Whether a logs request is the docker CLI's (it always sends stdout= and
// stderr=); weft's own CLI sends none and gets plain text.
bool wants_docker_logs(std::string_view target);

// `GET /services/{id}/logs?stdout=1&stderr=1&details=true[&tail=N]`: this
// node's task logs in Docker's multiplexed stream (8-byte headers, stream 1),
// one frame per line, each line prefixed with the details the CLI reads
// (com.docker.swarm.node.id, service.id, task.id) when details=true.
// follow, since and timestamps are refused: the agent keeps no time per line
// and answers a request at once (`weft service logs --follow` polls).
DockerAnswer docker_service_logs(const std::string& ref, std::string_view target, ServiceApi& services,
                                 SwarmService* swarm);
// `GET /tasks/{id}/logs` (`docker service logs TASK`): the same for one task,
// refused when it runs on another node.
DockerAnswer docker_task_logs(const std::string& ref, std::string_view target, ServiceApi& services,
                              NetworkService& networks, SwarmService* swarm);

// Docker's multiplexed-stream frame: {stream, 0, 0, 0, size (big-endian
// 32 bits)} then the payload.
std::string docker_stream_frame(std::uint8_t stream, std::string_view payload);

// `POST /services/create` with TaskTemplate.ContainerSpec.Image (what
// `docker service create IMAGE` sends): weft runs programs, not images.
// Throws ApiError(BadRequest) whose message shows the `weft service create
// ... -- COMMAND` form, with the body's name, networks (by name when
// `networks` knows them) and arguments.
void refuse_service_image(std::string_view create_body, NetworkService* networks = nullptr);

}  // namespace weft::control::api
