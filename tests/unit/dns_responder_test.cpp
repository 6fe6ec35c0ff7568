// The Responder's fast path for plain A queries builds the very bytes the
// ldns path builds, and declines everything else.
#include <gtest/gtest.h>

#include "dns/responder.h"
#include "dns/static_name_view.h"
#include "tests/unit/dns_test_support.h"

namespace weft::dns::testing {
namespace {

class DnsResponderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ip = [](const char* t) { return asio::ip::make_address_v4(t); };
    std::vector<Ipv4> many;
    for (uint32_t i = 1; i <= 60; ++i) many.push_back(Ipv4(0x0a000300 + i));
    view.set_network("front", {Service{"web", EndpointMode::vip, ip("10.0.1.2"), {ip("10.0.1.5")}, {}},
                               Service{"big", EndpointMode::dnsrr, {}, many, {}}},
                     {Endpoint{"client", {"al_ias"}, ip("10.0.1.20")}});
    view.set_context("ep", {"front"});
  }
  std::vector<uint8_t> with_edns(std::vector<uint8_t> q, uint16_t size) {
    q[11] = 1;
    q.insert(q.end(), {0, 0, 41, static_cast<uint8_t>(size >> 8), static_cast<uint8_t>(size), 0, 0, 0, 0, 0, 0});
    return q;
  }
  StaticNameView view;
  Responder fast{view, ResponderConfig{}};
  Responder slow{view, ResponderConfig{.fast_path = false}};
};

TEST_F(DnsResponderTest, FastPathBytesEqualTheLdnsPath) {
  auto ad = make_query("web", 1);
  ad[3] = 0x20;  // dig sets AD
  auto no_rd = make_query("client", 1);
  no_rd[2] = 0;
  const std::vector<std::vector<uint8_t>> queries = {
      make_query("web", 1), make_query("WeB", 1), make_query("client.front", 1), make_query("al_ias", 1),
      with_edns(make_query("web", 1), 1232), with_edns(make_query("client", 1), 65535), ad, no_rd};
  for (const auto& q : queries) {
    for (auto transport : {Transport::udp, Transport::tcp}) {
      const auto before = fast.fast_answers();
      Reply a = fast.handle(q, transport, "ep");
      Reply b = slow.handle(q, transport, "ep");
      EXPECT_EQ(fast.fast_answers(), before + 1) << "fast path not taken";
      EXPECT_EQ(a.wire, b.wire);
      EXPECT_EQ(a.udp_limit, b.udp_limit);
    }
  }
}

TEST_F(DnsResponderTest, FastPathDeclinesWhatItDoesNotKnow) {
  auto compressed = std::vector<uint8_t>{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1};
  auto cd = make_query("web", 1);
  cd[3] = 0x10;
  auto option = with_edns(make_query("web", 1), 4096);
  option[option.size() - 1] = 4;  // rdlen 4 without the bytes
  const std::vector<std::vector<uint8_t>> queries = {
      make_query("web", 28), make_query("db", 1), make_query("example.com", 1), compressed, cd, option,
      make_query("big", 1)};  // 60 records: over 512 bytes, TC through ldns
  for (const auto& q : queries) {
    const auto before = fast.fast_answers();
    fast.handle(q, Transport::udp, "ep");
    EXPECT_EQ(fast.fast_answers(), before) << "fast path taken";
  }
  Reply big = fast.handle(make_query("big", 1), Transport::udp, "ep");
  EXPECT_TRUE(big.wire[2] & 0x02);  // TC
}

TEST_F(DnsResponderTest, NamesNotOursAreForwardedWithoutLdnsAsWithIt) {
  auto ad = make_query("example.com", 1);
  ad[3] = 0x20;
  const std::vector<std::vector<uint8_t>> queries = {
      make_query("example.com", 1), make_query("Example.COM", 28), make_query("mx.example", 15),
      with_edns(make_query("example.com", 1), 1232), with_edns(make_query("example.com", 16), 65535), ad};
  for (const auto& q : queries) {
    const auto before = fast.fast_forwards();
    Reply a = fast.handle(q, Transport::udp, "ep");
    Reply b = slow.handle(q, Transport::udp, "ep");
    EXPECT_EQ(fast.fast_forwards(), before + 1) << "fast path not taken";
    EXPECT_EQ(a.kind, Reply::Kind::forward);
    EXPECT_EQ(b.kind, Reply::Kind::forward);
    EXPECT_EQ(a.udp_limit, b.udp_limit);
  }
  // A PTR the view answers, an owned name's other types: never forwarded.
  for (const auto& q : {make_query("20.1.0.10.in-addr.arpa", 12), make_query("web", 28), make_query("client", 15)}) {
    const auto before = fast.fast_forwards();
    Reply a = fast.handle(q, Transport::udp, "ep");
    EXPECT_EQ(fast.fast_forwards(), before);
    EXPECT_NE(a.kind, Reply::Kind::forward);
  }
}

}  // namespace
}  // namespace weft::dns::testing
