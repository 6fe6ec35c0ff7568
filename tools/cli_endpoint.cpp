// `weft endpoint attach|detach|ls`: endpoints are weft's stand-in for
// containers, a network namespace with one interface on an overlay network.
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <iostream>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include "control/api/json.h"
#include "control/model/names.h"
#include "tools/cli.h"
#include "tools/cli_table.h"

namespace weft::tools {

namespace {

using nlohmann::json;

std::string network_path(const std::string& network, std::string_view action) {
  if (auto error = control::names::network_ref_error(network)) throw ApiStatusError(400, *error);
  return "/networks/" + escape_path_segment(network) + "/" + std::string(action);
}

struct AttachOptions {
  std::string network;
  std::string netns;
  std::string name;
  std::string ip;
  std::string service;
  std::vector<std::string> aliases;
};

int attach(Cli& cli, const AttachOptions& options) {
  json body{{"Container", options.netns}};
  if (!options.name.empty()) body["Name"] = options.name;
  if (!options.ip.empty()) body["EndpointConfig"]["IPAMConfig"] = json{{"IPv4Address", options.ip}};
  if (!options.aliases.empty()) body["EndpointConfig"]["Aliases"] = options.aliases;
  if (!options.service.empty()) body["Service"] = options.service;
  const json endpoint = cli.client().call(http::verb::post, network_path(options.network, "connect"), body);
  // Just the address, so scripts can use it as is: IP=$(weft endpoint attach ...)
  const std::string address = text_field(endpoint, "IPv4Address");
  std::cout << address.substr(0, address.find('/')) << '\n';
  return 0;
}

struct DetachOptions {
  std::string network;
  std::string netns;
  std::optional<std::string> drain;  // whole seconds, as typed
};

std::uint32_t drain_seconds(const std::string& text) {
  std::uint32_t seconds = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (text.empty() || error != std::errc{} || end != text.data() + text.size()) {
    throw ApiStatusError(400, "invalid --drain " + control::names::quoted_preview(text) +
                                  ": want whole seconds from 0 to 4294967295");
  }
  return seconds;
}

int detach(Cli& cli, const DetachOptions& options) {
  json body{{"Container", options.netns}};
  if (options.drain) body["DrainSeconds"] = drain_seconds(*options.drain);
  cli.client().call(http::verb::post, network_path(options.network, "disconnect"), body);
  return 0;
}

// Service ids to names for the SERVICE column; the short id where the agent
// cannot say (no services there, or the service went meanwhile).
std::map<std::string, std::string> service_names(Cli& cli, const json& endpoints) {
  std::map<std::string, std::string> names;
  const bool any = std::any_of(endpoints.begin(), endpoints.end(),
                               [](const json& e) { return !text_field(e, "Service").empty(); });
  if (!any) return names;
  const ApiResponse response = cli.client().request(http::verb::get, "/services");
  if (!response.ok() || !response.json.is_array()) return names;
  for (const json& service : response.json) {
    auto spec = service.find("Spec");
    if (spec == service.end()) continue;
    names[text_field(service, "ID")] = text_field(*spec, "Name");
  }
  return names;
}

struct ListOptions {
  std::string format = "table";
  bool quiet = false;
};

int list(Cli& cli, const ListOptions& options) {
  json endpoints = cli.client().call(http::verb::get, "/endpoints");
  if (!endpoints.is_array()) endpoints = json::array();
  std::stable_sort(endpoints.begin(), endpoints.end(), [](const json& a, const json& b) {
    return std::tuple(text_field(a, "Network"), text_field(a, "Name")) <
           std::tuple(text_field(b, "Network"), text_field(b, "Name"));
  });

  if (options.format == "json") {
    std::cout << control::api::dump(endpoints, 4) << '\n';
    return 0;
  }
  if (options.quiet) {
    for (const json& endpoint : endpoints) std::cout << short_id(text_field(endpoint, "Id")) << '\n';
    return 0;
  }
  // SERVICE and STATE last, so scripts that pick columns by position keep working.
  Table table({"ENDPOINT ID", "NAME", "NETWORK", "NETNS", "INTERFACE", "IPV4 ADDRESS", "MAC ADDRESS", "NODE",
               "SERVICE", "STATE"});
  const auto names = service_names(cli, endpoints);
  for (const json& endpoint : endpoints) {
    const std::string service_id = text_field(endpoint, "Service");
    const auto name = names.find(service_id);
    table.add_row({short_id(text_field(endpoint, "Id")), text_field(endpoint, "Name"), text_field(endpoint, "Network"),
                   text_field(endpoint, "Netns"), text_field(endpoint, "Interface"),
                   text_field(endpoint, "IPv4Address"), text_field(endpoint, "MacAddress"),
                   text_field(endpoint, "Node"), name != names.end() ? name->second : short_id(service_id),
                   text_field(endpoint, "BackendState")});
  }
  table.print(std::cout);
  return 0;
}

struct InspectOptions {
  std::string network;
  std::string netns;
};

// A namespace as endpoints name it: a bare name means /run/netns/NAME.
std::string netns_path(const std::string& netns) {
  return netns.find('/') == std::string::npos ? "/run/netns/" + netns : netns;
}

// The endpoints of NETNS on NETWORK (its name, id or id prefix), from the
// list every agent serves; on several nodes a namespace may have the same
// name, so each match is shown, with its Node.
int inspect(Cli& cli, const InspectOptions& options) {
  if (auto error = control::names::network_ref_error(options.network)) throw ApiStatusError(400, *error);
  json endpoints = cli.client().call(http::verb::get, "/endpoints");
  if (!endpoints.is_array()) endpoints = json::array();
  json found = json::array();
  for (const json& endpoint : endpoints) {
    const std::string network_id = text_field(endpoint, "NetworkID");
    const bool on_network = text_field(endpoint, "Network") == options.network ||
                            (!network_id.empty() && network_id.starts_with(options.network));
    if (on_network && netns_path(text_field(endpoint, "Netns")) == netns_path(options.netns))
      found.push_back(endpoint);
  }
  if (found.empty()) {
    // Printed escaped, as every agent error (print_agent_error).
    throw ApiStatusError(404, "no endpoint of namespace " + options.netns + " on network " + options.network);
  }
  std::cout << control::api::dump(found, 4) << '\n';
  return 0;
}

}  // namespace

void add_endpoint_commands(CLI::App& app, Cli& cli) {
  CLI::App* endpoint = app.add_subcommand("endpoint", "Manage endpoints (network namespaces on networks)");
  endpoint->require_subcommand(0, 1);  // bare "weft endpoint" prints its help

  {
    auto options = std::make_shared<AttachOptions>();
    CLI::App* command = endpoint->add_subcommand("attach", "Attach a network namespace to a network (prints its IP)");
    command->add_option("NETWORK", options->network, "Network name or id")->required();
    command->add_option("--netns", options->netns, "Namespace name under /run/netns, or a path like /proc/PID/ns/net")
        ->required();
    command->add_option("--name", options->name, "Endpoint name (default: the namespace)");
    command->add_option("--ip", options->ip, "IPv4 address to use (default: the next free one)");
    command->add_option("--service", options->service, "Make the endpoint a backend of this service (name or id)");
    command->add_option("--alias", options->aliases,
                        "Another DNS name of the endpoint on the network (repeatable, at most 16)")
        ->type_name("NAME")
        ->allow_extra_args(false);  // one value per --alias, so NETWORK stays free
    on_run(command, cli, [&cli, options] { return attach(cli, *options); });
  }
  {
    auto options = std::make_shared<DetachOptions>();
    CLI::App* command = endpoint->add_subcommand("detach", "Detach a network namespace from a network");
    command->add_option("NETWORK", options->network, "Network name or id")->required();
    command->add_option("--netns", options->netns, "Namespace name or path, as given to attach")->required();
    CLI::Option* drain = command->add_option_function<std::string>(
        "--drain", [options](const std::string& seconds) { options->drain = seconds; },
        "A service backend first gets no new connections and keeps its open ones for up to SECONDS "
        "(the command returns at once)");
    drain->type_name("SECONDS");
    on_run(command, cli, [&cli, options] { return detach(cli, *options); });
  }
  {
    auto options = std::make_shared<InspectOptions>();
    CLI::App* command = endpoint->add_subcommand(
        "inspect", "Show a namespace's endpoint on a network as JSON (its address, DNS server, aliases)");
    command->add_option("NETWORK", options->network, "Network name or id")->required();
    command->add_option("--netns", options->netns, "Namespace name or path, as given to attach")->required();
    on_run(command, cli, [&cli, options] { return inspect(cli, *options); });
  }
  {
    auto options = std::make_shared<ListOptions>();
    CLI::App* command = endpoint->add_subcommand("ls", "List endpoints");
    command->alias("list");
    command->add_option("--format", options->format, "Output format")
        ->check(CLI::IsMember({"table", "json"}))
        ->capture_default_str();
    command->add_flag("-q,--quiet", options->quiet, "Only display endpoint ids");
    on_run(command, cli, [&cli, options] { return list(cli, *options); });
  }
}

}  // namespace weft::tools
