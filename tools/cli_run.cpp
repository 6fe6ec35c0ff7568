// `weft` as a function: the command groups, parsing and error reporting
// (run_cli, cli.h), and `weft version`. main() is in weft.cpp, so tests can
// run the CLI in-process against a fake agent.
#include <iostream>
#include <string>

#include "control/api/routes.h"
#include "tools/cli.h"

namespace weft::tools {

namespace {

int version(Cli& cli) {
  std::cout << "Client:\n"
            << " Version:      " << control::api::kWeftVersion << '\n'
            << " API version:  " << control::api::kApiVersion << '\n';
  std::cout.flush();  // the client half is useful even if the agent is down
  const nlohmann::json server = cli.client().call(http::verb::get, "/version");
  std::cout << "Server:\n"
            << " Version:      " << text_field(server, "Version") << '\n'
            << " API version:  " << text_field(server, "ApiVersion") << '\n';
  return 0;
}

}  // namespace

void add_version_command(CLI::App& app, Cli& cli) {
  CLI::App* command = app.add_subcommand("version", "Show the client's and the agent's versions");
  on_run(command, cli, [&cli] { return version(cli); });
}

int run_cli(int argc, const char* const* argv) {
  Cli cli;
  CLI::App app{"weft: manage overlay networks through the local weft agent", "weft"};
  // At most one command; a missing one gets the help of the level typed so
  // far, and a mistyped one is reported by name rather than as "missing".
  app.require_subcommand(0, 1);
  // Global options are also accepted after a subcommand: `weft network ls --host ...`.
  app.fallthrough();
  app.set_version_flag("-v,--version", "weft version " + std::string(weft::control::api::kWeftVersion));
  app.add_option("-H,--host", cli.host, "Agent socket (unix:///path)")->envname("WEFT_HOST")->capture_default_str();

  add_network_commands(app, cli);
  add_endpoint_commands(app, cli);
  add_swarm_commands(app, cli);
  add_node_commands(app, cli);
  add_service_commands(app, cli);
  add_lb_commands(app, cli);
  add_task_commands(app, cli);
  add_top_command(app, cli);
  add_version_command(app, cli);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Error& e) {
    const int status = app.exit(e);  // prints help, version or the usage error
    return status == 0 ? 0 : 2;
  }

  if (!cli.run) {
    const CLI::App* chosen = &app;
    std::string parents;  // "weft network", for the usage line
    while (!chosen->get_subcommands().empty()) {
      parents += (parents.empty() ? "" : " ") + chosen->get_name();
      chosen = chosen->get_subcommands().front();
    }
    std::cerr << chosen->help(parents);
    return 2;
  }

  try {
    return cli.run();
  } catch (const ApiStatusError& e) {
    print_agent_error(e);
  } catch (const std::exception& e) {
    // Connection failures already read as a full sentence.
    std::cerr << e.what() << '\n';
  }
  return 1;
}

}  // namespace weft::tools
