// `weft lb lookup`: which backend the node's load balancer gives a flow,
// answered from the same table the data plane uses (Katran's simulator idea).
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "control/api/json.h"
#include "control/api/services.h"
#include "control/model/names.h"
#include "tools/cli.h"

namespace weft::tools {

namespace {

using nlohmann::json;

struct LookupOptions {
  std::string service;
  std::string src;
  std::string dport;
  std::string proto;
  std::string network;
  std::string format = "text";
};

std::string lookup_target(const LookupOptions& options) {
  std::string target = "/lb/lookup?service=" + escape_path_segment(options.service) +
                       "&src=" + escape_path_segment(options.src) + "&dport=" + escape_path_segment(options.dport);
  if (!options.proto.empty()) target += "&proto=" + escape_path_segment(options.proto);
  if (!options.network.empty()) target += "&network=" + escape_path_segment(options.network);
  return target;
}

// Active backends of the service on the lookup's network; nullopt when the
// agent cannot say.
std::optional<std::size_t> active_backends(ApiClient& client, const json& result) {
  const std::string service_id = text_field(result, "ServiceID");
  if (service_id.empty()) return std::nullopt;
  const ApiResponse response = client.request(http::verb::get, service_path(service_id));
  if (!response.ok() || !response.json.is_object()) return std::nullopt;
  auto backends = response.json.find("Backends");
  if (backends == response.json.end() || !backends->is_array()) return std::nullopt;
  std::size_t count = 0;
  for (const json& backend : *backends) {
    if (text_field(backend, "State") == "active" &&
        text_field(backend, "NetworkID") == text_field(result, "NetworkID")) {
      ++count;
    }
  }
  return count;
}

std::string describe(ApiClient& client, const json& result) {
  const std::string lb = text_field(result, "LbBackend");
  const bool deterministic = !result.is_object() || result.value("Deterministic", true);
  if (!deterministic) {
    const auto count = active_backends(client, result);
    if (count && *count == 0) return "no backend (" + lb + "): new connections are refused";
    std::string text = "random per connection (" + lb + ")";
    if (count) text += ": any of " + std::to_string(*count) + (*count == 1 ? " backend" : " backends");
    return text;
  }
  const json backend = result.is_object() ? result.value("Backend", json()) : json();
  if (!backend.is_object()) return "no backend (" + lb + "): new connections are refused";
  return text_field(backend, "Addr") + " (endpoint " + short_id(text_field(backend, "EndpointID")) + ", " +
         (lb == "ebpf" ? "ebpf Maglev" : lb) + ")";
}

int lookup(Cli& cli, const LookupOptions& options) {
  service_path(options.service);  // a reference no service can have is refused here
  ApiClient client = cli.client();
  const json result = client.call(http::verb::get, lookup_target(options));
  if (options.format == "json") {
    std::cout << control::api::dump(result, 4) << '\n';
    return 0;
  }
  // The agent's strings may hold anything a peer stored; keep the terminal safe.
  std::cout << control::names::printable(describe(client, result)) << '\n';
  return 0;
}

}  // namespace

void add_lb_commands(CLI::App& app, Cli& cli) {
  CLI::App* lb = app.add_subcommand("lb", "Ask the service load balancer");
  lb->require_subcommand(0, 1);  // bare "weft lb" prints its help

  auto options = std::make_shared<LookupOptions>();
  CLI::App* command = lb->add_subcommand("lookup", "Which backend a new flow to a service's VIP would get");
  command->add_option("SERVICE", options->service, "Service name or id")->required();
  command->add_option("--src", options->src, "The client's IP:PORT")->required();
  command->add_option("--dport", options->dport, "Destination port on the VIP")->required();
  command->add_option("--proto", options->proto, "tcp (default) or udp");
  command->add_option("--network", options->network, "The VIP's network (when the service has several)");
  command->add_option("--format", options->format, "Output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  on_run(command, cli, [&cli, options] { return lookup(cli, *options); });
}

}  // namespace weft::tools
