// `weft exec TASK|ENDPOINT -- COMMAND` and `weft run --network NET [--name N]
// [--rm] -- COMMAND`: a command in a task's or endpoint's namespaces, or in a
// fresh namespace attached for it. Both go through `ip netns exec`, which
// gives the command a private mount namespace where /etc/resolv.conf is the
// agent's /etc/netns/NAME/resolv.conf (127.0.0.11); the command's exit
// status is passed on.
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "control/model/names.h"
#include "tools/cli.h"

namespace weft::tools {

namespace {

using nlohmann::json;

std::string ip_program() {
  for (const char* path : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
    if (::access(path, X_OK) == 0) return path;
  return "ip";
}

// Runs argv, waits; its exit status (128 + signal when killed), 127 when it
// could not run.
int run_and_wait(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::cout.flush();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// The name under /run/netns of a namespace reference ("" when it is a path
// elsewhere).
std::string run_netns_name(const std::string& ref) {
  if (ref.find('/') == std::string::npos) return ref;
  const std::string prefix = "/run/netns/";
  if (ref.starts_with(prefix) && ref.find('/', prefix.size()) == std::string::npos) return ref.substr(prefix.size());
  return "";
}

// "redis.2" -> the namespace of slot 2 of service redis, running here.
std::optional<std::string> task_netns(ApiClient& client, const std::string& ref) {
  const auto dot = ref.rfind('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == ref.size()) return std::nullopt;
  const std::string service = ref.substr(0, dot);
  const std::string slot = ref.substr(dot + 1);
  if (slot.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const ApiResponse response = client.request(http::verb::get, service_path(service) + "/tasks");
  if (!response.ok() || !response.json.is_array()) return std::nullopt;
  std::string node;
  const ApiResponse swarm = client.request(http::verb::get, "/swarm");
  if (swarm.ok()) node = text_field(swarm.json, "NodeName");
  std::string elsewhere;
  for (const json& task : response.json) {
    if (!task.contains("Slot") || task["Slot"].dump() != slot) continue;
    if (text_field(task["Status"], "State") != "running") continue;
    if (!node.empty() && text_field(task, "NodeID") != node) {
      elsewhere = text_field(task, "NodeID");
      continue;
    }
    return text_field(task, "Netns");
  }
  if (!elsewhere.empty())
    throw ApiStatusError(404, "task " + control::names::printable(ref) + " runs on node " + elsewhere +
                                  ": run weft exec there");
  throw ApiStatusError(404, "task " + control::names::printable(ref) + " is not running");
}

std::string endpoint_netns(ApiClient& client, const std::string& ref) {
  const json endpoints = client.call(http::verb::get, "/endpoints");
  std::vector<std::string> found;
  if (endpoints.is_array())
    for (const json& e : endpoints)
      if (text_field(e, "Name") == ref || text_field(e, "Id") == ref ||
          (ref.size() >= 4 && text_field(e, "Id").starts_with(ref)))
        if (!text_field(e, "Netns").empty()) found.push_back(text_field(e, "Netns"));
  if (found.empty()) throw ApiStatusError(404, "no task or local endpoint " + control::names::printable(ref));
  return found.front();
}

int exec_in(Cli& cli, const std::string& target, const std::vector<std::string>& command) {
  ApiClient client = cli.client();
  std::string netns;
  if (auto task = task_netns(client, target)) {
    netns = *task;
  } else {
    netns = endpoint_netns(client, target);
  }
  std::vector<std::string> argv;
  if (const std::string name = run_netns_name(netns); !name.empty()) {
    argv = {ip_program(), "netns", "exec", name};
  } else {
    // Not under /run/netns: no resolv.conf of ours to show; only the network.
    argv = {"nsenter", "--net=" + netns, "--"};
  }
  argv.insert(argv.end(), command.begin(), command.end());
  return run_and_wait(argv);
}

struct RunOptions {
  std::string network;
  std::string name;
  bool remove = false;
  std::vector<std::string> command;
};

int run(Cli& cli, const RunOptions& options) {
  if (options.command.empty() || options.command.front().empty())
    throw ApiStatusError(400, "the command is empty: weft run --network NET -- COMMAND [ARGS...]");
  std::string name = options.name;
  if (name.empty()) {
    std::random_device rd;
    char buf[16];
    std::snprintf(buf, sizeof buf, "%08x", rd());
    name = std::string("weft-run-") + buf;
  }
  if (auto error = control::names::endpoint_name_error(name))
    throw ApiStatusError(400, "invalid --name: " + *error);
  if (run_and_wait({ip_program(), "netns", "add", name}) != 0)
    throw ApiStatusError(409, "cannot create namespace " + name + " (does it exist already?)");
  ApiClient client = cli.client();
  const std::string network_path = "/networks/" + escape_path_segment(options.network);
  const auto cleanup = [&] {
    if (!options.remove) return;
    try {
      client.call(http::verb::post, network_path + "/disconnect", json{{"Container", name}});
    } catch (const std::exception&) {
    }
    run_and_wait({ip_program(), "netns", "del", name});
  };
  try {
    client.call(http::verb::post, network_path + "/connect", json{{"Container", name}, {"Name", name}});
  } catch (...) {
    run_and_wait({ip_program(), "netns", "del", name});
    throw;
  }
  std::vector<std::string> argv{ip_program(), "netns", "exec", name};
  argv.insert(argv.end(), options.command.begin(), options.command.end());
  int status = 0;
  try {
    status = run_and_wait(argv);
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
  return status;
}

}  // namespace

void add_task_commands(CLI::App& app, Cli& cli) {
  {
    auto target = std::make_shared<std::string>();
    auto command = std::make_shared<std::vector<std::string>>();
    CLI::App* sub = app.add_subcommand("exec", "Run a command in a task's or endpoint's namespaces");
    sub->add_option("TARGET", *target, "Task (SERVICE.SLOT, e.g. redis.1) or endpoint name or id")->required();
    sub->add_option("COMMAND", *command, "Command and arguments (after --)")->required();
    on_run(sub, cli, [&cli, target, command] { return exec_in(cli, *target, *command); });
  }
  {
    auto options = std::make_shared<RunOptions>();
    CLI::App* sub = app.add_subcommand("run", "Run a command in a fresh namespace attached to a network");
    sub->add_option("--network", options->network, "Network to attach to")->required();
    sub->add_option("--name", options->name, "Namespace and endpoint name");
    sub->add_flag("--rm", options->remove, "Detach and delete the namespace when the command ends");
    sub->add_option("COMMAND", options->command, "Command and arguments (after --)")->required();
    on_run(sub, cli, [&cli, options] { return run(cli, *options); });
  }
}

}  // namespace weft::tools
