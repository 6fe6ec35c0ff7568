// Service specs with tasks: the command, replicas and restart condition as
// the API reads them, the checks with their messages, and the stored record
// (old records without these fields still load).
#include <gtest/gtest.h>

#include <string>

#include "control/api/services.h"
#include "control/model/record_json.h"
#include "control/services/service_spec.h"

namespace weft::control {
namespace {

using nlohmann::json;

ServiceSpec spec_with(std::vector<std::string> command) {
  ServiceSpec spec;
  spec.name = "redis";
  spec.networks = {"net-test"};
  spec.command = std::move(command);
  return spec;
}

std::string error_of(const ServiceSpec& spec) {
  try {
    services::check_spec(spec);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.http_status(), 400);
    return e.what();
  }
  return "";
}

TEST(TaskSpec, ACommandMeansOneReplicaRestartedOnAnyExit) {
  const auto checked = services::check_spec(spec_with({"redis-server", "--port", "6379"}));
  EXPECT_EQ(checked.command, (std::vector<std::string>{"redis-server", "--port", "6379"}));
  EXPECT_EQ(checked.replicas, 1u);
  EXPECT_EQ(checked.restart_condition, RestartCondition::any);
  EXPECT_EQ(services::check_spec(spec_with({})).replicas, 0u);  // no command, no tasks
}

TEST(TaskSpec, BadInputGetsAClearMessage) {
  EXPECT_NE(error_of(spec_with({""})).find("the command is empty"), std::string::npos);
  auto replicas_alone = spec_with({});
  replicas_alone.replicas = 3;
  EXPECT_NE(error_of(replicas_alone).find("--replicas needs a command"), std::string::npos);
  auto bad_condition = spec_with({"true"});
  bad_condition.restart_condition = "sometimes";
  EXPECT_NE(error_of(bad_condition).find("unknown restart condition \"sometimes\""), std::string::npos);
  auto too_many = spec_with({"true"});
  too_many.replicas = services::kMaxReplicas + 1;
  EXPECT_NE(error_of(too_many).find("too many replicas"), std::string::npos);
  EXPECT_NE(error_of(spec_with(std::vector<std::string>(services::kMaxCommandArgs + 1, "x"))).find("arguments"),
            std::string::npos);
  EXPECT_NE(error_of(spec_with({"sh", std::string(services::kMaxCommandBytes, 'x')})).find("bytes long"),
            std::string::npos);
}

TEST(TaskSpec, TheApiReadsDockersContainerSpecModeAndRestartPolicy) {
  const auto spec = api::parse_service_create(R"({"Name": "redis",
      "TaskTemplate": {"Networks": [{"Target": "net-test"}],
                       "ContainerSpec": {"Command": ["redis-server"], "Args": ["--port", "6379"]},
                       "RestartPolicy": {"Condition": "on-failure"}},
      "Mode": {"Replicated": {"Replicas": 4}}})");
  EXPECT_EQ(spec.command, (std::vector<std::string>{"redis-server", "--port", "6379"}));
  EXPECT_EQ(spec.replicas, 4u);
  EXPECT_EQ(spec.restart_condition, "on-failure");
}

TEST(TaskSpec, TheApiRefusesReplicasThatAreNotANumber) {
  for (const char* body : {R"({"Name": "r", "Mode": {"Replicated": {"Replicas": "4"}}})",
                           R"({"Name": "r", "Mode": {"Replicated": {"Replicas": -1}}})",
                           R"({"Name": "r", "Mode": {"Replicated": {"Replicas": 1.5}}})"}) {
    EXPECT_THROW(api::parse_service_create(body), ApiError) << body;
    EXPECT_THROW(api::parse_service_update(body), ApiError) << body;
  }
  EXPECT_THROW(api::parse_service_create(
                   R"({"Name": "r", "TaskTemplate": {"ContainerSpec": {"Args": ["ok", 3]}}})"),
               ApiError);
  EXPECT_EQ(api::parse_service_update(R"({"Mode": {"Replicated": {"Replicas": 2}}})").replicas, 2u);
}

TEST(TaskSpec, RecordsKeepTheTaskFieldsAndOldRecordsStillLoad) {
  Service s;
  s.id = std::string(64, 'a');
  s.name = "redis";
  s.network_ids = {std::string(64, 'e')};
  s.command = {"redis-server"};
  s.replicas = 4;
  s.restart_condition = RestartCondition::on_failure;
  s.version = 3;
  const auto back = service_from_record(service_record(s));
  EXPECT_EQ(back.command, s.command);
  EXPECT_EQ(back.replicas, 4u);
  EXPECT_EQ(back.restart_condition, RestartCondition::on_failure);
  EXPECT_EQ(back.version, 3u);

  json old = service_record(s);
  for (const char* key : {"command", "replicas", "restart_condition", "version"}) old.erase(key);
  const auto loaded = service_from_record(old);
  EXPECT_TRUE(loaded.command.empty());
  EXPECT_EQ(loaded.replicas, 0u);
}

TEST(TaskSpec, ServiceJsonShowsTasksOnlyForServicesWithACommand) {
  ServiceDetail d;
  d.service.id = std::string(64, 'a');
  d.service.name = "plain";
  EXPECT_FALSE(api::service_json(d).contains("ServiceStatus"));
  d.service.command = {"redis-server"};
  d.service.replicas = 4;
  d.running_tasks = 3;
  const auto j = api::service_json(d);
  EXPECT_EQ(j["ServiceStatus"], (json{{"RunningTasks", 3}, {"DesiredTasks", 4}}));
  EXPECT_EQ(j["Spec"]["Mode"]["Replicated"]["Replicas"], 4);
  EXPECT_EQ(j["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"], json::array({"redis-server"}));
}

TEST(TaskSpec, TaskRecordsRoundTrip) {
  TaskRecord t{.service_id = std::string(64, 'a'), .slot = 2, .node = "node1", .endpoint_id = "e",
               .state = "running", .started_at = "2026-01-01T00:00:00.000000000Z", .error = "",
               .pid = 42, .netns = "/run/netns/x"};
  const auto back = task_from_record(task_record(t));
  EXPECT_EQ(back.key(), t.key());
  EXPECT_EQ(back.pid, 42);
  EXPECT_EQ(back.state, "running");
}

}  // namespace
}  // namespace weft::control
