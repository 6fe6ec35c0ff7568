// ApiServer on a real unix socket, driven through the CLI's ApiClient.
#include "control/api/server.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <gtest/gtest.h>

#include "tests/unit/fake_network_service.h"
#include "tools/api_client.h"

namespace weft::control::api {
namespace {

namespace asio = boost::asio;
using nlohmann::json;
using test_support::FakeNetworkService;
using tools::ApiClient;
using tools::ApiConnectionError;
using tools::ApiStatusError;
using verb = boost::beast::http::verb;

mode_t permissions_of(const std::string& path) {
  struct stat status {};
  EXPECT_EQ(::lstat(path.c_str(), &status), 0) << path;
  return status.st_mode & 07777;
}

bool is_socket(const std::string& path) {
  struct stat status {};
  return ::lstat(path.c_str(), &status) == 0 && S_ISSOCK(status.st_mode);
}

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/weft-api-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    // Two levels that do not exist yet: the server has to create them.
    socket_path_ = dir_ + "/run/weft/weftd.sock";
  }

  void TearDown() override {
    stop_server();
    std::filesystem::remove_all(dir_);
  }

  void start_server() {
    server_ = std::make_unique<ApiServer>(io_, socket_path_, service_);
    server_->start();
    io_thread_ = std::thread([this] { io_.run(); });
  }

  // stop() runs on the io thread, as the server requires; run() then
  // returns because nothing is left to do.
  void stop_server() {
    if (!io_thread_.joinable()) return;
    asio::post(io_, [this] { server_->stop(); });
    io_thread_.join();
    server_.reset();
    io_.restart();
  }

  ApiClient client() { return ApiClient("unix://" + socket_path_); }

  std::string dir_;
  std::string socket_path_;
  FakeNetworkService service_;  // touched only on the io thread while it runs
  asio::io_context io_;
  std::unique_ptr<ApiServer> server_;
  std::thread io_thread_;
};

TEST_F(ApiServerTest, CreatesParentDirectoriesAndAnOwnerOnlySocket) {
  start_server();
  ASSERT_TRUE(is_socket(socket_path_));
  EXPECT_EQ(permissions_of(socket_path_), 0600u);
  EXPECT_EQ(permissions_of(dir_ + "/run/weft"), 0755u);
  EXPECT_EQ(permissions_of(dir_ + "/run"), 0755u);
  EXPECT_FALSE(std::filesystem::exists(socket_path_ + ".tmp"));
}

TEST_F(ApiServerTest, ServesTheNetworkLifecycleThroughTheClient) {
  start_server();
  ApiClient api = client();

  const json created = api.call(verb::post, "/networks/create",
                                json{{"Name", "web"}, {"IPAM", {{"Config", {{{"Subnet", "10.9.0.0/24"}}}}}}});
  const std::string id = created.at("Id");
  EXPECT_EQ(id.size(), 64u);

  const json networks = api.call(verb::get, "/networks");
  ASSERT_EQ(networks.size(), 1u);
  EXPECT_EQ(networks[0].at("Name"), "web");
  EXPECT_EQ(networks[0].at("IPAM").at("Config")[0].at("Subnet"), "10.9.0.0/24");

  const json endpoint = api.call(verb::post, "/v1.41/networks/web/connect", json{{"Container", "ns1"}});
  EXPECT_EQ(endpoint.at("Netns"), "ns1");

  const json detail = api.call(verb::get, "/networks/" + id.substr(0, 12));
  EXPECT_EQ(detail.at("Containers").size(), 1u);

  EXPECT_EQ(api.call(verb::post, "/networks/web/disconnect", json{{"Container", "ns1"}}), json::object());
  const auto removed = api.request(verb::delete_, "/networks/web");
  EXPECT_EQ(removed.status, 204u);
  EXPECT_TRUE(removed.text.empty());
  EXPECT_EQ(api.call(verb::get, "/networks"), json::array());

  const auto ping = api.request(verb::get, "/_ping");
  EXPECT_EQ(ping.status, 200u);
  EXPECT_EQ(ping.text, "OK");
  EXPECT_TRUE(ping.json.is_null());
}

TEST_F(ApiServerTest, NonJsonBodyIs400WithMessage) {
  start_server();
  ApiClient api = client();
  const auto response = api.request_raw(verb::post, "/networks/create", "this is not json", "application/json");
  EXPECT_EQ(response.status, 400u);
  EXPECT_NE(response.error_message().find("invalid JSON in request body"), std::string::npos)
      << response.error_message();
  // The connection stays usable after an API-level error.
  EXPECT_EQ(api.request(verb::get, "/_ping").status, 200u);
}

TEST_F(ApiServerTest, CallThrowsTheAgentsMessageOnErrorStatus) {
  start_server();
  ApiClient api = client();
  try {
    api.call(verb::get, "/networks/nope");
    FAIL() << "expected ApiStatusError";
  } catch (const ApiStatusError& e) {
    EXPECT_EQ(e.status(), 404u);
    EXPECT_STREQ(e.what(), "network nope not found");
  }
}

TEST_F(ApiServerTest, BodyOverOneMebibyteIs413) {
  start_server();
  ApiClient api = client();
  const auto response =
      api.request_raw(verb::post, "/networks/create", std::string(1024 * 1024 + 1, ' '), "application/json");
  EXPECT_EQ(response.status, 413u);
  EXPECT_EQ(response.error_message(), "request body exceeds the limit of 1 MiB");
  // The next request gets a fresh connection.
  EXPECT_EQ(api.request(verb::get, "/_ping").status, 200u);
}

TEST_F(ApiServerTest, BodyOfExactlyOneMebibyteIsAccepted) {
  start_server();
  ApiClient api = client();
  std::string body = R"({"Name": "big"})";
  body.resize(1024 * 1024, ' ');
  EXPECT_EQ(api.request_raw(verb::post, "/networks/create", body, "application/json").status, 201u);
}

TEST_F(ApiServerTest, MalformedHttpIs400AndCloses) {
  start_server();
  asio::io_context io;
  asio::local::stream_protocol::socket socket(io);
  socket.connect(asio::local::stream_protocol::endpoint(socket_path_));
  asio::write(socket, asio::buffer(std::string("THIS IS NOT HTTP\r\n\r\n")));

  boost::beast::flat_buffer buffer;
  boost::beast::http::response<boost::beast::http::string_body> response;
  boost::beast::http::read(socket, buffer, response);
  EXPECT_EQ(response.result_int(), 400u);
  EXPECT_FALSE(response.keep_alive());
  EXPECT_NE(response.body().find("malformed HTTP request"), std::string::npos);
}

TEST_F(ApiServerTest, HeadPingKeepsTheConnectionInStep) {
  start_server();
  ApiClient api = client();
  const auto head = api.request(verb::head, "/_ping");
  EXPECT_EQ(head.status, 200u);
  EXPECT_TRUE(head.text.empty());
  // Had the server sent a body, it would be read as this response.
  EXPECT_EQ(api.request(verb::get, "/version").json.at("Version"), "0.1.0");
}

TEST_F(ApiServerTest, ServesSeveralOpenConnections) {
  start_server();
  ApiClient first = client();
  ApiClient second = client();
  EXPECT_EQ(first.request(verb::get, "/_ping").status, 200u);
  EXPECT_EQ(second.request(verb::get, "/_ping").status, 200u);  // while first stays connected
  EXPECT_EQ(first.request(verb::get, "/version").json.at("ApiVersion"), "1.41");
}

TEST_F(ApiServerTest, ClientRecoversWhenTheAgentRestarts) {
  start_server();
  ApiClient api = client();
  EXPECT_EQ(api.request(verb::get, "/_ping").status, 200u);
  stop_server();
  start_server();
  // The kept-alive connection is dead now; the client must reconnect.
  EXPECT_EQ(api.request(verb::get, "/_ping").status, 200u);
}

TEST_F(ApiServerTest, RefusesToStartWhileAnotherAgentListens) {
  start_server();
  asio::io_context other_io;
  FakeNetworkService other_service;
  ApiServer second(other_io, socket_path_, other_service);
  try {
    second.start();
    FAIL() << "second server started on a live socket";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("another agent is already listening on " + socket_path_),
              std::string::npos)
        << e.what();
  }
  // The first one is untouched.
  EXPECT_EQ(client().request(verb::get, "/_ping").status, 200u);
}

TEST_F(ApiServerTest, ReplacesAStaleSocketFile) {
  std::filesystem::create_directories(dir_ + "/run/weft");
  {
    // A socket nobody accepts on any more, as a crashed agent leaves it.
    asio::io_context io;
    asio::local::stream_protocol::acceptor dead(io, asio::local::stream_protocol::endpoint(socket_path_));
  }
  ASSERT_TRUE(is_socket(socket_path_));
  start_server();
  EXPECT_EQ(client().request(verb::get, "/_ping").status, 200u);
  EXPECT_EQ(permissions_of(socket_path_), 0600u);
}

TEST_F(ApiServerTest, RefusesToReplaceSomethingThatIsNotASocket) {
  std::filesystem::create_directories(dir_ + "/run/weft");
  std::ofstream(socket_path_) << "precious";
  ApiServer server(io_, socket_path_, service_);
  EXPECT_THROW(server.start(), std::runtime_error);
  EXPECT_TRUE(std::filesystem::is_regular_file(socket_path_));
}

TEST_F(ApiServerTest, StopRemovesTheSocketFile) {
  start_server();
  ASSERT_TRUE(is_socket(socket_path_));
  stop_server();
  EXPECT_FALSE(std::filesystem::exists(socket_path_));
}

TEST_F(ApiServerTest, ClientReportsAnAgentThatIsNotRunning) {
  ApiClient api("unix://" + dir_ + "/missing.sock");
  try {
    api.request(verb::get, "/_ping");
    FAIL() << "expected ApiConnectionError";
  } catch (const ApiConnectionError& e) {
    EXPECT_EQ(std::string(e.what()), "Cannot connect to the weft agent at unix://" + dir_ +
                                         "/missing.sock. Is weftd running? (connect: No such file or directory)");
  }
}

TEST(ApiClientTest, AcceptsUnixUrlsAndBarePaths) {
  EXPECT_EQ(ApiClient("unix:///run/weft/weftd.sock").socket_path(), "/run/weft/weftd.sock");
  EXPECT_EQ(ApiClient("/tmp/a.sock").host(), "unix:///tmp/a.sock");
  EXPECT_EQ(ApiClient("rel/a.sock").socket_path(), "rel/a.sock");
  EXPECT_THROW(ApiClient("tcp://127.0.0.1:2375"), std::invalid_argument);
  EXPECT_THROW(ApiClient("unix://"), std::invalid_argument);
  EXPECT_THROW(ApiClient(""), std::invalid_argument);
}

TEST(ApiClientTest, EscapesPathSegments) {
  EXPECT_EQ(tools::escape_path_segment("web-1_a.b~"), "web-1_a.b~");
  EXPECT_EQ(tools::escape_path_segment("my net/x?%"), "my%20net%2Fx%3F%25");
}

TEST(ApiClientTest, ErrorMessagePrefersTheAgentsMessage) {
  tools::ApiResponse response;
  response.status = 502;
  EXPECT_EQ(response.error_message(), "HTTP 502");
  response.text = "upstream broke\n";
  EXPECT_EQ(response.error_message(), "upstream broke");
  response.json = json{{"message", "no such network"}};
  EXPECT_EQ(response.error_message(), "no such network");
}

}  // namespace
}  // namespace weft::control::api
