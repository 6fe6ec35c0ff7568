// Docker's services and tasks as the docker CLI (20.10) and
// docker-swarm-visualizer read them (control/api/docker_services.h): the
// field paths they read are listed here, so a renamed or retyped field fails
// a test; filters; the update the CLI sends back; the logs stream; the
// refusal of an image.
#include "control/api/docker_services.h"
#include "control/api/docker_service_events.h"

#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/api/routes.h"
#include "control/api/services.h"
#include "tests/unit/fake_network_service.h"
#include "tests/unit/fake_service_api.h"

namespace weft::control::api {
namespace {

using nlohmann::json;
using test_support::FakeNetworkService;
using test_support::FakeServiceApi;

dataplane::Ipv4 ip(const char* text) { return *dataplane::Ipv4::parse(text); }

const std::string kNet(64, 'e');

// The fake's services plus tasks, updates and per-slot logs.
class TaskServices : public FakeServiceApi {
 public:
  std::map<std::string, std::vector<TaskRecord>> tasks;  // by service id
  std::map<std::string, std::vector<TaskLog>> logs;      // by service id
  std::vector<std::pair<std::string, ServiceUpdate>> updates;

  Service update_service(const std::string& name_or_id, const ServiceUpdate& update) override {
    updates.emplace_back(name_or_id, update);
    return get_service(name_or_id).service;
  }
  std::vector<TaskRecord> list_tasks(const std::string& name_or_id) override {
    return tasks[get_service(name_or_id).service.id];
  }
  std::string task_logs(const std::string& name_or_id, std::uint64_t) override {
    std::string text;
    for (const TaskLog& log : logs[get_service(name_or_id).service.id]) text += log.text;
    return text;
  }
  std::vector<TaskLog> task_logs_by_slot(const std::string& name_or_id, std::uint64_t) override {
    return logs[get_service(name_or_id).service.id];
  }
};

// node1 (this node) and node2, with ids unlike their names.
class TwoNodeSwarm : public SwarmService {
 public:
  SwarmInitResult init(const SwarmInitRequest&) override { return {}; }
  void join(const SwarmJoinRequest&) override {}
  void leave(const SwarmLeaveRequest&) override {}
  SwarmInfo info() override {
    SwarmInfo info;
    info.active = true;
    info.node_id = "id-node1";
    info.node_name = "node1";
    return info;
  }
  std::vector<NodeInfo> list_nodes() override {
    std::vector<NodeInfo> nodes(2);
    for (int i = 0; i < 2; ++i) {
      nodes[i].id = "id-node" + std::to_string(i + 1);
      nodes[i].hostname = "node" + std::to_string(i + 1);
      nodes[i].status = "ready";
    }
    return nodes;
  }
  NodeInfo get_node(const std::string&) override { return list_nodes()[0]; }
  void remove_node(const std::string&) override {}
};

// redis: tasks running `redis-server`, 2 replicas, VIP 10.0.0.2/24;
// slot 1 on node1 (10.0.0.3), slot 2 on node2 (10.0.0.4).
ServiceDetail redis() {
  ServiceDetail detail;
  Service& s = detail.service;
  s.id = FakeServiceApi::make_id(1);
  s.name = "redis";
  s.ports = {{6379, PortProtocol::tcp}};
  s.network_ids = {kNet};
  s.vips = {{kNet, ip("10.0.0.2"), 24}};
  s.created = "2024-05-01T12:00:00Z";
  s.node = "node1";
  s.command = {"redis-server", "--port", "6379"};
  s.replicas = 2;
  s.version = 3;
  for (const auto& [name, node, addr] : {std::tuple{"weft-node1-aaaa-1", "node1", "10.0.0.3"},
                                         std::tuple{"weft-node2-aaaa-2", "node2", "10.0.0.4"}}) {
    ServiceBackendInfo backend;
    backend.endpoint_id = std::string(64, name[9]);
    backend.endpoint_name = name;
    backend.network_id = kNet;
    backend.ip = ip(addr);
    backend.node = node;
    detail.backends.push_back(backend);
  }
  detail.running_tasks = 2;
  return detail;
}

TaskRecord task(std::uint64_t slot, const std::string& node, const std::string& state = "running") {
  return TaskRecord{.service_id = FakeServiceApi::make_id(1),
                    .slot = slot,
                    .node = node,
                    .endpoint_id = std::string(64, node.back()),
                    .state = state,
                    .started_at = "2024-05-01T12:00:05.123456789Z",
                    .error = "",
                    .pid = static_cast<std::int64_t>(100 + slot),
                    .netns = "/run/netns/weft-" + node + "-aaaa-" + std::to_string(slot)};
}

// A field path ("Spec.TaskTemplate.Networks[0].Target") of a JSON value;
// nullptr when any step is missing.
const json* at_path(const json& root, const std::string& path) {
  const json* node = &root;
  std::size_t pos = 0;
  while (pos < path.size()) {
    if (path[pos] == '.') ++pos;
    if (path[pos] == '[') {
      const auto close = path.find(']', pos);
      const std::size_t index = std::stoul(path.substr(pos + 1, close - pos - 1));
      if (!node->is_array() || node->size() <= index) return nullptr;
      node = &(*node)[index];
      pos = close + 1;
      continue;
    }
    const auto end = path.find_first_of(".[", pos);
    const std::string key = path.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (!node->is_object() || !node->contains(key)) return nullptr;
    node = &node->at(key);
    pos = end == std::string::npos ? path.size() : end;
  }
  return node;
}

// Go's types: what the CLI's structs (swarm.Service, swarm.Task) decode.
enum class Go { String, Uint, Time, Object, Array, Strings };

bool has_go_type(const json& value, Go type) {
  switch (type) {
    case Go::String: return value.is_string();
    case Go::Uint: return value.is_number_unsigned();
    case Go::Time: {
      // RFC 3339 as Go's time.Time reads it: "" is refused.
      if (!value.is_string()) return false;
      const std::string text = value.get<std::string>();
      return text.size() >= 20 && text[4] == '-' && text[10] == 'T' && (text.back() == 'Z' || text.size() > 20);
    }
    case Go::Object: return value.is_object();
    case Go::Array: return value.is_array();
    case Go::Strings:
      return value.is_array() && std::all_of(value.begin(), value.end(), [](const json& e) { return e.is_string(); });
  }
  return false;
}

void expect_paths(const json& value, const std::vector<std::pair<std::string, Go>>& paths) {
  for (const auto& [path, type] : paths) {
    const json* found = at_path(value, path);
    if (!found) {
      ADD_FAILURE() << "missing " << path << " in " << value.dump();
      continue;
    }
    EXPECT_TRUE(has_go_type(*found, type)) << path << " has the wrong type: " << found->dump();
  }
}

class ApiDockerServicesTest : public ::testing::Test {
 protected:
  ApiDockerServicesTest() {
    Network network;
    network.id = kNet;
    network.name = "net-test";
    network.subnet = *dataplane::Cidr::parse("10.0.0.0/24");
    networks.networks.push_back(network);
    services.add(redis());
    services.tasks[FakeServiceApi::make_id(1)] = {task(1, "node1"), task(2, "node2")};
  }

  Response send(http::verb method, const std::string& target, const std::string& body = "") {
    Request request{method, target, 11};
    request.body() = body;
    request.prepare_payload();
    return handle_request(request, Services{networks, &swarm, &services});
  }
  static json body_json(const Response& response) { return json::parse(response.body()); }
  static std::string message_of(const Response& response) {
    return body_json(response).at("message").get<std::string>();
  }
  json get(const std::string& target) {
    const Response response = send(http::verb::get, target);
    EXPECT_EQ(response.result_int(), 200u) << target << ": " << response.body();
    return body_json(response);
  }
  std::vector<std::string> task_slots(const std::string& target) {
    std::vector<std::string> slots;
    for (const json& t : get(target)) slots.push_back(t.at("Slot").dump() + "@" + t.at("NodeID").get<std::string>());
    return slots;
  }

  FakeNetworkService networks;
  TaskServices services;
  TwoNodeSwarm swarm;
};

// What `docker service ls|inspect|ps|scale|update|logs` and their templates,
// and docker-swarm-visualizer, read of a service.
const std::vector<std::pair<std::string, Go>> kServicePaths = {
    {"ID", Go::String},
    {"Version.Index", Go::Uint},  // sent back as ?version= by scale and update
    {"CreatedAt", Go::Time},
    {"UpdatedAt", Go::Time},
    {"Spec.Name", Go::String},
    {"Spec.Labels", Go::Object},
    {"Spec.TaskTemplate.ContainerSpec", Go::Object},  // dereferenced by update and logs
    {"Spec.TaskTemplate.ContainerSpec.Args", Go::Strings},
    {"Spec.TaskTemplate.RestartPolicy.Condition", Go::String},
    {"Spec.TaskTemplate.Networks[0].Target", Go::String},
    {"Spec.Mode.Replicated.Replicas", Go::Uint},  // MODE, REPLICAS, scale
    {"Spec.EndpointSpec.Mode", Go::String},
    {"Spec.EndpointSpec.Ports[0].Protocol", Go::String},
    {"Spec.EndpointSpec.Ports[0].TargetPort", Go::Uint},
    {"Endpoint.Spec.Mode", Go::String},
    {"Endpoint.Ports[0].TargetPort", Go::Uint},
    {"Endpoint.VirtualIPs[0].NetworkID", Go::String},
    {"Endpoint.VirtualIPs[0].Addr", Go::String},  // {{json .Endpoint.VirtualIPs}}
    {"ServiceStatus.RunningTasks", Go::Uint},     // REPLICAS with ?status=true
    {"ServiceStatus.DesiredTasks", Go::Uint},
    {"Backends", Go::Array},  // weft's own, kept
};

// What `docker service ps`, WaitOnService (scale, update), `docker service
// logs` and docker-swarm-visualizer read of a task.
const std::vector<std::pair<std::string, Go>> kTaskPaths = {
    {"ID", Go::String},
    {"Version.Index", Go::Uint},
    {"CreatedAt", Go::Time},  // ps sorts by it
    {"UpdatedAt", Go::Time},
    {"ServiceID", Go::String},
    {"Slot", Go::Uint},
    {"NodeID", Go::String},
    {"Spec.ContainerSpec", Go::Object},  // ps's IMAGE dereferences it
    {"Status.State", Go::String},
    {"Status.Timestamp", Go::Time},  // CURRENT STATE "Running 2 minutes ago"
    {"Status.Message", Go::String},
    {"Status.ContainerStatus.PID", Go::Uint},
    {"DesiredState", Go::String},
    {"NetworksAttachments[0].Network.ID", Go::String},
    {"NetworksAttachments[0].Network.Spec.Name", Go::String},
    {"NetworksAttachments[0].Addresses[0]", Go::String},
};

TEST_F(ApiDockerServicesTest, ServiceHasTheFieldsDockerClientsRead) {
  const json service = get("/v1.41/services/redis?insertDefaults=true");
  expect_paths(service, kServicePaths);
  EXPECT_EQ(service.at("Version").at("Index"), 3);
  EXPECT_EQ(service.at("Spec").at("Mode").at("Replicated").at("Replicas"), 2);
  EXPECT_EQ(service.at("Endpoint").at("VirtualIPs")[0].at("Addr"), "10.0.0.2/24");
  EXPECT_EQ(service.at("Spec").at("TaskTemplate").at("ContainerSpec").at("Args"),
            json({"redis-server", "--port", "6379"}));
  // The list has the same shape.
  expect_paths(get("/v1.41/services?status=true").at(0), kServicePaths);
}

TEST_F(ApiDockerServicesTest, ServiceWithoutTasksHasAContainerSpecAndStatusWhenAsked) {
  ServiceDetail plain = redis();
  plain.service.id = FakeServiceApi::make_id(2);
  plain.service.name = "plain";
  plain.service.command.clear();
  plain.service.replicas = 0;
  services.add(plain);
  const json service = get("/services/plain");
  expect_paths(service, {{"Spec.TaskTemplate.ContainerSpec", Go::Object}, {"Version.Index", Go::Uint}});
  EXPECT_FALSE(service.at("Spec").contains("Mode"));
  EXPECT_FALSE(service.contains("ServiceStatus"));
  const json listed = get("/services?status=true&filters=%7B%22name%22%3A%5B%22plain%22%5D%7D");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].at("ServiceStatus"), (json{{"RunningTasks", 0}, {"DesiredTasks", 0}}));
}

TEST_F(ApiDockerServicesTest, TaskHasTheFieldsDockerClientsRead) {
  const json tasks = get("/v1.41/tasks");
  ASSERT_EQ(tasks.size(), 2u);
  for (const json& t : tasks) expect_paths(t, kTaskPaths);
  const json& first = tasks[0];
  EXPECT_EQ(first.at("ServiceID"), FakeServiceApi::make_id(1));
  EXPECT_EQ(first.at("Slot"), 1);
  EXPECT_EQ(first.at("NodeID"), "id-node1");  // the /nodes ID, not weft's node name
  EXPECT_EQ(first.at("Status").at("State"), "running");
  EXPECT_EQ(first.at("Status").at("ContainerStatus").at("PID"), 101);
  EXPECT_EQ(first.at("DesiredState"), "running");
  EXPECT_EQ(first.at("NetworksAttachments")[0].at("Network").at("Spec").at("Name"), "net-test");
  EXPECT_EQ(first.at("NetworksAttachments")[0].at("Addresses"), json({"10.0.0.3/24"}));
  EXPECT_EQ(tasks[1].at("NetworksAttachments")[0].at("Addresses"), json({"10.0.0.4/24"}));
  EXPECT_EQ(first.at("ID").get<std::string>().size(), 25u);
  EXPECT_NE(first.at("ID").get<std::string>().substr(0, 12), tasks[1].at("ID").get<std::string>().substr(0, 12));
}

TEST_F(ApiDockerServicesTest, ServiceFiltersTakeBothOfDockersForms) {
  ServiceDetail web = redis();
  web.service.id = FakeServiceApi::make_id(2);
  web.service.name = "web";
  services.add(web);
  const auto names = [&](const std::string& query) {
    std::vector<std::string> out;
    for (const json& s : get("/services?filters=" + query)) out.push_back(s.at("Spec").at("Name"));
    return out;
  };
  // {"name":["red"]} (name matches as a prefix, as swarmkit's does)
  EXPECT_EQ(names("%7B%22name%22%3A%5B%22red%22%5D%7D"), std::vector<std::string>{"redis"});
  // {"name":{"web":true}}, the 20.10 CLI's form
  EXPECT_EQ(names("%7B%22name%22%3A%7B%22web%22%3Atrue%7D%7D"), std::vector<std::string>{"web"});
  // {"id":{"<prefix of web's id>":true}}
  EXPECT_EQ(names("%7B%22id%22%3A%7B%22" + web.service.id.substr(0, 6) + "%22%3Atrue%7D%7D"),
            std::vector<std::string>{"web"});
  EXPECT_EQ(names("%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"), std::vector<std::string>{});  // no labels in weft
  const Response bad = send(http::verb::get, "/services?filters=%7B%22colour%22%3A%5B%22red%22%5D%7D");
  EXPECT_EQ(bad.result_int(), 400u);
  EXPECT_EQ(message_of(bad), "invalid filter 'colour'");
  EXPECT_EQ(send(http::verb::get, "/services?filters=%5B1%5D").result_int(), 400u);
}

TEST_F(ApiDockerServicesTest, TaskFiltersAsDockerServicePsAndScaleSendThem) {
  const std::string id = FakeServiceApi::make_id(1);
  // {"service":{"<id>":true},"_up-to-date":{"true":true}}: WaitOnService's query
  EXPECT_EQ(task_slots("/tasks?filters=%7B%22service%22%3A%7B%22" + id +
                       "%22%3Atrue%7D%2C%22_up-to-date%22%3A%7B%22true%22%3Atrue%7D%7D"),
            (std::vector<std::string>{"1@id-node1", "2@id-node2"}));
  EXPECT_EQ(task_slots("/tasks?filters=%7B%22service%22%3A%5B%22redis%22%5D%7D").size(), 2u);
  EXPECT_EQ(task_slots("/tasks?filters=%7B%22service%22%3A%5B%22nope%22%5D%7D").size(), 0u);
  // node by name or by id
  EXPECT_EQ(task_slots("/tasks?filters=%7B%22node%22%3A%5B%22node2%22%5D%7D"),
            std::vector<std::string>{"2@id-node2"});
  EXPECT_EQ(task_slots("/tasks?filters=%7B%22node%22%3A%5B%22id-node1%22%5D%7D"),
            std::vector<std::string>{"1@id-node1"});
  EXPECT_EQ(task_slots("/tasks?filters=%7B%22name%22%3A%5B%22redis.2%22%5D%7D"),
            std::vector<std::string>{"2@id-node2"});
  const std::string first_id = get("/tasks").at(0).at("ID");
  EXPECT_EQ(task_slots("/tasks?filters=%7B%22id%22%3A%5B%22" + first_id.substr(0, 8) + "%22%5D%7D"),
            std::vector<std::string>{"1@id-node1"});
  EXPECT_EQ(task_slots("/tasks?filters=%7B%22desired-state%22%3A%5B%22shutdown%22%5D%7D").size(), 0u);
  EXPECT_EQ(send(http::verb::get, "/tasks?filters=%7B%22runtime%22%3A%5B%22x%22%5D%7D").result_int(), 400u);
}

TEST_F(ApiDockerServicesTest, WeftTaskStatesBecomeDockers) {
  services.tasks[FakeServiceApi::make_id(1)] = {task(1, "node1", "restarting"), task(2, "node2", "stopping"),
                                               task(3, "node1", "running")};
  const json tasks = get("/tasks");
  ASSERT_EQ(tasks.size(), 3u);
  EXPECT_EQ(tasks[0].at("Status").at("State"), "ready");
  EXPECT_EQ(tasks[0].at("Status").at("Message"), "restarting");
  EXPECT_EQ(tasks[0].at("DesiredState"), "running");
  EXPECT_EQ(tasks[1].at("Status").at("State"), "running");
  EXPECT_EQ(tasks[1].at("DesiredState"), "shutdown");
  EXPECT_EQ(tasks[2].at("DesiredState"), "shutdown");  // slot 3 of 2 replicas
  EXPECT_EQ(task_slots("/tasks?filters=%7B%22desired-state%22%3A%5B%22running%22%5D%7D"),
            std::vector<std::string>{"1@id-node1"});
}

TEST_F(ApiDockerServicesTest, InspectTaskByIdPrefixOrWeftKey) {
  const json tasks = get("/tasks");
  const std::string id = tasks[1].at("ID");
  EXPECT_EQ(get("/v1.41/tasks/" + id), tasks[1]);
  EXPECT_EQ(get("/tasks/" + id.substr(0, 10)), tasks[1]);
  EXPECT_EQ(get("/tasks/" + task(2, "node2").key()), tasks[1]);
  const Response missing = send(http::verb::get, "/tasks/zzzz");
  EXPECT_EQ(missing.result_int(), 404u);  // the CLI's IsErrNotFound
  EXPECT_EQ(message_of(missing), "no such task: zzzz");
}

TEST_F(ApiDockerServicesTest, UpdateTakesBackTheSpecItServedWithNewReplicas) {
  // What `docker service scale redis=5` sends: the spec it read, through Go's
  // structs (zero and empty fields written out), with the new count.
  json spec = get("/services/redis").at("Spec");
  spec["Mode"]["Replicated"]["Replicas"] = 5;
  spec["TaskTemplate"]["ForceUpdate"] = 0;
  spec["TaskTemplate"]["ContainerSpec"]["Isolation"] = "";
  spec["TaskTemplate"]["Placement"] = json::object();
  spec["EndpointSpec"]["Ports"][0]["PublishedPort"] = 0;
  const Response response = send(http::verb::post, "/v1.41/services/" + FakeServiceApi::make_id(1) +
                                                       "/update?version=3", spec.dump());
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  ASSERT_EQ(services.updates.size(), 1u);
  EXPECT_EQ(services.updates[0].second.replicas, 5u);
  // weft's own CLI sends only what changes.
  ASSERT_EQ(send(http::verb::post, "/services/redis/update", R"({"Mode":{"Replicated":{"Replicas":1}}})")
                .result_int(),
            200u);
  EXPECT_EQ(services.updates.at(1).second.replicas, 1u);
}

TEST_F(ApiDockerServicesTest, UpdateRefusesWhatWeftCannotChangeNamingIt) {
  json spec = get("/services/redis").at("Spec");
  spec["TaskTemplate"]["ContainerSpec"]["Image"] = "redis:7";
  spec["Labels"] = {{"team", "a"}};
  Response response = send(http::verb::post, "/services/redis/update?version=3", spec.dump());
  EXPECT_EQ(response.result_int(), 400u);
  EXPECT_NE(message_of(response).find("this update also changes Labels.team, TaskTemplate.ContainerSpec.Image"),
            std::string::npos)
      << message_of(response);
  response = send(http::verb::post, "/services/redis/update", R"({"Name": "cache"})");
  EXPECT_EQ(response.result_int(), 400u);
  EXPECT_NE(message_of(response).find("changes Name"), std::string::npos) << message_of(response);
  EXPECT_TRUE(services.updates.empty());
}

TEST_F(ApiDockerServicesTest, UpdateFromAnOlderVersionIsOutOfSequence) {
  const Response response =
      send(http::verb::post, "/services/redis/update?version=2", R"({"Mode":{"Replicated":{"Replicas":1}}})");
  EXPECT_EQ(response.result_int(), 409u);
  EXPECT_NE(message_of(response).find("update out of sequence"), std::string::npos);
  EXPECT_EQ(send(http::verb::post, "/services/redis/update?version=x", "{}").result_int(), 400u);
  EXPECT_TRUE(services.updates.empty());
}

TEST_F(ApiDockerServicesTest, DockerLogsAreMultiplexedWithTaskDetails) {
  const std::string id = FakeServiceApi::make_id(1);
  // Slot 2 runs on node2: its log (which the agent gathers from there)
  // shows under its task there.
  services.logs[id] = {TaskLog{1, "one\ntwo\nthree\n"}, TaskLog{2, "old\n"}};
  const Response response =
      send(http::verb::get, "/v1.41/services/redis/logs?details=true&stderr=1&stdout=1&tail=2");
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  const std::string task_id = docker_task_id(task(1, "node1"));
  const std::string details = "com.docker.swarm.node.id=id-node1,com.docker.swarm.service.id=" + id +
                              ",com.docker.swarm.task.id=" + task_id + " ";
  const std::string there = "com.docker.swarm.node.id=id-node2,com.docker.swarm.service.id=" + id +
                            ",com.docker.swarm.task.id=" + docker_task_id(task(2, "node2")) + " ";
  EXPECT_EQ(response.body(), docker_stream_frame(1, details + "two\n") + docker_stream_frame(1, details + "three\n") +
                                 docker_stream_frame(1, there + "old\n"));
  const std::string frame = docker_stream_frame(1, "hi\n");
  EXPECT_EQ(frame.substr(0, 8), std::string("\x01\x00\x00\x00\x00\x00\x00\x03", 8));
  // weft's CLI asks without Docker's parameters and gets the text.
  const Response text = send(http::verb::get, "/services/redis/logs");
  EXPECT_EQ(text.body(), "one\ntwo\nthree\nold\n");
  EXPECT_EQ(text[http::field::content_type], "text/plain");
}

TEST_F(ApiDockerServicesTest, DockerLogsOfOneTaskWhereverItRuns) {
  const std::string id = FakeServiceApi::make_id(1);
  services.logs[id] = {TaskLog{1, "one\n"}, TaskLog{2, "two\n"}};
  const json tasks = get("/tasks");
  const std::string here = tasks[0].at("ID");  // slot 1, node1: this node
  const Response response = send(http::verb::get, "/v1.41/tasks/" + here + "/logs?stdout=1&stderr=1&details=true");
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  EXPECT_EQ(response.body(), docker_stream_frame(1, "com.docker.swarm.node.id=id-node1,com.docker.swarm.service.id=" +
                                                        id + ",com.docker.swarm.task.id=" + here + " one\n"));
  const Response elsewhere =
      send(http::verb::get, "/tasks/" + tasks[1].at("ID").get<std::string>() + "/logs?stdout=1&stderr=1");
  ASSERT_EQ(elsewhere.result_int(), 200u) << elsewhere.body();
  EXPECT_EQ(elsewhere.body(), docker_stream_frame(1, "two\n")) << "slot 2's log, from node2";
}

TEST_F(ApiDockerServicesTest, DockerLogsRefuseFollowAndTimestampsClearly) {
  Response response = send(http::verb::get, "/services/redis/logs?follow=1&stdout=1&stderr=1");
  EXPECT_EQ(response.result_int(), 501u);
  EXPECT_NE(message_of(response).find("weft service logs --follow redis"), std::string::npos);
  response = send(http::verb::get, "/services/redis/logs?timestamps=1&stdout=1");
  EXPECT_EQ(response.result_int(), 400u);
  EXPECT_NE(message_of(response).find("--timestamps"), std::string::npos);
}

TEST_F(ApiDockerServicesTest, CreateWithAnImageShowsTheWeftCommand) {
  // What `docker service create --name cache --network net-test redis:7
  // redis-server --port 6379` sends.
  const Response response = send(http::verb::post, "/v1.41/services/create", R"({
      "Name": "cache", "Labels": {},
      "TaskTemplate": {"ContainerSpec": {"Image": "redis:7", "Args": ["redis-server", "--port", "6379"]},
                       "Networks": [{"Target": "net-test"}], "ForceUpdate": 0},
      "Mode": {"Replicated": {"Replicas": 1}}})");
  EXPECT_EQ(response.result_int(), 400u);
  EXPECT_EQ(message_of(response),
            "weft runs programs, not images: it cannot run image \"redis:7\". Run the program as the service's "
            "tasks instead: weft service create --name cache --network net-test -- redis-server --port 6379");
  EXPECT_TRUE(services.create_requests.empty());
  // The CLI sends the id of the network it looked up: the form names it.
  const Response by_id = send(http::verb::post, "/services/create",
                              R"({"Name": "cache", "TaskTemplate": {"ContainerSpec": {"Image": "redis"},
                                  "Networks": [{"Target": ")" + kNet + R"("}]}})");
  EXPECT_NE(message_of(by_id).find("--name cache --network net-test --"), std::string::npos) << message_of(by_id);
  // Without arguments the form shows where the command goes.
  const Response bare = send(http::verb::post, "/services/create",
                             R"({"Name": "x", "TaskTemplate": {"ContainerSpec": {"Image": "alpine"}}})");
  EXPECT_NE(message_of(bare).find("--name x --network NET -- COMMAND [ARGS...]"), std::string::npos)
      << message_of(bare);
}

TEST(DockerQuery, ParametersAreDecodedAndBounded) {
  EXPECT_EQ(query_parameter(query_of("/tasks?a=1&filters=%7B%7D+x"), "filters"), "{} x");
  EXPECT_EQ(query_parameter(query_of("/tasks?a=1"), "filters"), std::nullopt);
  EXPECT_THROW(query_parameter(query_of("/tasks?filters=%zz"), "filters"), ApiError);
  EXPECT_THROW(query_parameter(query_of("/tasks?filters=%00"), "filters"), ApiError);
  EXPECT_THROW(query_parameter(query_of("/tasks?f=" + std::string(300, 'a')), "f", 256), ApiError);
  std::string many = "%7B%22id%22%3A%5B";
  for (int i = 0; i < 65; ++i) many += std::string(i ? "%2C" : "") + "%22a%22";
  EXPECT_THROW(filters_of("/tasks?filters=" + many + "%5D%7D", {"id"}), ApiError);
}

}  // namespace
}  // namespace weft::control::api

namespace weft::control::api {
namespace {

ServiceDetail listed(const std::string& id, const std::string& name, std::uint64_t version, std::uint64_t replicas) {
  ServiceDetail detail;
  detail.service.id = id;
  detail.service.name = name;
  detail.service.version = version;
  detail.service.replicas = replicas;
  return detail;
}

std::vector<std::string> described(const std::vector<ServiceEvent>& events) {
  std::vector<std::string> out;
  for (const ServiceEvent& e : events) {
    std::string text = e.action + " " + e.service_id;
    for (const auto& [key, value] : e.attributes) text += " " + key + "=" + value;
    out.push_back(text);
  }
  return out;
}

TEST(DockerServiceEvents, CreateUpdateRemoveFromSuccessiveListings) {
  ServiceEventDiff diff;
  EXPECT_TRUE(diff.next({listed("a1", "old", 0, 1)}).empty());  // the baseline
  EXPECT_EQ(described(diff.next({listed("a1", "old", 0, 1), listed("b2", "redis", 0, 1)})),
            std::vector<std::string>{"create b2 name=redis"});
  EXPECT_TRUE(diff.next({listed("a1", "old", 0, 1), listed("b2", "redis", 0, 1)}).empty());
  EXPECT_EQ(described(diff.next({listed("a1", "old", 0, 1), listed("b2", "redis", 1, 4)})),
            std::vector<std::string>{"update b2 name=redis replicas.new=4 replicas.old=1"});
  EXPECT_EQ(described(diff.next({listed("b2", "redis", 2, 4)})),
            (std::vector<std::string>{"update b2 name=redis", "remove a1 name=old"}));
}

}  // namespace
}  // namespace weft::control::api
