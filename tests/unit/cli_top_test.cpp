// `weft top`: the screen it renders from two reads of the state, and the
// whole path (local API GET /api/v1/state -> the feed -> the CLI) against an
// ApiServer with fake services.
#include <unistd.h>

#include <chrono>
#include <filesystem>
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

#include "control/api/routes.h"
#include "control/api/server.h"
#include "observe/cluster_snapshot_source.h"
#include "observe/event_feed.h"
#include "tests/unit/fake_network_service.h"
#include "tests/unit/fake_service_api.h"
#include "tools/cli.h"
#include "tools/cli_top.h"

namespace weft::tools {
namespace {

using observe::ClusterSnapshot;

ClusterSnapshot sample(std::int64_t connections) {
  ClusterSnapshot s;
  s.node = "node1";
  s.version = "0.1.0";
  s.nodes = {{"node1", "192.0.2.1", "Ready", "weft", true}, {"node2", "192.0.2.2", "Down", "weft", false}};
  s.services.push_back({.name = "redis", .id = "abcdefabcdef", .mode = "vip", .vips = {{"demo", "10.0.9.2"}},
                        .ports = {"6379/tcp"}, .replicas = 2, .running = 2,
                        .backends = {{"e1", "redis.1", "10.0.9.11", "node1", "active", connections},
                                     {"e2", "redis.2", "10.0.9.12", "node1", "draining", -1}},
                        .dns_names = {"redis", "tasks.redis"}});
  s.tasks = {{"redis.1", "redis", 1, "node1", "running", "", ""}, {"redis.2", "redis", 2, "node1", "starting", "", ""}};
  return s;
}

TEST(WeftTop, RendersNodesServicesAndBackendRates) {
  const auto before = sample(100), now = sample(150);
  const std::string screen = render_top(now, &before, 2.0);
  EXPECT_NE(screen.find("1/2 nodes ready, 1/2 tasks running, 1 services"), std::string::npos) << screen;
  EXPECT_NE(screen.find("node1 *"), std::string::npos);
  EXPECT_NE(screen.find("Down"), std::string::npos);
  EXPECT_NE(screen.find("redis.1 redis.2(starting)"), std::string::npos) << screen;
  EXPECT_NE(screen.find("10.0.9.2"), std::string::npos);
  EXPECT_NE(screen.find("2 (1 draining)"), std::string::npos);
  EXPECT_NE(screen.find("redis,tasks.redis"), std::string::npos);
  // 50 connections in 2 s.
  EXPECT_NE(screen.find("150           25.0"), std::string::npos) << screen;
  // Without an earlier read there is no rate.
  EXPECT_EQ(render_top(now, nullptr, 0).find("25.0"), std::string::npos);
}

TEST(WeftTop, OnceReadsTheStateThroughTheLocalApi) {
  using control::test_support::FakeNetworkService;
  using control::test_support::FakeServiceApi;
  namespace asio = boost::asio;
  FakeNetworkService networks;
  FakeServiceApi services;
  control::ServiceDetail redis;
  redis.service.id = FakeServiceApi::make_id(1);
  redis.service.name = "redis";
  redis.service.vips = {{"", *dataplane::Ipv4::parse("10.0.9.2"), 24}};
  services.add(redis);
  observe::AgentStateSource source({.node_name = "node1", .advertise_addr = "192.0.2.1", .version = "0.1.0"},
                                   networks, nullptr, &services);
  observe::EventFeed feed(source);

  char pattern[] = "/tmp/weft-top-test-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string dir = pattern, socket_path = dir + "/weftd.sock";
  asio::io_context io;
  control::api::ApiServer server(io, socket_path,
                                 control::api::Services{.networks = networks, .swarm = nullptr,
                                                        .services = &services, .state = &feed});
  server.start();
  std::thread io_thread([&] { io.run(); });
  feed.refresh(std::chrono::steady_clock::now());

  const std::string host = "unix://" + socket_path;
  const char* argv[] = {"weft", "--host", host.c_str(), "top", "--once"};
  std::ostringstream out;
  auto* saved = std::cout.rdbuf(out.rdbuf());
  const int status = run_cli(5, argv);
  std::cout.rdbuf(saved);

  asio::post(io, [&] { server.stop(); });
  io_thread.join();
  std::filesystem::remove_all(dir);
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.str().find("seen from node1"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("192.0.2.1"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("10.0.9.2"), std::string::npos) << out.str();
}

TEST(WeftTop, StateRouteAnswers500WithoutAFeed) {
  control::test_support::FakeNetworkService networks;
  control::api::Request request{boost::beast::http::verb::get, "/api/v1/state", 11};
  const auto response = control::api::handle_request(request, control::api::Services{networks});
  EXPECT_EQ(response.result_int(), 500u);
}

}  // namespace
}  // namespace weft::tools
