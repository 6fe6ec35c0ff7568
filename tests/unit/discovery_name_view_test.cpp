// ClusterNameView: every kind of name, rotation, hidden vs not ours,
// draining backends, and the atomic swap of snapshots.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "control/discovery/cluster_name_view.h"
#include "control/discovery/snapshot.h"
#include "control/model/packed_endpoint.h"
#include "tests/support/discovery_records.h"

namespace weft::control::discovery {
namespace {

using testing::endpoint;
using testing::ip;

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;
using dns::Ownership;

dns::Ipv4 a(const char* text) { return boost::asio::ip::make_address_v4(text); }

// Two networks: front (web vip, cache dnsrr, client), back (db vip, dbhost);
// "both" is a vip service on both networks.
Snapshot cluster() {
  Snapshot s;
  s.networks = {{"id-front", "front"}, {"id-back", "Back"}};
  s.services = {
      {"svc-web", "Web", EndpointMode::vip, {"id-front"}, {{"id-front", ip("10.0.1.2")}},
       {{80, PortProtocol::tcp}, {53, PortProtocol::udp}}},
      {"svc-cache", "cache", EndpointMode::dnsrr, {"id-front"}, {}, {}},
      {"svc-empty", "empty", EndpointMode::dnsrr, {"id-front"}, {}, {}},
      {"svc-db", "db", EndpointMode::vip, {"id-back"}, {{"id-back", ip("10.0.2.2")}}, {{5432, PortProtocol::tcp}}},
      {"svc-both", "both", EndpointMode::vip, {"id-front", "id-back"},
       {{"id-front", ip("10.0.1.3")}, {"id-back", ip("10.0.2.3")}}, {}},
  };
  s.endpoints = {
      endpoint("e1", "web-1", "id-front", "10.0.1.5", "svc-web"),
      endpoint("e2", "", "id-front", "10.0.1.6", "svc-web"),
      endpoint("e3", "web-3", "id-front", "10.0.1.7", "svc-web", BackendState::draining),
      endpoint("e4", "", "id-front", "10.0.1.8", "svc-cache"),
      endpoint("e5", "", "id-front", "10.0.1.9", "svc-cache"),
      endpoint("e6", "", "id-front", "10.0.1.10", "svc-cache"),
      endpoint("e7", "", "id-front", "10.0.1.11", "svc-cache", BackendState::draining),
      endpoint("e8", "Client", "id-front", "10.0.1.20"),
      endpoint("e9", "dbhost", "id-back", "10.0.2.9"),
      endpoint("e10", "db-1", "id-back", "10.0.2.5", "svc-db"),
  };
  s.endpoints[7].aliases = {"Buddy", "pal"};
  s.contexts = {{"ctx-front", {"id-front"}}, {"ctx-back", {"id-back"}}, {"ctx-both", {"id-front", "id-back"}}};
  return s;
}

class ClusterNameViewTest : public ::testing::Test {
 protected:
  void SetUp() override { view_.publish(cluster()); }

  std::vector<dns::Ipv4> sorted_a(std::string_view context, std::string_view name) {
    auto out = view_.lookup_a(context, name);
    std::sort(out.begin(), out.end());
    return out;
  }

  ClusterNameView view_;
};

TEST_F(ClusterNameViewTest, ServiceNameIsTheVipOfTheNetworksTheContextSees) {
  EXPECT_EQ(view_.owns("ctx-front", "web"), Ownership::visible);
  EXPECT_THAT(view_.lookup_a("ctx-front", "web"), ElementsAre(a("10.0.1.2")));
  EXPECT_THAT(view_.lookup_a("ctx-front", "web.front"), ElementsAre(a("10.0.1.2")));
  EXPECT_THAT(view_.lookup_a("ctx-front", "both"), ElementsAre(a("10.0.1.3")));
  EXPECT_THAT(view_.lookup_a("ctx-back", "both"), ElementsAre(a("10.0.2.3")));
  EXPECT_THAT(sorted_a("ctx-both", "both"), ElementsAre(a("10.0.1.3"), a("10.0.2.3")));
  EXPECT_THAT(view_.lookup_a("ctx-both", "both.back"), ElementsAre(a("10.0.2.3")));
}

TEST_F(ClusterNameViewTest, TasksAreTheActiveBackendsRotated) {
  EXPECT_THAT(sorted_a("ctx-front", "tasks.web"), ElementsAre(a("10.0.1.5"), a("10.0.1.6")));
  EXPECT_THAT(sorted_a("ctx-front", "tasks.web.front"), ElementsAre(a("10.0.1.5"), a("10.0.1.6")));
  const auto first = view_.lookup_a("ctx-front", "tasks.web");
  const auto second = view_.lookup_a("ctx-front", "tasks.web");
  EXPECT_NE(first.front(), second.front());
}

TEST_F(ClusterNameViewTest, DnsrrServiceIsItsActiveBackendsRotatedDrainingLeftOut) {
  std::set<dns::Ipv4> firsts;
  for (int i = 0; i < 3; ++i) {
    auto answer = view_.lookup_a("ctx-front", "cache");
    ASSERT_EQ(answer.size(), 3u);
    firsts.insert(answer.front());
    EXPECT_EQ(std::count(answer.begin(), answer.end(), a("10.0.1.11")), 0) << "a draining backend was answered";
  }
  EXPECT_EQ(firsts.size(), 3u) << "three queries should start with three different backends";
  EXPECT_THAT(sorted_a("ctx-front", "tasks.cache"), ElementsAre(a("10.0.1.8"), a("10.0.1.9"), a("10.0.1.10")));
}

TEST_F(ClusterNameViewTest, AServiceWithoutActiveBackendsIsOursAndEmpty) {
  EXPECT_EQ(view_.owns("ctx-front", "empty"), Ownership::visible);
  EXPECT_TRUE(view_.lookup_a("ctx-front", "empty").empty());
  EXPECT_EQ(view_.owns("ctx-front", "tasks.empty"), Ownership::visible);
}

TEST_F(ClusterNameViewTest, EndpointNamesAliasesAndNetworkSuffixCaseInsensitive) {
  EXPECT_THAT(view_.lookup_a("ctx-front", "client"), ElementsAre(a("10.0.1.20")));
  EXPECT_THAT(view_.lookup_a("ctx-front", "buddy"), ElementsAre(a("10.0.1.20")));
  EXPECT_THAT(view_.lookup_a("ctx-front", "pal.front"), ElementsAre(a("10.0.1.20")));
  EXPECT_THAT(view_.lookup_a("ctx-front", "client.front"), ElementsAre(a("10.0.1.20")));
  EXPECT_THAT(view_.lookup_a("ctx-back", "dbhost.back"), ElementsAre(a("10.0.2.9")));
  EXPECT_THAT(view_.lookup_a("ctx-front", "web-1"), ElementsAre(a("10.0.1.5")));
}

TEST_F(ClusterNameViewTest, NamesOnlyOnUnseenNetworksAreHiddenOthersNotOurs) {
  EXPECT_EQ(view_.owns("ctx-front", "db"), Ownership::hidden);
  EXPECT_EQ(view_.owns("ctx-front", "dbhost"), Ownership::hidden);
  EXPECT_EQ(view_.owns("ctx-front", "tasks.db"), Ownership::hidden);
  EXPECT_EQ(view_.owns("ctx-front", "web.back"), Ownership::not_ours);
  EXPECT_EQ(view_.owns("ctx-front", "both.back"), Ownership::hidden);
  EXPECT_TRUE(view_.lookup_a("ctx-front", "db").empty());
  EXPECT_TRUE(view_.lookup_a("ctx-front", "both.back").empty());
  EXPECT_EQ(view_.owns("ctx-front", "example.com"), Ownership::not_ours);
  EXPECT_EQ(view_.owns("ctx-front", "front"), Ownership::not_ours);
  // A context the snapshot does not know sees no network.
  EXPECT_EQ(view_.owns("ctx-unknown", "web"), Ownership::hidden);
  EXPECT_TRUE(view_.lookup_a("ctx-unknown", "web").empty());
}

TEST_F(ClusterNameViewTest, PtrForEndpointsBackendsAndVips) {
  EXPECT_EQ(view_.lookup_ptr("ctx-front", a("10.0.1.20")), "client.front");
  EXPECT_EQ(view_.lookup_ptr("ctx-front", a("10.0.1.5")), "web-1.front");    // a named backend
  EXPECT_EQ(view_.lookup_ptr("ctx-front", a("10.0.1.6")), "web.front");      // an unnamed one
  EXPECT_EQ(view_.lookup_ptr("ctx-front", a("10.0.1.2")), "web.front");      // the VIP
  EXPECT_EQ(view_.lookup_ptr("ctx-both", a("10.0.2.3")), "both.back");
  EXPECT_EQ(view_.lookup_ptr("ctx-front", a("10.0.2.9")), std::nullopt);     // another network's
  EXPECT_EQ(view_.lookup_ptr("ctx-front", a("192.0.2.1")), std::nullopt);
  // The PTR targets resolve back.
  EXPECT_THAT(view_.lookup_a("ctx-front", "web-1.front"), ElementsAre(a("10.0.1.5")));
}

TEST_F(ClusterNameViewTest, SrvForPublishedPorts) {
  EXPECT_EQ(view_.owns("ctx-front", "_80._tcp.web"), Ownership::visible);
  auto srv = view_.lookup_srv("ctx-front", "_80._tcp.web");
  ASSERT_EQ(srv.size(), 1u);
  EXPECT_EQ(srv[0].port, 80);
  EXPECT_EQ(srv[0].target, "web.front");
  EXPECT_EQ(view_.lookup_srv("ctx-front", "_53._udp.web.front").size(), 1u);
  // A port the service does not publish: ours, no record; never forwarded.
  EXPECT_EQ(view_.owns("ctx-front", "_81._tcp.web"), Ownership::visible);
  EXPECT_TRUE(view_.lookup_srv("ctx-front", "_81._tcp.web").empty());
  EXPECT_TRUE(view_.lookup_srv("ctx-front", "_53._tcp.web").empty());
  EXPECT_EQ(view_.owns("ctx-front", "_5432._tcp.db"), Ownership::hidden);
  EXPECT_EQ(view_.owns("ctx-front", "_80._tcp.client"), Ownership::not_ours);  // an endpoint, no service
}

TEST_F(ClusterNameViewTest, APublishedSnapshotReplacesTheOldOneWhole) {
  auto s = cluster();
  s.services.erase(s.services.begin());  // web goes
  std::erase_if(s.endpoints, [](const EndpointRecord& e) { return e.id == "e1" || e.id == "e8"; });
  s.contexts.erase("ctx-back");
  view_.publish(s);
  EXPECT_EQ(view_.owns("ctx-front", "web"), Ownership::not_ours);
  EXPECT_EQ(view_.owns("ctx-front", "tasks.web"), Ownership::not_ours);
  EXPECT_TRUE(view_.lookup_a("ctx-front", "web").empty());
  EXPECT_EQ(view_.lookup_ptr("ctx-front", a("10.0.1.2")), std::nullopt);
  EXPECT_EQ(view_.owns("ctx-front", "client"), Ownership::not_ours);
  EXPECT_EQ(view_.owns("ctx-front", "web-1"), Ownership::not_ours);
  EXPECT_EQ(view_.owns("ctx-back", "db"), Ownership::hidden);  // its context is gone
}

// A reader on another thread while snapshots alternate: every answer comes
// whole from one snapshot, never a mix, and never from a freed one.
TEST_F(ClusterNameViewTest, ReadersSeeOneSnapshotOrTheOtherDuringSwaps) {
  Snapshot one;
  one.networks = {{"n", "net"}};
  one.services = {{"s", "svc", EndpointMode::dnsrr, {"n"}, {}, {}}};
  Snapshot two = one;
  for (int i = 0; i < 4; ++i) {
    one.endpoints.push_back(endpoint("a" + std::to_string(i), "", "n", ("10.1.0." + std::to_string(i + 1)).c_str(), "s"));
    two.endpoints.push_back(endpoint("b" + std::to_string(i), "", "n", ("10.2.0." + std::to_string(i + 1)).c_str(), "s"));
  }
  one.contexts = two.contexts = {{"c", {"n"}}};
  view_.publish(one);
  std::atomic<bool> stop{false};
  std::atomic<int> mixed{0}, empty{0}, reads{0};
  std::thread reader([&] {
    while (!stop) {
      auto answer = view_.lookup_a("c", "svc");
      ++reads;
      if (answer.size() != 4) {
        ++empty;
        continue;
      }
      const auto net = answer[0].to_bytes()[1];
      for (auto x : answer)
        if (x.to_bytes()[1] != net) ++mixed;
    }
  });
  for (int i = 0; i < 2000; ++i) view_.publish(i % 2 ? one : two);
  view_.publish(two);
  while (reads < 100) std::this_thread::yield();
  stop = true;
  reader.join();
  EXPECT_EQ(mixed, 0);
  EXPECT_EQ(empty, 0);
  // After the last publish, only its names.
  for (auto x : view_.lookup_a("c", "svc")) EXPECT_EQ(x.to_bytes()[1], 2);
}

TEST_F(ClusterNameViewTest, NamesThatAreNoDnsNamesAreSkipped) {
  Snapshot s;
  s.networks = {{"n", "net"}};
  s.endpoints = {endpoint("x", "bad name", "n", "10.0.0.5"), endpoint("y", std::string(64, 'x'), "n", "10.0.0.6"),
                 endpoint("z", "good", "n", "10.0.0.7")};
  s.contexts = {{"c", {"n"}}};
  view_.publish(s);
  EXPECT_EQ(view_.counts().skipped, 2u);
  EXPECT_EQ(view_.owns("c", "bad name"), Ownership::not_ours);
  EXPECT_THAT(view_.lookup_a("c", "good"), ElementsAre(a("10.0.0.7")));
}

// An answer of many addresses (kept apart from the names' records, checked
// for repeats through a set past 16) has each address once, however often
// the snapshot lists it.
TEST_F(ClusterNameViewTest, LargeAnswersHaveEachAddressOnce) {
  Snapshot s;
  s.networks = {{"n", "net"}};
  s.services = {{"s", "big", EndpointMode::dnsrr, {"n"}, {}, {}}};
  for (int copy = 0; copy < 2; ++copy)
    for (int i = 0; i < 40; ++i)
      s.endpoints.push_back(
          endpoint(fmt::format("e{}-{}", copy, i), "", "n", fmt::format("10.9.0.{}", i + 1).c_str(), "s"));
  s.contexts = {{"c", {"n"}}};
  view_.publish(s);
  for (const char* name : {"big", "tasks.big", "big.net", "tasks.big.net"}) {
    const auto answer = view_.lookup_a("c", name);
    EXPECT_EQ(answer.size(), 40u) << name;
    EXPECT_EQ(std::set<dns::Ipv4>(answer.begin(), answer.end()).size(), 40u) << name;
  }
  // Rotation on every lookup, also for a large answer.
  EXPECT_NE(view_.lookup_a("c", "big").front(), view_.lookup_a("c", "big").front());
}

// Thousands of names (the index's table grows while it is built): every
// one found, with its address and PTR; near misses are not ours.
TEST_F(ClusterNameViewTest, ManyNamesAreAllFound) {
  Snapshot s;
  s.networks = {{"n", "net"}};
  constexpr int count = 3000;
  auto address_of = [](int i) { return fmt::format("10.8.{}.{}", i / 250, i % 250 + 1); };
  for (int i = 0; i < count; ++i)
    s.endpoints.push_back(endpoint(fmt::format("e{}", i), fmt::format("host{}", i), "n", address_of(i).c_str()));
  s.contexts = {{"c", {"n"}}};
  view_.publish(s);
  EXPECT_EQ(view_.counts().names, 2u * count);
  EXPECT_EQ(view_.counts().addresses, static_cast<std::size_t>(count));
  std::vector<dns::Ipv4> out;
  for (int i = 0; i < count; ++i) {
    const std::string name = fmt::format("host{}", i);
    const auto address = a(address_of(i).c_str());
    ASSERT_EQ(view_.resolve_a("c", name, out), Ownership::visible) << name;
    ASSERT_THAT(out, ElementsAre(address)) << name;
    ASSERT_THAT(view_.lookup_a("c", name + ".net"), ElementsAre(address)) << name;
    ASSERT_EQ(view_.lookup_ptr("c", address), name + ".net");
    ASSERT_EQ(view_.owns("c", name + "x"), Ownership::not_ours);
  }
  EXPECT_EQ(view_.lookup_ptr("c", a("10.8.200.1")), std::nullopt);
}

// One address on two networks (their subnets may overlap): PTR answers the
// name of a network the context sees; seeing both, the first endpoint's.
TEST_F(ClusterNameViewTest, PtrOfAnAddressOnTwoNetworksFollowsTheContext) {
  Snapshot s;
  s.networks = {{"na", "neta"}, {"nb", "netb"}};
  s.endpoints = {endpoint("x", "x", "nb", "10.7.0.5"), endpoint("y", "y", "na", "10.7.0.5")};
  s.contexts = {{"ca", {"na"}}, {"cb", {"nb"}}, {"cab", {"na", "nb"}}};
  view_.publish(s);
  EXPECT_EQ(view_.lookup_ptr("ca", a("10.7.0.5")), "y.neta");
  EXPECT_EQ(view_.lookup_ptr("cb", a("10.7.0.5")), "x.netb");
  EXPECT_EQ(view_.lookup_ptr("cab", a("10.7.0.5")), "x.netb");
}

// The `<name>.<N>` forms are derived at lookup from the name (the index
// holds each name once): they answer as when they were names of their own.
// Each form rotates on its own, from the first address published.
TEST_F(ClusterNameViewTest, NetworkFormsRotateApartFromTheName) {
  EXPECT_THAT(view_.lookup_a("ctx-front", "tasks.web"), ElementsAre(a("10.0.1.5"), a("10.0.1.6")));
  EXPECT_THAT(view_.lookup_a("ctx-front", "tasks.web.front"), ElementsAre(a("10.0.1.5"), a("10.0.1.6")));
  EXPECT_THAT(view_.lookup_a("ctx-front", "tasks.web.front"), ElementsAre(a("10.0.1.6"), a("10.0.1.5")));
  EXPECT_THAT(view_.lookup_a("ctx-front", "tasks.web"), ElementsAre(a("10.0.1.6"), a("10.0.1.5")));
  EXPECT_THAT(sorted_a("ctx-both", "both.front"), ElementsAre(a("10.0.1.3")));
  EXPECT_EQ(view_.owns("ctx-back", "client.front"), Ownership::hidden);
  EXPECT_EQ(view_.owns("ctx-front", "client.front.front"), Ownership::not_ours);
  EXPECT_EQ(view_.owns("ctx-front", "client.back"), Ownership::not_ours);
  EXPECT_EQ(view_.owns("ctx-front", "_80._tcp.web.front"), Ownership::visible);
  EXPECT_EQ(view_.owns("ctx-front", "_81._tcp.web.front"), Ownership::visible);
  EXPECT_EQ(view_.owns("ctx-back", "_80._tcp.web.front"), Ownership::hidden);
  EXPECT_EQ(view_.owns("ctx-front", "_80._tcp.web.back"), Ownership::not_ours);
  EXPECT_TRUE(view_.lookup_srv("ctx-back", "_80._tcp.web.front").empty());
  // Every form counted, as when each was a name: the services' 28 (web 8,
  // db 6, both 6, cache and empty 4 each), the 5 named endpoints' and the 2
  // aliases' 14.
  EXPECT_EQ(view_.counts().names, 42u);
}

// A name that is also another name's form (`x.net`, and `x` on net) holds
// both's answers, in the order published; its own form is `x.net.net`.
TEST_F(ClusterNameViewTest, ANameThatIsAnotherNamesFormAnswersBoth) {
  Snapshot s;
  s.networks = {{"n", "net"}, {"m", "other"}};
  s.endpoints = {endpoint("x1", "x", "n", "10.6.0.1"), endpoint("x2", "x.net", "n", "10.6.0.2"),
                 endpoint("x3", "x.net", "m", "10.6.0.3")};
  s.contexts = {{"c", {"n"}}, {"cm", {"m"}}, {"cnm", {"n", "m"}}};
  view_.publish(s);
  EXPECT_THAT(view_.lookup_a("c", "x.net"), ElementsAre(a("10.6.0.1"), a("10.6.0.2")));
  EXPECT_THAT(view_.lookup_a("cm", "x.net"), ElementsAre(a("10.6.0.3")));
  EXPECT_THAT(sorted_a("cnm", "x.net"), ElementsAre(a("10.6.0.1"), a("10.6.0.2"), a("10.6.0.3")));
  EXPECT_THAT(view_.lookup_a("cnm", "x.net.net"), ElementsAre(a("10.6.0.2")));
  EXPECT_THAT(view_.lookup_a("cnm", "x.net.other"), ElementsAre(a("10.6.0.3")));
  EXPECT_EQ(view_.owns("c", "x.net.other"), Ownership::hidden);
  EXPECT_EQ(view_.owns("cnm", "x.other"), Ownership::not_ours);
  EXPECT_EQ(view_.owns("cnm", "x.net.net.net"), Ownership::not_ours);
  EXPECT_EQ(view_.lookup_ptr("c", a("10.6.0.1")), "x.net");
  EXPECT_EQ(view_.lookup_ptr("c", a("10.6.0.2")), "x.net.net");
  EXPECT_EQ(view_.counts().names, 4u);  // x, x.net, x.net.net, x.net.other
}

// Networks `b` and `a.b`: `x.a.b` is `x.a` on b and `x` on a.b at once.
TEST_F(ClusterNameViewTest, AFormOnTwoNetworksWhoseNamesNestAnswersBoth) {
  Snapshot s;
  s.networks = {{"nb", "b"}, {"nab", "a.b"}};
  s.endpoints = {endpoint("p", "x.a", "nb", "10.5.0.1"), endpoint("q", "x", "nab", "10.5.0.2")};
  s.contexts = {{"cb", {"nb"}}, {"cab", {"nab"}}, {"call", {"nb", "nab"}}};
  view_.publish(s);
  EXPECT_THAT(sorted_a("call", "x.a.b"), ElementsAre(a("10.5.0.1"), a("10.5.0.2")));
  EXPECT_THAT(view_.lookup_a("cb", "x.a.b"), ElementsAre(a("10.5.0.1")));
  EXPECT_THAT(view_.lookup_a("cab", "x.a.b"), ElementsAre(a("10.5.0.2")));
  EXPECT_EQ(view_.owns("cb", "x.b"), Ownership::not_ours);
  EXPECT_EQ(view_.lookup_ptr("cab", a("10.5.0.2")), "x.a.b");
  EXPECT_EQ(view_.counts().names, 3u);  // x.a, x, x.a.b
}

// Two networks of one name: `x.dup` is x on both.
TEST_F(ClusterNameViewTest, AFormOfANetworkNameTwoNetworksShareAnswersBoth) {
  Snapshot s;
  s.networks = {{"n1", "dup"}, {"n2", "dup"}};
  s.endpoints = {endpoint("p", "x", "n1", "10.3.0.1"), endpoint("q", "x", "n2", "10.3.0.2"),
                 endpoint("r", "y", "n2", "10.3.0.3")};
  s.contexts = {{"c1", {"n1"}}, {"c12", {"n1", "n2"}}};
  view_.publish(s);
  EXPECT_THAT(sorted_a("c12", "x.dup"), ElementsAre(a("10.3.0.1"), a("10.3.0.2")));
  EXPECT_THAT(view_.lookup_a("c1", "x.dup"), ElementsAre(a("10.3.0.1")));
  EXPECT_THAT(view_.lookup_a("c12", "y.dup"), ElementsAre(a("10.3.0.3")));
  EXPECT_EQ(view_.owns("c1", "y.dup"), Ownership::hidden);
  EXPECT_EQ(view_.counts().names, 4u);
}

// A service's name that an endpoint also has on another network: only the
// service's network's form has `_<port>._<proto>.` names under it.
TEST_F(ClusterNameViewTest, SrvNamesOnlyUnderTheServicesNetworkForm) {
  Snapshot s;
  s.networks = {{"f", "front"}, {"k", "back"}};
  s.services = {{"s", "svc", EndpointMode::vip, {"f"}, {{"f", ip("10.4.0.2")}}, {{80, PortProtocol::tcp}}}};
  s.endpoints = {endpoint("e", "svc", "k", "10.4.0.9")};
  s.contexts = {{"cf", {"f"}}, {"ck", {"k"}}, {"cfk", {"f", "k"}}};
  view_.publish(s);
  EXPECT_EQ(view_.owns("cfk", "_80._tcp.svc.back"), Ownership::not_ours);
  EXPECT_EQ(view_.owns("cfk", "_81._tcp.svc.back"), Ownership::not_ours);
  EXPECT_EQ(view_.owns("cf", "_81._tcp.svc.front"), Ownership::visible);
  EXPECT_EQ(view_.owns("ck", "_81._tcp.svc"), Ownership::visible);
  EXPECT_THAT(view_.lookup_a("ck", "svc.back"), ElementsAre(a("10.4.0.9")));
  auto srv = view_.lookup_srv("cfk", "_80._tcp.svc.front");
  ASSERT_EQ(srv.size(), 1u);
  EXPECT_EQ(srv[0].target, "svc.front");
  EXPECT_EQ(view_.lookup_ptr("ck", a("10.4.0.9")), "svc.back");
}

// The snapshot from the model's objects: one context per namespace seeing
// the networks of all its endpoints.
TEST(BuildSnapshotTest, FromModelObjectsOneContextPerNamespace) {
  Network front;
  front.id = "id-front";
  front.name = "front";
  Network back;
  back.id = "id-back";
  back.name = "back";
  Service web;
  web.id = "svc-web";
  web.name = "web";
  web.network_ids = {"id-front"};
  web.vips = {{"id-front", ip("10.0.1.2"), 24}};
  web.ports = {{80, PortProtocol::tcp}};
  auto make = [](std::string id, std::string name, std::string net, const char* addr, std::string netns,
                 std::string service = "", BackendState state = BackendState::active) {
    Endpoint e;
    e.id = std::move(id);
    e.name = std::move(name);
    e.network_id = std::move(net);
    e.ip = ip(addr);
    e.netns = std::move(netns);
    e.service_id = std::move(service);
    e.backend_state = state;
    return e;
  };
  // c1 is on both networks (one namespace, two endpoints); the backends are remote.
  std::vector<Endpoint> local = {make("l1", "c1", "id-front", "10.0.1.20", "c1"),
                                 make("l2", "c1b", "id-back", "10.0.2.20", "/run/netns/c1"),
                                 make("l3", "c2", "id-back", "10.0.2.21", "/proc/42/ns/net")};
  local[0].aliases = {"alias1"};
  std::vector<Endpoint> all = local;
  all.push_back(make("r1", "w1", "id-front", "10.0.1.5", "x", "svc-web"));
  all.push_back(make("r2", "w2", "id-front", "10.0.1.6", "x", "svc-web", BackendState::draining));
  auto groups = group_by_namespace(local);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups["/run/netns/c1"].size(), 2u);
  auto snapshot = build_snapshot({web}, all, {front, back}, groups);
  EXPECT_EQ(snapshot.contexts["/run/netns/c1"], (std::set<std::string>{"id-front", "id-back"}));
  EXPECT_EQ(snapshot.contexts["/proc/42/ns/net"], (std::set<std::string>{"id-back"}));

  ClusterNameView view;
  view.publish(snapshot);
  EXPECT_THAT(view.lookup_a("/run/netns/c1", "web"), ElementsAre(a("10.0.1.2")));
  EXPECT_THAT(view.lookup_a("/run/netns/c1", "tasks.web"), ElementsAre(a("10.0.1.5")));
  EXPECT_THAT(view.lookup_a("/run/netns/c1", "c2"), ElementsAre(a("10.0.2.21")));
  EXPECT_THAT(view.lookup_a("/run/netns/c1", "alias1"), ElementsAre(a("10.0.1.20")));
  EXPECT_EQ(view.owns("/proc/42/ns/net", "web"), Ownership::hidden);
  EXPECT_EQ(view.owns("/proc/42/ns/net", "c1b"), Ownership::visible);

  // The same names from the network manager's shared snapshot, read
  // where it is (no record copied), and from its records copied.
  const auto shared = EndpointSnapshot::of(all);
  for (const auto& from_shared : {build_snapshot({web}, shared, {front, back}, groups),
                                  build_snapshot({web}, shared->endpoints, {front, back}, groups)}) {
    EXPECT_EQ(from_shared.endpoints.size() + (from_shared.shared_endpoints ? all.size() : 0), all.size());
    ClusterNameView other;
    other.publish(from_shared);
    EXPECT_THAT(other.lookup_a("/run/netns/c1", "web"), ElementsAre(a("10.0.1.2")));
    EXPECT_THAT(other.lookup_a("/run/netns/c1", "tasks.web"), ElementsAre(a("10.0.1.5")));
    EXPECT_THAT(other.lookup_a("/run/netns/c1", "c2"), ElementsAre(a("10.0.2.21")));
    EXPECT_THAT(other.lookup_a("/run/netns/c1", "alias1"), ElementsAre(a("10.0.1.20")));
    EXPECT_EQ(other.lookup_ptr("/run/netns/c1", a("10.0.1.6")), "w2.front");
    EXPECT_EQ(other.owns("/proc/42/ns/net", "web"), Ownership::hidden);
    EXPECT_EQ(other.owns("/proc/42/ns/net", "c1b"), Ownership::visible);
    EXPECT_EQ(other.counts().names, view.counts().names);
    EXPECT_EQ(other.counts().addresses, view.counts().addresses);
  }
}

}  // namespace
}  // namespace weft::control::discovery
