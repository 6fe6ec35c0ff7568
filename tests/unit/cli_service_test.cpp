// `weft service`, `weft lb` and the service options of `weft endpoint`, run
// in-process (run_cli) against an ApiServer with fake services on a unix
// socket: what the commands send, print and exit with.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/api/server.h"
#include "control/api/services.h"
#include "tests/unit/fake_network_service.h"
#include "tests/unit/fake_service_api.h"
#include "tools/cli.h"

namespace weft::tools {
namespace {

namespace asio = boost::asio;
using control::test_support::FakeNetworkService;
using control::test_support::FakeServiceApi;
using nlohmann::json;
using namespace control;

dataplane::Ipv4 ip(const char* text) { return *dataplane::Ipv4::parse(text); }

const std::string kNet = std::string(64, 'e');

ServiceDetail redis() {
  ServiceDetail detail;
  detail.service.id = FakeServiceApi::make_id(1);
  detail.service.name = "redis";
  detail.service.ports = {{6379, PortProtocol::tcp}};
  detail.service.network_ids = {kNet};
  detail.service.vips = {{kNet, ip("10.0.0.2"), 24}};
  detail.service.created = "2024-05-01T12:00:00Z";
  detail.service.node = "node-1";
  ServiceBackendInfo backend;
  backend.endpoint_id = std::string(64, '1');
  backend.endpoint_name = "r1";
  backend.network_id = kNet;
  backend.ip = ip("10.0.0.3");
  backend.node = "node-1";
  backend.counters = BackendCounters{3, 30, 3000};
  detail.backends.push_back(backend);
  backend.endpoint_id = std::string(64, '2');
  backend.ip = ip("10.0.0.4");
  backend.state = BackendState::draining;
  detail.backends.push_back(backend);
  return detail;
}

ServiceDetail dns_only() {
  ServiceDetail detail;
  detail.service.id = FakeServiceApi::make_id(2);
  detail.service.name = "db";
  detail.service.mode = EndpointMode::dnsrr;
  detail.service.network_ids = {kNet};
  return detail;
}

struct CliRun {
  int status = -1;
  std::string out;
  std::string err;
};

class CliServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/weft-cli-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    socket_path_ = dir_ + "/weftd.sock";
    server_ = std::make_unique<api::ApiServer>(io_, socket_path_, api::Services{networks, nullptr, &services});
    server_->start();
    io_thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    asio::post(io_, [this] { server_->stop(); });
    io_thread_.join();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // `weft --host unix://SOCKET ARGS...` with its output captured.
  CliRun weft(std::initializer_list<std::string> args) {
    std::vector<std::string> words{"weft", "--host", "unix://" + socket_path_};
    words.insert(words.end(), args);
    std::vector<const char*> argv;
    for (const std::string& word : words) argv.push_back(word.c_str());

    std::ostringstream out;
    std::ostringstream err;
    auto* saved_out = std::cout.rdbuf(out.rdbuf());
    auto* saved_err = std::cerr.rdbuf(err.rdbuf());
    CliRun run;
    run.status = run_cli(static_cast<int>(argv.size()), argv.data());
    std::cout.rdbuf(saved_out);
    std::cerr.rdbuf(saved_err);
    run.out = out.str();
    run.err = err.str();
    return run;
  }

  FakeNetworkService networks;
  FakeServiceApi services;

 private:
  std::string dir_;
  std::string socket_path_;
  asio::io_context io_;
  std::unique_ptr<api::ApiServer> server_;
  std::thread io_thread_;
};

TEST_F(CliServiceTest, CreateSendsDockersBodyAndPrintsTheFullId) {
  const CliRun run = weft({"service", "create", "--name", "redis", "--network", "net-a", "--network", "net-b",
                        "--endpoint-mode", "dnsrr", "--port", "6379", "--port", "53/udp", "--port", "80/tcp"});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, services.services.at(0).service.id + "\n");
  EXPECT_EQ(run.out.size(), 65u);
  ASSERT_EQ(services.create_requests.size(), 1u);
  const ServiceSpec& spec = services.create_requests[0];
  EXPECT_EQ(spec.name, "redis");
  EXPECT_EQ(spec.networks, (std::vector<std::string>{"net-a", "net-b"}));
  EXPECT_EQ(spec.endpoint_mode, "dnsrr");
  EXPECT_EQ(spec.ports, (std::vector<std::string>{"6379/tcp", "53/udp", "80/tcp"}));
}

TEST_F(CliServiceTest, CreateWithoutModeLeavesItToTheAgent) {
  ASSERT_EQ(weft({"service", "create", "--name", "web", "--network", "net-a"}).status, 0);
  EXPECT_FALSE(services.create_requests.at(0).endpoint_mode.has_value());
  EXPECT_TRUE(services.create_requests.at(0).ports.empty());
}

TEST_F(CliServiceTest, CreateRefusesBadPortsBeforeAskingTheAgent) {
  for (const char* port : {"abc", "0", "70000", "80/sctp", "", "/tcp", "80/", "-1", "8x"}) {
    const CliRun run = weft({"service", "create", "--name", "web", "--network", "net-a", "--port", port});
    EXPECT_EQ(run.status, 1) << port;
    EXPECT_NE(run.err.find("invalid "), std::string::npos) << port << ": " << run.err;
  }
  EXPECT_TRUE(services.create_requests.empty());
}

TEST_F(CliServiceTest, CreateSendsTheCommandReplicasAndRestartCondition) {
  const CliRun run = weft({"service", "create", "--name", "redis", "--network", "net-a", "--replicas", "3",
                           "--restart-condition", "on-failure", "--", "redis-server", "--port", "7000"});
  ASSERT_EQ(run.status, 0) << run.err;
  ASSERT_EQ(services.create_requests.size(), 1u);
  const ServiceSpec& spec = services.create_requests[0];
  EXPECT_EQ(spec.command, (std::vector<std::string>{"redis-server", "--port", "7000"}));
  EXPECT_EQ(spec.replicas, 3u);
  EXPECT_EQ(spec.restart_condition, "on-failure");
}

TEST_F(CliServiceTest, CreateRefusesReplicasThatAreNotANumber) {
  for (const char* replicas : {"four", "", "-1", "2x", "1.5"}) {
    const CliRun run = weft({"service", "create", "--name", "web", "--network", "net-a", "--replicas", replicas,
                             "--", "true"});
    EXPECT_EQ(run.status, 1) << replicas;
    EXPECT_NE(run.err.find("invalid replicas"), std::string::npos) << replicas << ": " << run.err;
  }
  EXPECT_TRUE(services.create_requests.empty());
}

TEST_F(CliServiceTest, CreateReportsTheAgentsErrorWithNonZeroStatus) {
  services.fail_next = std::make_exception_ptr(ApiError(ApiError::Kind::NotFound, "network nope not found"));
  const CliRun run = weft({"service", "create", "--name", "web", "--network", "nope"});
  EXPECT_EQ(run.status, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "Error response from agent: network nope not found\n");
  EXPECT_EQ(weft({"service", "create", "--name", "web"}).status, 2);  // --network is required
}

TEST_F(CliServiceTest, ListShowsModeVipsAndBackends) {
  services.add(redis());
  services.add(dns_only());
  const CliRun run = weft({"service", "ls"});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out,
            "ID             NAME    ENDPOINT MODE   VIPS          BACKENDS          REPLICAS\n"
            "a2a2a2a2a2a2   db      dnsrr                         0                 -\n"
            "a1a1a1a1a1a1   redis   vip             10.0.0.2/24   1 (+1 draining)   -\n");

  const CliRun quiet = weft({"service", "ls", "-q"});
  EXPECT_EQ(quiet.out, "a2a2a2a2a2a2\na1a1a1a1a1a1\n");
  const CliRun as_json = weft({"service", "ls", "--format", "json"});
  ASSERT_EQ(as_json.status, 0);
  EXPECT_EQ(json::parse(as_json.out), json::array({api::service_json(dns_only()), api::service_json(redis())}));
}

TEST_F(CliServiceTest, ListPrintsControlCharactersEscaped) {
  ServiceDetail odd = dns_only();
  odd.service.name = "evil\x1b[2J\nname";
  services.add(odd);
  const CliRun run = weft({"service", "ls"});
  EXPECT_EQ(run.out.find('\x1b'), std::string::npos);
  EXPECT_NE(run.out.find("evil\\x1b[2J\\nname"), std::string::npos) << run.out;
}

TEST_F(CliServiceTest, InspectPrintsAJsonArrayAndFailsForWhatIsMissing) {
  services.add(redis());
  const CliRun run = weft({"service", "inspect", "redis", "nope"});
  EXPECT_EQ(run.status, 1);
  EXPECT_EQ(json::parse(run.out), json::array({api::service_json(redis())}));
  EXPECT_EQ(run.err, "Error response from agent: service nope not found\n");
  EXPECT_EQ(weft({"service", "inspect", "redis"}).status, 0);
  const CliRun overlong = weft({"service", "inspect", std::string(65, 'x')});
  EXPECT_EQ(overlong.status, 1);
  EXPECT_NE(overlong.err.find("service name or id"), std::string::npos) << overlong.err;
}

TEST_F(CliServiceTest, RemovePrintsEachRemovedServiceAndFailsForTheRest) {
  services.add(redis());
  const CliRun run = weft({"service", "rm", "redis", "nope"});
  EXPECT_EQ(run.status, 1);
  EXPECT_EQ(run.out, "redis\n");
  EXPECT_EQ(run.err, "Error response from agent: service nope not found\n");
  EXPECT_EQ(services.remove_requests, (std::vector<std::string>{"redis", "nope"}));
  EXPECT_TRUE(services.services.empty());
}

TEST_F(CliServiceTest, EndpointAttachWithServiceAndDetachWithDrain) {
  networks.create_network(NetworkSpec{.name = "net-a"});
  const CliRun attach = weft({"endpoint", "attach", "net-a", "--netns", "c1", "--service", "redis", "--name", "r1"});
  ASSERT_EQ(attach.status, 0) << attach.err;
  EXPECT_EQ(attach.out, "10.0.0.2\n");
  EXPECT_EQ(networks.connect_requests.at(0).service, "redis");
  EXPECT_EQ(networks.connect_requests.at(0).name, "r1");

  const CliRun detach = weft({"endpoint", "detach", "net-a", "--netns", "c1", "--drain", "30"});
  ASSERT_EQ(detach.status, 0) << detach.err;
  EXPECT_EQ(networks.disconnect_requests.at(0).drain_seconds, 30u);
}

TEST_F(CliServiceTest, PlainAttachAndDetachSendNoServiceOrDrain) {
  networks.create_network(NetworkSpec{.name = "net-a"});
  ASSERT_EQ(weft({"endpoint", "attach", "net-a", "--netns", "c1"}).status, 0);
  ASSERT_EQ(weft({"endpoint", "detach", "net-a", "--netns", "c1"}).status, 0);
  EXPECT_FALSE(networks.connect_requests.at(0).service.has_value());
  EXPECT_FALSE(networks.disconnect_requests.at(0).drain_seconds.has_value());
}

TEST_F(CliServiceTest, DetachRefusesABadDrainBeforeAskingTheAgent) {
  networks.create_network(NetworkSpec{.name = "net-a"});
  ASSERT_EQ(weft({"endpoint", "attach", "net-a", "--netns", "c1"}).status, 0);
  for (const char* drain : {"-1", "abc", "1.5", "4294967296", ""}) {
    const CliRun run = weft({"endpoint", "detach", "net-a", "--netns", "c1", "--drain", drain});
    EXPECT_NE(run.status, 0) << drain;
    EXPECT_NE(run.err.find("--drain"), std::string::npos) << drain << ": " << run.err;
  }
  EXPECT_TRUE(networks.disconnect_requests.empty());
}

TEST_F(CliServiceTest, EndpointListShowsServiceNameAndState) {
  services.add(redis());
  networks.create_network(NetworkSpec{.name = "net-a"});
  for (const char* netns : {"c1", "c2", "c3"}) {
    ASSERT_EQ(weft({"endpoint", "attach", "net-a", "--netns", netns}).status, 0);
  }
  networks.endpoints[1].service_id = FakeServiceApi::make_id(1);
  networks.endpoints[2].service_id = FakeServiceApi::make_id(9);  // not (or no longer) known: its short id
  networks.endpoints[2].backend_state = BackendState::draining;
  networks.endpoints[2].drain_until = "2024-05-01T12:00:30Z";

  const CliRun run = weft({"endpoint", "ls"});
  ASSERT_EQ(run.status, 0) << run.err;
  std::istringstream lines(run.out);
  std::string header, plain, backend, draining;
  std::getline(lines, header);
  std::getline(lines, plain);
  std::getline(lines, backend);
  std::getline(lines, draining);
  EXPECT_TRUE(header.ends_with("NODE     SERVICE        STATE")) << header;
  EXPECT_TRUE(plain.ends_with("node-1")) << plain;
  EXPECT_TRUE(backend.ends_with("node-1   redis          active")) << backend;
  EXPECT_TRUE(draining.ends_with("node-1   a9a9a9a9a9a9   draining")) << draining;

  const json listed = json::parse(weft({"endpoint", "ls", "--format", "json"}).out);
  EXPECT_EQ(listed.at(2).at("DrainUntil"), "2024-05-01T12:00:30Z");
}

// Issue 10: --alias (repeatable) goes as Docker's EndpointConfig.Aliases;
// endpoint ls --format json and endpoint inspect show the DNS address and
// the aliases.
TEST_F(CliServiceTest, EndpointAliasesAndTheirDnsAddress) {
  networks.create_network(NetworkSpec{.name = "net-a"});
  const CliRun attach = weft({"endpoint", "attach", "net-a", "--alias", "db", "--netns", "c1", "--alias",
                              "cache.local", "--ip", "10.0.0.9"});
  ASSERT_EQ(attach.status, 0) << attach.err;
  EXPECT_EQ(networks.connect_requests.at(0).aliases, (std::vector<std::string>{"db", "cache.local"}));
  EXPECT_EQ(networks.connect_requests.at(0).ip, "10.0.0.9");
  ASSERT_EQ(weft({"endpoint", "attach", "net-a", "--netns", "/proc/42/ns/net"}).status, 0);
  EXPECT_TRUE(networks.connect_requests.at(1).aliases.empty());

  const json listed = json::parse(weft({"endpoint", "ls", "--format", "json"}).out);
  ASSERT_EQ(listed.size(), 2u);
  for (const json& e : listed) {
    EXPECT_EQ(e.at("DNS"), "127.0.0.11");
    EXPECT_EQ(e.at("Aliases"), (e.at("Netns") == "c1" ? json{"db", "cache.local"} : json::array()));
  }

  for (const char* netns : {"c1", "/run/netns/c1"}) {
    const CliRun run = weft({"endpoint", "inspect", "net-a", "--netns", netns});
    ASSERT_EQ(run.status, 0) << run.err;
    const json shown = json::parse(run.out);
    ASSERT_EQ(shown.size(), 1u) << run.out;
    EXPECT_EQ(shown.at(0).at("IPv4Address"), "10.0.0.9/24");
    EXPECT_EQ(shown.at(0).at("DNS"), "127.0.0.11");
    EXPECT_EQ(shown.at(0).at("Aliases"), (json{"db", "cache.local"}));
  }
  const CliRun by_id = weft({"endpoint", "inspect", networks.networks.at(0).id.substr(0, 6), "--netns", "/proc/42/ns/net"});
  ASSERT_EQ(by_id.status, 0) << by_id.err;
  EXPECT_EQ(json::parse(by_id.out).at(0).at("Aliases"), json::array());
  const CliRun missing = weft({"endpoint", "inspect", "net-a", "--netns", "c2"});
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.err.find("no endpoint of namespace c2 on network net-a"), std::string::npos) << missing.err;
  EXPECT_NE(weft({"endpoint", "inspect", "net-b", "--netns", "c1"}).status, 0);
}

TEST_F(CliServiceTest, LbLookupPrintsTheMaglevBackend) {
  services.add(redis());
  services.lookup_result.network_id = kNet;
  services.lookup_result.vip = ip("10.0.0.2");
  services.lookup_result.backend_endpoint_id = std::string(64, '1');
  services.lookup_result.backend_ip = ip("10.0.0.3");
  services.lookup_result.lb_backend = "ebpf";
  const CliRun run = weft({"lb", "lookup", "redis", "--src", "10.0.0.9:40000", "--dport", "6379", "--proto", "udp",
                        "--network", "net a"});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "10.0.0.3 (endpoint 111111111111, ebpf Maglev)\n");
  const LbLookupRequest& request = services.lookup_requests.at(0);
  EXPECT_EQ(request.service, "redis");
  EXPECT_EQ(request.src, "10.0.0.9:40000");
  EXPECT_EQ(request.dport, "6379");
  EXPECT_EQ(request.proto, "udp");
  EXPECT_EQ(request.network, "net a");

  const CliRun as_json = weft({"lb", "lookup", "redis", "--src", "10.0.0.9:40000", "--dport", "6379", "--format", "json"});
  ASSERT_EQ(as_json.status, 0);
  LbLookupResult answered = services.lookup_result;
  answered.service_id = FakeServiceApi::make_id(1);
  EXPECT_EQ(json::parse(as_json.out), api::lb_lookup_json(answered, "redis"));
  EXPECT_FALSE(services.lookup_requests.at(1).proto.has_value());
  EXPECT_FALSE(services.lookup_requests.at(1).network.has_value());
}

TEST_F(CliServiceTest, LbLookupWithNftablesOrWithoutBackend) {
  services.add(redis());
  services.lookup_result.network_id = kNet;
  services.lookup_result.lb_backend = "nftables";
  services.lookup_result.deterministic = false;
  CliRun run = weft({"lb", "lookup", "redis", "--src", "10.0.0.9:1", "--dport", "6379"});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "random per connection (nftables): any of 1 backend\n");  // the draining one is not counted

  services.lookup_result.lb_backend = "ebpf";
  services.lookup_result.deterministic = true;
  run = weft({"lb", "lookup", "redis", "--src", "10.0.0.9:1", "--dport", "6379"});
  EXPECT_EQ(run.out, "no backend (ebpf): new connections are refused\n");
}

TEST_F(CliServiceTest, LbLookupPrintsControlCharactersEscaped) {
  services.add(redis());
  services.lookup_result.lb_backend = "odd\x1b[2J";
  const CliRun run = weft({"lb", "lookup", "redis", "--src", "10.0.0.9:1", "--dport", "6379"});
  EXPECT_EQ(run.out, "no backend (odd\\x1b[2J): new connections are refused\n");
}

TEST_F(CliServiceTest, LbLookupReportsErrors) {
  const CliRun unknown = weft({"lb", "lookup", "nope", "--src", "10.0.0.9:1", "--dport", "1"});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_EQ(unknown.err, "Error response from agent: service nope not found\n");
  EXPECT_EQ(weft({"lb", "lookup", "redis", "--dport", "1"}).status, 2);  // --src is required
}

}  // namespace
}  // namespace weft::tools
