// The live page's state JSON, the events derived from successive snapshots,
// the feed's rate limit and heartbeat, and the agent adapter (issue 12).
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "observe/cluster_snapshot.h"
#include "observe/cluster_snapshot_source.h"
#include "observe/event_feed.h"
#include "observe/ui_page.h"
#include "observe/ui_routes.h"
#include "tests/unit/fake_network_service.h"
#include "tests/unit/fake_service_api.h"

namespace weft::observe {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

ClusterSnapshot three_nodes_redis() {
  ClusterSnapshot s;
  s.node = "node1";
  s.nodes = {{"node1", "192.0.2.1", "Ready", "weft", true},
             {"node2", "192.0.2.2", "Ready", "weft", false},
             {"node3", "192.0.2.3", "Ready", "weft", false}};
  SnapshotService redis{.name = "redis", .id = "abcdefabcdef", .mode = "vip", .vips = {{"demo", "10.0.9.2"}},
                        .ports = {"6379/tcp"}, .replicas = 4, .running = 4, .backends = {},
                        .dns_names = {"redis", "tasks.redis"}};
  const char* placement[] = {"node1", "node2", "node3", "node1"};
  for (int slot = 1; slot <= 4; ++slot) {
    s.tasks.push_back({.id = fmt::format("redis.{}", slot), .service = "redis", .slot = std::uint64_t(slot),
                       .node = placement[slot - 1], .state = "running", .since = "2026-11-26T20:00:00Z", .error = ""});
    redis.backends.push_back({.endpoint = fmt::format("e{}", slot), .name = fmt::format("redis.{}", slot),
                              .ip = fmt::format("10.0.9.{}", 10 + slot), .node = placement[slot - 1],
                              .state = "active", .connections = 0});
  }
  s.services.push_back(redis);
  return s;
}

std::vector<std::string> kinds(const std::vector<ClusterEvent>& events) {
  std::vector<std::string> result;
  for (const auto& e : events) result.push_back(e.kind + " " + e.subject + " " + e.detail);
  return result;
}

// --- deriving events ------------------------------------------------------------

TEST(EventDeriver, FirstSnapshotIsTheBaselineAndYieldsNothing) {
  EventDeriver deriver;
  EXPECT_TRUE(deriver.next(three_nodes_redis(), "t0").empty());
  EXPECT_TRUE(deriver.next(three_nodes_redis(), "t1").empty());
}

TEST(EventDeriver, NodeDownThenTasksRescheduledAcrossSnapshots) {
  EventDeriver deriver;
  auto s = three_nodes_redis();
  deriver.next(s, "t0");

  // node3 dies: its node-scoped task record vanishes with it.
  s.nodes[2].state = "Down";
  std::erase_if(s.tasks, [](const auto& t) { return t.node == "node3"; });
  EXPECT_EQ(kinds(deriver.next(s, "t1")), std::vector<std::string>{"node-down node3 192.0.2.3"});

  // A snapshot later, placement puts redis.3 on node2: a reschedule, not a start.
  s.tasks.push_back({.id = "redis.3", .service = "redis", .slot = 3, .node = "node2", .state = "starting",
                     .since = "", .error = ""});
  EXPECT_EQ(kinds(deriver.next(s, "t2")), std::vector<std::string>{"task-rescheduled redis.3 node3 -> node2"});
  s.tasks.back().state = "running";
  EXPECT_EQ(kinds(deriver.next(s, "t3")), std::vector<std::string>{"task-started redis.3 on node2"});

  s.nodes[2].state = "Ready";
  EXPECT_EQ(kinds(deriver.next(s, "t4")), std::vector<std::string>{"node-joined node3 192.0.2.3"});
}

TEST(EventDeriver, NewNodeTaskFailureAndDrainedBackend) {
  EventDeriver deriver;
  auto s = three_nodes_redis();
  deriver.next(s, "t0");
  s.nodes.push_back({"node4", "192.0.2.4", "Ready", "weft", false});
  s.tasks[1].state = "failed";
  s.tasks[1].error = "exit status 1";
  s.services[0].backends[0].state = "draining";
  const auto events = deriver.next(s, "t1");
  EXPECT_EQ(kinds(events), (std::vector<std::string>{"node-joined node4 192.0.2.4",
                                                     "task-failed redis.2 on node2: exit status 1",
                                                     "backend-drained redis redis.1 10.0.9.11 on node1"}));
  EXPECT_EQ(events[0].time, "t1");
  // Still draining a snapshot later: no second event.
  EXPECT_TRUE(deriver.next(s, "t2").empty());
}

TEST(EventDeriver, ScaledDownSlotComingBackElsewhereIsAStart) {
  EventDeriver deriver;
  auto s = three_nodes_redis();
  deriver.next(s, "t0");
  s.services[0].replicas = 3;
  std::erase_if(s.tasks, [](const auto& t) { return t.slot == 4; });
  EXPECT_TRUE(deriver.next(s, "t1").empty());
  s.services[0].replicas = 4;
  s.tasks.push_back({.id = "redis.4", .service = "redis", .slot = 4, .node = "node2", .state = "running",
                     .since = "", .error = ""});
  EXPECT_EQ(kinds(deriver.next(s, "t2")), std::vector<std::string>{"task-started redis.4 on node2"});
}

TEST(EventRing, KeepsTheLastEventsNumbered) {
  EventRing ring(3);
  for (int i = 0; i < 5; ++i) ring.push({.seq = 0, .time = "", .kind = "node-down", .subject = std::to_string(i), .detail = ""});
  ASSERT_EQ(ring.events().size(), 3u);
  EXPECT_EQ(ring.events().front().subject, "2");
  EXPECT_EQ(ring.events().front().seq, 3u);
  EXPECT_EQ(ring.events().back().seq, 5u);
}

// --- rate limit and heartbeat -----------------------------------------------------

TEST(PublishGate, AtMostOncePerIntervalAndNoChangeLost) {
  PublishGate gate(1s);
  const auto t0 = Clock::time_point{} + 100s;
  EXPECT_FALSE(gate.take(t0));  // nothing changed
  gate.changed();
  EXPECT_TRUE(gate.take(t0));
  gate.changed();
  EXPECT_FALSE(gate.take(t0 + 300ms));
  gate.changed();
  EXPECT_FALSE(gate.take(t0 + 999ms));
  EXPECT_TRUE(gate.pending());
  EXPECT_TRUE(gate.take(t0 + 1s));  // the burst, once
  EXPECT_FALSE(gate.take(t0 + 5s));
}

class ScriptedSource : public StateSource {
 public:
  ClusterSnapshot snapshot = three_nodes_redis();
  ClusterSnapshot read() override { return snapshot; }
};

class RecordingSink : public EventSink {
 public:
  std::vector<std::string> frames;
  bool accept = true;
  bool send(std::string frame) override {
    if (!accept) return false;
    frames.push_back(std::move(frame));
    return true;
  }
  bool open() const override { return accept; }
  std::size_t states() const {
    std::size_t n = 0;
    for (const auto& f : frames) n += f.starts_with("event: state\n");
    return n;
  }
  std::size_t heartbeats() const {
    std::size_t n = 0;
    for (const auto& f : frames) n += f == kHeartbeatFrame;
    return n;
  }
};

TEST(EventFeed, PublishesChangesAtMostOncePerSecondWithHeartbeats) {
  ScriptedSource source;
  EventFeed feed(source, {.min_publish_interval = 1000ms, .heartbeat_interval = 15000ms, .recent_events = 10});
  auto sink = std::make_shared<RecordingSink>();
  const auto t0 = Clock::time_point{} + 1000s;
  feed.refresh(t0);
  feed.add_sink(sink);
  ASSERT_EQ(sink->states(), 1u);  // the current state at once

  // A change every 100 ms for 3 s: at most one publication per second.
  for (int i = 1; i <= 30; ++i) {
    source.snapshot.services[0].backends[0].connections = i;
    feed.refresh(t0 + i * 100ms);
  }
  EXPECT_GE(sink->states(), 1u + 2u);
  EXPECT_LE(sink->states(), 1u + 3u);
  // The last change reaches the sink once the second is up.
  feed.refresh(t0 + 4s);
  EXPECT_NE(sink->frames.back().find(R"("connections":30)"), std::string::npos);
  const auto published = sink->states();

  // Quiet: nothing but a heartbeat every 15 s.
  for (int s = 5; s <= 35; ++s) feed.refresh(t0 + std::chrono::seconds(s));
  EXPECT_EQ(sink->states(), published);
  EXPECT_EQ(sink->heartbeats(), 2u);

  // A sink that stopped reading is dropped.
  sink->accept = false;
  source.snapshot.nodes[1].state = "Down";
  feed.refresh(t0 + 40s);
  EXPECT_EQ(feed.sink_count(), 0u);
  const auto state = nlohmann::json::parse(feed.state_json());
  ASSERT_EQ(state["events"].size(), 1u);
  EXPECT_EQ(state["events"][0]["kind"], "node-down");
  EXPECT_EQ(state["events"][0]["subject"], "node2");
}

// --- size -------------------------------------------------------------------------

TEST(ClusterSnapshot, StateJsonOf30NodesAnd400TasksIsUnder200KB) {
  ScriptedSource source;
  auto& s = source.snapshot;
  s = {};
  s.node = "node-01";
  s.version = "0.1.0";
  for (int n = 1; n <= 30; ++n)
    s.nodes.push_back({fmt::format("node-{:02}", n), fmt::format("198.18.0.{}", n), "Ready", "weft", n == 1});
  for (int k = 1; k <= 4; ++k) {
    SnapshotNetwork net{.name = fmt::format("net-{}", k), .id = "0123456789ab", .subnet = fmt::format("10.{}.0.0/16", k),
                        .vni = std::uint32_t(4096 + k), .endpoints_per_node = {}};
    for (const auto& node : s.nodes) net.endpoints_per_node[node.name] = 14;
    s.networks.push_back(net);
  }
  // 40 services x 10 replicas, each task a backend with its counters.
  for (int v = 0; v < 40; ++v) {
    SnapshotService svc{.name = fmt::format("service-{:02}", v), .id = "0123456789ab", .mode = "vip",
                        .vips = {{"net-1", fmt::format("10.1.{}.2", v)}}, .ports = {"8080/tcp", "8080/udp"},
                        .replicas = 10, .running = 10, .backends = {},
                        .dns_names = {fmt::format("service-{:02}", v), fmt::format("tasks.service-{:02}", v)}};
    for (int r = 1; r <= 10; ++r) {
      const auto node = s.nodes[(v * 10 + r) % 30].name;
      s.tasks.push_back({.id = fmt::format("{}.{}", svc.name, r), .service = svc.name, .slot = std::uint64_t(r),
                         .node = node, .state = "running", .since = "2026-11-26T20:00:00.123456789Z", .error = ""});
      svc.backends.push_back({.endpoint = "0123456789ab", .name = fmt::format("{}.{}", svc.name, r),
                              .ip = fmt::format("10.1.{}.{}", v, 10 + r), .node = node, .state = "active",
                              .connections = 123456789});
    }
    s.services.push_back(svc);
  }
  ASSERT_EQ(s.tasks.size(), 400u);
  EventFeed feed(source, {.min_publish_interval = 0ms, .heartbeat_interval = 15000ms, .recent_events = 100});
  feed.refresh(Clock::now());
  // A full ring of events as well.
  for (int i = 0; i < 120; ++i) {
    source.snapshot.nodes[i % 30].state = (i / 30) % 2 == 0 ? "Down" : "Ready";
    feed.refresh(Clock::now());
  }
  const std::string json = feed.state_json();
  EXPECT_EQ(nlohmann::json::parse(json)["events"].size(), 100u);
  EXPECT_EQ(nlohmann::json::parse(json)["tasks"].size(), 400u);
  EXPECT_LT(json.size(), 200u * 1024u) << json.size();
  std::printf("state JSON of 30 nodes, 400 tasks, 100 events: %zu bytes\n", json.size());
}

TEST(ClusterSnapshot, LimitsCutWhatAHugeClusterWouldSend) {
  auto s = three_nodes_redis();
  EXPECT_FALSE(apply_limits(s, {}));
  EXPECT_TRUE(apply_limits(s, {.max_nodes = 2, .max_networks = 1, .max_services = 1, .max_backends_per_service = 1,
                               .max_tasks = 3, .max_dns_names_per_service = 1}));
  EXPECT_EQ(s.nodes.size(), 2u);
  EXPECT_EQ(s.tasks.size(), 3u);
  EXPECT_EQ(s.services[0].backends.size(), 1u);
  EXPECT_EQ(s.services[0].dns_names, std::vector<std::string>{"redis"});
}

TEST(ClusterSnapshot, JsonRoundTrip) {
  const auto s = three_nodes_redis();
  EXPECT_EQ(snapshot_from_json(nlohmann::json::parse(to_json(s).dump())), s);
}

// --- the agent adapter ------------------------------------------------------------

class FakeServicesWithTasks : public control::test_support::FakeServiceApi {
 public:
  std::vector<control::TaskRecord> tasks;
  std::vector<control::TaskRecord> list_tasks(const std::string& id) override {
    std::vector<control::TaskRecord> result;
    for (const auto& t : tasks)
      if (t.service_id == id) result.push_back(t);
    return result;
  }
};

class FakeSwarm : public control::SwarmService {
 public:
  std::vector<control::NodeInfo> nodes;
  control::SwarmInitResult init(const control::SwarmInitRequest&) override { return {}; }
  void join(const control::SwarmJoinRequest&) override {}
  void leave(const control::SwarmLeaveRequest&) override {}
  control::SwarmInfo info() override { return {}; }
  std::vector<control::NodeInfo> list_nodes() override { return nodes; }
  control::NodeInfo get_node(const std::string&) override { return {}; }
  void remove_node(const std::string&) override {}
};

TEST(AgentStateSource, ReadsNodesNetworksServicesBackendsAndTasks) {
  using control::test_support::FakeServiceApi;
  control::test_support::FakeNetworkService networks;
  FakeServicesWithTasks services;
  FakeSwarm swarm;
  const std::string net_id = FakeServiceApi::make_id(1), svc_id = FakeServiceApi::make_id(2);
  networks.networks.push_back({.id = net_id, .name = "demo", .driver = "overlay",
                               .subnet = *dataplane::Cidr::parse("10.0.9.0/24"),
                               .gateway = *dataplane::Ipv4::parse("10.0.9.1"), .vni = 4097, .attachable = true,
                               .created = "", .node = "node1"});
  for (int i = 1; i <= 3; ++i) {
    control::Endpoint e;
    e.id = FakeServiceApi::make_id(10 + i);
    e.name = fmt::format("redis.{}", i);
    e.network_id = net_id;
    e.node = i == 3 ? "node2" : "node1";
    e.service_id = i < 3 ? svc_id : "";
    if (i == 1) e.aliases = {"cache"};
    networks.endpoints.push_back(e);
  }
  control::ServiceDetail detail;
  detail.service.id = svc_id;
  detail.service.name = "redis";
  detail.service.ports = {{6379, control::PortProtocol::tcp}};
  detail.service.vips = {{net_id, *dataplane::Ipv4::parse("10.0.9.2"), 24}};
  detail.service.command = {"redis-server"};
  detail.service.replicas = 2;
  detail.running_tasks = 2;
  detail.backends.push_back({.endpoint_id = FakeServiceApi::make_id(11), .endpoint_name = "redis.1",
                             .network_id = net_id, .ip = *dataplane::Ipv4::parse("10.0.9.11"), .node = "node1",
                             .state = control::BackendState::draining,
                             .counters = control::BackendCounters{.connections = 7, .packets = 0, .bytes = 0}});
  services.add(detail);
  services.tasks.push_back({.service_id = svc_id, .slot = 2, .node = "node2", .endpoint_id = "", .state = "running",
                            .started_at = "2026-11-26T20:00:00Z", .error = "", .pid = 1, .netns = ""});
  swarm.nodes.push_back({.id = "b", .hostname = "node2", .status = "down", .availability = "active",
                         .address = "192.0.2.2:7946", .role = "weft", .membership = "dead", .self = false,
                         .incarnation = 0});
  swarm.nodes.push_back({.id = "a", .hostname = "node1", .status = "ready", .availability = "active",
                         .address = "192.0.2.1:7946", .role = "weft", .membership = "alive", .self = true,
                         .incarnation = 0});

  AgentStateSource source({.node_name = "node1", .advertise_addr = "192.0.2.1", .version = "0.1.0"}, networks, &swarm,
                          &services);
  const auto s = source.read();
  ASSERT_EQ(s.nodes.size(), 2u);
  EXPECT_EQ(s.nodes[0], (SnapshotNode{"node1", "192.0.2.1", "Ready", "weft", true}));
  EXPECT_EQ(s.nodes[1].state, "Down");
  ASSERT_EQ(s.networks.size(), 1u);
  EXPECT_EQ(s.networks[0].subnet, "10.0.9.0/24");
  EXPECT_EQ(s.networks[0].vni, 4097u);
  EXPECT_EQ(s.networks[0].endpoints_per_node, (std::map<std::string, std::uint32_t>{{"node1", 2}, {"node2", 1}}));
  ASSERT_EQ(s.services.size(), 1u);
  const auto& redis = s.services[0];
  EXPECT_EQ(redis.vips, (std::vector<SnapshotVip>{{"demo", "10.0.9.2"}}));
  EXPECT_EQ(redis.ports, std::vector<std::string>{"6379/tcp"});
  EXPECT_EQ(redis.dns_names, (std::vector<std::string>{"redis", "tasks.redis", "cache"}));
  ASSERT_EQ(redis.backends.size(), 1u);
  EXPECT_EQ(redis.backends[0].state, "draining");
  EXPECT_EQ(redis.backends[0].connections, 7);
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].id, "redis.2");
  EXPECT_EQ(s.tasks[0].node, "node2");

  // Outside a swarm: this node alone, Ready.
  AgentStateSource alone({.node_name = "solo", .advertise_addr = "192.0.2.9", .version = ""}, networks, nullptr,
                         nullptr);
  EXPECT_EQ(alone.read().nodes, (std::vector<SnapshotNode>{{"solo", "192.0.2.9", "Ready", "weft", true}}));
}

// Services past max_services are not shown: they are listed without their
// backends (list_services_for_page), yet their tasks still count.
class BoundedServices : public FakeServicesWithTasks {
 public:
  std::vector<std::size_t> bounds;
  std::vector<control::ServiceDetail> list_services_for_page(std::size_t max_with_backends) override {
    bounds.push_back(max_with_backends);
    return FakeServicesWithTasks::list_services_for_page(max_with_backends);
  }
};

TEST(AgentStateSource, ShowsTheFirstServicesByNameWithBackendsAndTasksOfAll) {
  using control::test_support::FakeServiceApi;
  control::test_support::FakeNetworkService networks;
  BoundedServices services;
  const std::string net_id = FakeServiceApi::make_id(1);
  networks.networks.push_back({.id = net_id, .name = "demo", .driver = "overlay",
                               .subnet = *dataplane::Cidr::parse("10.0.9.0/24"),
                               .gateway = *dataplane::Ipv4::parse("10.0.9.1"), .vni = 4097, .attachable = true,
                               .created = "", .node = "node1"});
  int n = 2;
  for (const char* name : {"zeta", "alpha", "mid"}) {  // not in name order, as a fake may list them
    control::ServiceDetail detail;
    detail.service.id = FakeServiceApi::make_id(n++);
    detail.service.name = name;
    detail.service.command = {"sleep", "1d"};
    detail.service.replicas = 1;
    detail.backends.push_back({.endpoint_id = FakeServiceApi::make_id(20 + n), .endpoint_name = name + std::string(".1"),
                               .network_id = net_id, .ip = *dataplane::Ipv4::parse("10.0.9.11"), .node = "node1",
                               .state = control::BackendState::active, .counters = std::nullopt});
    services.add(detail);
    services.tasks.push_back({.service_id = detail.service.id, .slot = 1, .node = "node1", .endpoint_id = "",
                              .state = "running", .started_at = "", .error = "", .pid = 1, .netns = ""});
  }
  AgentStateSource source({.node_name = "node1", .advertise_addr = "192.0.2.1", .version = ""}, networks, nullptr,
                          &services, SnapshotLimits{.max_services = 2});
  const auto s = source.read();
  EXPECT_EQ(services.bounds, std::vector<std::size_t>{2}) << "the list asked for is bounded by max_services";
  ASSERT_EQ(s.services.size(), 2u);
  EXPECT_EQ(s.services[0].name, "alpha");
  EXPECT_EQ(s.services[1].name, "mid");
  ASSERT_EQ(s.services[0].backends.size(), 1u);
  EXPECT_EQ(s.services[0].backends[0].name, "alpha.1");
  ASSERT_EQ(s.services[1].backends.size(), 1u);
  EXPECT_EQ(s.services[1].backends[0].name, "mid.1");
  ASSERT_EQ(s.tasks.size(), 3u) << "a service not shown still has its tasks on the page";
  EXPECT_EQ(s.tasks[2].id, "zeta.1");
}

// The feed diffs against the snapshot it keeps, and keeps it once.
TEST(EventDeriver, KeepsTheSnapshotItWasGivenAsTheBaseline) {
  EventDeriver deriver;
  auto first = std::make_shared<const ClusterSnapshot>(three_nodes_redis());
  deriver.next(first, "t0");
  EXPECT_EQ(deriver.previous().get(), first.get());
}

// --- the page -----------------------------------------------------------------------

TEST(UiPage, IsOneSelfContainedHtmlFileWithTheTestHooks) {
  const auto reply = ui_page_reply({.path = "/ui", .query = "", .accept = ""});
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.content_type, "text/html; charset=utf-8");
  const std::string& page = reply.body;
  EXPECT_TRUE(page.starts_with("<!DOCTYPE html>"));
  EXPECT_TRUE(page.ends_with("</html>\n"));
  for (const char* hook : {"data-node=", "data-task=", "data-vip=", "/api/v1/events", "/api/v1/state", "EventSource"})
    EXPECT_NE(page.find(hook), std::string::npos) << hook;
  // Nothing loaded from elsewhere: the browser may have no internet.
  for (const char* external : {"http://", "https://", "<link", "src="}) EXPECT_EQ(page.find(external), std::string::npos) << external;
}

}  // namespace
}  // namespace weft::observe
