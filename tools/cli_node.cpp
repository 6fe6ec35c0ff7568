// `weft node ls|inspect|update|rm`
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

std::string node_path(const std::string& name_or_id) { return "/nodes/" + escape_path_segment(name_or_id); }

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
  on_run(inspect_cmd, cli, [&cli, inspect_names] { return inspect_each(cli, *inspect_names, node_path); });

  auto* update = node->add_subcommand(
      "update", "Change a node's availability: active, pause (keeps its tasks, gets no new ones) or drain (its "
                "tasks move to other nodes)");
  auto availability = std::make_shared<std::string>();
  auto update_name = std::make_shared<std::string>();
  update->add_option("--availability", *availability, "active, pause or drain")
      ->required()
      ->check(CLI::IsMember({"active", "pause", "drain"}));
  update->add_option("NODE", *update_name, "Node ID or hostname")->required();
  on_run(update, cli, [&cli, availability, update_name] {
    cli.client().call(http::verb::post, node_path(*update_name) + "/update", json{{"Availability", *availability}});
    std::cout << *update_name << '\n';  // as docker node update prints the node
    return 0;
  });

  auto* rm = node->add_subcommand("rm", "Remove nodes that are gone for good; their address ranges move here");
  auto rm_names = std::make_shared<std::vector<std::string>>();
  rm->add_option("NODE", *rm_names, "Node ID or hostname")->required();
  on_run(rm, cli, [&cli, rm_names] { return remove_each(cli, *rm_names, node_path); });
}

}  // namespace weft::tools
