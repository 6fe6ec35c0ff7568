// The JSON edge of the typed model: addresses are values inside, and the same
// strings as ever in the stored records (state file, gossip) and in the API.
#include "control/model/record_json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "control/api/json.h"
#include "control/model/ids.h"
#include "tests/support/addresses.h"

namespace weft::control {
namespace {

using nlohmann::json;
using testing::cidr;
using testing::ipv4;
using testing::mac;

Network sample_network() {
  return Network{.id = std::string(64, 'a'),
                 .name = "net-test",
                 .driver = "overlay",
                 .subnet = cidr("10.0.9.0/24"),
                 .gateway = ipv4("10.0.9.1"),
                 .vni = 4097,
                 .attachable = true,
                 .created = "2026-01-01T00:00:00.000000000Z",
                 .node = "node1"};
}

Endpoint sample_endpoint() {
  return Endpoint{.id = std::string(64, 'b'),
                  .name = "web",
                  .network_id = std::string(64, 'a'),
                  .network_name = "net-test",
                  .netns = "/run/netns/c1",
                  .ifname = "eth0",
                  .ip = ipv4("10.0.9.2"),
                  .prefix_len = 24,
                  .mac = mac("02:42:0a:00:09:02"),
                  .node = "node1",
                  .service_id = {},
                  .backend_state = BackendState::active,
                  .drain_until = {}};
}

TEST(RecordJson, NetworkRecordKeepsAddressesAsText) {
  const json record = network_record(sample_network());
  EXPECT_EQ(record.at("subnet"), "10.0.9.0/24");
  EXPECT_EQ(record.at("gateway"), "10.0.9.1");
  const Network back = network_from_record(record);
  EXPECT_EQ(back.subnet, cidr("10.0.9.0/24"));
  EXPECT_EQ(back.gateway, ipv4("10.0.9.1"));
  EXPECT_EQ(network_record(back), record);
}

TEST(RecordJson, EndpointRecordKeepsAddressesAsText) {
  const json record = endpoint_record(sample_endpoint());
  EXPECT_EQ(record.at("ip"), "10.0.9.2");
  EXPECT_EQ(record.at("mac"), "02:42:0a:00:09:02");
  EXPECT_FALSE(record.contains("vtep"));
  const Endpoint back = endpoint_from_record(record);
  EXPECT_EQ(back.ip, ipv4("10.0.9.2"));
  EXPECT_EQ(back.mac, mac("02:42:0a:00:09:02"));
  EXPECT_EQ(endpoint_record(back), record);
}

// A record from the disk or a peer with an address that does not parse is
// refused whole, as a missing field is, instead of reaching the kernel.
TEST(RecordJson, MalformedAddressesAreRefused) {
  auto network_with = [](const char* key, json value) {
    json record = network_record(sample_network());
    record[key] = std::move(value);
    return record;
  };
  auto endpoint_with = [](const char* key, json value) {
    json record = endpoint_record(sample_endpoint());
    record[key] = std::move(value);
    return record;
  };
  EXPECT_THROW(network_from_record(network_with("subnet", "10.0.9.1/24")), json::exception);
  EXPECT_THROW(network_from_record(network_with("subnet", "")), json::exception);
  EXPECT_THROW(network_from_record(network_with("gateway", "10.0.9")), json::exception);
  EXPECT_THROW(network_from_record(network_with("gateway", 167774465)), json::exception);
  EXPECT_THROW(endpoint_from_record(endpoint_with("ip", "10.0.9.256")), json::exception);
  EXPECT_THROW(endpoint_from_record(endpoint_with("mac", "zz:42:0a:00:09:02")), json::exception);
  EXPECT_THROW(endpoint_from_record(endpoint_with("mac", "")), json::exception);
  try {
    endpoint_from_record(endpoint_with("ip", "nope"));
  } catch (const json::exception& e) {
    EXPECT_NE(std::string(e.what()).find("\"ip\""), std::string::npos) << e.what();
  }
}

TEST(RecordJson, PublishedEndpointCarriesItsVtep) {
  const json record = endpoint_record(sample_endpoint(), ipv4("192.0.2.11"));
  EXPECT_EQ(record.at("vtep"), "192.0.2.11");
  EXPECT_EQ(vtep_from_record(record), ipv4("192.0.2.11"));
  EXPECT_EQ(endpoint_from_record(record).ip, ipv4("10.0.9.2"));
  json without = record;
  without.erase("vtep");
  EXPECT_THROW(vtep_from_record(without), json::exception);
  without["vtep"] = "192.0.2";
  EXPECT_THROW(vtep_from_record(without), json::exception);
}

// Issue 10: aliases ride in the record only when there are some (records of
// endpoints without them, and of older agents, stay as they were); from a
// peer they are held to the attach rules.
TEST(RecordJson, EndpointAliasesAreOptionalAndBounded) {
  EXPECT_FALSE(endpoint_record(sample_endpoint()).contains("aliases"));
  EXPECT_TRUE(endpoint_from_record(endpoint_record(sample_endpoint())).aliases.empty());
  Endpoint e = sample_endpoint();
  e.aliases = {"db", "Cache.local"};
  const json record = endpoint_record(e, ipv4("192.0.2.11"));
  EXPECT_EQ(record.at("aliases"), (json{"db", "Cache.local"}));
  EXPECT_EQ(endpoint_from_record(record).aliases, e.aliases);

  auto with_aliases = [](json value) {
    json r = endpoint_record(sample_endpoint());
    r["aliases"] = std::move(value);
    return r;
  };
  EXPECT_THROW(endpoint_from_record(with_aliases("db")), json::exception);
  EXPECT_THROW(endpoint_from_record(with_aliases(json{"db", 7})), json::exception);
  EXPECT_THROW(endpoint_from_record(with_aliases(json{"no way"})), json::exception);
  json seventeen = json::array();
  for (int i = 0; i < 17; ++i) seventeen.push_back(std::string("a").append(std::to_string(i)));
  EXPECT_THROW(endpoint_from_record(with_aliases(seventeen)), json::exception);
  seventeen.erase(seventeen.begin());
  EXPECT_EQ(endpoint_from_record(with_aliases(seventeen)).aliases.size(), 16u);
}

TEST(ApiJson, EndpointsShowTheirDnsAddressAndAliases) {
  Endpoint e = sample_endpoint();
  EXPECT_EQ(json(e).at("DNS"), "127.0.0.11");
  EXPECT_EQ(json(e).at("Aliases"), json::array());
  e.aliases = {"db"};
  EXPECT_EQ(json(e).at("Aliases"), (json{"db"}));
  const json container = api::network_detail_json(sample_network(), {e}).at("Containers").at(e.id);
  EXPECT_EQ(container.at("DNS"), "127.0.0.11");
  EXPECT_EQ(container.at("Aliases"), (json{"db"}));
}

TEST(ApiJson, AddressesAppearAsBefore) {
  const json network = sample_network();
  EXPECT_EQ(network.at("IPAM").at("Config"), (json::array({{{"Subnet", "10.0.9.0/24"}, {"Gateway", "10.0.9.1"}}})));
  const json endpoint = sample_endpoint();
  EXPECT_EQ(endpoint.at("IPv4Address"), "10.0.9.2/24");
  EXPECT_EQ(endpoint.at("MacAddress"), "02:42:0a:00:09:02");
  const json detail = api::network_detail_json(sample_network(), {sample_endpoint()});
  EXPECT_EQ(detail.at("Containers").at(std::string(64, 'b')).at("MacAddress"), "02:42:0a:00:09:02");
  EXPECT_EQ(detail.at("Containers").at(std::string(64, 'b')).at("IPv4Address"), "10.0.9.2/24");
  EXPECT_EQ(json(Endpoint{}).at("MacAddress"), "");
}

TEST(Ids, ShortIdIsTheFirstTwelveCharacters) {
  EXPECT_EQ(short_id(std::string(64, 'a') + "x"), std::string(12, 'a'));
  EXPECT_EQ(short_id("0123456789abcdef"), "0123456789ab");
  EXPECT_EQ(short_id("abc"), "abc");
  EXPECT_EQ(short_id(random_id()).size(), 12u);
}

}  // namespace
}  // namespace weft::control
