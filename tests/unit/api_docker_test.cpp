// The Docker Engine API as Docker's clients use it (docker_engine.h): version
// negotiation, /_ping's headers, /version, /info, Docker's node and swarm
// shapes, the bodies the docker CLI really sends, 501s, and /events' query.
// The contract tests name every field Docker's CLI templates and
// docker-swarm-visualizer read, so renaming one fails here.
#include "control/api/docker_engine.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/api/event_watcher.h"
#include "control/api/events.h"
#include "control/api/routes.h"
#include "control/model/model.h"
#include "tests/unit/fake_network_service.h"

namespace weft::control::api {
namespace {

using nlohmann::json;
using test_support::FakeNetworkService;

// Bodies captured from Debian's docker.io 20.10 CLI (a recording server on a
// unix socket): `docker swarm init`, `... --advertise-addr 192.0.2.11`,
// `docker swarm join --token T 192.0.2.11:7946`, `docker network connect n c1`.
constexpr const char* kCliInitBody =
    R"({"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"","DataPathAddr":"","DataPathPort":0,"ForceNewCluster":false,)"
    R"("Spec":{"Labels":null,"Orchestration":{},"Raft":{"ElectionTick":0,"HeartbeatTick":0},"Dispatcher":{},)"
    R"("CAConfig":{},"TaskDefaults":{},"EncryptionConfig":{"AutoLockManagers":false}},"AutoLockManagers":false,)"
    R"("Availability":"","DefaultAddrPool":null,"SubnetSize":24})";
constexpr const char* kCliInitWithAddressBody =
    R"({"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"192.0.2.11","DataPathAddr":"","DataPathPort":0,)"
    R"("ForceNewCluster":false,"Spec":{"Labels":null},"AutoLockManagers":false,"Availability":"",)"
    R"("DefaultAddrPool":null,"SubnetSize":24})";
constexpr const char* kCliJoinBody =
    R"({"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"","DataPathAddr":"","RemoteAddrs":["192.0.2.11:7946"],)"
    R"("JoinToken":"T","Availability":""})";
constexpr const char* kCliConnectBody =
    R"({"Container":"c1","EndpointConfig":{"IPAMConfig":{},"Links":null,"Aliases":[],"NetworkID":"",)"
    R"("EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"",)"
    R"("GlobalIPv6PrefixLen":0,"MacAddress":"","DriverOpts":{}}})";

class FakeSwarm : public SwarmService {
 public:
  bool active = false;
  std::vector<SwarmInitRequest> inits;
  std::vector<SwarmJoinRequest> joins;
  std::vector<NodeInfo> nodes;

  SwarmInitResult init(const SwarmInitRequest& request) override {
    inits.push_back(request);
    active = true;
    SwarmInitResult result;
    result.node_id = "selfid0000000000000000001";
    result.join_token = "WEFT-1-key";
    result.advertise = "192.0.2.11:7946";
    return result;
  }
  void join(const SwarmJoinRequest& request) override {
    joins.push_back(request);
    active = true;
  }
  void leave(const SwarmLeaveRequest&) override { active = false; }
  SwarmInfo info() override {
    SwarmInfo info;
    info.active = active;
    info.node_id = "selfid0000000000000000001";
    info.node_name = "node1";
    if (active) {
      info.gossip_key_base64 = "a2V5";
      info.join_token = "WEFT-1-key";
      info.advertise = "192.0.2.11:7946";
    }
    return info;
  }
  std::vector<NodeInfo> list_nodes() override {
    std::lock_guard lock(nodes_mutex);
    if (!active) throw ApiError(ApiError::Kind::Conflict, "this node is not part of a swarm");
    return nodes;
  }
  // For a test whose watcher thread reads the nodes meanwhile.
  void set_status(std::size_t i, const std::string& status) {
    std::lock_guard lock(nodes_mutex);
    nodes.at(i).status = status;
  }
  std::mutex nodes_mutex;
  NodeInfo get_node(const std::string& id) override {
    for (const auto& n : list_nodes())
      if (n.id == id || n.hostname == id) return n;
    throw ApiError(ApiError::Kind::NotFound, "node " + id + " not found");
  }
  void remove_node(const std::string&) override {}
  void set_node_availability(const std::string& id, const std::string& availability) override {
    availability_set.emplace_back(id, availability);
  }
  std::vector<std::pair<std::string, std::string>> availability_set;
};

NodeInfo node(std::string id, std::string hostname, std::string status, std::string address, std::string role,
              bool self = false) {
  NodeInfo n;
  n.id = std::move(id);
  n.hostname = std::move(hostname);
  n.status = std::move(status);
  n.availability = "active";
  n.address = std::move(address);
  n.role = std::move(role);
  n.membership = n.status == "ready" ? "alive" : "dead";
  n.self = self;
  n.incarnation = 3;
  return n;
}

std::vector<NodeInfo> three_nodes() {
  return {node("selfid0000000000000000001", "node1", "ready", "192.0.2.11:7946", "weft", true),
          node("downid0000000000000000002", "node2", "down", "192.0.2.12:7946", "weft"),
          node("serf-agent", "serf-agent", "ready", "192.0.2.13:7946", "serf")};
}

SwarmInfo active_with_key(std::string key) {
  SwarmInfo info;
  info.active = true;
  info.gossip_key_base64 = std::move(key);
  return info;
}

class ApiDockerTest : public ::testing::Test {
 protected:
  Response send(http::verb method, const std::string& target, const std::string& body = "") {
    Request request{method, target, 11};
    request.body() = body;
    request.prepare_payload();
    return handle_request(request, Services{.networks = networks, .swarm = &swarm, .docker = &docker});
  }
  static json body_json(const Response& response) { return json::parse(response.body()); }
  static std::string message_of(const Response& response) { return body_json(response).at("message"); }

  // Every key at `path` ("Swarm.Cluster") of `document` is there.
  static void expect_fields(const json& document, const std::vector<std::string>& fields) {
    for (const auto& field : fields) {
      const json* at = &document;
      std::string rest = field;
      while (!rest.empty()) {
        const auto dot = rest.find('.');
        const std::string key = rest.substr(0, dot);
        rest = dot == std::string::npos ? "" : rest.substr(dot + 1);
        ASSERT_TRUE(at->is_object() && at->contains(key)) << "missing " << field << " in " << document.dump();
        at = &at->at(key);
      }
    }
  }

  FakeNetworkService networks;
  FakeSwarm swarm;
  DockerEngineState docker;
};

// --- versions -------------------------------------------------------------------

TEST_F(ApiDockerTest, PingHasDockerdsHeadersOnGetAndHead) {
  for (auto method : {http::verb::get, http::verb::head}) {
    const Response ping = send(method, "/_ping");
    EXPECT_EQ(ping.result_int(), 200u);
    EXPECT_EQ(ping["Api-Version"], "1.41");
    EXPECT_EQ(ping["Docker-Experimental"], "false");
    EXPECT_EQ(ping["OSType"], "linux");
    EXPECT_EQ(ping["Cache-Control"], "no-cache, no-store, must-revalidate");
    EXPECT_EQ(ping["Swarm"], "inactive");
  }
}

TEST_F(ApiDockerTest, PingsSwarmHeaderFollowsInitAndLeave) {
  ASSERT_EQ(send(http::verb::post, "/v1.41/swarm/init", kCliInitBody).result_int(), 200u);
  EXPECT_EQ(send(http::verb::head, "/_ping")["Swarm"], "active/manager");
  ASSERT_EQ(send(http::verb::post, "/v1.41/swarm/leave?force=1").result_int(), 200u);
  EXPECT_EQ(send(http::verb::get, "/v1.41/_ping")["Swarm"], "inactive");
}

TEST_F(ApiDockerTest, VersionHasWhatTheCliPrints) {
  const json version = body_json(send(http::verb::get, "/v1.41/version"));
  expect_fields(version, {"Version", "ApiVersion", "MinAPIVersion", "Os", "Arch", "KernelVersion", "GoVersion",
                          "GitCommit", "Components", "Platform.Name"});
  EXPECT_EQ(version["ApiVersion"], "1.41");
  EXPECT_EQ(version["MinAPIVersion"], "1.24");
  EXPECT_EQ(version["Os"], "linux");
  EXPECT_EQ(version["Version"], std::string(kWeftVersion));
  EXPECT_NE(version["Arch"], "x86_64");  // Go's names: amd64, arm64
  EXPECT_EQ(version["Components"][0]["Name"], "Engine");
  EXPECT_EQ(version["Components"][0]["Details"]["ApiVersion"], "1.41");
}

TEST_F(ApiDockerTest, ServesVersions124To141AndRefusesOthersAsDockerd) {
  EXPECT_EQ(send(http::verb::get, "/v1.24/version").result_int(), 200u);
  EXPECT_EQ(send(http::verb::get, "/v1.41/networks").result_int(), 200u);
  EXPECT_EQ(send(http::verb::get, "/v1.30/info").result_int(), 200u);

  const Response too_new = send(http::verb::get, "/v1.99/version");
  EXPECT_EQ(too_new.result_int(), 400u);
  EXPECT_EQ(message_of(too_new), "client version 1.99 is too new. Maximum supported API version is 1.41");
  const Response too_old = send(http::verb::get, "/v1.23/networks");
  EXPECT_EQ(too_old.result_int(), 400u);
  EXPECT_EQ(message_of(too_old),
            "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a "
            "newer version");
  // The weft CLI's unversioned paths are not versioned requests.
  EXPECT_EQ(send(http::verb::get, "/version").result_int(), 200u);
}

TEST(ApiVersionParse, ParsesOnlyMajorDotMinor) {
  EXPECT_EQ(parse_version_segment("v1.41"), (ApiVersion{1, 41}));
  EXPECT_EQ(parse_version_segment("v1.100"), (ApiVersion{1, 100}));
  EXPECT_FALSE(parse_version_segment("v1"));
  EXPECT_FALSE(parse_version_segment("v1."));
  EXPECT_FALSE(parse_version_segment("v.1"));
  EXPECT_FALSE(parse_version_segment("v1.4x"));
  EXPECT_FALSE(parse_version_segment("v12345.1"));
  EXPECT_TRUE(is_docker_path("/v1.41/nodes?x=1"));
  EXPECT_FALSE(is_docker_path("/nodes"));
}

// --- /info -----------------------------------------------------------------------

const std::vector<std::string> kInfoFields = {
    "ID", "Name", "ServerVersion", "KernelVersion", "OperatingSystem", "OSType", "Architecture", "NCPU", "MemTotal",
    "Containers", "ContainersRunning", "Images", "Driver", "Plugins.Network", "Swarm.LocalNodeState",
    "Swarm.NodeID", "Swarm.NodeAddr", "Swarm.ControlAvailable", "Swarm.Error", "Swarm.RemoteManagers",
    "Swarm.Nodes", "Swarm.Managers", "Warnings"};

TEST_F(ApiDockerTest, InfoContractWithoutSwarm) {
  const Response response = send(http::verb::get, "/v1.41/info");
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  const json info = body_json(response);
  expect_fields(info, kInfoFields);
  EXPECT_EQ(info["Swarm"]["LocalNodeState"], "inactive");
  EXPECT_FALSE(info["Swarm"].contains("Cluster"));
  EXPECT_EQ(info["Name"], "node1");
  EXPECT_EQ(info["OSType"], "linux");
  EXPECT_GE(info["NCPU"].get<long>(), 1);
  EXPECT_GT(info["MemTotal"].get<long long>(), 0);
  EXPECT_EQ(info["Plugins"]["Network"], json::array({"overlay"}));
  EXPECT_TRUE(info["Warnings"].is_array());
}

TEST_F(ApiDockerTest, InfoContractInASwarm) {
  swarm.active = true;
  swarm.nodes = three_nodes();
  const json info = body_json(send(http::verb::get, "/v1.41/info"));
  expect_fields(info, kInfoFields);
  expect_fields(info, {"Swarm.Cluster.ID", "Swarm.Cluster.Version.Index", "Swarm.Cluster.Spec.Name"});
  const json& s = info["Swarm"];
  EXPECT_EQ(s["LocalNodeState"], "active");
  EXPECT_EQ(s["NodeID"], "selfid0000000000000000001");
  EXPECT_EQ(s["NodeAddr"], "192.0.2.11");
  EXPECT_EQ(s["ControlAvailable"], true);
  EXPECT_EQ(s["Nodes"], 3);
  EXPECT_EQ(s["Managers"], 2);  // the weft nodes, not the serf agent
  // Reachable managers only: the down node is not one to talk to.
  EXPECT_EQ(s["RemoteManagers"], json::array({{{"NodeID", "selfid0000000000000000001"}, {"Addr", "192.0.2.11:7946"}}}));
  EXPECT_EQ(s["Cluster"]["ID"].get<std::string>().size(), 25u);
  EXPECT_EQ(info["ID"], "selfid0000000000000000001");
  EXPECT_EQ(send(http::verb::head, "/_ping")["Swarm"], "active/manager");  // learnt from /info
}

TEST(ClusterId, SameKeySameIdNewKeyNewId) {
  const SwarmInfo a = active_with_key("a2V5");
  const SwarmInfo b = active_with_key("a2V5");
  const SwarmInfo c = active_with_key("b3RoZXI=");
  EXPECT_EQ(cluster_id(a), cluster_id(b));
  EXPECT_NE(cluster_id(a), cluster_id(c));
  EXPECT_EQ(cluster_id(SwarmInfo{}), "");
}

// --- nodes and swarm ----------------------------------------------------------------

TEST_F(ApiDockerTest, NodesContractForDockerClients) {
  swarm.active = true;
  swarm.nodes = three_nodes();
  const Response response = send(http::verb::get, "/v1.41/nodes");
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  const json nodes = body_json(response);
  ASSERT_EQ(nodes.size(), 3u);
  for (const json& node : nodes) {
    // What `docker node ls`, its templates and docker-swarm-visualizer read.
    expect_fields(node, {"ID", "Version.Index", "Description.Hostname", "Description.Platform.OS",
                         "Description.Engine.EngineVersion", "Status.State", "Status.Addr", "Spec.Role",
                         "Spec.Availability"});
  }
  EXPECT_EQ(nodes[0]["Status"], (json{{"State", "ready"}, {"Addr", "192.0.2.11"}}));
  EXPECT_EQ(nodes[0]["Spec"]["Role"], "manager");
  EXPECT_EQ(nodes[0]["Spec"]["Availability"], "active");
  EXPECT_EQ(nodes[0]["ManagerStatus"],
            (json{{"Leader", false}, {"Reachability", "reachable"}, {"Addr", "192.0.2.11:7946"}}));
  EXPECT_EQ(nodes[1]["Status"]["State"], "down");
  EXPECT_EQ(nodes[1]["ManagerStatus"]["Reachability"], "unreachable");
  EXPECT_EQ(nodes[2]["Spec"]["Role"], "worker");
  EXPECT_FALSE(nodes[2].contains("ManagerStatus"));

  const json inspected = body_json(send(http::verb::get, "/v1.41/nodes/node2"));
  EXPECT_EQ(inspected["Description"]["Hostname"], "node2");
  EXPECT_EQ(inspected["Status"]["State"], "down");
}

// `docker node update --availability drain node2` sends the spec it read back
// whole; only the availability may differ.
TEST_F(ApiDockerTest, NodeUpdateTakesTheCliSpecAndChangesOnlyTheAvailability) {
  swarm.active = true;
  swarm.nodes = three_nodes();
  const std::string spec = R"({"Labels": {}, "Role": "manager", "Availability": "drain"})";
  const Response drained = send(http::verb::post, "/v1.41/nodes/node2/update?version=3", spec);
  ASSERT_EQ(drained.result_int(), 200u) << drained.body();
  ASSERT_EQ(swarm.availability_set.size(), 1u);
  EXPECT_EQ(swarm.availability_set[0], (std::pair<std::string, std::string>{"downid0000000000000000002", "drain"}));
  // weft's own CLI sends the availability alone.
  EXPECT_EQ(send(http::verb::post, "/nodes/node1/update", R"({"Availability": "pause"})").result_int(), 200u);
  EXPECT_EQ(swarm.availability_set.back().second, "pause");

  auto refused = [&](const std::string& target, const std::string& body, const std::string& words) {
    const Response r = send(http::verb::post, target, body);
    EXPECT_EQ(r.result_int(), 400u) << body;
    EXPECT_NE(message_of(r).find(words), std::string::npos) << message_of(r);
  };
  refused("/v1.41/nodes/node2/update", R"({"Role": "worker", "Availability": "drain"})", "no role to change");
  refused("/v1.41/nodes/node2/update", R"({"Role": "manager", "Labels": {"zone": "a"}, "Availability": "drain"})",
          "no labels");
  refused("/nodes/node2/update", R"({"Availability": "off"})", "expected active, pause or drain");
  refused("/nodes/node2/update", "{}", "Availability is required");
  refused("/nodes/node2/update", "{", "");
  EXPECT_EQ(send(http::verb::post, "/nodes/nobody/update", R"({"Availability": "drain"})").result_int(), 404u);
  EXPECT_EQ(swarm.availability_set.size(), 2u);  // nothing refused reached the swarm
}

TEST_F(ApiDockerTest, WeftsOwnNodeJsonStaysOnUnversionedPaths) {
  swarm.active = true;
  swarm.nodes = three_nodes();
  const json nodes = body_json(send(http::verb::get, "/nodes"));
  EXPECT_EQ(nodes[0]["Status"], "ready");
  EXPECT_EQ(nodes[0]["Role"], "weft");
  EXPECT_EQ(nodes[0]["Address"], "192.0.2.11:7946");
}

TEST_F(ApiDockerTest, SwarmInitTakesTheCliBodyAndAnswersTheNodeId) {
  const Response response = send(http::verb::post, "/v1.41/swarm/init", kCliInitBody);
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  EXPECT_EQ(body_json(response), "selfid0000000000000000001");
  ASSERT_EQ(swarm.inits.size(), 1u);
  EXPECT_FALSE(swarm.inits[0].advertise_addr);  // "" is the agent's own

  swarm.active = false;
  ASSERT_EQ(send(http::verb::post, "/v1.41/swarm/init", kCliInitWithAddressBody).result_int(), 200u);
  EXPECT_EQ(swarm.inits[1].advertise_addr, "192.0.2.11");

  // weft's CLI keeps its object.
  swarm.active = false;
  EXPECT_EQ(body_json(send(http::verb::post, "/swarm/init", "{}"))["JoinToken"], "WEFT-1-key");
}

TEST_F(ApiDockerTest, SwarmJoinTakesTheCliBody) {
  ASSERT_EQ(send(http::verb::post, "/v1.41/swarm/join", kCliJoinBody).result_int(), 200u);
  ASSERT_EQ(swarm.joins.size(), 1u);
  EXPECT_EQ(swarm.joins[0].join_token, "T");
  EXPECT_EQ(swarm.joins[0].remote_addrs, std::vector<std::string>{"192.0.2.11:7946"});
}

TEST_F(ApiDockerTest, SwarmInspectIsDockersWithJoinTokens) {
  const Response inactive = send(http::verb::get, "/v1.41/swarm");
  EXPECT_EQ(inactive.result_int(), 503u);
  EXPECT_NE(message_of(inactive).find("not a swarm manager"), std::string::npos);

  swarm.active = true;
  const json inspected = body_json(send(http::verb::get, "/v1.41/swarm"));
  expect_fields(inspected, {"ID", "Version.Index", "Spec.Name", "JoinTokens.Worker", "JoinTokens.Manager"});
  EXPECT_EQ(inspected["JoinTokens"]["Worker"], "WEFT-1-key");
  EXPECT_EQ(inspected["ID"], cluster_id(swarm.info()));
  // weft's own path keeps weft's shape.
  EXPECT_EQ(body_json(send(http::verb::get, "/swarm"))["JoinToken"], "WEFT-1-key");
}

TEST_F(ApiDockerTest, NetworkConnectTakesTheCliBody) {
  ASSERT_EQ(send(http::verb::post, "/v1.41/networks/create", R"({"Name":"n","Driver":"overlay"})").result_int(), 201u);
  const Response response = send(http::verb::post, "/v1.41/networks/n/connect", kCliConnectBody);
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  ASSERT_EQ(networks.connect_requests.size(), 1u);
  EXPECT_EQ(networks.connect_requests[0].netns, "c1");
}

TEST_F(ApiDockerTest, NetworkListHonoursDockersFilters) {
  for (const char* name : {"web", "web-2", "db"})
    ASSERT_EQ(send(http::verb::post, "/v1.41/networks/create",
                   json{{"Name", name}, {"Driver", "overlay"}}.dump()).result_int(), 201u);
  auto names = [&](const std::string& filters) {
    const Response response = send(http::verb::get, "/v1.41/networks?filters=" + filters);
    EXPECT_EQ(response.result_int(), 200u) << response.body();
    std::vector<std::string> out;
    for (const json& n : body_json(response)) out.push_back(n["Name"]);
    return out;
  };
  // `docker network ls --filter name=web`: a part of the name, as dockerd.
  EXPECT_EQ(names("%7B%22name%22%3A%7B%22web%22%3Atrue%7D%7D"), (std::vector<std::string>{"web", "web-2"}));
  EXPECT_EQ(names(R"({"driver":["overlay"],"name":["db"]})"), std::vector<std::string>{"db"});
  EXPECT_EQ(names(R"({"driver":["bridge"]})"), std::vector<std::string>{});
  EXPECT_EQ(names(R"({"label":["a=b"]})"), std::vector<std::string>{});
  EXPECT_EQ(names("%7B%7D").size(), 3u);
  const Response bad = send(http::verb::get, R"(/v1.41/networks?filters={"bogus":["x"]})");
  EXPECT_EQ(bad.result_int(), 400u);
  EXPECT_EQ(message_of(bad), "invalid filter 'bogus'");
}

// --- what weft is not ----------------------------------------------------------------

TEST_F(ApiDockerTest, ContainersImagesVolumesAre501WithTheWeftCommand) {
  const Response containers = send(http::verb::get, "/v1.41/containers/json?all=1");
  EXPECT_EQ(containers.result_int(), 501u);
  EXPECT_NE(message_of(containers).find("weft run --network NET -- CMD"), std::string::npos);
  EXPECT_EQ(send(http::verb::post, "/v1.41/containers/create").result_int(), 501u);
  EXPECT_EQ(send(http::verb::get, "/v1.41/images/json").result_int(), 501u);
  EXPECT_EQ(send(http::verb::get, "/v1.41/volumes").result_int(), 501u);
  EXPECT_EQ(send(http::verb::post, "/v1.41/build").result_int(), 501u);
  EXPECT_EQ(send(http::verb::get, "/v1.41/secrets").result_int(), 501u);
  EXPECT_EQ(send(http::verb::get, "/v1.41/configs").result_int(), 501u);
  EXPECT_EQ(send(http::verb::get, "/v1.41/plugins").result_int(), 501u);
  EXPECT_EQ(send(http::verb::post, "/v1.41/swarm/update?rotateWorkerToken=true").result_int(), 501u);
  // Anything else is still unknown.
  EXPECT_EQ(send(http::verb::get, "/v1.41/nope").result_int(), 404u);
}

// --- events ----------------------------------------------------------------------------

TEST(EventQueryTest, ParsesWhatTheCliSends) {
  const EventQuery q = parse_event_query(
      "filters=%7B%22type%22%3A%7B%22network%22%3Atrue%7D%7D&since=1&until=2.5");
  EXPECT_EQ(q.since_nano, 1'000'000'000);
  EXPECT_EQ(q.until_nano, 2'500'000'000);
  EXPECT_EQ(q.filters.at("type"), std::set<std::string>{"network"});

  const EventQuery list = parse_event_query(R"(filters={"event":["create","destroy"],"network":["net-a"]})");
  DockerEvent create{.type = "network", .action = "create", .actor_id = "abc", .attributes = {{"name", "net-a"}}};
  EXPECT_TRUE(list.matches(create));
  create.action = "connect";
  EXPECT_FALSE(list.matches(create));
  DockerEvent node{.type = "node", .action = "create", .actor_id = "net-a"};
  EXPECT_FALSE(list.matches(node));  // a network filter matches networks only

  // Far-future timestamps stay in range (nanoseconds in an int64).
  EXPECT_EQ(parse_event_query("until=999999999999.999999999").until_nano, 9'000'000'000'999'999'999);

  EXPECT_THROW(parse_event_query("filters={\"bogus\":[\"x\"]}"), ApiError);
  EXPECT_THROW(parse_event_query("since=yesterday"), ApiError);
  EXPECT_THROW(parse_event_query("filters=[1]"), ApiError);
}

TEST(EventJsonTest, HasDockersShape) {
  const json event = event_json(DockerEvent{.type = "network", .action = "create", .actor_id = "id1",
                                            .attributes = {{"name", "n"}}, .time_nano = 1'700'000'000'123'456'789});
  EXPECT_EQ(event, (json{{"Type", "network"},
                         {"Action", "create"},
                         {"Actor", {{"ID", "id1"}, {"Attributes", {{"name", "n"}}}}},
                         {"scope", "swarm"},
                         {"time", 1'700'000'000},
                         {"timeNano", 1'700'000'000'123'456'789}}));
}

TEST(EventBusTest, BacklogSinceAndLiveEventsWithoutGapsOrRepeats) {
  EventBus bus(2);
  bus.publish({.type = "network", .action = "create", .actor_id = "a", .time_nano = 10});
  bus.publish({.type = "network", .action = "create", .actor_id = "b", .time_nano = 20});
  bus.publish({.type = "network", .action = "create", .actor_id = "c", .time_nano = 30});
  std::vector<DockerEvent> backlog;
  std::vector<std::string> live;
  const auto id = bus.subscribe([&](const DockerEvent& e) { live.push_back(e.actor_id); }, 15, backlog);
  ASSERT_EQ(backlog.size(), 2u);  // "a" fell out of the bounded history
  EXPECT_EQ(backlog[0].actor_id, "b");
  bus.publish({.type = "network", .action = "destroy", .actor_id = "c", .time_nano = 5});
  EXPECT_EQ(live, std::vector<std::string>{"c"});
  bus.unsubscribe(id);
  EXPECT_EQ(bus.subscribers(), 0u);
  bus.publish({.type = "network", .action = "destroy", .actor_id = "b"});
  EXPECT_EQ(live.size(), 1u);
}

// Its thread compares nodes every period, but networks, endpoints and
// services only when told of a change (or every kResync): listing 100 000
// endpoints each period cost an idle agent most of a core.
TEST(ClusterEventWatcherTest, ItsThreadListsNetworksOnlyWhenToldOfAChange) {
  FakeNetworkService networks;
  FakeSwarm swarm;
  swarm.active = true;
  swarm.nodes = three_nodes();
  EventBus bus;
  std::mutex seen_mutex;
  std::vector<DockerEvent> seen;
  std::vector<DockerEvent> none;
  bus.subscribe(
      [&](const DockerEvent& e) {
        std::lock_guard lock(seen_mutex);
        seen.push_back(e);
      },
      std::nullopt, none);
  auto count = [&](const std::string& type) {
    std::lock_guard lock(seen_mutex);
    return std::count_if(seen.begin(), seen.end(), [&](const DockerEvent& e) { return e.type == type; });
  };
  auto within = [](std::chrono::milliseconds limit, const std::function<bool()>& done) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  };
  ClusterEventWatcher watcher(bus, networks, &swarm, std::chrono::milliseconds(100));
  watcher.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the baseline

  // FakeNetworkService is not thread-safe: it is changed only after the
  // baseline, when the thread lists nodes alone (which FakeSwarm guards).
  NetworkSpec spec;
  spec.name = "unannounced";
  spec.driver = "overlay";
  networks.create_network(spec);
  swarm.set_status(1, "ready");
  EXPECT_TRUE(within(std::chrono::seconds(2), [&] { return count("node") == 1; })) << "nodes every period";
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(count("network"), 0) << "networks listed without a change signalled";

  watcher.changed();
  EXPECT_TRUE(within(std::chrono::seconds(2), [&] { return count("network") == 1; }));
  watcher.stop();
}

TEST(ClusterEventWatcherTest, ReportsNetworkEndpointAndNodeChangesAfterTheBaseline) {
  FakeNetworkService networks;
  FakeSwarm swarm;
  swarm.active = true;
  swarm.nodes = three_nodes();
  EventBus bus;
  std::vector<DockerEvent> seen;
  std::vector<DockerEvent> none;
  bus.subscribe([&](const DockerEvent& e) { seen.push_back(e); }, std::nullopt, none);
  std::atomic<bool> active = false;
  ClusterEventWatcher watcher(bus, networks, &swarm, std::chrono::milliseconds(500), &active);

  NetworkSpec spec;
  spec.name = "before";
  spec.driver = "overlay";
  networks.create_network(spec);
  watcher.poll();
  EXPECT_TRUE(seen.empty()) << "the baseline reports nothing";
  EXPECT_TRUE(active);

  spec.name = "net-a";
  const Network created = networks.create_network(spec);
  AttachRequest attach;
  attach.network = "net-a";
  attach.netns = "c1";
  const Endpoint endpoint = networks.connect(attach);
  swarm.nodes[1].status = "ready";
  swarm.nodes.pop_back();
  watcher.poll();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].type, "network");
  EXPECT_EQ(seen[0].action, "create");
  EXPECT_EQ(seen[0].actor_id, created.id);
  EXPECT_EQ(seen[0].attributes.at("name"), "net-a");
  EXPECT_EQ(seen[1].action, "connect");
  EXPECT_EQ(seen[1].actor_id, created.id);
  EXPECT_EQ(seen[1].attributes.at("container"), endpoint.id);
  EXPECT_EQ(seen[2].type, "node");
  EXPECT_EQ(seen[2].action, "update");
  EXPECT_EQ(seen[2].attributes.at("state.new"), "ready");
  EXPECT_EQ(seen[3].action, "remove");
  EXPECT_EQ(seen[3].attributes.at("name"), "serf-agent");

  seen.clear();
  DetachRequest detach;
  detach.network = "net-a";
  detach.netns = "c1";
  networks.disconnect(detach);
  networks.remove_network("net-a");
  swarm.active = false;
  watcher.poll();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0].action, "disconnect");
  EXPECT_EQ(seen[1].action, "destroy");
  EXPECT_FALSE(active);
}

// A versioned endpoint snapshot (NetworkManager::shared_endpoints) is
// compared by version: the same version is not looked into again, and what
// the watcher keeps between polls is that shared snapshot, not a map of its
// own.
class VersionedNetworks : public FakeNetworkService {
 public:
  std::shared_ptr<const EndpointSnapshot> shared_endpoints() override {
    ++reads;
    if (!snapshot || snapshot->version != version) {
      snapshot = EndpointSnapshot::of(list_endpoints(), version);
    }
    return snapshot;
  }
  std::uint64_t version = 1;
  int reads = 0;
  std::shared_ptr<const EndpointSnapshot> snapshot;
};

TEST(ClusterEventWatcherTest, EndpointsAreComparedByTheSnapshotsVersion) {
  VersionedNetworks networks;
  EventBus bus;
  std::vector<DockerEvent> seen;
  std::vector<DockerEvent> none;
  bus.subscribe([&](const DockerEvent& e) { seen.push_back(e); }, std::nullopt, none);
  ClusterEventWatcher watcher(bus, networks, nullptr);
  NetworkSpec spec;
  spec.name = "net-a";
  spec.driver = "overlay";
  const Network created = networks.create_network(spec);
  watcher.poll();  // the baseline
  ASSERT_TRUE(seen.empty());

  AttachRequest attach;
  attach.network = "net-a";
  attach.netns = "c1";
  const Endpoint endpoint = networks.connect(attach);
  watcher.poll();
  EXPECT_TRUE(seen.empty()) << "an unchanged version is not looked into";
  EXPECT_EQ(networks.snapshot.use_count(), 2) << "kept between polls: the shared snapshot itself";

  ++networks.version;
  watcher.poll();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].action, "connect");
  EXPECT_EQ(seen[0].actor_id, created.id);
  EXPECT_EQ(seen[0].attributes.at("container"), endpoint.id);

  seen.clear();
  DetachRequest detach;
  detach.network = "net-a";
  detach.netns = "c1";
  networks.disconnect(detach);
  ++networks.version;
  watcher.poll();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].action, "disconnect");
  EXPECT_EQ(seen[0].attributes.at("container"), endpoint.id);
  EXPECT_EQ(seen[0].attributes.at("name"), "net-a");
}

}  // namespace
}  // namespace weft::control::api
