// `weft service create|ls|inspect|rm`: services with a virtual IP per
// network, load-balanced over their backends (endpoints attached with
// `weft endpoint attach --service`).
#include <algorithm>
#include <charconv>
#include <chrono>
#include <ctime>
#include <thread>
#include <system_error>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "control/api/json.h"
#include "control/api/services.h"
#include "control/model/names.h"
#include "tools/cli.h"
#include "tools/cli_table.h"

namespace weft::tools {

namespace {

using nlohmann::json;

struct CreateOptions {
  std::string name;
  std::vector<std::string> networks;
  std::string endpoint_mode;
  std::vector<std::string> ports;
  std::string replicas;           // as typed; checked here for a clear message
  CLI::Option* replicas_option = nullptr;  // given at all (even as "")?
  std::string restart_condition;  // any, on-failure, none
  std::vector<std::string> command;
};

// A whole number of replicas, or a usage error naming what was typed.
std::uint64_t parse_replicas(const std::string& text) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc{} || end != text.data() + text.size())
    throw ApiStatusError(400, "invalid replicas " + control::names::quoted_preview(text) + ": want a whole number");
  return value;
}

// "6379", "6379/tcp" or "53/udp" as Docker's {"Protocol", "TargetPort"}.
json port_json(const std::string& text) {
  const auto slash = text.find('/');
  const std::string number = text.substr(0, slash);
  const std::string protocol = slash == std::string::npos ? "tcp" : text.substr(slash + 1);
  unsigned port = 0;
  const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), port);
  if (number.empty() || error != std::errc{} || end != number.data() + number.size() || port < 1 || port > 65535) {
    throw ApiStatusError(400, "invalid port " + control::names::quoted_preview(text) +
                                  ": want PORT[/tcp|udp] with PORT from 1 to 65535");
  }
  if (protocol != "tcp" && protocol != "udp") {
    throw ApiStatusError(400, "invalid protocol " + control::names::quoted_preview(protocol) + " in port " +
                                  control::names::quoted_preview(text) + ": want tcp or udp");
  }
  return json{{"Protocol", protocol}, {"TargetPort", port}};
}

int create(Cli& cli, const CreateOptions& options) {
  json networks = json::array();
  for (const std::string& network : options.networks) networks.push_back(json{{"Target", network}});
  json ports = json::array();
  for (const std::string& port : options.ports) ports.push_back(port_json(port));
  json endpoint_spec{{"Ports", std::move(ports)}};
  if (!options.endpoint_mode.empty()) endpoint_spec["Mode"] = options.endpoint_mode;
  json body{{"Name", options.name},
            {"TaskTemplate", {{"Networks", std::move(networks)}}},
            {"EndpointSpec", std::move(endpoint_spec)}};
  // Checked by the agent too, but a typo is best refused before anything is sent.
  if (options.replicas_option && options.replicas_option->count() > 0) body["Mode"] = {{"Replicated", {{"Replicas", parse_replicas(options.replicas)}}}};
  if (!options.command.empty()) body["TaskTemplate"]["ContainerSpec"] = {{"Args", options.command}};
  if (!options.restart_condition.empty())
    body["TaskTemplate"]["RestartPolicy"] = {{"Condition", options.restart_condition}};
  const json created = cli.client().call(http::verb::post, "/services/create", body);
  std::cout << text_field(created, "ID") << '\n';  // the full id, as docker prints it
  return 0;
}

// The object at `object[key]`, or an empty one: a table never fails over a
// field an older agent does not send.
const json& member(const json& object, std::string_view key) {
  static const json kEmpty = json::object();
  if (!object.is_object()) return kEmpty;
  auto it = object.find(key);
  return it == object.end() ? kEmpty : *it;
}

std::string vips_of(const json& service) {
  std::string vips;
  const json& list = member(member(service, "Endpoint"), "VirtualIPs");
  if (!list.is_array()) return vips;
  for (const json& vip : list) {
    const std::string addr = text_field(vip, "Addr");
    if (addr.empty()) continue;
    vips += (vips.empty() ? "" : ",") + addr;
  }
  return vips;
}

// "4", or "3 (+1 draining)".
std::string backends_of(const json& service) {
  std::size_t active = 0;
  std::size_t draining = 0;
  const json& backends = member(service, "Backends");
  if (backends.is_array()) {
    for (const json& backend : backends) {
      (text_field(backend, "State") == "draining" ? draining : active) += 1;
    }
  }
  std::string text = std::to_string(active);
  if (draining > 0) text += " (+" + std::to_string(draining) + " draining)";
  return text;
}

// "running/desired" as Docker shows it ("4/4"); "-" for a service without tasks.
std::string replicas_of(const json& service) {
  const json& status = member(service, "ServiceStatus");
  const auto running = status.find("RunningTasks");
  const auto desired = status.find("DesiredTasks");
  if (running == status.end() || desired == status.end() || !running->is_number_unsigned() ||
      !desired->is_number_unsigned())
    return "-";
  return std::to_string(running->get<std::uint64_t>()) + "/" + std::to_string(desired->get<std::uint64_t>());
}

struct ListOptions {
  std::string format = "table";
  bool quiet = false;
};

int list(Cli& cli, const ListOptions& options) {
  json services = cli.client().call(http::verb::get, "/services");
  if (!services.is_array()) services = json::array();
  const auto name_of = [](const json& s) { return text_field(member(s, "Spec"), "Name"); };
  std::stable_sort(services.begin(), services.end(),
                   [&](const json& a, const json& b) { return name_of(a) < name_of(b); });

  if (options.format == "json") {
    std::cout << control::api::dump(services, 4) << '\n';
    return 0;
  }
  if (options.quiet) {
    for (const json& service : services) std::cout << short_id(text_field(service, "ID")) << '\n';
    return 0;
  }
  Table table({"ID", "NAME", "ENDPOINT MODE", "VIPS", "BACKENDS", "REPLICAS"});
  for (const json& service : services) {
    table.add_row({short_id(text_field(service, "ID")), name_of(service),
                   text_field(member(member(service, "Spec"), "EndpointSpec"), "Mode"), vips_of(service),
                   backends_of(service), replicas_of(service)});
  }
  table.print(std::cout);
  return 0;
}

int update(Cli& cli, const std::string& name, const std::string& replicas, bool replicas_given) {
  json body = json::object();
  if (replicas_given) body["Mode"] = {{"Replicated", {{"Replicas", parse_replicas(replicas)}}}};
  cli.client().call(http::verb::post, service_path(name) + "/update", body);
  std::cout << control::names::printable(name) << '\n';
  return 0;
}

// "Running 2 minutes ago", as docker service ps says it.
std::string ago(const std::string& rfc3339) {
  std::tm tm{};
  if (rfc3339.size() < 19 || !strptime(rfc3339.substr(0, 19).c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return "";
  const auto then = std::chrono::system_clock::from_time_t(timegm(&tm));
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - then).count();
  if (seconds < 1) return "less than a second ago";
  if (seconds < 60) return std::to_string(seconds) + (seconds == 1 ? " second ago" : " seconds ago");
  const auto minutes = seconds / 60;
  if (minutes < 60) return (minutes == 1 ? std::string("about a minute") : std::to_string(minutes) + " minutes") + " ago";
  const auto hours = minutes / 60;
  if (hours < 48) return (hours == 1 ? std::string("about an hour") : std::to_string(hours) + " hours") + " ago";
  return std::to_string(hours / 24) + " days ago";
}

std::string capitalized(std::string text) {
  if (!text.empty() && text[0] >= 'a' && text[0] <= 'z') text[0] = static_cast<char>(text[0] - 'a' + 'A');
  return text;
}

int ps(Cli& cli, const std::string& name) {
  ApiClient client = cli.client();
  const json service = client.call(http::verb::get, service_path(name));
  const std::string service_name = text_field(member(service, "Spec"), "Name");
  json tasks = client.call(http::verb::get, service_path(name) + "/tasks");
  if (!tasks.is_array()) tasks = json::array();
  Table table({"ID", "NAME", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"});
  for (const json& task : tasks) {
    const json& status = member(task, "Status");
    const std::string slot = task.contains("Slot") ? task["Slot"].dump() : "";
    std::string current = capitalized(text_field(status, "State"));
    const std::string since = ago(text_field(status, "Timestamp"));
    if (!since.empty()) current += " " + since;
    table.add_row({short_id(text_field(task, "ServiceID")) + "." + slot, service_name + "." + slot,
                   text_field(task, "NodeID"), capitalized(text_field(task, "DesiredState")), current,
                   text_field(status, "Err")});
  }
  table.print(std::cout);
  return 0;
}

// Tells (on stderr, once per task) which of the service's tasks run on other
// nodes whose lines did not come back: the agent asks the other nodes for
// their logs, and one may not have answered in time.
void note_remote_tasks(ApiClient& client, const std::string& name, const std::string& node,
                       const std::string& text, std::map<std::string, bool>& noted) {
  if (node.empty()) return;
  const ApiResponse response = client.request(http::verb::get, service_path(name) + "/tasks");
  if (!response.ok() || !response.json.is_array()) return;
  std::string service_name = control::names::printable(name);
  for (const json& task : response.json) {
    const std::string on = text_field(task, "NodeID");
    if (on.empty() || on == node || text_field(task, "DesiredState") != "running") continue;
    const std::string slot = task.contains("Slot") ? task["Slot"].dump() : "?";
    const std::string marker = "." + slot + "." + short_id(text_field(task, "ServiceID")) + "@" + on + " | ";
    if (noted[slot + "@" + on] || text.find(marker) != std::string::npos) continue;
    noted[slot + "@" + on] = true;
    std::cerr << "note: no log lines of " << service_name << "." << slot << ", which runs on "
              << control::names::printable(on) << " (it did not answer in time, or the task logged nothing): "
              << "weft service logs " << service_name << " on " << control::names::printable(on) << " shows them\n";
  }
}

// The agent answers each task's tail (its own, then the other nodes'), a
// line at a time prefixed with the task ("redis.2.<id>@node1 | "). --follow asks again each second and
// prints, per task, the complete lines that came after those it printed.
int logs(Cli& cli, const std::string& name, bool follow) {
  ApiClient client = cli.client();
  const std::string path = service_path(name) + "/logs";
  std::string node;
  if (const ApiResponse swarm = client.request(http::verb::get, "/swarm"); swarm.ok())
    node = text_field(swarm.json, "NodeName");
  std::map<std::string, bool> noted;
  std::map<std::string, std::vector<std::string>> shown;  // task prefix -> its complete lines printed
  while (true) {
    const ApiResponse response = client.request(http::verb::get, path);
    if (!response.ok()) throw ApiStatusError(response.status, response.error_message());
    note_remote_tasks(client, name, node, response.text, noted);
    if (!follow) {
      std::cout << response.text;
      std::cout.flush();
      return 0;
    }
    std::map<std::string, std::vector<std::string>> now;
    const std::string& text = response.text;
    for (std::size_t pos = 0; pos < text.size();) {
      const auto nl = text.find('\n', pos);
      if (nl == std::string::npos) break;  // not complete yet: printed when it is
      std::string line = text.substr(pos, nl + 1 - pos);
      pos = nl + 1;
      const auto bar = line.find(" | ");
      now[bar == std::string::npos ? std::string() : line.substr(0, bar)].push_back(std::move(line));
    }
    for (auto& [task, lines] : now) {
      auto& old = shown[task];
      // Where the new tail continues what was printed: after the old lines
      // when it starts with them, else after the last printed line seen
      // again (the tail window moved), else (the log was rotated) all of it.
      std::size_t from = 0;
      if (!old.empty()) {
        if (lines.size() >= old.size() && std::equal(old.begin(), old.end(), lines.begin())) {
          from = old.size();
        } else if (auto it = std::find(lines.rbegin(), lines.rend(), old.back()); it != lines.rend()) {
          from = static_cast<std::size_t>(lines.rend() - it);
        }
      }
      for (std::size_t i = from; i < lines.size(); ++i) std::cout << lines[i];
      old = std::move(lines);
    }
    std::cout.flush();
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace

std::string service_path(const std::string& name_or_id) {
  // Refused here with the agent's own message rather than sent in a URL.
  try {
    control::api::validate_service_ref(name_or_id);
  } catch (const control::ApiError& error) {
    throw ApiStatusError(400, error.what());
  }
  return "/services/" + escape_path_segment(name_or_id);
}

void add_service_commands(CLI::App& app, Cli& cli) {
  CLI::App* service = app.add_subcommand("service", "Manage services (a virtual IP load-balanced over backends)");
  service->require_subcommand(0, 1);  // bare "weft service" prints its help

  {
    auto options = std::make_shared<CreateOptions>();
    CLI::App* command = service->add_subcommand("create", "Create a service (prints its id)");
    command->add_option("--name", options->name, "Service name")->required();
    command->add_option("--network", options->networks, "Network to put the service on (repeatable)")
        ->required()
        ->allow_extra_args(false);  // one value per --network, so COMMAND stays free
    command->add_option("--endpoint-mode", options->endpoint_mode, "vip (a virtual IP, default) or dnsrr");
    command->add_option("--port", options->ports, "Port the service serves, PORT[/tcp|udp] (repeatable)")
        ->allow_extra_args(false);
    options->replicas_option =
        command->add_option("--replicas", options->replicas, "Number of tasks (default 1 with a command)");
    command->add_option("--restart-condition", options->restart_condition,
                        "Restart a task that exits: any (default), on-failure, none");
    command->add_option("COMMAND", options->command, "Command the service's tasks run (after --)");
    on_run(command, cli, [&cli, options] { return create(cli, *options); });
  }
  {
    auto options = std::make_shared<ListOptions>();
    CLI::App* command = service->add_subcommand("ls", "List services");
    command->alias("list");
    command->add_option("--format", options->format, "Output format")
        ->check(CLI::IsMember({"table", "json"}))
        ->capture_default_str();
    command->add_flag("-q,--quiet", options->quiet, "Only display service ids");
    on_run(command, cli, [&cli, options] { return list(cli, *options); });
  }
  {
    auto names = std::make_shared<std::vector<std::string>>();
    CLI::App* command = service->add_subcommand("inspect", "Show services in detail, as JSON");
    command->add_option("SERVICE", *names, "Service names or ids")->required();
    on_run(command, cli, [&cli, names] { return inspect_each(cli, *names, service_path); });
  }
  {
    auto name = std::make_shared<std::string>();
    auto replicas = std::make_shared<std::string>();
    CLI::App* command = service->add_subcommand("update", "Update a service (scale its tasks)");
    CLI::Option* given = command->add_option("--replicas", *replicas, "Number of tasks");
    command->add_option("SERVICE", *name, "Service name or id")->required();
    on_run(command, cli, [&cli, name, replicas, given] { return update(cli, *name, *replicas, given->count() > 0); });
  }
  {
    auto name = std::make_shared<std::string>();
    CLI::App* command = service->add_subcommand("ps", "List a service's tasks");
    command->add_option("SERVICE", *name, "Service name or id")->required();
    on_run(command, cli, [&cli, name] { return ps(cli, *name); });
  }
  {
    auto name = std::make_shared<std::string>();
    auto follow = std::make_shared<bool>(false);
    CLI::App* command = service->add_subcommand("logs", "Show the logs of a service's tasks (all nodes')");
    command->add_flag("-f,--follow", *follow, "Keep showing new output");
    command->add_option("SERVICE", *name, "Service name or id")->required();
    on_run(command, cli, [&cli, name, follow] { return logs(cli, *name, *follow); });
  }
  {
    auto names = std::make_shared<std::vector<std::string>>();
    CLI::App* command = service->add_subcommand("rm", "Remove services");
    command->alias("remove");
    command->add_option("SERVICE", *names, "Service names or ids")->required();
    on_run(command, cli, [&cli, names] { return remove_each(cli, *names, service_path); });
  }
}

}  // namespace weft::tools
