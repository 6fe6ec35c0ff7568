// `weft node ls|inspect|rm`
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "control/api/json.h"
#include "tools/cli.h"
#include "tools/cli_table.h"

namespace weft::tools {

namespace {

using nlohmann::json;

std::string capitalised(std::string word) {
  if (!word.empty() && word[0] >= 'a' && word[0] <= 'z') word[0] = static_cast<char>(word[0] - 'a' + 'A');
  return word;
}

int list(Cli& cli, const std::string& format) {
  json nodes = cli.client().call(http::verb::get, "/nodes");
  if (!nodes.is_array()) nodes = json::array();
  if (format == "json") {
    std::cout << control::api::dump(nodes, 4) << '\n';
    return 0;
  }
  Table table({"ID", "HOSTNAME", "STATUS", "AVAILABILITY", "ADDRESS"});
  for (const json& node : nodes) {
    // Docker marks the node you are talking to with '*' after its ID.
    const std::string id = text_field(node, "ID") + (node.value("Self", false) ? " *" : "");
    table.add_row({id, text_field(node, "Hostname"), capitalised(text_field(node, "Status")),
                   capitalised(text_field(node, "Availability")), text_field(node, "Address")});
  }
  table.print(std::cout);
  return 0;
}

int inspect(Cli& cli, const std::vector<std::string>& names) {
  json found = json::array();
  int status = 0;
  for (const auto& name : names) {
    const auto response = cli.client().request(http::verb::get, "/nodes/" + escape_path_segment(name));
    if (response.ok()) {
      found.push_back(response.json);
    } else {
      print_agent_error(ApiStatusError(response.status, response.error_message()));
      status = 1;
    }
  }
  std::cout << control::api::dump(found, 4) << '\n';
  return status;
}

int remove(Cli& cli, const std::vector<std::string>& names) {
  int status = 0;
  for (const auto& name : names) {
    const auto response = cli.client().request(http::verb::delete_, "/nodes/" + escape_path_segment(name));
    if (response.ok()) {
      std::cout << name << '\n';
    } else {
      print_agent_error(ApiStatusError(response.status, response.error_message()));
      status = 1;
    }
  }
  return status;
}

}  // namespace

void add_node_commands(CLI::App& app, Cli& cli) {
  CLI::App* node = app.add_subcommand("node", "Inspect the swarm's nodes");
  node->require_subcommand(0, 1);

  auto* ls = node->add_subcommand("ls", "List the nodes of the swarm");
  auto format = std::make_shared<std::string>("table");
  ls->add_option("--format", *format, "table or json")->check(CLI::IsMember({"table", "json"}));
  on_run(ls, cli, [&cli, format] { return list(cli, *format); });

  auto* inspect_cmd = node->add_subcommand("inspect", "Show nodes as JSON");
  auto inspect_names = std::make_shared<std::vector<std::string>>();
  inspect_cmd->add_option("NODE", *inspect_names, "Node ID or hostname")->required();
  on_run(inspect_cmd, cli, [&cli, inspect_names] { return inspect(cli, *inspect_names); });

  auto* rm = node->add_subcommand("rm", "Remove nodes that are gone for good; their address ranges move here");
  auto rm_names = std::make_shared<std::vector<std::string>>();
  rm->add_option("NODE", *rm_names, "Node ID or hostname")->required();
  on_run(rm, cli, [&cli, rm_names] { return remove(cli, *rm_names); });
}

}  // namespace weft::tools
