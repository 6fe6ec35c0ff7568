// What the `weft` command groups share. Each group (network, endpoint,
// swarm, node, service, lb, ...) lives in its own cli_<group>.cpp and adds
// itself to the CLI11 app through an add_<group>_commands function.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "control/model/ids.h"
#include "tools/api_client.h"

namespace weft::tools {

struct Cli {
  std::string host{kDefaultHost};  // --host / WEFT_HOST, final once parsing is done
  // The command the user chose; set while parsing, run after parsing
  // succeeded so usage errors and agent errors stay apart. Returns the exit
  // status. Agent errors may also be thrown as ApiStatusError or
  // ApiConnectionError; weft.cpp reports those.
  std::function<int()> run;

  ApiClient client() const { return ApiClient(host); }
};

// Makes `command` run `action` when it is the command the user chose.
inline void on_run(CLI::App* command, Cli& cli, std::function<int()> action) {
  command->callback([&cli, action = std::move(action)] { cli.run = action; });
}

void add_network_commands(CLI::App& app, Cli& cli);
void add_endpoint_commands(CLI::App& app, Cli& cli);
void add_version_command(CLI::App& app, Cli& cli);
void add_swarm_commands(CLI::App& app, Cli& cli);
void add_node_commands(CLI::App& app, Cli& cli);
void add_service_commands(CLI::App& app, Cli& cli);
void add_lb_commands(CLI::App& app, Cli& cli);
void add_task_commands(CLI::App& app, Cli& cli);  // exec, run
void add_top_command(CLI::App& app, Cli& cli);     // cli_top.cpp

// Runs `weft` with these arguments (main's): parses, runs the chosen command
// and reports errors; returns the exit status. Output goes to std::cout and
// std::cerr.
int run_cli(int argc, const char* const* argv);

// --- helpers for commands -----------------------------------------------------

// `object[key]` as a string; "" when absent or not a string, so a table or
// message never fails over a field an older agent does not send.
std::string text_field(const nlohmann::json& object, std::string_view key);

// Docker shows ids cut to 12 characters.
using control::short_id;  // control/model/ids.h

// "/services/NAME", percent-encoded; a reference no service can have is
// refused here (ApiStatusError 400) with the agent's own message.
std::string service_path(const std::string& name_or_id);

// `docker X inspect NAME...`: GETs path_of(name) for each name, prints what
// was found as one JSON array, reports the rest; 1 if anything was not found.
int inspect_each(Cli& cli, const std::vector<std::string>& names,
                 const std::function<std::string(const std::string&)>& path_of);

// `docker X rm NAME...`: DELETEs path_of(name) for each name, prints each
// name removed, reports the rest; 1 if anything could not be removed.
int remove_each(Cli& cli, const std::vector<std::string>& names,
                const std::function<std::string(const std::string&)>& path_of);

// How a failed request on behalf of one argument is shown (e.g. one of the
// networks given to `weft network rm`).
void print_agent_error(const ApiStatusError& error);

}  // namespace weft::tools
