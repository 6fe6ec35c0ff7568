// The one host:port parser behind weftd's --bind/--join, memberlist joins
// and weft-gossip-node.
#include <gtest/gtest.h>

#include "control/gossip/host_port.h"

namespace gossip = weft::control::gossip;

namespace {

std::string error_of(const std::string& text) {
  try {
    gossip::parse_host_port(text);
  } catch (const gossip::InvalidHostPort& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(GossipHostPort, ParsesAddressesWithAndWithoutPort) {
  auto v4 = gossip::parse_host_port("192.0.2.7:7946");
  EXPECT_EQ(v4.ip.to_string(), "192.0.2.7");
  EXPECT_EQ(v4.port, 7946);
  EXPECT_FALSE(gossip::parse_host_port("192.0.2.7").port.has_value());
  EXPECT_EQ(gossip::parse_host_port("192.0.2.7:0").port, 0);
  auto v6 = gossip::parse_host_port("[2001:db8::1]:65535");
  EXPECT_EQ(v6.ip.to_string(), "2001:db8::1");
  EXPECT_EQ(v6.port, 65535);
  // Unbracketed IPv6 is one address, its last group no port.
  auto bare = gossip::parse_host_port("2001:db8::1");
  EXPECT_TRUE(bare.ip.is_v6());
  EXPECT_FALSE(bare.port.has_value());
  EXPECT_EQ(gossip::parse_host_port("[::1]").port, std::nullopt);
}

TEST(GossipHostPort, RefusesWhatIsNotAnAddressAndPort) {
  EXPECT_EQ(error_of("host.example:80"), "'host.example' is not an IP address");
  EXPECT_EQ(error_of("192.0.2.7:65536"), "bad port '65536'");
  EXPECT_EQ(error_of("192.0.2.7:"), "bad port ''");
  EXPECT_EQ(error_of("192.0.2.7:12ab"), "bad port '12ab'");
  EXPECT_EQ(error_of("192.0.2.7:+80"), "bad port '+80'");
  EXPECT_EQ(error_of("192.0.2.7:0080000"), "bad port '0080000'");
  EXPECT_EQ(error_of("[::1:80"), "missing ']'");
  EXPECT_EQ(error_of("[::1]80"), "expected ':' after ']'");
  EXPECT_EQ(error_of("192.0.2.256:80"), "'192.0.2.256' is not an IP address");
  EXPECT_EQ(error_of(""), "'' is not an IP address");
}

TEST(GossipHostPort, PrintsV6InBrackets) {
  EXPECT_EQ((gossip::HostPort{boost::asio::ip::make_address("192.0.2.1"), 80}.to_string()), "192.0.2.1:80");
  EXPECT_EQ((gossip::HostPort{boost::asio::ip::make_address("2001:db8::1"), 80}.to_string()), "[2001:db8::1]:80");
}
