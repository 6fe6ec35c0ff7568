// The stored form of services and of service backends (control/model/
// record_json): what the state files and the cluster's tables carry.
#include <gtest/gtest.h>

#include "control/model/record_json.h"
#include "tests/support/addresses.h"

namespace weft::control {
namespace {

using nlohmann::json;

Service redis() {
  return Service{.id = std::string(64, 'c'),
                 .name = "redis",
                 .mode = EndpointMode::vip,
                 .ports = {{6379, PortProtocol::tcp}, {53, PortProtocol::udp}},
                 .network_ids = {std::string(64, 'a'), std::string(64, 'b')},
                 .vips = {{.network_id = std::string(64, 'a'), .addr = testing::ipv4("10.0.0.2"), .prefix_len = 24},
                          {.network_id = std::string(64, 'b'), .addr = testing::ipv4("10.0.1.2"), .prefix_len = 24}},
                 .created = "2026-11-26T17:00:00.000000000Z",
                 .node = "node1"};
}

TEST(ServiceRecord, RoundTrips) {
  const auto s = redis();
  const auto j = service_record(s);
  EXPECT_EQ(j["mode"], "vip");
  EXPECT_EQ(j["ports"], json::array({"6379/tcp", "53/udp"}));
  EXPECT_EQ(j["vips"][1]["addr"], "10.0.1.2");
  const auto back = service_from_record(json::parse(j.dump()));
  EXPECT_EQ(back.id, s.id);
  EXPECT_EQ(back.name, s.name);
  EXPECT_EQ(back.mode, s.mode);
  EXPECT_EQ(back.ports, s.ports);
  EXPECT_EQ(back.network_ids, s.network_ids);
  ASSERT_EQ(back.vips.size(), 2u);
  EXPECT_EQ(back.vips[1].addr, s.vips[1].addr);
  EXPECT_EQ(back.vips[1].prefix_len, 24);
  EXPECT_EQ(back.created, s.created);
  EXPECT_EQ(back.node, s.node);
}

TEST(ServiceRecord, MalformedRecordsAreRefused) {
  for (const auto& [field, value] : std::vector<std::pair<std::string, json>>{
           {"mode", "ipvs"}, {"ports", json::array({"0"})}, {"ports", json::array({"80/sctp"})}, {"networks", 5}}) {
    auto j = service_record(redis());
    j[field] = value;
    EXPECT_THROW(service_from_record(j), json::exception) << field << " = " << value.dump();
  }
  auto j = service_record(redis());
  j["vips"][0]["addr"] = "10.0.0.300";
  EXPECT_THROW(service_from_record(j), json::exception);
  j = service_record(redis());
  j.erase("name");
  EXPECT_THROW(service_from_record(j), json::exception);
}

TEST(ServiceRecord, BackendEndpointsCarryTheirServiceAndState) {
  Endpoint e{.id = std::string(64, 'e'), .name = "r1", .network_id = std::string(64, 'a'), .network_name = "",
             .netns = "/run/netns/r1", .ifname = "eth0", .ip = testing::ipv4("10.0.0.3"), .prefix_len = 24,
             .mac = testing::mac("02:42:0a:00:00:03"), .node = "node1", .service_id = std::string(64, 'c'),
             .backend_state = BackendState::draining, .drain_until = "2026-11-26T18:00:00Z"};
  auto j = endpoint_record(e);
  EXPECT_EQ(j["backend_state"], "draining");
  auto back = endpoint_from_record(j);
  EXPECT_EQ(back.service_id, e.service_id);
  EXPECT_EQ(back.backend_state, BackendState::draining);
  EXPECT_EQ(back.drain_until, e.drain_until);
  j["backend_state"] = "resting";
  EXPECT_THROW(endpoint_from_record(j), json::exception);
  // Other endpoints' records are as they were before services.
  e.service_id.clear();
  EXPECT_FALSE(endpoint_record(e).contains("service_id"));
  EXPECT_FALSE(endpoint_record(e).contains("backend_state"));
  EXPECT_EQ(endpoint_from_record(endpoint_record(e)).backend_state, BackendState::active);
}

TEST(ServiceRecord, PortsParse) {
  EXPECT_EQ(parse_port("80"), (PublishedPort{80, PortProtocol::tcp}));
  EXPECT_EQ(parse_port("65535/udp"), (PublishedPort{65535, PortProtocol::udp}));
  for (const char* bad : {"0", "65536", "00000080", "80/TCP", "80/tcp/", " 80", "80 ", "", "/udp", "1e3"})
    EXPECT_FALSE(parse_port(bad)) << bad;
}

}  // namespace
}  // namespace weft::control
