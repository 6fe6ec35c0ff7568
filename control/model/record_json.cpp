#include "control/model/record_json.h"

#include <optional>
#include <string>

#include "control/model/names.h"

namespace weft::control {

using nlohmann::json;

namespace {

// Reads the string field `key` and parses it with `parse` (Ipv4::parse, ...).
template <class Parse>
auto parsed_field(const json& j, const char* key, Parse parse) {
  const auto& text = j.at(key).get_ref<const std::string&>();
  auto value = parse(text);
  if (!value) throw json::other_error::create(599, std::string("field \"") + key + "\" is malformed: " + text, &j);
  return *value;
}

}  // namespace

json network_record(const Network& n) {
  return {{"id", n.id},           {"name", n.name},         {"driver", n.driver},
          {"subnet", n.subnet.str()}, {"gateway", n.gateway.str()}, {"vni", n.vni},
          {"attachable", n.attachable}, {"created", n.created}, {"node", n.node}};
}

Network network_from_record(const json& j) {
  Network n;
  n.id = j.at("id").get<std::string>();
  n.name = j.at("name").get<std::string>();
  n.driver = j.at("driver").get<std::string>();
  n.subnet = parsed_field(j, "subnet", dataplane::Cidr::parse);
  n.gateway = parsed_field(j, "gateway", dataplane::Ipv4::parse);
  n.vni = j.at("vni").get<std::uint32_t>();
  n.attachable = j.value("attachable", false);
  n.created = j.value("created", "");
  n.node = j.value("node", "");
  return n;
}

json endpoint_record(const Endpoint& e) {
  json record = {{"id", e.id},         {"name", e.name},      {"network_id", e.network_id}, {"netns", e.netns},
                 {"ifname", e.ifname}, {"ip", e.ip.str()},    {"prefix_len", e.prefix_len}, {"mac", e.mac.str()},
                 {"node", e.node}};
  // Only service backends carry these, so other records stay as they were.
  if (!e.service_id.empty()) {
    record["service_id"] = e.service_id;
    record["backend_state"] = backend_state_name(e.backend_state);
    if (!e.drain_until.empty()) record["drain_until"] = e.drain_until;
  }
  // Only when there are some, so records without aliases stay as they were.
  if (!e.aliases.empty()) record["aliases"] = e.aliases;
  return record;
}

Endpoint endpoint_from_record(const json& j) {
  Endpoint e;
  e.id = j.at("id").get<std::string>();
  e.name = j.value("name", "");
  e.network_id = j.at("network_id").get<std::string>();
  e.netns = j.value("netns", "");
  e.ifname = j.value("ifname", "eth0");
  e.ip = parsed_field(j, "ip", dataplane::Ipv4::parse);
  e.prefix_len = j.at("prefix_len").get<int>();
  e.mac = parsed_field(j, "mac", dataplane::MacAddress::parse);
  e.node = j.value("node", "");
  e.service_id = j.value("service_id", "");
  if (j.contains("backend_state")) {
    const auto& state = j.at("backend_state").get_ref<const std::string&>();
    auto parsed = parse_backend_state(state);
    if (!parsed) throw json::other_error::create(599, "field \"backend_state\" is malformed: " + state, &j);
    e.backend_state = *parsed;
  }
  e.drain_until = j.value("drain_until", "");
  // Optional (records of older agents have none); they come from peers too,
  // so they are held to the attach rules: at most 16 DNS names.
  if (j.contains("aliases")) {
    e.aliases = j.at("aliases").get<std::vector<std::string>>();
    if (auto error = names::aliases_error(e.aliases))
      throw json::other_error::create(599, "field \"aliases\" is malformed: " + *error, &j);
  }
  return e;
}

json endpoint_record(const Endpoint& e, dataplane::Ipv4 vtep) {
  auto record = endpoint_record(e);
  record["vtep"] = vtep.str();
  return record;
}

dataplane::Ipv4 vtep_from_record(const json& j) { return parsed_field(j, "vtep", dataplane::Ipv4::parse); }

std::string backend_state_name(BackendState state) { return state == BackendState::draining ? "draining" : "active"; }

std::optional<BackendState> parse_backend_state(std::string_view text) {
  if (text == "active") return BackendState::active;
  if (text == "draining") return BackendState::draining;
  return std::nullopt;
}

std::string endpoint_mode_name(EndpointMode mode) { return mode == EndpointMode::dnsrr ? "dnsrr" : "vip"; }

std::optional<EndpointMode> parse_endpoint_mode(std::string_view text) {
  if (text == "vip") return EndpointMode::vip;
  if (text == "dnsrr") return EndpointMode::dnsrr;
  return std::nullopt;
}

std::string port_text(const PublishedPort& p) {
  return std::to_string(p.port) + (p.protocol == PortProtocol::udp ? "/udp" : "/tcp");
}

std::optional<PublishedPort> parse_port(std::string_view text) {
  PublishedPort port;
  auto number = text;
  if (const auto slash = text.find('/'); slash != std::string_view::npos) {
    const auto proto = text.substr(slash + 1);
    if (proto == "tcp")
      port.protocol = PortProtocol::tcp;
    else if (proto == "udp")
      port.protocol = PortProtocol::udp;
    else
      return std::nullopt;
    number = text.substr(0, slash);
  }
  if (number.empty() || number.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (char c : number) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value < 1 || value > 65535) return std::nullopt;
  port.port = static_cast<std::uint16_t>(value);
  return port;
}

json service_record(const Service& s) {
  json ports = json::array();
  for (const auto& p : s.ports) ports.push_back(port_text(p));
  json vips = json::array();
  for (const auto& v : s.vips)
    vips.push_back({{"network_id", v.network_id}, {"addr", v.addr.str()}, {"prefix_len", v.prefix_len}});
  return {{"id", s.id},           {"name", s.name},     {"mode", endpoint_mode_name(s.mode)},
          {"ports", ports},       {"networks", s.network_ids}, {"vips", vips},
          {"created", s.created}, {"node", s.node}, {"command", s.command},
          {"replicas", s.replicas},  {"restart_condition", restart_condition_name(s.restart_condition)},
          {"version", s.version}};
}

Service service_from_record(const json& j) {
  Service s;
  s.id = j.at("id").get<std::string>();
  s.name = j.at("name").get<std::string>();
  const auto& mode = j.at("mode").get_ref<const std::string&>();
  auto parsed_mode = parse_endpoint_mode(mode);
  if (!parsed_mode) throw json::other_error::create(599, "field \"mode\" is malformed: " + mode, &j);
  s.mode = *parsed_mode;
  for (const auto& p : j.at("ports")) {
    const auto& text = p.get_ref<const std::string&>();
    auto port = parse_port(text);
    if (!port) throw json::other_error::create(599, "a port is malformed: " + text, &j);
    s.ports.push_back(*port);
  }
  s.network_ids = j.at("networks").get<std::vector<std::string>>();
  for (const auto& v : j.at("vips"))
    s.vips.push_back(ServiceVip{.network_id = v.at("network_id").get<std::string>(),
                                .addr = parsed_field(v, "addr", dataplane::Ipv4::parse),
                                .prefix_len = v.at("prefix_len").get<int>()});
  s.created = j.value("created", "");
  s.node = j.value("node", "");
  // Records from before tasks have none of these.
  if (auto it = j.find("command"); it != j.end()) s.command = it->get<std::vector<std::string>>();
  s.replicas = j.value("replicas", std::uint64_t{0});
  const auto condition = j.value("restart_condition", std::string("any"));
  auto parsed_condition = parse_restart_condition(condition);
  if (!parsed_condition) throw json::other_error::create(599, "field \"restart_condition\" is malformed: " + condition, &j);
  s.restart_condition = *parsed_condition;
  s.version = j.value("version", std::uint64_t{0});
  return s;
}

std::string restart_condition_name(RestartCondition condition) {
  switch (condition) {
    case RestartCondition::on_failure: return "on-failure";
    case RestartCondition::none: return "none";
    case RestartCondition::any: break;
  }
  return "any";
}

std::optional<RestartCondition> parse_restart_condition(std::string_view text) {
  if (text == "any") return RestartCondition::any;
  if (text == "on-failure") return RestartCondition::on_failure;
  if (text == "none") return RestartCondition::none;
  return std::nullopt;
}

json task_record(const TaskRecord& t) {
  return {{"service_id", t.service_id}, {"slot", t.slot},   {"node", t.node},
          {"endpoint_id", t.endpoint_id}, {"state", t.state}, {"started_at", t.started_at},
          {"error", t.error},           {"pid", t.pid},     {"netns", t.netns}};
}

TaskRecord task_from_record(const json& j) {
  TaskRecord t;
  t.service_id = j.at("service_id").get<std::string>();
  t.slot = j.at("slot").get<std::uint64_t>();
  t.node = j.at("node").get<std::string>();
  t.endpoint_id = j.value("endpoint_id", "");
  t.state = j.at("state").get<std::string>();
  t.started_at = j.value("started_at", "");
  t.error = j.value("error", "");
  t.pid = j.value("pid", std::int64_t{0});
  t.netns = j.value("netns", "");
  return t;
}

}  // namespace weft::control
