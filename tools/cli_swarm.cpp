// `weft swarm init|join|leave|key|join-token`
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "tools/cli.h"

namespace weft::tools {

namespace {

using nlohmann::json;

void print_join_command(const std::string& token, const std::string& advertise) {
  std::cout << "To add a node to this swarm, run the following command:\n\n"
            << "    weft swarm join --token " << token << ' ' << advertise << "\n\n";
}

int init(Cli& cli, const std::string& advertise_addr) {
  json body = json::object();
  if (!advertise_addr.empty()) body["AdvertiseAddr"] = advertise_addr;
  const json result = cli.client().call(http::verb::post, "/swarm/init", body);
  std::cout << "Swarm initialized: current node (" << text_field(result, "NodeID")
            << ") is now part of a swarm.\n\n";
  print_join_command(text_field(result, "JoinToken"), text_field(result, "Advertise"));
  return 0;
}

int join(Cli& cli, const std::string& token, const std::vector<std::string>& addrs) {
  cli.client().call(http::verb::post, "/swarm/join", json{{"JoinToken", token}, {"RemoteAddrs", addrs}});
  std::cout << "This node joined a swarm.\n";
  return 0;
}

int leave(Cli& cli, std::uint32_t drain_seconds) {
  json body = json::object();
  if (drain_seconds > 0) body["DrainSeconds"] = drain_seconds;
  cli.client().call(http::verb::post, "/swarm/leave", body);
  std::cout << "Node left the swarm.\n";
  return 0;
}

json swarm_info(Cli& cli) {
  json info = cli.client().call(http::verb::get, "/swarm");
  if (!info.value("Active", false)) throw std::runtime_error("This node is not part of a swarm.");
  return info;
}

}  // namespace

void add_swarm_commands(CLI::App& app, Cli& cli) {
  CLI::App* swarm = app.add_subcommand("swarm", "Manage this node's membership in a swarm");
  swarm->require_subcommand(0, 1);

  auto* init_cmd = swarm->add_subcommand("init", "Start a swarm with this node as its first member");
  auto advertise = std::make_shared<std::string>();
  init_cmd->add_option("--advertise-addr", *advertise, "Address other nodes reach this one at (the agent's)");
  on_run(init_cmd, cli, [&cli, advertise] { return init(cli, *advertise); });

  auto* join_cmd = swarm->add_subcommand("join", "Join a swarm as a node");
  auto token = std::make_shared<std::string>();
  auto addrs = std::make_shared<std::vector<std::string>>();
  join_cmd->add_option("--token", *token, "Token printed by `weft swarm init`")->required();
  join_cmd->add_option("ADDR:PORT", *addrs, "Gossip address of a node in the swarm")->required();
  on_run(join_cmd, cli, [&cli, token, addrs] { return join(cli, *token, *addrs); });

  auto* leave_cmd = swarm->add_subcommand("leave", "Leave the swarm gracefully");
  auto drain = std::make_shared<std::uint32_t>(0);
  leave_cmd
      ->add_option("--drain", *drain,
                   "First let this node's service backends take no new connections for SECONDS while "
                   "their open ones go on (at most 3600)")
      ->check(CLI::Range(0u, 3600u));
  on_run(leave_cmd, cli, [&cli, drain] { return leave(cli, *drain); });

  auto* key_cmd = swarm->add_subcommand("key", "Print the gossip key, base64 (the form serf's -encrypt takes)");
  on_run(key_cmd, cli, [&cli] {
    std::cout << text_field(swarm_info(cli), "GossipKey") << '\n';
    return 0;
  });

  auto* token_cmd = swarm->add_subcommand("join-token", "Print the command that adds a node to this swarm");
  on_run(token_cmd, cli, [&cli] {
    const json info = swarm_info(cli);
    print_join_command(text_field(info, "JoinToken"), text_field(info, "Advertise"));
    return 0;
  });
}

}  // namespace weft::tools
