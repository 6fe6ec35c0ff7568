// Names and strings at the API edge: refused with a 400 naming the field and
// the limit before any service sees them, while every name create accepts
// works in the other verbs.
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/api/routes.h"
#include "control/model/names.h"
#include "tests/unit/fake_network_service.h"
#include "tools/api_client.h"
#include "tools/cli_table.h"

namespace weft::control::api {
namespace {

using nlohmann::json;
using test_support::FakeNetworkService;

class ApiNamesTest : public ::testing::Test {
 protected:
  Response send(http::verb method, const std::string& target, const std::string& body = "") {
    Request request{method, target, 11};
    request.body() = body;
    request.prepare_payload();
    return handle_request(request, service);
  }

  static std::string message_of(const Response& response) {
    return json::parse(response.body()).at("message").get<std::string>();
  }

  void expect_400(const Response& response, const std::string& message_part) {
    EXPECT_EQ(response.result_int(), 400u) << response.body();
    EXPECT_NE(message_of(response).find(message_part), std::string::npos) << message_of(response);
    EXPECT_LT(response.body().size(), 400u);  // a short message whatever was sent
  }

  FakeNetworkService service;
};

TEST_F(ApiNamesTest, HugeNetworkNameIsRefusedBeforeTheService) {
  for (std::size_t size : {129u, 20000u, 30000u, 1000000u}) {
    const auto response =
        send(http::verb::post, "/networks/create", json{{"Name", std::string(size, 'b')}}.dump());
    expect_400(response, "network name is " + std::to_string(size) + " bytes long; the limit is 128");
  }
  EXPECT_TRUE(service.create_requests.empty());
}

TEST_F(ApiNamesTest, ControlCharactersInANetworkNameAreRefused) {
  expect_400(send(http::verb::post, "/networks/create", json{{"Name", "web\nNETWORK ID"}}.dump()),
             "invalid network name \"web\\nNETWORK ID\": control characters are not allowed");
  EXPECT_TRUE(service.create_requests.empty());
}

TEST_F(ApiNamesTest, TheLongestNameWorksInEveryVerb) {
  const std::string name(names::kMaxNetworkName, 'n');
  ASSERT_EQ(send(http::verb::post, "/networks/create", json{{"Name", name}}.dump()).result_int(), 201u);
  const std::string path = "/networks/" + tools::escape_path_segment(name);
  EXPECT_EQ(send(http::verb::get, path).result_int(), 200u);
  EXPECT_EQ(send(http::verb::post, path + "/connect", R"({"Container": "c1", "Name": "web-1"})").result_int(), 200u);
  EXPECT_EQ(send(http::verb::post, path + "/disconnect", R"({"Container": "c1"})").result_int(), 200u);
  EXPECT_EQ(send(http::verb::delete_, path).result_int(), 204u);
}

TEST_F(ApiNamesTest, NetworkReferencesInThePathAreBounded) {
  expect_400(send(http::verb::get, "/networks/" + std::string(129, 'f')),
             "network name or id is 129 bytes long; the limit is 128");
  expect_400(send(http::verb::delete_, "/networks/a%0Ab"), "control characters are not allowed");
  expect_400(send(http::verb::post, "/networks/a%1Bb/connect", R"({"Container": "c1"})"),
             "control characters are not allowed");
  EXPECT_TRUE(service.remove_requests.empty());
  EXPECT_TRUE(service.connect_requests.empty());
}

TEST_F(ApiNamesTest, EndpointNamesMustBeDnsNames) {
  send(http::verb::post, "/networks/create", R"({"Name": "web"})");
  const std::pair<std::string, std::string> cases[] = {
      {"evil\n0123456789ab   injected", "invalid endpoint name"},
      {std::string(64, 'e'), "DNS label of 64 characters; the limit is 63"},
      {std::string(1000000, 'e'), "endpoint name is 1000000 characters long; the limit is 253"},
      {"-front", "cannot start or end with '-'"},
      {"a..b", "empty DNS label"},
      {"caf\xc3\xa9", "only letters, digits"},
  };
  for (const auto& [name, message_part] : cases) {
    expect_400(send(http::verb::post, "/networks/web/connect", json{{"Container", "c1"}, {"Name", name}}.dump()),
               message_part);
  }
  EXPECT_TRUE(service.connect_requests.empty());
  EXPECT_EQ(send(http::verb::post, "/networks/web/connect", R"({"Container": "c1", "Name": "my_app_1.web"})")
                .result_int(),
            200u);
}

TEST_F(ApiNamesTest, NamespacesAreNamesOrAbsolutePaths) {
  send(http::verb::post, "/networks/create", R"({"Name": "web"})");
  const std::pair<std::string, std::string> cases[] = {
      {"c1\nc2", "control characters are not allowed"},
      {"rel/path", "not a relative path"},
      {std::string(256, 'n'), "network namespace name is 256 bytes long; the limit is 255"},
      {"/" + std::string(4095, 'p'), "network namespace path is 4096 bytes long; the limit is 4095"},
  };
  for (const auto& [netns, message_part] : cases) {
    expect_400(send(http::verb::post, "/networks/web/connect", json{{"Container", netns}}.dump()), message_part);
  }
  expect_400(send(http::verb::post, "/networks/web/disconnect", json{{"Container", "c1\x1b[2J"}}.dump()),
             "control characters are not allowed");
  EXPECT_TRUE(service.connect_requests.empty());
  EXPECT_TRUE(service.disconnect_requests.empty());
  // Without --name the default comes from the namespace, which need not be a
  // DNS label: it is still accepted.
  EXPECT_EQ(send(http::verb::post, "/networks/web/connect", R"({"Container": "ns with space"})").result_int(), 200u);
}

TEST_F(ApiNamesTest, ShortFieldsAreBounded) {
  const std::string huge(100000, '1');
  expect_400(send(http::verb::post, "/networks/create", json{{"Name", "x"}, {"Driver", huge}}.dump()),
             "driver is 100000 bytes long; the limit is 64");
  expect_400(send(http::verb::post, "/networks/create",
                  json{{"Name", "x"}, {"IPAM", {{"Config", {{{"Subnet", huge}}}}}}}.dump()),
             "subnet is 100000 bytes long");
  expect_400(send(http::verb::post, "/networks/create",
                  json{{"Name", "x"}, {"IPAM", {{"Config", {{{"Gateway", "10.0.0.1\n"}}}}}}}.dump()),
             "invalid gateway");
  expect_400(send(http::verb::post, "/networks/create", json{{"Name", "x"}, {"IPAM", {{"Driver", huge}}}}.dump()),
             "(100000 bytes) is not supported");
  EXPECT_TRUE(service.create_requests.empty());
}

TEST_F(ApiNamesTest, SwarmAndNodeStringsAreBounded) {
  expect_400(send(http::verb::get, "/nodes/" + std::string(300, 'n')), "node name or id is 300 bytes long");
  expect_400(send(http::verb::delete_, "/nodes/a%0Db"), "control characters");
  json join{{"JoinToken", std::string(600, 't')}, {"RemoteAddrs", {"192.0.2.1:7946"}}};
  expect_400(send(http::verb::post, "/swarm/join", join.dump()), "JoinToken is 600 bytes long; the limit is 512");
  join = {{"JoinToken", "WEFT-1-x"}, {"RemoteAddrs", json::array()}};
  for (int i = 0; i < 33; ++i) join["RemoteAddrs"].push_back("192.0.2.1:7946");
  expect_400(send(http::verb::post, "/swarm/join", join.dump()), "RemoteAddrs lists 33 addresses; the limit is 32");
  expect_400(send(http::verb::post, "/swarm/init", json{{"AdvertiseAddr", "192.0.2.1:7946\n"}}.dump()),
             "invalid AdvertiseAddr");
}

// Names stored before validation existed, or arriving from other nodes,
// still cannot forge rows in `weft ... ls`.
TEST(CliTableTest, ControlCharactersArePrintedEscaped) {
  tools::Table table({"NAME", "NETWORK"});
  table.add_row({"evil\nfake-row", "web\x1b[2J"});
  std::ostringstream out;
  table.print(out);
  EXPECT_EQ(out.str(), "NAME" + std::string(13, ' ') + "NETWORK\nevil\\nfake-row   web\\x1b[2J\n");
}

}  // namespace
}  // namespace weft::control::api
