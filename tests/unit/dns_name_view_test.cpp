// StaticNameView: ownership per context, rotation, PTR and SRV lookups.
#include <gtest/gtest.h>

#include "dns/static_name_view.h"

namespace weft::dns {
namespace {

Ipv4 ip(const char* text) { return boost::asio::ip::make_address_v4(text); }

class StaticNameViewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    view.set_network("Front", {Service{"Web", EndpointMode::dnsrr, {}, {ip("10.0.0.5"), ip("10.0.0.6"), ip("10.0.0.7")}, {{"", 443, "tcp"}}}},
                     {Endpoint{"a", {"alias-a"}, ip("10.0.0.9")}});
    view.set_network("back", {}, {Endpoint{"b", {}, ip("10.1.0.9")}});
    view.set_context("c1", {"front"});
  }
  StaticNameView view;
};

TEST_F(StaticNameViewTest, OwnershipFollowsTheContext) {
  EXPECT_EQ(view.owns("c1", "web"), Ownership::visible);
  EXPECT_EQ(view.owns("c1", "tasks.web"), Ownership::visible);
  EXPECT_EQ(view.owns("c1", "alias-a"), Ownership::visible);
  EXPECT_EQ(view.owns("c1", "a.front"), Ownership::visible);
  EXPECT_EQ(view.owns("c1", "_443._tcp.web"), Ownership::visible);
  EXPECT_EQ(view.owns("c1", "b"), Ownership::hidden);
  EXPECT_EQ(view.owns("c1", "example.com"), Ownership::not_ours);
  EXPECT_EQ(view.owns("unknown-context", "web"), Ownership::hidden);
  EXPECT_TRUE(view.lookup_a("c1", "b").empty());
}

TEST_F(StaticNameViewTest, SuccessiveAnswersStartWithADifferentAddress) {
  std::set<std::string> firsts;
  for (int i = 0; i < 3; ++i) {
    auto a = view.lookup_a("c1", "web");
    ASSERT_EQ(a.size(), 3u);
    firsts.insert(a.front().to_string());
  }
  EXPECT_EQ(firsts.size(), 3u);
}

TEST_F(StaticNameViewTest, RemovedNetworkAnswersNothing) {
  view.remove_network("front");
  EXPECT_EQ(view.owns("c1", "web"), Ownership::not_ours);
  EXPECT_TRUE(view.lookup_a("c1", "a").empty());
  EXPECT_FALSE(view.lookup_ptr("c1", ip("10.0.0.9")));
}

TEST_F(StaticNameViewTest, PtrAndSrv) {
  EXPECT_EQ(view.lookup_ptr("c1", ip("10.0.0.9")), "a.front");
  EXPECT_EQ(view.lookup_ptr("c1", ip("10.0.0.6")), "web.front");
  EXPECT_FALSE(view.lookup_ptr("c1", ip("10.1.0.9")));
  auto srv = view.lookup_srv("c1", "_443._tcp.web");
  ASSERT_EQ(srv.size(), 1u);
  EXPECT_EQ(srv[0].port, 443);
  EXPECT_EQ(srv[0].target, "web.front");
  EXPECT_TRUE(view.lookup_srv("c1", "_443._udp.web").empty());
}

}  // namespace
}  // namespace weft::dns
