// `weft service create|ls|inspect|rm`: services with a virtual IP per
// network, load-balanced over their backends (endpoints attached with
// `weft endpoint attach --service`).
#include <algorithm>
#include <charconv>
#include <system_error>
#include <iostream>
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
  // Reserved for the tasks to come (`service create ... -- COMMAND...`).
  std::vector<std::string> command;
};

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
  if (!options.command.empty()) {
    std::cerr << "Error: running tasks is not supported yet; attach backends with "
                 "`weft endpoint attach NETWORK --netns NS --service NAME`\n";
    return 1;
  }
  json networks = json::array();
  for (const std::string& network : options.networks) networks.push_back(json{{"Target", network}});
  json ports = json::array();
  for (const std::string& port : options.ports) ports.push_back(port_json(port));
  json endpoint_spec{{"Ports", std::move(ports)}};
  if (!options.endpoint_mode.empty()) endpoint_spec["Mode"] = options.endpoint_mode;
  const json body{{"Name", options.name},
                  {"TaskTemplate", {{"Networks", std::move(networks)}}},
                  {"EndpointSpec", std::move(endpoint_spec)}};
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
  Table table({"ID", "NAME", "ENDPOINT MODE", "VIPS", "BACKENDS"});
  for (const json& service : services) {
    table.add_row({short_id(text_field(service, "ID")), name_of(service),
                   text_field(member(member(service, "Spec"), "EndpointSpec"), "Mode"), vips_of(service),
                   backends_of(service)});
  }
  table.print(std::cout);
  return 0;
}

// Like `docker service inspect`: prints what was found as one JSON array,
// reports the rest, and fails if anything was not found.
int inspect(Cli& cli, const std::vector<std::string>& names) {
  ApiClient client = cli.client();
  json found = json::array();
  int status = 0;
  for (const std::string& name : names) {
    try {
      found.push_back(client.call(http::verb::get, service_path(name)));
    } catch (const ApiStatusError& error) {
      print_agent_error(error);
      status = 1;
    }
  }
  std::cout << control::api::dump(found, 4) << '\n';
  return status;
}

int remove(Cli& cli, const std::vector<std::string>& names) {
  ApiClient client = cli.client();
  int status = 0;
  for (const std::string& name : names) {
    try {
      client.call(http::verb::delete_, service_path(name));
      std::cout << control::names::printable(name) << '\n';
    } catch (const ApiStatusError& error) {
      print_agent_error(error);
      status = 1;
    }
  }
  return status;
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
    command->add_option("COMMAND", options->command, "Not supported yet (tasks)");
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
    on_run(command, cli, [&cli, names] { return inspect(cli, *names); });
  }
  {
    auto names = std::make_shared<std::vector<std::string>>();
    CLI::App* command = service->add_subcommand("rm", "Remove services");
    command->alias("remove");
    command->add_option("SERVICE", *names, "Service names or ids")->required();
    on_run(command, cli, [&cli, names] { return remove(cli, *names); });
  }
}

}  // namespace weft::tools
