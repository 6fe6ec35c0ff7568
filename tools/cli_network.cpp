// `weft network create|ls|inspect|rm`
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "control/api/json.h"
#include "control/model/names.h"
#include "tools/cli.h"
#include "tools/cli_table.h"

namespace weft::tools {

namespace {

using nlohmann::json;

// A reference no network can have is refused here with the agent's own
// message, rather than sent in a URL that may exceed the agent's header limit.
std::string network_path(const std::string& name_or_id) {
  if (auto error = control::names::network_ref_error(name_or_id)) throw ApiStatusError(400, *error);
  return "/networks/" + escape_path_segment(name_or_id);
}

std::string first_subnet(const json& network) {
  if (!network.is_object()) return "";
  auto ipam = network.find("IPAM");
  if (ipam == network.end() || !ipam->is_object()) return "";
  auto configs = ipam->find("Config");
  if (configs == ipam->end() || !configs->is_array() || configs->empty()) return "";
  return text_field(configs->front(), "Subnet");
}

struct CreateOptions {
  std::string name;
  std::string driver = "overlay";
  std::string subnet;
  std::string gateway;
  bool attachable = false;
};

int create(Cli& cli, const CreateOptions& options) {
  json body{{"Name", options.name}, {"Driver", options.driver}, {"Attachable", options.attachable}};
  if (!options.subnet.empty() || !options.gateway.empty()) {
    json config = json::object();
    if (!options.subnet.empty()) config["Subnet"] = options.subnet;
    if (!options.gateway.empty()) config["Gateway"] = options.gateway;
    body["IPAM"] = json{{"Config", json::array({config})}};
  }
  const json created = cli.client().call(http::verb::post, "/networks/create", body);
  std::cout << text_field(created, "Id") << '\n';
  return 0;
}

struct ListOptions {
  std::string format = "table";
  bool quiet = false;
};

int list(Cli& cli, const ListOptions& options) {
  json networks = cli.client().call(http::verb::get, "/networks");
  if (!networks.is_array()) networks = json::array();
  std::stable_sort(networks.begin(), networks.end(),
                   [](const json& a, const json& b) { return text_field(a, "Name") < text_field(b, "Name"); });

  if (options.format == "json") {
    std::cout << control::api::dump(networks, 4) << '\n';
    return 0;
  }
  if (options.quiet) {
    for (const json& network : networks) std::cout << short_id(text_field(network, "Id")) << '\n';
    return 0;
  }
  Table table({"NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET", "NODE"});
  for (const json& network : networks) {
    table.add_row({short_id(text_field(network, "Id")), text_field(network, "Name"), text_field(network, "Driver"),
                   text_field(network, "Scope"), first_subnet(network), text_field(network, "Node")});
  }
  table.print(std::cout);
  return 0;
}

}  // namespace

void add_network_commands(CLI::App& app, Cli& cli) {
  CLI::App* network = app.add_subcommand("network", "Manage overlay networks");
  network->require_subcommand(0, 1);  // bare "weft network" prints its help

  {
    auto options = std::make_shared<CreateOptions>();
    CLI::App* command = network->add_subcommand("create", "Create a network (prints its id)");
    command->add_option("-d,--driver", options->driver, "Network driver")->capture_default_str();
    command->add_option("--subnet", options->subnet, "Subnet in CIDR notation (default: one from the pool)");
    command->add_option("--gateway", options->gateway, "Gateway IPv4 address inside the subnet");
    command->add_flag("--attachable", options->attachable, "Allow endpoints to be attached by hand");
    command->add_option("NAME", options->name, "Network name")->required();
    on_run(command, cli, [&cli, options] { return create(cli, *options); });
  }
  {
    auto options = std::make_shared<ListOptions>();
    CLI::App* command = network->add_subcommand("ls", "List networks");
    command->alias("list");
    command->add_option("--format", options->format, "Output format")
        ->check(CLI::IsMember({"table", "json"}))
        ->capture_default_str();
    command->add_flag("-q,--quiet", options->quiet, "Only display network ids");
    on_run(command, cli, [&cli, options] { return list(cli, *options); });
  }
  {
    auto names = std::make_shared<std::vector<std::string>>();
    CLI::App* command = network->add_subcommand("inspect", "Show networks in detail, as JSON");
    command->add_option("NETWORK", *names, "Network names or ids")->required();
    on_run(command, cli, [&cli, names] { return inspect_each(cli, *names, network_path); });
  }
  {
    auto names = std::make_shared<std::vector<std::string>>();
    CLI::App* command = network->add_subcommand("rm", "Remove networks");
    command->alias("remove");
    command->add_option("NETWORK", *names, "Network names or ids")->required();
    on_run(command, cli, [&cli, names] { return remove_each(cli, *names, network_path); });
  }
}

}  // namespace weft::tools
