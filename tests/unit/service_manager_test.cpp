// ServiceManager (control/services) over a fake node (no kernel): what it
// accepts and refuses, its virtual IPs, its state file, `lb lookup` and the
// view it gives the load balancer.
#include "control/services/service_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>

#include "control/network/state_file.h"
#include "control/services/service_spec.h"
#include "tests/support/addresses.h"
#include "tests/support/fake_service_networks.h"
#include "tests/support/scratch_netns.h"

namespace weft::control::services {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ipv4;

// The node's load balancer as the service manager sees it: answers from
// what the test sets and remembers what it was asked.
class FakeLb final : public LbQuery {
 public:
  std::string_view kind() const override { return "ebpf"; }
  std::optional<std::string> lookup(const std::string& service_id, const std::string& network_id,
                                    dataplane::Ipv4 src, std::uint16_t sport, std::uint16_t dport,
                                    PortProtocol proto) override {
    asked = {service_id, network_id, src.str(), std::to_string(sport), std::to_string(dport),
             proto == PortProtocol::udp ? "udp" : "tcp"};
    return answer;
  }
  std::map<std::string, BackendCounters> counters(const std::string&, const std::string&) override {
    ++counter_reads;
    return counter_values;
  }
  std::size_t counter_reads = 0;
  std::optional<std::string> answer;
  std::vector<std::string> asked;
  std::map<std::string, BackendCounters> counter_values;
};

// The ApiError a call throws, or a failure when it throws none.
template <class F>
ApiError error_of(F f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError thrown";
  return ApiError(ApiError::Kind::Internal, "none");
}

class ServiceManagerTest : public ::testing::Test {
 protected:
  ServiceManagerTest() {
    net = fake.add_network("net-test", "10.0.0.0/24");
    start();
  }
  void start() {
    manager.reset();
    manager = std::make_unique<ServiceManager>(ServiceManagerConfig{.node_name = "node1", .state_dir = state_dir()},
                                               fake);
    manager->reconcile();
  }
  fs::path state_dir() const { return dir.path() / "state"; }

  testing::ScratchDir dir;
  testing::FakeServiceNetworks fake;
  Network net;
  std::unique_ptr<ServiceManager> manager;
};

TEST_F(ServiceManagerTest, FirstServiceOnAFreshSubnetGetsTheAddressAfterTheGateway) {
  auto s = manager->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  EXPECT_EQ(s.id.size(), 64u);
  EXPECT_EQ(s.mode, EndpointMode::vip);
  ASSERT_EQ(s.vips.size(), 1u);
  EXPECT_EQ(s.vips[0].addr.str(), "10.0.0.2");
  EXPECT_EQ(s.vips[0].prefix_len, 24);
  EXPECT_EQ(s.vips[0].network_id, net.id);
  EXPECT_EQ(s.network_ids, std::vector<std::string>{net.id});
  EXPECT_EQ(s.node, "node1");
  ASSERT_EQ(fake.reservations().size(), 1u);
  EXPECT_EQ(fake.reservations()[0].owner, vip_owner(s.id));
  // The next endpoint comes after the VIP.
  EXPECT_EQ(fake.attach(net.id, "c1").ip.str(), "10.0.0.3");
}

TEST_F(ServiceManagerTest, PortsAndModesAreParsed) {
  auto s = manager->create_service(
      {.name = "dns", .networks = {net.id.substr(0, 8)}, .endpoint_mode = "dnsrr", .ports = {"53/udp", "53", "53/tcp"}});
  EXPECT_EQ(s.mode, EndpointMode::dnsrr);
  EXPECT_TRUE(s.vips.empty()) << "dnsrr services have no virtual IP";
  EXPECT_TRUE(fake.reservations().empty());
  ASSERT_EQ(s.ports.size(), 2u);
  EXPECT_EQ(s.ports[0], (PublishedPort{53, PortProtocol::tcp}));
  EXPECT_EQ(s.ports[1], (PublishedPort{53, PortProtocol::udp}));
}

TEST_F(ServiceManagerTest, BadInputIsRefusedAndReservesNothing) {
  const auto refused = [&](ServiceSpec spec, int status, const std::string& text) {
    auto e = error_of([&] { manager->create_service(spec); });
    EXPECT_EQ(e.http_status(), status) << spec.name << ": " << e.what();
    EXPECT_THAT(e.what(), HasSubstr(text));
    EXPECT_TRUE(fake.reservations().empty()) << spec.name;
    EXPECT_TRUE(manager->list_services().empty()) << spec.name;
  };
  refused({.name = "web", .networks = {"nope"}, .endpoint_mode = {}, .ports = {}}, 404, "network nope not found");
  refused({.name = "web", .networks = {}, .endpoint_mode = {}, .ports = {}}, 400, "needs a network");
  refused({.name = "web", .networks = {"net-test"}, .endpoint_mode = "ipvs", .ports = {}}, 400,
          "unknown endpoint mode \"ipvs\"");
  refused({.name = "-web", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}}, 400, "");
  refused({.name = std::string(64, 'a'), .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}}, 400, "");
  for (const std::string port : {"0", "65536", "80/sctp", "http", "", "+80", "-1", "80/", "/tcp", "123456", "8 0"})
    refused({.name = "web", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {port}}, 400,
            "invalid port \"" + port + "\"");
  refused({.name = "web", .networks = {"net-test"}, .endpoint_mode = {}, .ports = std::vector<std::string>(129, "80")},
          400, "too many ports");
  // Good ports at the edges.
  auto s = manager->create_service(
      {.name = "edges", .networks = {"net-test"}, .endpoint_mode = "vip", .ports = {"1", "65535/udp"}});
  EXPECT_EQ(s.ports.size(), 2u);
}

TEST_F(ServiceManagerTest, DuplicateNameIsAConflict) {
  manager->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  auto e = error_of(
      [&] { manager->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}}); });
  EXPECT_EQ(e.http_status(), 409);
  EXPECT_THAT(e.what(), HasSubstr("service with name redis already exists"));
  EXPECT_EQ(fake.reservations().size(), 1u) << "the refused one reserved nothing";
}

TEST_F(ServiceManagerTest, RemoveReleasesTheVipForReuseAndLeavesBackendsAttached) {
  auto s = manager->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  auto backend = fake.attach(net.id, "r1", s.id);
  manager->remove_service("redis");
  EXPECT_EQ(fake.released(), std::vector<std::string>{"10.0.0.2"});
  EXPECT_TRUE(fake.reservations().empty());
  EXPECT_EQ(error_of([&] { manager->get_service(s.id); }).http_status(), 404);
  EXPECT_EQ(fake.list_endpoints().size(), 1u) << "its backend stays attached";
  auto again = manager->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  EXPECT_EQ(again.vips.at(0).addr.str(), "10.0.0.2");
  EXPECT_EQ(error_of([&] { manager->remove_service("nope"); }).http_status(), 404);
}

TEST_F(ServiceManagerTest, ServicesSurviveARestartAndOrphanVipsAreReleased) {
  auto s = manager->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {"6379"}});
  // A crash between the VIP's reservation and the service's record: the
  // reservation names a service no file knows.
  const auto orphan = fake.reserve_address(net.id, vip_owner(random_id()));
  EXPECT_EQ(orphan.str(), "10.0.0.3");
  // Someone else's reservation is not the service manager's business.
  fake.reserve_address(net.id, "node-lb");
  start();
  EXPECT_EQ(fake.released(), std::vector<std::string>{"10.0.0.3"});
  ASSERT_EQ(fake.reservations().size(), 2u);
  auto kept = manager->get_service("redis").service;
  EXPECT_EQ(kept.id, s.id);
  EXPECT_EQ(kept.vips.at(0).addr.str(), "10.0.0.2");
  EXPECT_EQ(kept.ports, s.ports);
  EXPECT_EQ(kept.created, s.created);
}

TEST_F(ServiceManagerTest, UnwritableStateRefusesCreateAndLeavesNothing) {
  // The VIP's reservation fails (the network manager's full disk)...
  fake.fail_writes(true);
  auto e = error_of(
      [&] { manager->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}}); });
  EXPECT_EQ(e.http_status(), 500);
  EXPECT_TRUE(manager->list_services().empty());
  fake.fail_writes(false);
  // ... or services.json cannot be written: the VIP goes back.
  fs::remove_all(state_dir());
  std::ofstream(state_dir()) << "a file where the state dir should be";
  e = error_of(
      [&] { manager->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}}); });
  EXPECT_EQ(e.http_status(), 500);
  EXPECT_THAT(e.what(), HasSubstr("nothing was created"));
  EXPECT_TRUE(manager->list_services().empty());
  EXPECT_TRUE(fake.reservations().empty());
  EXPECT_EQ(fake.released(), std::vector<std::string>{"10.0.0.2"});
}

TEST_F(ServiceManagerTest, FindsByIdNameAndUniquePrefix) {
  auto a = manager->create_service({.name = "alpha", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  EXPECT_EQ(manager->find(a.id)->name, "alpha");
  EXPECT_EQ(manager->find("alpha")->id, a.id);
  EXPECT_EQ(manager->find(a.id.substr(0, 10))->id, a.id);
  EXPECT_FALSE(manager->find("beta"));
  EXPECT_EQ(error_of([&] { manager->find(std::string(200, 'a')); }).http_status(), 400);
  EXPECT_THAT(error_of([&] { manager->find(""); }).what(), HasSubstr("service name or id is required"));
  EXPECT_THAT(error_of([&] { manager->get_service("a\nb"); }).what(), HasSubstr("\\n"));
  EXPECT_EQ(manager->get_service("alpha").service.id, a.id);
}

TEST_F(ServiceManagerTest, DetailListsBackendsAndCountersWhenThereIsALoadBalancer) {
  auto s = manager->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  auto r1 = fake.attach(net.id, "r1", s.id);
  auto r2 = fake.attach(net.id, "r2", s.id);
  fake.attach(net.id, "client");
  fake.set_draining(r2.id, "2026-11-26T18:00:00Z");
  auto d = manager->get_service("redis");
  ASSERT_EQ(d.backends.size(), 2u);
  EXPECT_EQ(d.backends[0].endpoint_name, "r1");
  EXPECT_EQ(d.backends[0].ip, r1.ip);
  EXPECT_EQ(d.backends[0].state, BackendState::active);
  EXPECT_EQ(d.backends[1].state, BackendState::draining);
  EXPECT_FALSE(d.backends[0].counters) << "no load balancer: no counters";
  FakeLb lb;
  lb.counter_values[r1.id] = BackendCounters{.connections = 3, .packets = 30, .bytes = 3000};
  manager->set_load_balancer(&lb);
  d = manager->list_services().at(0);
  ASSERT_TRUE(d.backends[0].counters);
  EXPECT_EQ(d.backends[0].counters->connections, 3u);
  ASSERT_TRUE(d.backends[1].counters);
  EXPECT_EQ(d.backends[1].counters->connections, 0u);
}

// The live page's poller shows the first services only: the others come
// without backends and without a counter read each (10 000 services x 10
// backends were 100 000 backend records and 10 000 counter reads per tick).
// With tasks, so that the one past the bound is listed (for its tasks).
TEST_F(ServiceManagerTest, BoundedListDetailsOnlyTheFirstServicesByName) {
  FakeLb lb;
  manager->set_load_balancer(&lb);
  std::vector<std::string> ids;
  for (const char* name : {"web", "cache", "db"}) {
    ServiceSpec spec{.name = name, .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}};
    spec.command = {"sleep", "1000"};
    auto s = manager->create_service(spec);
    fake.attach(net.id, std::string(name) + "-1", s.id);
    ids.push_back(s.id);
  }
  const auto whole = manager->list_services();
  ASSERT_EQ(whole.size(), 3u);
  const auto reads_whole = lb.counter_reads;
  const auto bounded = manager->list_services_for_page(2);
  ASSERT_EQ(bounded.size(), 3u);
  EXPECT_EQ(bounded[0].service.name, "cache");
  EXPECT_EQ(bounded[1].service.name, "db");
  EXPECT_EQ(bounded[2].service.name, "web");
  EXPECT_EQ(bounded[0].backends.size(), 1u);
  EXPECT_EQ(bounded[1].backends.size(), 1u);
  EXPECT_TRUE(bounded[2].backends.empty()) << "beyond the bound: no backends";
  EXPECT_EQ(bounded[2].service.id, whole[2].service.id);
  EXPECT_EQ(lb.counter_reads - reads_whole, 2u) << "counters read for the first two only";
  for (std::size_t i = 0; i < 2; ++i) EXPECT_EQ(bounded[i].backends[0].endpoint_id, whole[i].backends[0].endpoint_id);
}

// The live page's read: past the bound only the services with tasks come
// (the poller reads their tasks), not a copy of every other service.
TEST_F(ServiceManagerTest, PageListPastTheBoundHoldsOnlyServicesWithTasks) {
  for (const char* name : {"web", "cache", "db", "app", "zoo"}) {
    ServiceSpec spec{.name = name, .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}};
    if (std::string(name) == "web" || std::string(name) == "cache") spec.command = {"sleep", "1000"};
    manager->create_service(spec);
  }
  const auto page = manager->list_services_for_page(2);
  std::vector<std::string> names;
  for (const auto& d : page) names.push_back(d.service.name);
  EXPECT_EQ(names, (std::vector<std::string>{"app", "cache", "web"}))
      << "the first two by name, then of db, web, zoo only web (it has tasks)";
  EXPECT_EQ(page[2].service.command, (std::vector<std::string>{"sleep", "1000"}));
  EXPECT_EQ(manager->list_services().size(), 5u) << "the whole list still has every service";
}

TEST_F(ServiceManagerTest, LookupParsesItsArgumentsAndAsksTheLoadBalancer) {
  auto s = manager->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  auto r1 = fake.attach(net.id, "r1", s.id);
  const auto lookup = [&](std::string src, std::string dport, std::optional<std::string> proto = {},
                          std::optional<std::string> network = {}, std::string service = "redis") {
    return manager->lookup(
        {.service = service, .network = network, .src = src, .dport = dport, .proto = proto});
  };
  for (const std::string src : {"10.0.0.9", "10.0.0.9:", ":80", "10.0.0.9:0", "10.0.0.9:65536", "10.0.0.300:80",
                                "10.0.0.9:8x", "host:80", ""})
    EXPECT_THAT(error_of([&] { lookup(src, "6379"); }).what(), HasSubstr("invalid source")) << src;
  for (const std::string dport : {"0", "65536", "x", "", "-5"})
    EXPECT_THAT(error_of([&] { lookup("10.0.0.9:40000", dport); }).what(), HasSubstr("invalid destination port"))
        << dport;
  auto e = error_of([&] { lookup("10.0.0.9:40000", "6379", "sctp"); });
  EXPECT_EQ(e.http_status(), 400);
  EXPECT_THAT(e.what(), HasSubstr("unknown protocol"));
  EXPECT_EQ(error_of([&] { lookup("10.0.0.9:40000", "6379", {}, {}, "nope"); }).http_status(), 404);
  e = error_of([&] { lookup("10.0.0.9:40000", "6379"); });
  EXPECT_EQ(e.http_status(), 500);
  EXPECT_THAT(e.what(), HasSubstr("no load balancer on this node"));

  FakeLb lb;
  manager->set_load_balancer(&lb);
  lb.answer = r1.id;
  auto result = lookup("10.0.0.9:40000", "6379", "udp");
  EXPECT_EQ(lb.asked, (std::vector<std::string>{s.id, net.id, "10.0.0.9", "40000", "6379", "udp"}));
  EXPECT_EQ(result.service_id, s.id);
  EXPECT_EQ(result.vip.str(), "10.0.0.2");
  EXPECT_EQ(result.backend_endpoint_id, r1.id);
  EXPECT_EQ(result.backend_ip, r1.ip);
  EXPECT_EQ(result.lb_backend, "ebpf");
  EXPECT_TRUE(result.deterministic);
  lookup("10.0.0.9:1", "1");
  EXPECT_EQ(lb.asked.back(), "tcp") << "tcp is the default";
  lb.answer = std::nullopt;
  EXPECT_FALSE(lookup("10.0.0.9:40000", "6379").deterministic);
  lb.answer = "";
  EXPECT_EQ(lookup("10.0.0.9:40000", "6379").backend_endpoint_id, "");
  manager->create_service({.name = "dns", .networks = {"net-test"}, .endpoint_mode = "dnsrr", .ports = {}});
  EXPECT_THAT(error_of([&] { lookup("10.0.0.9:40000", "53", {}, {}, "dns"); }).what(), HasSubstr("no virtual IP"));
}

TEST_F(ServiceManagerTest, LookupOnSeveralNetworksNeedsOne) {
  auto other = fake.add_network("net-b", "10.0.1.0/24");
  fake.add_network("net-c", "10.0.2.0/24");
  auto s = manager->create_service({.name = "web", .networks = {"net-test", "net-b"}, .endpoint_mode = {}, .ports = {}});
  ASSERT_EQ(s.vips.size(), 2u);
  EXPECT_EQ(s.vips[1].addr.str(), "10.0.1.2");
  FakeLb lb;
  manager->set_load_balancer(&lb);
  auto e = error_of([&] { manager->lookup({.service = "web", .network = {}, .src = "10.0.0.9:1", .dport = "80", .proto = {}}); });
  EXPECT_EQ(e.http_status(), 400);
  EXPECT_THAT(e.what(), HasSubstr("several networks (net-test, net-b)"));
  e = error_of([&] { manager->lookup({.service = "web", .network = "net-c", .src = "10.0.0.9:1", .dport = "80", .proto = {}}); });
  EXPECT_EQ(e.http_status(), 400);
  EXPECT_THAT(e.what(), HasSubstr("service web is not on network net-c"));
  auto r = manager->lookup({.service = "web", .network = "net-b", .src = "10.0.1.9:1", .dport = "80", .proto = {}});
  EXPECT_EQ(r.network_id, other.id);
  EXPECT_EQ(r.vip.str(), "10.0.1.2");
}

TEST_F(ServiceManagerTest, LbViewHasServicesBackendsNetworksAndAttachPoints) {
  std::atomic<int> changes{0};
  manager->on_change([&] { ++changes; });
  auto s = manager->create_service({.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  EXPECT_EQ(changes, 1);
  auto r1 = fake.attach(net.id, "r1", s.id);
  auto client = fake.attach(net.id, "client");
  EXPECT_EQ(changes, 3) << "endpoint changes are service changes too";
  auto view = manager->lb_view();
  ASSERT_EQ(view.services.size(), 1u);
  EXPECT_EQ(view.services[0].id, s.id);
  ASSERT_EQ(view.backends.size(), 1u);
  EXPECT_EQ(view.backends[0].id, r1.id);
  ASSERT_EQ(view.networks.size(), 1u);
  EXPECT_EQ(view.networks[0].network_id, net.id);
  EXPECT_EQ(view.networks[0].bridge, "br0");
  EXPECT_EQ(view.networks[0].gateway.str(), "10.0.0.1");
  EXPECT_EQ(view.attach_points.size(), 2u) << "every local endpoint may send to a VIP";
  manager->remove_service(s.id);
  EXPECT_EQ(changes, 4);
  EXPECT_TRUE(manager->lb_view().services.empty());
}

}  // namespace
}  // namespace weft::control::services

namespace weft::control::services {
namespace {

TEST_F(ServiceManagerTest, ACommandMakesTasksAndUpdateScalesThem) {
  ServiceSpec spec{.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}};
  spec.command = {"redis-server", "--port", "6379"};
  auto s = manager->create_service(spec);
  EXPECT_EQ(s.replicas, 1u);
  EXPECT_EQ(s.command, spec.command);
  auto updated = manager->update_service("redis", ServiceUpdate{.replicas = 4});
  EXPECT_EQ(updated.replicas, 4u);
  EXPECT_EQ(updated.version, 1u);
  start();  // the update was recorded
  EXPECT_EQ(manager->get_service("redis").service.replicas, 4u);
  EXPECT_EQ(error_of([&] { manager->update_service("redis", ServiceUpdate{.replicas = kMaxReplicas + 1}); })
                .http_status(),
            400);
}

TEST_F(ServiceManagerTest, ServicesWithoutACommandHaveNothingToScale) {
  manager->create_service({.name = "plain", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  auto e = error_of([&] { manager->update_service("plain", ServiceUpdate{.replicas = 2}); });
  EXPECT_EQ(e.http_status(), 400);
  EXPECT_THAT(e.what(), HasSubstr("runs no tasks"));
}

TEST_F(ServiceManagerTest, BadTaskInputIsRefusedAndReservesNothing) {
  ServiceSpec spec{.name = "redis", .networks = {"nope"}, .endpoint_mode = {}, .ports = {}};
  spec.command = {"redis-server"};
  EXPECT_EQ(error_of([&] { manager->create_service(spec); }).http_status(), 404);
  spec.networks = {"net-test"};
  spec.command = {""};
  EXPECT_THAT(error_of([&] { manager->create_service(spec); }).what(), HasSubstr("the command is empty"));
  EXPECT_TRUE(fake.reservations().empty());
  EXPECT_TRUE(manager->list_services().empty());
}

TEST_F(ServiceManagerTest, AnUpdateFromAnotherNodeReachesTheCreatorsRecord) {
  ServiceSpec spec{.name = "redis", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}};
  spec.command = {"redis-server"};
  auto s = manager->create_service(spec);
  Service theirs = s;
  theirs.replicas = 3;
  theirs.version = 1;
  manager->apply_remote_service(theirs);
  EXPECT_EQ(manager->get_service("redis").service.replicas, 3u);
  start();
  EXPECT_EQ(manager->get_service("redis").service.replicas, 3u) << "recorded in the state file";
  EXPECT_EQ(manager->local_services().size(), 1u) << "still this node's service";
}

}  // namespace
}  // namespace weft::control::services
