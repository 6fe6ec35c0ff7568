#include "control/api/routes.h"

#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/api/json.h"
#include "tests/unit/fake_network_service.h"

namespace weft::control::api {
namespace {

using nlohmann::json;
using test_support::FakeNetworkService;

class ApiRoutesTest : public ::testing::Test {
 protected:
  Response send(http::verb method, const std::string& target, const std::string& body = "") {
    Request request{method, target, 11};
    if (!body.empty()) request.set(http::field::content_type, "application/json");
    request.body() = body;
    request.prepare_payload();
    return handle_request(request, service);
  }

  static json body_json(const Response& response) { return json::parse(response.body()); }

  static std::string message_of(const Response& response) {
    return body_json(response).at("message").get<std::string>();
  }

  // A network created through the API, so ids come from the fake.
  std::string create(const std::string& body) {
    const Response response = send(http::verb::post, "/networks/create", body);
    EXPECT_EQ(response.result_int(), 201u) << response.body();
    return body_json(response).at("Id").get<std::string>();
  }

  FakeNetworkService service;
};

TEST_F(ApiRoutesTest, CreateNetworkPassesTheSpecAndAnswers201WithId) {
  const Response response = send(http::verb::post, "/networks/create",
                                 R"({"Name": "web", "Driver": "overlay", "Attachable": true,
                                     "IPAM": {"Driver": "default",
                                              "Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.254"}]}})");
  ASSERT_EQ(response.result_int(), 201u) << response.body();
  EXPECT_EQ(response[http::field::content_type], "application/json");
  EXPECT_EQ(body_json(response), (json{{"Id", service.networks.at(0).id}, {"Warning", ""}}));

  ASSERT_EQ(service.create_requests.size(), 1u);
  const NetworkSpec& spec = service.create_requests[0];
  EXPECT_EQ(spec.name, "web");
  EXPECT_EQ(spec.driver, "overlay");
  EXPECT_TRUE(spec.attachable);
  EXPECT_EQ(spec.subnet, "10.9.0.0/24");
  EXPECT_EQ(spec.gateway, "10.9.0.254");
}

TEST_F(ApiRoutesTest, CreateNetworkDefaultsWhatIsNotGiven) {
  create(R"({"Name": "plain", "Driver": "", "IPAM": null, "Attachable": null})");
  ASSERT_EQ(service.create_requests.size(), 1u);
  const NetworkSpec& spec = service.create_requests[0];
  EXPECT_EQ(spec.driver, "overlay");
  EXPECT_FALSE(spec.attachable);
  EXPECT_FALSE(spec.subnet.has_value());
  EXPECT_FALSE(spec.gateway.has_value());
}

TEST_F(ApiRoutesTest, CreateNetworkRejectsMalformedBodiesWithAClearMessage) {
  struct Case {
    std::string body;
    std::string message_part;
  };
  const Case cases[] = {
      {"not json", "invalid JSON in request body"},
      {R"({"Name": "x")", "invalid JSON in request body"},
      {"[]", "request body must be a JSON object, got array"},
      {"", "missing required field \"Name\""},
      {R"({"Driver": "overlay"})", "missing required field \"Name\""},
      {R"({"Name": ""})", "missing required field \"Name\""},
      {R"({"Name": 42})", "\"Name\" must be a string, got number"},
      {R"({"Name": "x", "Attachable": "yes"})", "\"Attachable\" must be a boolean, got string"},
      {R"({"Name": "x", "IPAM": []})", "\"IPAM\" must be an object, got array"},
      {R"({"Name": "x", "IPAM": {"Config": {}}})", "\"IPAM.Config\" must be an array, got object"},
      {R"({"Name": "x", "IPAM": {"Config": [7]}})", "\"IPAM.Config[0]\" must be an object, got number"},
      {R"({"Name": "x", "IPAM": {"Config": [{"Subnet": 10}]}})", "\"IPAM.Config[0].Subnet\" must be a string"},
      {R"({"Name": "x", "IPAM": {"Config": [{}, {}]}})", "exactly one subnet"},
      {R"({"Name": "x", "IPAM": {"Driver": "dhcp"}})", "IPAM driver \"dhcp\" is not supported"},
  };
  for (const Case& c : cases) {
    const Response response = send(http::verb::post, "/networks/create", c.body);
    EXPECT_EQ(response.result_int(), 400u) << c.body;
    EXPECT_NE(message_of(response).find(c.message_part), std::string::npos)
        << "body: " << c.body << "\nmessage: " << message_of(response);
  }
  EXPECT_TRUE(service.create_requests.empty());
}

TEST_F(ApiRoutesTest, ListNetworksIsDockerShaped) {
  create(R"({"Name": "web", "IPAM": {"Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}]}})");
  const Response response = send(http::verb::get, "/networks");
  ASSERT_EQ(response.result_int(), 200u);
  const Network& network = service.networks.at(0);
  const json expected = json::parse(R"([{
      "Name": "web", "Id": ")" + network.id + R"(", "Created": "2024-05-01T12:00:00Z",
      "Scope": "swarm", "Driver": "overlay", "Attachable": false,
      "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}]},
      "Options": {"com.docker.network.driver.overlay.vxlanid_list": "4097"},
      "Node": "node-1"}])");
  EXPECT_EQ(body_json(response), expected);
}

TEST_F(ApiRoutesTest, InspectNetworkListsOnlyItsOwnEndpointsAsContainers) {
  const std::string web = create(R"({"Name": "web"})");
  create(R"({"Name": "db"})");
  ASSERT_EQ(send(http::verb::post, "/networks/web/connect", R"({"Container": "ns1", "Name": "front"})").result_int(),
            200u);
  ASSERT_EQ(send(http::verb::post, "/networks/db/connect", R"({"Container": "ns2"})").result_int(), 200u);

  const Response response = send(http::verb::get, "/networks/" + web);
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  const json detail = body_json(response);
  EXPECT_EQ(detail.at("Name"), "web");
  EXPECT_EQ(detail.at("Scope"), "swarm");
  const Endpoint& front = service.endpoints.at(0);
  EXPECT_EQ(detail.at("Containers"), (json{{front.id,
                                            {{"Name", "front"},
                                             {"EndpointID", front.id},
                                             {"MacAddress", front.mac.str()},
                                             {"IPv4Address", front.ip.str() + "/24"},
                                             {"Netns", "ns1"},
                                             {"DNS", "127.0.0.11"},
                                             {"Aliases", json::array()}}}}));
}

TEST_F(ApiRoutesTest, InspectNetworkWithoutEndpointsHasEmptyContainers) {
  create(R"({"Name": "web"})");
  const Response response = send(http::verb::get, "/networks/web");
  ASSERT_EQ(response.result_int(), 200u);
  EXPECT_EQ(body_json(response).at("Containers"), json::object());
}

TEST_F(ApiRoutesTest, InspectUnknownNetworkIs404WithTheServiceMessage) {
  const Response response = send(http::verb::get, "/networks/nope");
  EXPECT_EQ(response.result_int(), 404u);
  EXPECT_EQ(message_of(response), "network nope not found");
}

TEST_F(ApiRoutesTest, DeleteNetworkAnswers204WithoutBody) {
  create(R"({"Name": "web"})");
  const Response response = send(http::verb::delete_, "/networks/web");
  EXPECT_EQ(response.result_int(), 204u);
  EXPECT_TRUE(response.body().empty());
  EXPECT_EQ(service.remove_requests, std::vector<std::string>{"web"});
  EXPECT_TRUE(service.networks.empty());
}

TEST_F(ApiRoutesTest, ConnectPassesTheRequestAndAnswersWithTheEndpoint) {
  create(R"({"Name": "web"})");
  const Response response =
      send(http::verb::post, "/networks/web/connect",
           R"({"Container": "/proc/42/ns/net", "Name": "api",
               "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.0.1.7"}, "Aliases": ["db", "cache.local"]}})");
  ASSERT_EQ(response.result_int(), 200u) << response.body();

  ASSERT_EQ(service.connect_requests.size(), 1u);
  const AttachRequest& request = service.connect_requests[0];
  EXPECT_EQ(request.network, "web");
  EXPECT_EQ(request.netns, "/proc/42/ns/net");
  EXPECT_EQ(request.name, "api");
  EXPECT_EQ(request.ip, "10.0.1.7");
  EXPECT_EQ(request.aliases, (std::vector<std::string>{"db", "cache.local"}));

  const Endpoint& endpoint = service.endpoints.at(0);
  EXPECT_EQ(body_json(response), (json{{"Id", endpoint.id},
                                       {"Name", "api"},
                                       {"Network", "web"},
                                       {"NetworkID", service.networks.at(0).id},
                                       {"Netns", "/proc/42/ns/net"},
                                       {"Interface", "eth0"},
                                       {"IPv4Address", "10.0.1.7/24"},
                                       {"MacAddress", endpoint.mac.str()},
                                       {"Node", "node-1"},
                                       {"DNS", "127.0.0.11"},
                                       {"Aliases", {"db", "cache.local"}}}));
}

TEST_F(ApiRoutesTest, ConnectWithoutOptionalFieldsLeavesThemUnset) {
  create(R"({"Name": "web"})");
  ASSERT_EQ(send(http::verb::post, "/networks/web/connect", R"({"Container": "ns1"})").result_int(), 200u);
  const AttachRequest& request = service.connect_requests.at(0);
  EXPECT_FALSE(request.name.has_value());
  EXPECT_FALSE(request.ip.has_value());
}

TEST_F(ApiRoutesTest, ConnectRejectsMalformedBodies) {
  create(R"({"Name": "web"})");
  const std::pair<std::string, std::string> cases[] = {
      {"{}", "missing required field \"Container\""},
      {R"({"Container": ["ns1"]})", "\"Container\" must be a string, got array"},
      {R"({"Container": "ns1", "Name": false})", "\"Name\" must be a string, got boolean"},
      {R"({"Container": "ns1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": 1}}})",
       "\"EndpointConfig.IPAMConfig.IPv4Address\" must be a string, got number"},
      {R"({"Container": "ns1", "EndpointConfig": {"Aliases": "db"}})",
       "\"EndpointConfig.Aliases\" must be an array, got string"},
      {R"({"Container": "ns1", "EndpointConfig": {"Aliases": ["db", 7]}})",
       "\"EndpointConfig.Aliases[1]\" must be a string, got number"},
      {R"({"Container": "ns1", "EndpointConfig": {"Aliases": ["bad name"]}})", "alias"},
      {R"({"Container": "ns1", "EndpointConfig": {"Aliases": ["a..b"]}})", "alias"},
      {R"({"Container": "ns1", "EndpointConfig": {"Aliases": ["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]}})",
       "\"EndpointConfig.Aliases\" has 17 entries; an endpoint has at most 16 aliases"},
      {"{\"Container\": \"\xff\"}", "invalid JSON in request body"},
  };
  for (const auto& [body, message_part] : cases) {
    const Response response = send(http::verb::post, "/networks/web/connect", body);
    EXPECT_EQ(response.result_int(), 400u) << body;
    EXPECT_NE(message_of(response).find(message_part), std::string::npos) << message_of(response);
  }
  EXPECT_TRUE(service.connect_requests.empty());
}

TEST_F(ApiRoutesTest, DisconnectAnswersEmptyObject) {
  create(R"({"Name": "web"})");
  send(http::verb::post, "/networks/web/connect", R"({"Container": "ns1"})");
  const Response response = send(http::verb::post, "/networks/web/disconnect", R"({"Container": "ns1", "Force": true})");
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  EXPECT_EQ(body_json(response), json::object());
  ASSERT_EQ(service.disconnect_requests.size(), 1u);
  EXPECT_EQ(service.disconnect_requests[0].network, "web");
  EXPECT_EQ(service.disconnect_requests[0].netns, "ns1");
  EXPECT_TRUE(service.endpoints.empty());
}

TEST_F(ApiRoutesTest, DisconnectRejectsMalformedBodies) {
  EXPECT_EQ(send(http::verb::post, "/networks/web/disconnect", "{}").result_int(), 400u);
  const Response response = send(http::verb::post, "/networks/web/disconnect", R"({"Container": "a", "Force": 1})");
  EXPECT_EQ(response.result_int(), 400u);
  EXPECT_EQ(message_of(response), "\"Force\" must be a boolean, got number");
  EXPECT_TRUE(service.disconnect_requests.empty());
}

TEST_F(ApiRoutesTest, ListEndpoints) {
  create(R"({"Name": "web"})");
  send(http::verb::post, "/networks/web/connect", R"({"Container": "ns1"})");
  const Response response = send(http::verb::get, "/endpoints");
  ASSERT_EQ(response.result_int(), 200u);
  const json endpoints = body_json(response);
  ASSERT_TRUE(endpoints.is_array());
  ASSERT_EQ(endpoints.size(), 1u);
  EXPECT_EQ(endpoints[0].at("Netns"), "ns1");
  EXPECT_EQ(endpoints[0].at("Network"), "web");
}

TEST_F(ApiRoutesTest, PingAndVersion) {
  const Response ping = send(http::verb::get, "/_ping");
  EXPECT_EQ(ping.result_int(), 200u);
  EXPECT_EQ(ping.body(), "OK");
  EXPECT_EQ(ping[http::field::content_type], "text/plain; charset=utf-8");

  const Response version = send(http::verb::get, "/version");
  EXPECT_EQ(version.result_int(), 200u);
  EXPECT_EQ(body_json(version).at("Version"), "0.1.0");
  EXPECT_EQ(body_json(version).at("ApiVersion"), "1.41");
}

TEST_F(ApiRoutesTest, HeadPingHasGetHeadersButNoBody) {
  const Response response = send(http::verb::head, "/_ping");
  EXPECT_EQ(response.result_int(), 200u);
  EXPECT_TRUE(response.body().empty());
  EXPECT_EQ(response[http::field::content_length], "2");

  const Response wrong = send(http::verb::head, "/networks");
  EXPECT_EQ(wrong.result_int(), 405u);
  EXPECT_TRUE(wrong.body().empty());
}

TEST_F(ApiRoutesTest, AcceptsDockerVersionPrefixQueryAndTrailingSlash) {
  create(R"({"Name": "web"})");
  EXPECT_EQ(send(http::verb::get, "/v1.41/networks").result_int(), 200u);
  EXPECT_EQ(send(http::verb::get, "/v1/_ping").result_int(), 200u);
  EXPECT_EQ(send(http::verb::get, "/networks?filters=%7B%7D").result_int(), 200u);
  EXPECT_EQ(send(http::verb::get, "/networks/").result_int(), 200u);
  EXPECT_EQ(send(http::verb::get, "/v1.41/networks/web").result_int(), 200u);
  // Only a real version looks like a prefix.
  EXPECT_EQ(send(http::verb::get, "/vx/networks").result_int(), 404u);
  EXPECT_EQ(send(http::verb::get, "/v1./networks").result_int(), 404u);
}

TEST_F(ApiRoutesTest, DecodesPercentEscapesInIds) {
  create(R"({"Name": "my net"})");
  EXPECT_EQ(send(http::verb::get, "/networks/my%20net").result_int(), 200u);
  const Response bad = send(http::verb::get, "/networks/my%2");
  EXPECT_EQ(bad.result_int(), 400u);
  EXPECT_EQ(send(http::verb::get, "/networks/a%2Fb").result_int(), 400u);
}

TEST_F(ApiRoutesTest, CreateIsALiteralOnlyForPost) {
  // Like Docker, GET /networks/create inspects a network called "create".
  const Response response = send(http::verb::get, "/networks/create");
  EXPECT_EQ(response.result_int(), 404u);
  EXPECT_EQ(message_of(response), "network create not found");
}

TEST_F(ApiRoutesTest, UnknownRouteIs404AndWrongMethodIs405) {
  // (/containers/json is a 501 naming the weft command: api_docker_test.cpp)
  const Response unknown = send(http::verb::get, "/nothing/here");
  EXPECT_EQ(unknown.result_int(), 404u);
  EXPECT_EQ(message_of(unknown), "page not found");
  EXPECT_EQ(send(http::verb::get, "/networks/web/connect/extra").result_int(), 404u);
  EXPECT_EQ(send(http::verb::get, "/networks//connect").result_int(), 404u);

  const Response wrong = send(http::verb::put, "/networks");
  EXPECT_EQ(wrong.result_int(), 405u);
  EXPECT_EQ(message_of(wrong), "method not allowed");
  EXPECT_EQ(wrong[http::field::allow], "GET");
  EXPECT_EQ(send(http::verb::put, "/networks/x")[http::field::allow], "GET, DELETE");
  EXPECT_EQ(send(http::verb::get, "/networks/x/connect").result_int(), 405u);
}

TEST_F(ApiRoutesTest, ServiceErrorsMapToStatuses) {
  const std::pair<std::exception_ptr, unsigned> cases[] = {
      {std::make_exception_ptr(ApiError(ApiError::Kind::BadRequest, "bad subnet")), 400},
      {std::make_exception_ptr(ApiError(ApiError::Kind::NotFound, "gone")), 404},
      {std::make_exception_ptr(ApiError(ApiError::Kind::Conflict, "overlaps 10.0.0.0/24")), 409},
      {std::make_exception_ptr(ApiError(ApiError::Kind::Internal, "netlink said no")), 500},
      {std::make_exception_ptr(std::runtime_error("disk full")), 500},
  };
  for (const auto& [error, status] : cases) {
    service.fail_next = error;
    const Response response = send(http::verb::get, "/networks");
    EXPECT_EQ(response.result_int(), status);
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      EXPECT_EQ(message_of(response), e.what());
    }
  }
}

TEST_F(ApiRoutesTest, ResponseMirrorsVersionAndKeepAlive) {
  Request request{http::verb::get, "/_ping", 10};
  Response response = handle_request(request, service);
  EXPECT_EQ(response.version(), 10u);
  EXPECT_FALSE(response.keep_alive());

  request.version(11);
  request.keep_alive(true);
  response = handle_request(request, service);
  EXPECT_EQ(response.version(), 11u);
  EXPECT_TRUE(response.keep_alive());
  EXPECT_EQ(response[http::field::content_length], "2");
}

TEST(ApiJsonTest, InvalidUtf8InModelStringsIsReplacedNotThrown) {
  Endpoint endpoint;
  endpoint.netns = "bad\xff";
  EXPECT_NO_THROW({
    const std::string text = dump(json(endpoint));
    EXPECT_NE(text.find("bad\xEF\xBF\xBD"), std::string::npos);
  });
}

TEST(ApiJsonTest, NetworkWithoutSubnetHasEmptyIpamConfig) {
  Network network;
  network.name = "n";
  EXPECT_EQ(json(network).at("IPAM").at("Config"), json::array());
}

TEST(ApiJsonTest, EndpointWithoutAddressHasEmptyIpv4Address) {
  EXPECT_EQ(json(Endpoint{}).at("IPv4Address"), "");
}

TEST(PercentDecodeTest, DecodesAndRejects) {
  EXPECT_EQ(percent_decode("a%20b%2d"), "a b-");
  EXPECT_EQ(percent_decode("plain"), "plain");
  EXPECT_EQ(percent_decode(""), "");
  EXPECT_FALSE(percent_decode("%").has_value());
  EXPECT_FALSE(percent_decode("a%4").has_value());
  EXPECT_FALSE(percent_decode("%zz").has_value());
  EXPECT_FALSE(percent_decode("%00").has_value());
  EXPECT_FALSE(percent_decode("%2f").has_value());
}

}  // namespace
}  // namespace weft::control::api
