#include "control/api/services.h"

#include <array>
#include <optional>
#include <string>
#include <utility>

#include "control/api/body_reader.h"
#include "control/api/routes.h"
#include "control/model/model.h"
#include "control/model/names.h"
#include "control/model/record_json.h"

namespace weft::control::api {

using nlohmann::json;

namespace {

const char* mode_text(EndpointMode mode) { return mode == EndpointMode::dnsrr ? "dnsrr" : "vip"; }
const char* protocol_text(PortProtocol protocol) { return protocol == PortProtocol::udp ? "udp" : "tcp"; }
const char* state_text(BackendState state) { return state == BackendState::draining ? "draining" : "active"; }

json endpoint_spec_json(const Service& service) {
  json ports = json::array();
  for (const PublishedPort& port : service.ports) {
    ports.push_back(json{{"Protocol", protocol_text(port.protocol)}, {"TargetPort", port.port}});
  }
  return json{{"Mode", mode_text(service.mode)}, {"Ports", std::move(ports)}};
}

json backend_json(const ServiceBackendInfo& backend) {
  json j{
      {"EndpointID", backend.endpoint_id},
      {"Name", backend.endpoint_name},
      {"NetworkID", backend.network_id},
      {"Addr", backend.ip == dataplane::Ipv4{} ? "" : backend.ip.str()},
      {"Node", backend.node},
      {"State", state_text(backend.state)},
  };
  // Absent rather than 0 where no load balancer counted: 0 would claim that
  // nothing went to the backend.
  if (backend.counters) {
    j["Connections"] = backend.counters->connections;
    j["Packets"] = backend.counters->packets;
    j["Bytes"] = backend.counters->bytes;
  }
  return j;
}

// The networks of a create body: Docker's TaskTemplate.Networks, or the
// top-level Networks of clients older than API 1.25.
std::vector<std::string> service_networks(const ObjectReader& root) {
  auto elements = [&]() {
    if (auto task_template = root.object("TaskTemplate")) {
      auto listed = task_template->array("Networks");
      if (!listed.empty()) return listed;
    }
    return root.array("Networks");
  }();
  if (elements.size() > kMaxServiceNetworks) {
    bad_request("a service has at most " + std::to_string(kMaxServiceNetworks) + " networks, the request lists " +
                std::to_string(elements.size()));
  }
  std::vector<std::string> networks;
  for (const auto& [element, path] : elements) {
    const ObjectReader network = ObjectReader::of(*element, path);
    networks.push_back(network.required_string("Target"));
    if (auto error = names::network_ref_error(networks.back())) bad_request("\"" + path + ".Target\": " + *error);
  }
  return networks;
}

// "6379/tcp" for the service manager, which says what is wrong with a port.
std::vector<std::string> service_ports(const ObjectReader& endpoint_spec) {
  const auto elements = endpoint_spec.array("Ports");
  if (elements.size() > kMaxServicePorts) {
    bad_request("a service has at most " + std::to_string(kMaxServicePorts) + " ports, the request lists " +
                std::to_string(elements.size()));
  }
  std::vector<std::string> ports;
  for (const auto& [element, path] : elements) {
    const ObjectReader port = ObjectReader::of(*element, path);
    const auto target = port.unsigned_integer("TargetPort", 65535);
    if (!target || *target == 0) bad_request("\"" + port.path_of("TargetPort") + "\" must be a port from 1 to 65535");
    const std::string protocol = port.non_empty_string("Protocol").value_or("tcp");
    names::validate_text(port.path_of("Protocol"), protocol, names::kMaxShortText);
    ports.push_back(std::to_string(*target) + "/" + protocol);
  }
  return ports;
}

// One query value: %XX and '+' decoded, NUL, '/' and bad escapes refused.
std::string query_value(std::string_view name, std::string_view raw) {
  std::string spaced(raw);
  for (char& c : spaced) {
    if (c == '+') c = ' ';
  }
  auto decoded = percent_decode(spaced);
  if (!decoded) bad_request("malformed percent-encoding in query parameter \"" + std::string(name) + "\"");
  return *decoded;
}

}  // namespace

void validate_service_ref(std::string_view name_or_id) {
  if (name_or_id.empty()) bad_request("service name or id is required");
  names::validate_text("service name or id", name_or_id, kMaxServiceRef);
}

json service_json(const ServiceDetail& detail) {
  const Service& service = detail.service;
  json networks = json::array();
  for (const std::string& network_id : service.network_ids) networks.push_back(json{{"Target", network_id}});
  json vips = json::array();
  for (const ServiceVip& vip : service.vips) {
    vips.push_back(json{{"NetworkID", vip.network_id},
                        {"Addr", vip.addr.str() + "/" + std::to_string(vip.prefix_len)}});
  }
  json backends = json::array();
  for (const ServiceBackendInfo& backend : detail.backends) backends.push_back(backend_json(backend));

  const json endpoint_spec = endpoint_spec_json(service);
  json endpoint{{"Spec", endpoint_spec}, {"VirtualIPs", std::move(vips)}};
  if (!endpoint_spec["Ports"].empty()) endpoint["Ports"] = endpoint_spec["Ports"];
  json j{
      {"ID", service.id},
      {"Version", {{"Index", service.version}}},
      {"CreatedAt", service.created},
      // weft records no time of update; Docker's clients need a time here.
      {"UpdatedAt", service.created},
      {"Spec",
       {{"Name", service.name},
        {"Labels", json::object()},
        // The docker CLI dereferences ContainerSpec (service update, logs):
        // present even when the service runs no tasks.
        {"TaskTemplate", {{"ContainerSpec", json::object()}, {"Networks", std::move(networks)}}},
        {"EndpointSpec", endpoint_spec}}},
      {"Endpoint", std::move(endpoint)},
      {"Backends", std::move(backends)},
      {"Node", service.node},
  };
  // Go's clients cannot read "" as a time.
  if (service.created.empty()) j.erase("CreatedAt"), j.erase("UpdatedAt");
  // Only services with tasks have these: a service whose backends are
  // attached by hand has no mode or replicas.
  if (!service.command.empty()) {
    j["Spec"]["TaskTemplate"]["ContainerSpec"] = {{"Args", service.command}};
    j["Spec"]["TaskTemplate"]["RestartPolicy"] = {{"Condition", restart_condition_name(service.restart_condition)}};
    j["Spec"]["Mode"] = {{"Replicated", {{"Replicas", service.replicas}}}};
    j["ServiceStatus"] = {{"RunningTasks", detail.running_tasks}, {"DesiredTasks", service.replicas}};
  }
  return j;
}

json task_json(const TaskRecord& task, const Service& service) {
  return json{
      {"ID", task.key()},
      {"ServiceID", task.service_id},
      {"Slot", task.slot},
      {"NodeID", task.node},
      // As Docker: a task that ended for good (its restart condition said
      // so) or whose slot is gone is meant to be shut down.
      {"DesiredState",
       task.slot <= service.replicas && task.state != "complete" && task.state != "failed" ? "running" : "shutdown"},
      {"Status", {{"State", task.state}, {"Timestamp", task.started_at}, {"Err", task.error}, {"PID", task.pid}}},
      {"EndpointID", task.endpoint_id},
      {"Netns", task.netns},
  };
}

namespace {

constexpr std::size_t kMaxCommandArgs = 256;

std::vector<std::string> string_array(const ObjectReader& reader, const std::string& key) {
  const auto elements = reader.array(key);
  if (elements.size() > kMaxCommandArgs)
    bad_request("\"" + reader.path_of(key) + "\" has " + std::to_string(elements.size()) + " elements: at most " +
                std::to_string(kMaxCommandArgs));
  std::vector<std::string> out;
  for (const auto& [element, path] : elements) {
    if (!element->is_string()) bad_request("\"" + path + "\" must be a string");
    out.push_back(element->get<std::string>());
  }
  return out;
}

std::optional<std::uint64_t> replicas_of(const ObjectReader& root) {
  auto mode = root.object("Mode");
  if (!mode) return std::nullopt;
  auto replicated = mode->object("Replicated");
  if (!replicated) return std::nullopt;
  return replicated->unsigned_integer("Replicas", 1u << 20);
}

}  // namespace

ServiceUpdate parse_service_update(std::string_view body) {
  const json document = parse_body(body);
  const ObjectReader root = ObjectReader::of(document, "");
  return ServiceUpdate{.replicas = replicas_of(root)};
}

json lb_lookup_json(const LbLookupResult& result, const std::string& service_name) {
  json backend = nullptr;
  if (!result.backend_endpoint_id.empty()) {
    backend = json{{"EndpointID", result.backend_endpoint_id}, {"Addr", result.backend_ip.str()}};
  }
  return json{
      {"Service", service_name},
      {"ServiceID", result.service_id},
      {"NetworkID", result.network_id},
      {"VIP", result.vip.str()},
      {"Backend", std::move(backend)},
      {"LbBackend", result.lb_backend},
      {"Deterministic", result.deterministic},
  };
}

ServiceSpec parse_service_create(std::string_view body) {
  const json document = parse_body(body);
  const ObjectReader root = ObjectReader::of(document, "");

  ServiceSpec spec;
  spec.name = root.required_string("Name");
  // Length and control characters here; Docker's character rule
  // (names::validate_service_name) is the service manager's to apply.
  names::validate_text("service name", spec.name, names::kMaxServiceName);
  spec.networks = service_networks(root);
  if (auto endpoint_spec = root.object("EndpointSpec")) {
    spec.endpoint_mode = endpoint_spec->non_empty_string("Mode");
    if (spec.endpoint_mode) names::validate_text("endpoint mode", *spec.endpoint_mode, names::kMaxShortText);
    spec.ports = service_ports(*endpoint_spec);
  }
  if (auto task_template = root.object("TaskTemplate")) {
    if (auto container = task_template->object("ContainerSpec")) {
      spec.command = string_array(*container, "Command");
      auto args = string_array(*container, "Args");
      spec.command.insert(spec.command.end(), args.begin(), args.end());
    }
    if (auto policy = task_template->object("RestartPolicy")) {
      spec.restart_condition = policy->non_empty_string("Condition");
      if (spec.restart_condition) names::validate_text("restart condition", *spec.restart_condition, names::kMaxShortText);
    }
  }
  spec.replicas = replicas_of(root);
  return spec;
}

LbLookupRequest parse_lb_lookup_query(std::string_view query) {
  struct Parameter {
    std::string_view name;
    std::size_t max_length;
    bool required;
    bool seen = false;
    std::optional<std::string> value{};
  };
  std::array parameters{
      Parameter{"service", kMaxServiceRef, true},
      Parameter{"src", names::kMaxShortText, true},
      Parameter{"dport", names::kMaxShortText, true},
      Parameter{"proto", names::kMaxShortText, false},
      Parameter{"network", names::kMaxNetworkRef, false},
  };
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = pair.find('=');
    const std::string_view name = pair.substr(0, eq);
    const std::string_view raw = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    for (Parameter& parameter : parameters) {
      if (parameter.name != name) continue;
      if (parameter.seen) bad_request("query parameter \"" + std::string(name) + "\" is given more than once");
      // Bounded before decoding: an escape is three characters for one.
      if (raw.size() > 3 * parameter.max_length) {
        bad_request("query parameter \"" + std::string(name) + "\" is longer than " +
                    std::to_string(parameter.max_length) + " characters");
      }
      parameter.seen = true;
      parameter.value = query_value(name, raw);
      names::validate_text("query parameter \"" + std::string(name) + "\"", *parameter.value, parameter.max_length);
      if (parameter.value->empty()) parameter.value.reset();  // "proto=" means not given
    }
  }
  for (const Parameter& parameter : parameters) {
    if (parameter.required && !parameter.value) {
      bad_request("missing required query parameter \"" + std::string(parameter.name) + "\"");
    }
  }

  LbLookupRequest request;
  request.service = *parameters[0].value;
  request.src = *parameters[1].value;
  request.dport = *parameters[2].value;
  request.proto = parameters[3].value;
  request.network = parameters[4].value;
  return request;
}

}  // namespace weft::control::api
