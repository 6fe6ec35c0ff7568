#include "control/api/docker_services.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <functional>
#include <utility>

#include "control/api/body_reader.h"
#include "control/api/json.h"
#include "control/api/services.h"
#include "control/model/names.h"
#include "control/model/record_json.h"

namespace weft::control::api {

using nlohmann::json;
namespace http = boost::beast::http;

namespace {

// A task reference in a path: a Docker id (25), a prefix, or a weft key
// ("<64-hex id>.<slot>@<node name>").
constexpr std::size_t kMaxTaskRef = 256;
// How much of each task's log `docker service logs` sends back.
constexpr std::uint64_t kMaxLogBytesPerTask = 1u << 20;
// How many differing fields a refused update names.
constexpr std::size_t kMaxNamedDifferences = 8;
// Deeper than any spec Docker sends; a body nested further counts as changed.
constexpr int kMaxSpecDepth = 32;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool flag_parameter(std::string_view target, std::string_view name) {
  const auto value = query_parameter(query_of(target), name);
  return value && (*value == "1" || *value == "true" || *value == "True" || *value == "TRUE");
}

DockerAnswer json_answer(const json& body, http::status status = http::status::ok) {
  return DockerAnswer{status, dump(body), "application/json"};
}

// Key absent: no constraint; else any of its values must match.
bool passes(const Filters& filters, const std::string& key,
            const std::function<bool(const std::string&)>& matches) {
  const auto it = filters.find(key);
  if (it == filters.end()) return true;
  return std::any_of(it->second.begin(), it->second.end(), matches);
}

std::uint64_t fnv1a64(std::string_view text, std::uint64_t seed) {
  std::uint64_t hash = seed;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

std::string short_if_id(const std::string& ref) {
  const bool is_id = ref.size() == 64 && std::all_of(ref.begin(), ref.end(), [](char c) { return hex_digit(c) >= 0; });
  return is_id ? ref.substr(0, 12) : ref;
}

std::string basename_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// What every task of a request shares: node ids and networks.
TaskContext request_context(NetworkService& networks, SwarmService* swarm) {
  TaskContext context;
  if (swarm) {
    try {
      for (const NodeInfo& node : swarm->list_nodes()) context.node_ids[node.hostname] = node.id;
    } catch (const ApiError&) {
      // Not in a swarm: tasks name their node as weft does.
    }
  }
  for (Network& network : networks.list_networks()) {
    const std::string id = network.id;
    context.networks.emplace(id, std::move(network));
  }
  return context;
}

struct FoundTask {
  json task;
  TaskRecord record;
  Service service;
};

// Every task of every service with tasks, Docker-shaped, in service and slot
// order; `keep_service` narrows before a service's tasks are read.
std::vector<FoundTask> all_tasks(ServiceApi& services, NetworkService& networks, SwarmService* swarm,
                                 const std::function<bool(const Service&)>& keep_service) {
  std::vector<FoundTask> found;
  TaskContext context = request_context(networks, swarm);
  for (ServiceDetail& detail : services.list_services()) {
    const Service& service = detail.service;
    if (service.command.empty() || !keep_service(service)) continue;
    std::vector<TaskRecord> tasks;
    try {
      tasks = services.list_tasks(service.id);
    } catch (const ApiError& error) {
      if (error.kind() == ApiError::Kind::NotFound) continue;  // removed meanwhile
      throw;
    }
    context.backends = std::move(detail.backends);
    for (TaskRecord& task : tasks) {
      json j = docker_task_json(task, service, context);
      found.push_back(FoundTask{std::move(j), std::move(task), service});
    }
  }
  return found;
}

bool is_empty_value(const json& value) {
  if (value.is_null()) return true;
  if (value.is_string()) return value.get_ref<const std::string&>().empty();
  if (value.is_boolean()) return !value.get<bool>();
  if (value.is_number()) return value == 0;
  if (value.is_array()) return value.empty();
  if (value.is_object()) {
    return std::all_of(value.begin(), value.end(), [](const json& member) { return is_empty_value(member); });
  }
  return false;
}

// Go's encoder leaves out empty fields or writes them as zero, null, {} or
// []: both mean "not set".
json without_empty_members(const json& value, int depth) {
  if (depth > kMaxSpecDepth) return value;
  if (value.is_object()) {
    json out = json::object();
    for (const auto& [key, member] : value.items()) {
      if (!is_empty_value(member)) out[key] = without_empty_members(member, depth + 1);
    }
    return out;
  }
  if (value.is_array()) {
    json out = json::array();
    for (const json& element : value) out.push_back(without_empty_members(element, depth + 1));
    return out;
  }
  return value;
}

constexpr std::string_view kChangeablePath = "Mode.Replicated.Replicas";

// The paths where `body` says something other than `served`; a field the
// body leaves out stays as it is (weft's own CLI sends only what changes).
void collect_differences(const json& body, const json& served, const std::string& path, int depth,
                         std::vector<std::string>& differences) {
  if (differences.size() >= kMaxNamedDifferences || path == kChangeablePath) return;
  if (depth > kMaxSpecDepth) {
    differences.push_back(path);
    return;
  }
  if (body.is_object()) {
    static const json kAbsent;
    for (const auto& [key, member] : body.items()) {
      const std::string child = path.empty() ? key : path + "." + key;
      const json& served_member = served.is_object() && served.contains(key) ? served.at(key) : kAbsent;
      collect_differences(member, served_member, child, depth + 1, differences);
    }
    return;
  }
  if (is_empty_value(body) && is_empty_value(served)) return;
  if (without_empty_members(body, depth) == without_empty_members(served, depth)) return;
  differences.push_back(path);
}

std::string shell_word(const std::string& word) {
  const bool plain = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("-_./:=@%+,").find(c) != std::string_view::npos;
  });
  if (plain) return word;
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Details as ParseLogDetails reads them: "k=v,k=v", each part query-escaped.
std::string details_escape(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.') {
      out += static_cast<char>(c);
    } else {
      char escaped[4];
      std::snprintf(escaped, sizeof escaped, "%%%02X", c);
      out += escaped;
    }
  }
  return out;
}

}  // namespace

std::string docker_task_id(const TaskRecord& task) {
  const std::string key = task.key();
  char text[33];
  std::snprintf(text, sizeof text, "%016llx%016llx",
                static_cast<unsigned long long>(fnv1a64(key, 0xcbf29ce484222325ULL)),
                static_cast<unsigned long long>(fnv1a64(key, 0x84222325cbf29ce4ULL)));
  return std::string(text, 25);
}

std::string docker_task_state(std::string_view weft_state) {
  if (weft_state == "restarting") return "ready";
  if (weft_state == "stopping") return "running";
  return std::string(weft_state);  // starting, running, failed, complete: Docker's words too
}

json docker_task_json(const TaskRecord& task, const Service& service, const TaskContext& context) {
  const bool wanted = task.slot >= 1 && task.slot <= service.replicas && task.state != "stopping";
  const std::string& since = task.started_at.empty() ? service.created : task.started_at;
  const std::string endpoint_name = basename_of(task.netns);

  json spec_networks = json::array();
  json attachments = json::array();
  for (const std::string& network_id : service.network_ids) {
    spec_networks.push_back(json{{"Target", network_id}});
    const auto network = context.networks.find(network_id);
    json addresses = json::array();
    for (const ServiceBackendInfo& backend : context.backends) {
      const bool this_task = backend.node == task.node &&
                             ((!task.endpoint_id.empty() && backend.endpoint_id == task.endpoint_id) ||
                              (!endpoint_name.empty() && backend.endpoint_name == endpoint_name));
      if (!this_task || backend.network_id != network_id || backend.ip == dataplane::Ipv4{}) continue;
      const int prefix = network == context.networks.end() ? 32 : network->second.subnet.prefix;
      addresses.push_back(backend.ip.str() + "/" + std::to_string(prefix));
    }
    attachments.push_back(json{
        {"Network",
         {{"ID", network_id},
          {"Spec", {{"Name", network == context.networks.end() ? "" : network->second.name}}}}},
        {"Addresses", std::move(addresses)},
    });
  }

  json status{{"State", docker_task_state(task.state)},
              {"Message", task.state},
              {"ContainerStatus", {{"PID", task.pid}}}};
  if (!since.empty()) status["Timestamp"] = since;
  if (!task.error.empty()) status["Err"] = task.error;

  const auto node_id = context.node_ids.find(task.node);
  json j{
      {"ID", docker_task_id(task)},
      {"Version", {{"Index", service.version}}},
      {"Labels", json::object()},
      {"Spec",
       {{"ContainerSpec", {{"Args", service.command}}},
        {"RestartPolicy", {{"Condition", restart_condition_name(service.restart_condition)}}},
        {"Networks", std::move(spec_networks)}}},
      {"ServiceID", service.id},
      {"Slot", task.slot},
      {"NodeID", node_id == context.node_ids.end() ? task.node : node_id->second},
      {"Status", std::move(status)},
      {"DesiredState", wanted ? "running" : "shutdown"},
      {"NetworksAttachments", std::move(attachments)},
      {"EndpointID", task.endpoint_id},
      {"Netns", task.netns},
  };
  if (!since.empty()) j["CreatedAt"] = since, j["UpdatedAt"] = since;
  return j;
}

DockerAnswer docker_list_services(std::string_view target, ServiceApi& services) {
  const Filters filters = filters_of(target, {"id", "name", "label", "mode"});
  const bool with_status = flag_parameter(target, "status");
  json list = json::array();
  for (const ServiceDetail& detail : services.list_services()) {
    const Service& s = detail.service;
    if (!passes(filters, "id", [&](const std::string& v) { return s.id.starts_with(v); })) continue;
    if (!passes(filters, "name", [&](const std::string& v) { return s.name.starts_with(v); })) continue;
    if (!passes(filters, "label", [](const std::string&) { return false; })) continue;  // weft services have none
    if (!passes(filters, "mode", [&](const std::string& v) { return v == "replicated" && !s.command.empty(); }))
      continue;
    json j = service_json(detail);
    if (with_status && !j.contains("ServiceStatus")) j["ServiceStatus"] = {{"RunningTasks", 0}, {"DesiredTasks", 0}};
    list.push_back(std::move(j));
  }
  return json_answer(list);
}

DockerAnswer docker_list_tasks(std::string_view target, ServiceApi& services, NetworkService& networks,
                               SwarmService* swarm) {
  const Filters filters = filters_of(
      target, {"id", "name", "service", "node", "desired-state", "label", "_up-to-date"});
  const auto keep_service = [&](const Service& s) {
    return passes(filters, "service", [&](const std::string& v) {
      return s.name == v || (!v.empty() && s.id.starts_with(v));
    });
  };
  json list = json::array();
  for (FoundTask& found : all_tasks(services, networks, swarm, keep_service)) {
    const json& task = found.task;
    const std::string id = task.at("ID").get<std::string>();
    const std::string name = found.service.name + "." + std::to_string(found.record.slot);
    if (!passes(filters, "id", [&](const std::string& v) { return id.starts_with(v) || v == found.record.key(); }))
      continue;
    if (!passes(filters, "name", [&](const std::string& v) { return (name + "." + id).starts_with(v); })) continue;
    if (!passes(filters, "node", [&](const std::string& v) { return v == found.record.node || v == task.at("NodeID"); }))
      continue;
    if (!passes(filters, "desired-state", [&](const std::string& v) { return v == task.at("DesiredState"); }))
      continue;
    if (!passes(filters, "label", [](const std::string&) { return false; })) continue;  // tasks have no labels
    list.push_back(std::move(found.task));
  }
  return json_answer(list);
}

namespace {

// A task by its Docker id, a unique prefix of it, or its weft key.
FoundTask find_task(const std::string& ref, ServiceApi& services, NetworkService& networks, SwarmService* swarm) {
  if (ref.empty()) bad_request("task id is required");
  names::validate_text("task id", ref, kMaxTaskRef);
  std::vector<FoundTask> tasks = all_tasks(services, networks, swarm, [](const Service&) { return true; });
  for (FoundTask& found : tasks) {
    if (found.task.at("ID") == ref || found.record.key() == ref) return std::move(found);
  }
  FoundTask* match = nullptr;
  for (FoundTask& found : tasks) {
    if (!found.task.at("ID").get_ref<const std::string&>().starts_with(ref)) continue;
    if (match) bad_request("task " + names::printable(ref) + " is ambiguous (several tasks have ids starting with it)");
    match = &found;
  }
  if (!match) throw ApiError(ApiError::Kind::NotFound, "no such task: " + names::printable(ref));
  return std::move(*match);
}

}  // namespace

DockerAnswer docker_inspect_task(const std::string& ref, ServiceApi& services, NetworkService& networks,
                                 SwarmService* swarm) {
  return json_answer(find_task(ref, services, networks, swarm).task);
}

DockerAnswer docker_update_service(const std::string& ref, std::string_view target, std::string_view body,
                                   ServiceApi& services) {
  const ServiceDetail detail = services.get_service(ref);
  const Service& service = detail.service;
  if (const auto version = query_parameter(query_of(target), "version")) {
    std::uint64_t index = 0;
    const auto [end, error] = std::from_chars(version->data(), version->data() + version->size(), index);
    if (version->empty() || error != std::errc{} || end != version->data() + version->size()) {
      bad_request("invalid version " + names::quoted_preview(*version) + ": want the service's Version.Index");
    }
    if (index != service.version) {
      throw ApiError(ApiError::Kind::Conflict,
                     "update out of sequence: service " + service.name + " is at version " +
                         std::to_string(service.version) + ", the update was made from version " +
                         std::to_string(index) + "; inspect it again and retry");
    }
  }
  const json document = parse_body(body);
  (void)ObjectReader::of(document, "");  // refuses a body that is not an object
  std::vector<std::string> differences;
  collect_differences(document, service_json(detail).at("Spec"), "", 0, differences);
  if (!differences.empty()) {
    std::string fields;
    for (const std::string& path : differences) fields += (fields.empty() ? "" : ", ") + names::printable(path);
    bad_request("weft can change only a service's replica count (" + std::string(kChangeablePath) +
                "); this update also changes " + fields + ": remove the service and create it again with " +
                "`weft service create`");
  }
  services.update_service(service.id, parse_service_update(body));
  return json_answer(json{{"Warnings", json::array()}});
}

bool wants_docker_logs(std::string_view target) {
  return query_parameter(query_of(target), "stdout").has_value() || query_parameter(query_of(target), "stderr").has_value();
}

std::string docker_stream_frame(std::uint8_t stream, std::string_view payload) {
  const auto size = static_cast<std::uint32_t>(payload.size());
  std::string frame{static_cast<char>(stream), 0, 0, 0,
                    static_cast<char>((size >> 24) & 0xff), static_cast<char>((size >> 16) & 0xff),
                    static_cast<char>((size >> 8) & 0xff), static_cast<char>(size & 0xff)};
  frame.append(payload);
  return frame;
}

namespace {

// The logs of `service`'s tasks on this node (only `slot` when given).
DockerAnswer docker_logs(const Service& service, std::optional<std::uint64_t> only_slot,
                         const std::string& weft_ref, std::string_view target, ServiceApi& services,
                         SwarmService* swarm) {
  if (flag_parameter(target, "follow")) {
    return json_answer(json{{"message", "weft answers docker service logs without --follow only; "
                                        "follow a service's logs with `weft service logs --follow " +
                                            names::printable(weft_ref) + "`"}},
                       http::status::not_implemented);
  }
  if (flag_parameter(target, "timestamps")) {
    bad_request("weft keeps no time per log line: ask again without --timestamps");
  }
  if (const auto since = query_parameter(query_of(target), "since"); since && !since->empty() && *since != "0") {
    bad_request("weft keeps no time per log line: ask again without --since");
  }
  const bool to_stdout = flag_parameter(target, "stdout");
  if (!to_stdout && !flag_parameter(target, "stderr")) bad_request("Bad parameters: you must choose at least one stream");
  std::optional<std::uint64_t> tail;
  if (const auto text = query_parameter(query_of(target), "tail"); text && !text->empty() && *text != "all") {
    std::uint64_t lines = 0;
    const auto [end, error] = std::from_chars(text->data(), text->data() + text->size(), lines);
    if (error != std::errc{} || end != text->data() + text->size()) {
      bad_request("invalid tail " + names::quoted_preview(*text) + ": want a number of lines or \"all\"");
    }
    tail = lines;
  }
  const bool details = flag_parameter(target, "details");
  // The tasks the service has now, wherever they run (the agent gathers the
  // other nodes' logs over the cluster): the CLI inspects the task of each
  // line, and a log left by a slot that moved away or was scaled down has
  // none, so such logs are left out.
  std::map<std::uint64_t, TaskRecord> current;  // by slot
  for (TaskRecord& task : services.list_tasks(service.id)) {
    if (!only_slot || task.slot == *only_slot) current[task.slot] = std::move(task);
  }
  std::map<std::string, std::string> node_ids;  // hostname -> /nodes ID
  if (details && swarm) {
    try {
      for (const NodeInfo& node : swarm->list_nodes()) node_ids[node.hostname] = node.id;
    } catch (const ApiError&) {
      // Not in a swarm: the node is named as weft names it.
    }
  }
  // weft keeps a task's stdout and stderr in one file: it is sent as the
  // stream asked for, stdout when both are.
  const std::uint8_t stream = to_stdout ? 1 : 2;
  std::string out;
  for (const TaskLog& log : services.task_logs_by_slot(service.id, kMaxLogBytesPerTask)) {
    const auto found = current.find(log.slot);
    if (found == current.end()) continue;
    const TaskRecord& task = found->second;
    const auto id = node_ids.find(task.node);
    const std::string prefix =
        "com.docker.swarm.node.id=" + details_escape(id == node_ids.end() ? task.node : id->second) +
        ",com.docker.swarm.service.id=" + details_escape(service.id) +
        ",com.docker.swarm.task.id=" + details_escape(docker_task_id(task)) + " ";
    std::vector<std::string_view> lines;
    std::string_view text = log.text;
    while (!text.empty()) {
      const auto newline = text.find('\n');
      lines.push_back(text.substr(0, newline));
      text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);
    }
    const std::size_t first = tail && *tail < lines.size() ? lines.size() - *tail : 0;
    for (std::size_t i = first; i < lines.size(); ++i) {
      std::string payload = details ? prefix : std::string{};
      payload.append(lines[i]);
      payload += '\n';
      out += docker_stream_frame(stream, payload);
    }
  }
  return DockerAnswer{http::status::ok, std::move(out), "application/vnd.docker.raw-stream"};
}

}  // namespace

DockerAnswer docker_service_logs(const std::string& ref, std::string_view target, ServiceApi& services,
                                 SwarmService* swarm) {
  return docker_logs(services.get_service(ref).service, std::nullopt, ref, target, services, swarm);
}

DockerAnswer docker_task_logs(const std::string& ref, std::string_view target, ServiceApi& services,
                              NetworkService& networks, SwarmService* swarm) {
  const FoundTask found = find_task(ref, services, networks, swarm);
  return docker_logs(found.service, found.record.slot, found.service.name, target, services, swarm);
}

void refuse_service_image(std::string_view create_body, NetworkService* networks) {
  const json document = parse_body(create_body);
  const ObjectReader root = ObjectReader::of(document, "");
  const auto task_template = root.object("TaskTemplate");
  const auto container = task_template ? task_template->object("ContainerSpec") : std::nullopt;
  const auto image = container ? container->non_empty_string("Image") : std::nullopt;
  if (!image) return;

  std::string name = "NAME";
  if (const auto given = root.non_empty_string("Name"); given && !names::service_name_error(*given)) name = *given;
  std::string network_options;
  for (const auto& [element, path] : task_template->array("Networks")) {
    if (!element->is_object()) continue;
    const auto target = element->find("Target");
    if (target == element->end() || !target->is_string() || names::network_ref_error(target->get<std::string>()))
      continue;
    std::string network = target->get<std::string>();
    // The docker CLI sends the id it looked up; the user knows the name.
    if (networks) {
      try {
        network = networks->get_network(network).name;
      } catch (const ApiError&) {
      }
    }
    network_options += " --network " + short_if_id(network);
  }
  if (network_options.empty()) network_options = " --network NET";
  std::string command;
  for (const std::string key : {"Command", "Args"}) {
    for (const auto& [element, path] : container->array(key)) {
      if (!element->is_string()) continue;
      command += " " + shell_word(names::printable(element->get<std::string>()));
    }
  }
  if (command.empty() || command.size() > 512) command = " COMMAND [ARGS...]";
  bad_request("weft runs programs, not images: it cannot run image " + names::quoted_preview(*image) +
              ". Run the program as the service's tasks instead: weft service create --name " + name + network_options +
              " --" + command);
}

}  // namespace weft::control::api
