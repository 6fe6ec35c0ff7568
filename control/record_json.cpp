#include "control/record_json.h"

namespace weft::control {

using nlohmann::json;

json network_record(const Network& n) {
  return {{"id", n.id},           {"name", n.name}, {"driver", n.driver},         {"subnet", n.subnet},
          {"gateway", n.gateway}, {"vni", n.vni},   {"attachable", n.attachable}, {"created", n.created},
          {"node", n.node}};
}

Network network_from_record(const json& j) {
  Network n;
  n.id = j.at("id").get<std::string>();
  n.name = j.at("name").get<std::string>();
  n.driver = j.at("driver").get<std::string>();
  n.subnet = j.at("subnet").get<std::string>();
  n.gateway = j.at("gateway").get<std::string>();
  n.vni = j.at("vni").get<std::uint32_t>();
  n.attachable = j.value("attachable", false);
  n.created = j.value("created", "");
  n.node = j.value("node", "");
  return n;
}

json endpoint_record(const Endpoint& e) {
  return {{"id", e.id},         {"name", e.name}, {"network_id", e.network_id}, {"netns", e.netns},
          {"ifname", e.ifname}, {"ip", e.ip},     {"prefix_len", e.prefix_len}, {"mac", e.mac},
          {"node", e.node}};
}

Endpoint endpoint_from_record(const json& j) {
  Endpoint e;
  e.id = j.at("id").get<std::string>();
  e.name = j.value("name", "");
  e.network_id = j.at("network_id").get<std::string>();
  e.netns = j.value("netns", "");
  e.ifname = j.value("ifname", "eth0");
  e.ip = j.at("ip").get<std::string>();
  e.prefix_len = j.at("prefix_len").get<int>();
  e.mac = j.at("mac").get<std::string>();
  e.node = j.value("node", "");
  return e;
}

}  // namespace weft::control
