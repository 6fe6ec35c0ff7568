// libFuzzer target for the local API's request handling without a kernel:
// method, target and JSON body -> api::handle_request (routing, percent
// decoding, body parsing, name validation) -> response, against in-memory
// fakes of the network and swarm services.
//
// Input: the first byte picks the method, the bytes up to the first '\n'
// are the target, the rest is the body.
//
// Beyond "no crash, no sanitizer report" it checks that every response is
// well-formed (known status, JSON where it says JSON) and that nothing the
// validation refuses ever reaches a service.
//
// Build (clang 14; links weft_api), from the source root:
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DWEFT_BUILD_FUZZ=ON
//   cmake --build build-fuzz --target api_request_fuzz
//   build-fuzz/bin/api_request_fuzz -max_len=4096 -max_total_time=60
// (tests/integration/fuzz_api_request.sh does this for a bounded run.)
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "control/api/routes.h"
#include "control/model/names.h"
#include "tests/unit/fake_network_service.h"

namespace control = weft::control;
namespace api = weft::control::api;
namespace names = weft::control::names;
namespace http = boost::beast::http;

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "api_request_fuzz: %s: %.*s\n", what, static_cast<int>(std::min<std::size_t>(detail.size(), 200)),
               detail.data());
  std::abort();
}

class FakeSwarm : public control::SwarmService {
 public:
  control::SwarmInitResult init(const control::SwarmInitRequest& request) override {
    if (request.advertise_addr) check_text(*request.advertise_addr, names::kMaxAddress);
    return {"node1id", "WEFT-1-token", "192.0.2.11:7946"};
  }
  void join(const control::SwarmJoinRequest& request) override {
    check_text(request.join_token, names::kMaxJoinToken);
    if (request.remote_addrs.empty() || request.remote_addrs.size() > names::kMaxRemoteAddrs) {
      fail("join with a bad address count", std::to_string(request.remote_addrs.size()));
    }
    for (const auto& address : request.remote_addrs) check_text(address, names::kMaxAddress);
  }
  void leave(const control::SwarmLeaveRequest& request) override {
    if (request.drain_seconds > control::kMaxLeaveDrainSeconds)
      fail("leave with a drain over the limit", std::to_string(request.drain_seconds));
  }
  control::SwarmInfo info() override { return {true, "node1id", "node1", "a2V5", "WEFT-1-token", "192.0.2.11:7946"}; }
  std::vector<control::NodeInfo> list_nodes() override { return {node("node1")}; }
  control::NodeInfo get_node(const std::string& id_or_name) override {
    check_text(id_or_name, names::kMaxNodeRef);
    if (id_or_name != "node1") throw control::ApiError(control::ApiError::Kind::NotFound, "node not found");
    return node(id_or_name);
  }
  void remove_node(const std::string& id_or_name) override { get_node(id_or_name); }

 private:
  static control::NodeInfo node(const std::string& name) {
    return {name, name, "ready", "active", "192.0.2.11:7946", "weft", "alive", true, 1};
  }
  static void check_text(const std::string& text, std::size_t limit) {
    if (auto error = names::text_error("field", text, limit)) fail("swarm service got unvalidated text", *error);
  }
};

constexpr http::verb kMethods[] = {http::verb::get,  http::verb::post,  http::verb::delete_,
                                   http::verb::head, http::verb::put,   http::verb::options};

// Everything the API handed to the network service passed the edge checks.
void check_what_reached_the_service(const control::test_support::FakeNetworkService& service) {
  for (const auto& spec : service.create_requests) {
    if (auto error = names::text_error("network name", spec.name, names::kMaxNetworkName)) {
      fail("unvalidated network name reached the service", *error);
    }
  }
  for (const auto& name : service.remove_requests) {
    if (auto error = names::network_ref_error(name)) fail("unvalidated network ref reached the service", *error);
  }
  for (const auto& request : service.connect_requests) {
    if (auto error = names::network_ref_error(request.network)) fail("unvalidated network ref", *error);
    if (auto error = names::netns_error(request.netns)) fail("unvalidated netns reached the service", *error);
    if (request.name) {
      if (auto error = names::endpoint_name_error(*request.name)) fail("unvalidated endpoint name", *error);
    }
  }
  for (const auto& request : service.disconnect_requests) {
    if (auto error = names::text_error("netns", request.netns, names::kMaxNetnsPath)) fail("unvalidated netns", *error);
  }
}

void check_response(const api::Response& response, http::verb method) {
  switch (response.result_int()) {
    case 200: case 201: case 204: case 400: case 404: case 405: case 409: case 500: case 501: case 503: break;
    default: fail("unexpected status", std::to_string(response.result_int()));
  }
  if (method == http::verb::head || response.result_int() == 204) return;
  const auto type = response[http::field::content_type];
  if (type == "application/json") {
    const auto body = nlohmann::json::parse(response.body(), nullptr, false);
    if (body.is_discarded()) fail("response body is not JSON", response.body());
    if (response.result_int() >= 400 && !(body.is_object() && body.contains("message") && body["message"].is_string())) {
      fail("error response without a message", response.body());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const http::verb method = kMethods[data[0] % std::size(kMethods)];
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto newline = rest.find('\n');
  const std::string_view target = rest.substr(0, newline);
  const std::string_view body = newline == std::string_view::npos ? std::string_view{} : rest.substr(newline + 1);

  control::test_support::FakeNetworkService service;
  service.create_network(control::NetworkSpec{.name = "web"});
  service.create_requests.clear();
  FakeSwarm swarm;

  api::Request request;
  request.method(method);
  request.version(11);
  try {
    request.target(boost::beast::string_view(target.data(), target.size()));
  } catch (const std::exception&) {
    return 0;  // Beast refuses to build such a request line; its parser would too
  }
  request.body() = std::string(body);
  request.prepare_payload();

  const api::Response response = api::handle_request(request, api::Services{service, &swarm});
  check_response(response, method);
  check_what_reached_the_service(service);
  return 0;
}
