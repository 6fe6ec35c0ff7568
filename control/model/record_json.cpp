#include "control/model/record_json.h"

#include <optional>
#include <string>

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
  return {{"id", e.id},         {"name", e.name},      {"network_id", e.network_id}, {"netns", e.netns},
          {"ifname", e.ifname}, {"ip", e.ip.str()},    {"prefix_len", e.prefix_len}, {"mac", e.mac.str()},
          {"node", e.node}};
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
  return e;
}

json endpoint_record(const Endpoint& e, dataplane::Ipv4 vtep) {
  auto record = endpoint_record(e);
  record["vtep"] = vtep.str();
  return record;
}

dataplane::Ipv4 vtep_from_record(const json& j) { return parsed_field(j, "vtep", dataplane::Ipv4::parse); }

}  // namespace weft::control
