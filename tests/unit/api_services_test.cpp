// The service and load-balancer routes (`/services`, `/lb/lookup`) and the
// service fields of endpoints, against fake services.
#include <stdexcept>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/api/json.h"
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

// redis on one network, VIP 10.0.0.2/24, port 6379/tcp; one active backend
// with counters, one draining without (no load balancer counted it).
ServiceDetail redis() {
  ServiceDetail detail;
  Service& s = detail.service;
  s.id = FakeServiceApi::make_id(1);
  s.name = "redis";
  s.mode = EndpointMode::vip;
  s.ports = {{6379, PortProtocol::tcp}, {53, PortProtocol::udp}};
  s.network_ids = {std::string(64, 'e')};
  s.vips = {{std::string(64, 'e'), ip("10.0.0.2"), 24}};
  s.created = "2024-05-01T12:00:00Z";
  s.node = "node-1";
  ServiceBackendInfo active;
  active.endpoint_id = std::string(64, '1');
  active.endpoint_name = "r1";
  active.network_id = std::string(64, 'e');
  active.ip = ip("10.0.0.3");
  active.node = "node-1";
  active.counters = BackendCounters{7, 70, 7000};
  ServiceBackendInfo draining = active;
  draining.endpoint_id = std::string(64, '2');
  draining.endpoint_name = "r2";
  draining.ip = ip("10.0.0.4");
  draining.node = "node-2";
  draining.state = BackendState::draining;
  draining.counters.reset();
  detail.backends = {active, draining};
  return detail;
}

class ApiServicesTest : public ::testing::Test {
 protected:
  Response send(http::verb method, const std::string& target, const std::string& body = "") {
    Request request{method, target, 11};
    if (!body.empty()) request.set(http::field::content_type, "application/json");
    request.body() = body;
    request.prepare_payload();
    return handle_request(request, Services{networks, nullptr, &services});
  }

  static json body_json(const Response& response) { return json::parse(response.body()); }
  static std::string message_of(const Response& response) {
    return body_json(response).at("message").get<std::string>();
  }

  FakeNetworkService networks;
  FakeServiceApi services;
};

TEST_F(ApiServicesTest, CreateTakesDockersBodyAndAnswers201WithId) {
  const Response response = send(http::verb::post, "/services/create", R"({
      "Name": "redis",
      "TaskTemplate": {"Networks": [{"Target": "net-test"}, {"Target": "net-b", "Aliases": ["x"]}]},
      "EndpointSpec": {"Mode": "dnsrr", "Ports": [{"Protocol": "tcp", "TargetPort": 6379},
                                                  {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 53},
                                                  {"TargetPort": 80}]},
      "Labels": {"ignored": "yes"}})");
  ASSERT_EQ(response.result_int(), 201u) << response.body();
  EXPECT_EQ(body_json(response), (json{{"ID", services.services.at(0).service.id}}));
  ASSERT_EQ(services.create_requests.size(), 1u);
  const ServiceSpec& spec = services.create_requests[0];
  EXPECT_EQ(spec.name, "redis");
  EXPECT_EQ(spec.networks, (std::vector<std::string>{"net-test", "net-b"}));
  EXPECT_EQ(spec.endpoint_mode, "dnsrr");
  EXPECT_EQ(spec.ports, (std::vector<std::string>{"6379/tcp", "53/udp", "80/tcp"}));
}

TEST_F(ApiServicesTest, CreateAcceptsTopLevelNetworksOfOlderClientsAndDefaults) {
  ASSERT_EQ(send(http::verb::post, "/v1.24/services/create",
                 R"({"Name": "web", "Networks": [{"Target": "net-test"}], "EndpointSpec": {"Mode": ""}})")
                .result_int(),
            201u);
  const ServiceSpec& spec = services.create_requests.at(0);
  EXPECT_EQ(spec.networks, std::vector<std::string>{"net-test"});
  EXPECT_FALSE(spec.endpoint_mode.has_value());
  EXPECT_TRUE(spec.ports.empty());
}

TEST_F(ApiServicesTest, CreateRejectsMalformedBodiesNamingTheField) {
  const std::pair<std::string, std::string> cases[] = {
      {"not json", "invalid JSON in request body"},
      {"[1]", "request body must be a JSON object, got array"},
      {"{}", "missing required field \"Name\""},
      {R"({"Name": 5})", "\"Name\" must be a string, got number"},
      {R"({"Name": ")" + std::string(64, 'a') + R"("})", "service name"},
      {R"({"Name": "a\u001b"})", "control character"},
      {R"({"Name": "a", "TaskTemplate": []})", "\"TaskTemplate\" must be an object, got array"},
      {R"({"Name": "a", "TaskTemplate": {"Networks": {}}})", "\"TaskTemplate.Networks\" must be an array, got object"},
      {R"({"Name": "a", "TaskTemplate": {"Networks": ["net"]}})",
       "\"TaskTemplate.Networks[0]\" must be an object, got string"},
      {R"({"Name": "a", "TaskTemplate": {"Networks": [{"Target": 1}]}})",
       "\"TaskTemplate.Networks[0].Target\" must be a string, got number"},
      {R"({"Name": "a", "TaskTemplate": {"Networks": [{}]}})",
       "missing required field \"TaskTemplate.Networks[0].Target\""},
      {R"({"Name": "a", "Networks": [{"Target": ")" + std::string(200, 'n') + R"("}]})", "Networks[0].Target"},
      {R"({"Name": "a", "EndpointSpec": {"Mode": 1}})", "\"EndpointSpec.Mode\" must be a string, got number"},
      {R"({"Name": "a", "EndpointSpec": {"Ports": [{"TargetPort": "80"}]}})",
       "\"EndpointSpec.Ports[0].TargetPort\" must be an integer from 0 to 65535, got string"},
      {R"({"Name": "a", "EndpointSpec": {"Ports": [{"TargetPort": 70000}]}})",
       "\"EndpointSpec.Ports[0].TargetPort\" must be an integer from 0 to 65535, got 70000"},
      {R"({"Name": "a", "EndpointSpec": {"Ports": [{"TargetPort": -1}]}})", "got -1"},
      {R"({"Name": "a", "EndpointSpec": {"Ports": [{"TargetPort": 1.5}]}})", "got a fractional number"},
      {R"({"Name": "a", "EndpointSpec": {"Ports": [{"TargetPort": 0}]}})", "must be a port from 1 to 65535"},
      {R"({"Name": "a", "EndpointSpec": {"Ports": [{"Protocol": "udp"}]}})", "must be a port from 1 to 65535"},
      {R"({"Name": "a", "EndpointSpec": {"Ports": [{"TargetPort": 1, "Protocol": 6}]}})",
       "\"EndpointSpec.Ports[0].Protocol\" must be a string, got number"},
  };
  for (const auto& [body, part] : cases) {
    const Response response = send(http::verb::post, "/services/create", body);
    EXPECT_EQ(response.result_int(), 400u) << body;
    EXPECT_NE(message_of(response).find(part), std::string::npos) << "body: " << body << "\nmessage: "
                                                                   << message_of(response);
  }
  EXPECT_TRUE(services.create_requests.empty());
}

TEST_F(ApiServicesTest, CreateBoundsTheNumberOfNetworksAndPorts) {
  json networks = json::array();
  for (std::size_t i = 0; i <= kMaxServiceNetworks; ++i) networks.push_back({{"Target", fmt::format("n{}", i)}});
  Response response =
      send(http::verb::post, "/services/create", json{{"Name", "a"}, {"Networks", networks}}.dump());
  EXPECT_EQ(response.result_int(), 400u);
  EXPECT_NE(message_of(response).find("at most 32 networks"), std::string::npos) << message_of(response);

  json ports = json::array();
  for (std::size_t i = 0; i <= kMaxServicePorts; ++i) ports.push_back({{"TargetPort", 1000 + i}});
  response = send(http::verb::post, "/services/create",
                  json{{"Name", "a"}, {"EndpointSpec", {{"Ports", ports}}}}.dump());
  EXPECT_EQ(response.result_int(), 400u);
  EXPECT_NE(message_of(response).find("at most 128 ports"), std::string::npos) << message_of(response);
  EXPECT_TRUE(services.create_requests.empty());
}

TEST_F(ApiServicesTest, InspectIsDockerShapedWithBackends) {
  services.add(redis());
  const Response response = send(http::verb::get, "/services/redis");
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  const std::string net(64, 'e');
  const json expected = json::parse(R"({
      "ID": ")" + FakeServiceApi::make_id(1) + R"(",
      "Version": {"Index": 0},
      "CreatedAt": "2024-05-01T12:00:00Z",
      "UpdatedAt": "2024-05-01T12:00:00Z",
      "Spec": {"Name": "redis", "Labels": {},
               "TaskTemplate": {"ContainerSpec": {}, "Networks": [{"Target": ")" + net + R"("}]},
               "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 6379},
                                                         {"Protocol": "udp", "TargetPort": 53}]}},
      "Endpoint": {"Spec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 6379},
                                                     {"Protocol": "udp", "TargetPort": 53}]},
                   "Ports": [{"Protocol": "tcp", "TargetPort": 6379}, {"Protocol": "udp", "TargetPort": 53}],
                   "VirtualIPs": [{"NetworkID": ")" + net + R"(", "Addr": "10.0.0.2/24"}]},
      "Backends": [
        {"EndpointID": ")" + std::string(64, '1') + R"(", "Name": "r1", "NetworkID": ")" + net + R"(",
         "Addr": "10.0.0.3", "Node": "node-1", "State": "active", "Connections": 7, "Packets": 70, "Bytes": 7000},
        {"EndpointID": ")" + std::string(64, '2') + R"(", "Name": "r2", "NetworkID": ")" + net + R"(",
         "Addr": "10.0.0.4", "Node": "node-2", "State": "draining"}],
      "Node": "node-1"})");
  EXPECT_EQ(body_json(response), expected);
  EXPECT_EQ(services.get_requests, std::vector<std::string>{"redis"});
}

TEST_F(ApiServicesTest, DnsrrServiceHasEmptyVirtualIps) {
  ServiceDetail detail = redis();
  detail.service.mode = EndpointMode::dnsrr;
  detail.service.vips.clear();
  detail.backends.clear();
  services.add(detail);
  const json service = body_json(send(http::verb::get, "/v1.41/services/" + detail.service.id.substr(0, 5)));
  EXPECT_EQ(service.at("Endpoint").at("VirtualIPs"), json::array());
  EXPECT_EQ(service.at("Endpoint").at("Spec").at("Mode"), "dnsrr");
  EXPECT_EQ(service.at("Backends"), json::array());
}

TEST_F(ApiServicesTest, ListAnswersAnArrayOfTheSameShape) {
  EXPECT_EQ(body_json(send(http::verb::get, "/services")), json::array());
  services.add(redis());
  const Response response = send(http::verb::get, "/services/");
  ASSERT_EQ(response.result_int(), 200u);
  EXPECT_EQ(body_json(response), json::array({service_json(redis())}));
}

TEST_F(ApiServicesTest, InspectAndRemoveOfUnknownServiceAre404) {
  Response response = send(http::verb::get, "/services/nope");
  EXPECT_EQ(response.result_int(), 404u);
  EXPECT_EQ(message_of(response), "service nope not found");
  EXPECT_EQ(send(http::verb::delete_, "/services/nope").result_int(), 404u);
  // Like networks, GET /services/create inspects a service called "create".
  EXPECT_EQ(message_of(send(http::verb::get, "/services/create")), "service create not found");
}

TEST_F(ApiServicesTest, OverlongServiceReferenceIs400BeforeTheServiceSeesIt) {
  const Response response = send(http::verb::get, "/services/" + std::string(65, 'a'));
  EXPECT_EQ(response.result_int(), 400u);
  EXPECT_TRUE(services.get_requests.empty());
  EXPECT_EQ(send(http::verb::get, "/services/a%1bb").result_int(), 400u);  // control character
}

TEST_F(ApiServicesTest, RemoveAnswers200WithoutBodyLikeDocker) {
  services.add(redis());
  const Response response = send(http::verb::delete_, "/services/redis");
  EXPECT_EQ(response.result_int(), 200u);
  EXPECT_TRUE(response.body().empty());
  EXPECT_EQ(services.remove_requests, std::vector<std::string>{"redis"});
  EXPECT_TRUE(services.services.empty());
}

TEST_F(ApiServicesTest, ServiceErrorsMapToStatuses) {
  const std::pair<std::exception_ptr, unsigned> cases[] = {
      {std::make_exception_ptr(ApiError(ApiError::Kind::BadRequest, "unknown endpoint mode \"x\"")), 400},
      {std::make_exception_ptr(ApiError(ApiError::Kind::NotFound, "network nope not found")), 404},
      {std::make_exception_ptr(ApiError(ApiError::Kind::Conflict, "service redis already exists")), 409},
      {std::make_exception_ptr(std::runtime_error("disk full")), 500},
  };
  for (const auto& [error, status] : cases) {
    services.fail_next = error;
    const Response response = send(http::verb::post, "/services/create", R"({"Name": "redis"})");
    EXPECT_EQ(response.result_int(), status);
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      EXPECT_EQ(message_of(response), e.what());
    }
  }
}

TEST_F(ApiServicesTest, WithoutServicesEveryServiceRouteAnswers500) {
  Request request{http::verb::get, "/services", 11};
  for (const auto& [method, target] : {std::pair{http::verb::get, "/services"},
                                       {http::verb::get, "/services/redis"},
                                       {http::verb::delete_, "/services/redis"},
                                       {http::verb::post, "/services/create"},
                                       {http::verb::get, "/lb/lookup?service=a&src=10.0.0.9:1&dport=1"}}) {
    request.method(method);
    request.target(target);
    request.body() = method == http::verb::post ? R"({"Name": "a"})" : "";
    request.prepare_payload();
    const Response response = handle_request(request, Services{networks});
    EXPECT_EQ(response.result_int(), 500u) << target;
    EXPECT_EQ(message_of(response), "services are not available") << target;
  }
}

TEST_F(ApiServicesTest, LookupPassesTheQueryAndAnswersWithTheBackend) {
  services.add(redis());
  services.lookup_result.network_id = std::string(64, 'e');
  services.lookup_result.vip = ip("10.0.0.2");
  services.lookup_result.backend_endpoint_id = std::string(64, '1');
  services.lookup_result.backend_ip = ip("10.0.0.3");
  services.lookup_result.lb_backend = "ebpf";
  services.lookup_result.deterministic = true;

  const Response response = send(http::verb::get, "/v1.41/lb/lookup?service=a1a1&src=10.0.0.9%3A40000&dport=6379"
                                                  "&proto=udp&network=net-test&other=ignored");
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  ASSERT_EQ(services.lookup_requests.size(), 1u);
  const LbLookupRequest& request = services.lookup_requests[0];
  EXPECT_EQ(request.service, "a1a1");  // an id prefix; the answer names the service
  EXPECT_EQ(request.src, "10.0.0.9:40000");
  EXPECT_EQ(request.dport, "6379");
  EXPECT_EQ(request.proto, "udp");
  EXPECT_EQ(request.network, "net-test");
  EXPECT_EQ(body_json(response), (json{{"Service", "redis"},
                                       {"ServiceID", FakeServiceApi::make_id(1)},
                                       {"NetworkID", std::string(64, 'e')},
                                       {"VIP", "10.0.0.2"},
                                       {"Backend", {{"EndpointID", std::string(64, '1')}, {"Addr", "10.0.0.3"}}},
                                       {"LbBackend", "ebpf"},
                                       {"Deterministic", true}}));
}

TEST_F(ApiServicesTest, LookupWithoutBackendOrOptionalsAnswersNullBackend) {
  services.add(redis());
  services.lookup_result.lb_backend = "nftables";
  services.lookup_result.deterministic = false;
  const Response response = send(http::verb::get, "/lb/lookup?service=redis&src=10.0.0.9:1&dport=80&proto=");
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  const LbLookupRequest& request = services.lookup_requests.at(0);
  EXPECT_FALSE(request.proto.has_value());
  EXPECT_FALSE(request.network.has_value());
  const json body = body_json(response);
  EXPECT_TRUE(body.at("Backend").is_null());
  EXPECT_EQ(body.at("LbBackend"), "nftables");
  EXPECT_EQ(body.at("Deterministic"), false);
}

TEST_F(ApiServicesTest, LookupRefusesMissingRepeatedAndMalformedParameters) {
  services.add(redis());
  const std::pair<std::string, std::string> cases[] = {
      {"/lb/lookup", "missing required query parameter \"service\""},
      {"/lb/lookup?service=redis&dport=1", "missing required query parameter \"src\""},
      {"/lb/lookup?service=redis&src=1.2.3.4:5", "missing required query parameter \"dport\""},
      {"/lb/lookup?service=&src=1.2.3.4:5&dport=1", "missing required query parameter \"service\""},
      {"/lb/lookup?service=redis&service=x&src=1.2.3.4:5&dport=1", "\"service\" is given more than once"},
      {"/lb/lookup?service=redis&src=1.2.3.4:5&dport=1&proto=&proto=udp", "\"proto\" is given more than once"},
      {"/lb/lookup?service=re%zzdis&src=1.2.3.4:5&dport=1", "malformed percent-encoding in query parameter"},
      {"/lb/lookup?service=redis&src=1.2.3.4:5&dport=1%0a", "control character"},
      {"/lb/lookup?service=" + std::string(65, 'r') + "&src=1.2.3.4:5&dport=1", "service"},
      {"/lb/lookup?service=" + std::string(300, 'r') + "&src=1.2.3.4:5&dport=1", "longer than 64"},
  };
  for (const auto& [target, part] : cases) {
    const Response response = send(http::verb::get, target);
    EXPECT_EQ(response.result_int(), 400u) << target;
    EXPECT_NE(message_of(response).find(part), std::string::npos) << target << "\n" << message_of(response);
  }
  EXPECT_TRUE(services.lookup_requests.empty());
}

TEST_F(ApiServicesTest, WorkloadClasses) {
  const auto workload = [](http::verb method, const std::string& target) {
    return workload_of(Request{method, target, 11});
  };
  EXPECT_EQ(workload(http::verb::post, "/services/create"), Workload::kNetworkChange);
  EXPECT_EQ(workload(http::verb::delete_, "/v1.41/services/redis"), Workload::kNetworkChange);
  EXPECT_EQ(workload(http::verb::get, "/services"), Workload::kRead);
  EXPECT_EQ(workload(http::verb::get, "/services/redis"), Workload::kRead);
  EXPECT_EQ(workload(http::verb::get, "/lb/lookup?service=a"), Workload::kRead);
  EXPECT_EQ(workload(http::verb::put, "/services/redis"), Workload::kImmediate);  // 405
  EXPECT_EQ(send(http::verb::put, "/services/redis")[http::field::allow], "GET, DELETE");
  EXPECT_EQ(send(http::verb::post, "/lb/lookup").result_int(), 405u);
}

// --- connect, disconnect and endpoints -------------------------------------------

TEST_F(ApiServicesTest, ConnectPassesTheServiceAndDisconnectTheDrainTime) {
  networks.create_network(NetworkSpec{.name = "web"});
  ASSERT_EQ(send(http::verb::post, "/networks/web/connect", R"({"Container": "ns1", "Service": "redis"})")
                .result_int(),
            200u);
  EXPECT_EQ(networks.connect_requests.at(0).service, "redis");
  ASSERT_EQ(send(http::verb::post, "/networks/web/connect", R"({"Container": "ns2", "Service": ""})").result_int(),
            200u);
  EXPECT_FALSE(networks.connect_requests.at(1).service.has_value());

  ASSERT_EQ(send(http::verb::post, "/networks/web/disconnect", R"({"Container": "ns1", "DrainSeconds": 30})")
                .result_int(),
            200u);
  EXPECT_EQ(networks.disconnect_requests.at(0).drain_seconds, 30u);
  ASSERT_EQ(send(http::verb::post, "/networks/web/disconnect", R"({"Container": "ns2", "DrainSeconds": 0})")
                .result_int(),
            200u);
  EXPECT_EQ(networks.disconnect_requests.at(1).drain_seconds, 0u);
}

TEST_F(ApiServicesTest, DisconnectWithoutDrainLeavesItUnset) {
  networks.create_network(NetworkSpec{.name = "web"});
  send(http::verb::post, "/networks/web/connect", R"({"Container": "ns1"})");
  ASSERT_EQ(send(http::verb::post, "/networks/web/disconnect", R"({"Container": "ns1", "DrainSeconds": null})")
                .result_int(),
            200u);
  EXPECT_FALSE(networks.disconnect_requests.at(0).drain_seconds.has_value());
}

TEST_F(ApiServicesTest, ConnectAndDisconnectRefuseBadServiceAndDrain) {
  networks.create_network(NetworkSpec{.name = "web"});
  const std::pair<std::string, std::string> connects[] = {
      {R"({"Container": "ns1", "Service": 7})", "\"Service\" must be a string, got number"},
      {R"({"Container": "ns1", "Service": ")" + std::string(65, 's') + R"("})", "service name or id"},
  };
  for (const auto& [body, part] : connects) {
    const Response response = send(http::verb::post, "/networks/web/connect", body);
    EXPECT_EQ(response.result_int(), 400u) << body;
    EXPECT_NE(message_of(response).find(part), std::string::npos) << message_of(response);
  }
  EXPECT_TRUE(networks.connect_requests.empty());

  const std::pair<std::string, std::string> disconnects[] = {
      {R"({"Container": "ns1", "DrainSeconds": -1})", "\"DrainSeconds\" must be an integer from 0 to 4294967295"},
      {R"({"Container": "ns1", "DrainSeconds": "30"})", "got string"},
      {R"({"Container": "ns1", "DrainSeconds": 2.5})", "got a fractional number"},
      {R"({"Container": "ns1", "DrainSeconds": 4294967296})", "got 4294967296"},
      {R"({"Container": "ns1", "DrainSeconds": true})", "got boolean"},
  };
  for (const auto& [body, part] : disconnects) {
    const Response response = send(http::verb::post, "/networks/web/disconnect", body);
    EXPECT_EQ(response.result_int(), 400u) << body;
    EXPECT_NE(message_of(response).find(part), std::string::npos) << message_of(response);
  }
  EXPECT_TRUE(networks.disconnect_requests.empty());
}

TEST_F(ApiServicesTest, EndpointJsonShowsServiceStateAndDrainOnlyForBackends) {
  networks.create_network(NetworkSpec{.name = "web"});
  for (const char* netns : {"plain", "a", "d"}) networks.connect(AttachRequest{.network = "web", .netns = netns});
  networks.endpoints[1].service_id = FakeServiceApi::make_id(1);
  networks.endpoints[2].service_id = FakeServiceApi::make_id(1);
  networks.endpoints[2].backend_state = BackendState::draining;
  networks.endpoints[2].drain_until = "2024-05-01T12:00:30Z";

  const json listed = body_json(send(http::verb::get, "/endpoints"));
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_FALSE(listed[0].contains("Service"));
  EXPECT_FALSE(listed[0].contains("BackendState"));
  EXPECT_FALSE(listed[0].contains("DrainUntil"));
  EXPECT_EQ(listed[1].at("Service"), FakeServiceApi::make_id(1));
  EXPECT_EQ(listed[1].at("BackendState"), "active");
  EXPECT_FALSE(listed[1].contains("DrainUntil"));
  EXPECT_EQ(listed[2].at("BackendState"), "draining");
  EXPECT_EQ(listed[2].at("DrainUntil"), "2024-05-01T12:00:30Z");

  const json containers = body_json(send(http::verb::get, "/networks/web")).at("Containers");
  EXPECT_FALSE(containers.at(networks.endpoints[0].id).contains("Service"));
  EXPECT_EQ(containers.at(networks.endpoints[1].id).at("Service"), FakeServiceApi::make_id(1));
  EXPECT_EQ(containers.at(networks.endpoints[1].id).at("BackendState"), "active");
  EXPECT_EQ(containers.at(networks.endpoints[2].id).at("BackendState"), "draining");
  EXPECT_EQ(containers.at(networks.endpoints[2].id).at("DrainUntil"), "2024-05-01T12:00:30Z");
}

}  // namespace
}  // namespace weft::control::api
