#include "control/api/json.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "control/api/body_reader.h"
#include "control/api/services.h"
#include "control/model/names.h"

namespace weft::control {

using nlohmann::json;

namespace {

using api::bad_request;
using api::ObjectReader;
using api::parse_body;

// All zero (never a real MAC) in an Endpoint that was never filled in.
std::string mac_text(const Endpoint& endpoint) {
  return endpoint.mac == dataplane::MacAddress{} ? "" : endpoint.mac.str();
}

const char* backend_state_text(BackendState state) {
  return state == BackendState::draining ? "draining" : "active";
}

// weft's service fields of an endpoint: only on service backends, so the
// JSON of other endpoints stays as it was.
void add_service_fields(json& j, const Endpoint& endpoint) {
  if (endpoint.service_id.empty()) return;
  j["Service"] = endpoint.service_id;
  j["BackendState"] = backend_state_text(endpoint.backend_state);
  if (endpoint.backend_state == BackendState::draining && !endpoint.drain_until.empty()) {
    j["DrainUntil"] = endpoint.drain_until;
  }
}

// Where the endpoint's namespace asks for names (every node serves its own
// endpoints there) and the extra names it answers to.
void add_dns_fields(json& j, const Endpoint& endpoint) {
  j["DNS"] = kEmbeddedDnsAddress;
  j["Aliases"] = endpoint.aliases;
}

}  // namespace

void to_json(json& j, const Network& network) {
  json ipam_configs = json::array();
  if (network.gateway != dataplane::Ipv4{}) {  // see Network::gateway
    ipam_configs.push_back(json{{"Subnet", network.subnet.str()}, {"Gateway", network.gateway.str()}});
  }
  j = json{
      {"Name", network.name},
      {"Id", network.id},
      {"Created", network.created},
      {"Scope", "swarm"},
      {"Driver", network.driver},
      {"Attachable", network.attachable},
      {"IPAM", json{{"Driver", "default"}, {"Config", std::move(ipam_configs)}}},
      // Docker reports the VNI as a string list under this option name.
      {"Options", json{{"com.docker.network.driver.overlay.vxlanid_list", std::to_string(network.vni)}}},
      {"Node", network.node},
  };
}

void to_json(json& j, const Endpoint& endpoint) {
  j = json{
      {"Id", endpoint.id},
      {"Name", endpoint.name},
      {"Network", endpoint.network_name},
      {"NetworkID", endpoint.network_id},
      {"Netns", endpoint.netns},
      {"Interface", endpoint.ifname},
      {"IPv4Address", api::ipv4_with_prefix(endpoint)},
      {"MacAddress", mac_text(endpoint)},
      {"Node", endpoint.node},
  };
  add_dns_fields(j, endpoint);
  add_service_fields(j, endpoint);
}

namespace api {

std::string ipv4_with_prefix(const Endpoint& endpoint) {
  if (endpoint.ip == dataplane::Ipv4{}) return "";  // see Endpoint::ip
  return endpoint.ip.str() + "/" + std::to_string(endpoint.prefix_len);
}

json network_detail_json(const Network& network, const std::vector<Endpoint>& endpoints) {
  json detail = network;
  json containers = json::object();
  for (const Endpoint& endpoint : endpoints) {
    if (endpoint.network_id != network.id) continue;
    json container{
        {"Name", endpoint.name},
        {"EndpointID", endpoint.id},
        {"MacAddress", mac_text(endpoint)},
        {"IPv4Address", ipv4_with_prefix(endpoint)},
        {"Netns", endpoint.netns},
    };
    add_dns_fields(container, endpoint);
    add_service_fields(container, endpoint);
    containers[endpoint.id] = std::move(container);
  }
  detail["Containers"] = std::move(containers);
  return detail;
}

NetworkSpec parse_network_create(std::string_view body) {
  const json document = parse_body(body);
  const ObjectReader root = ObjectReader::of(document, "");

  NetworkSpec spec;
  spec.name = root.required_string("Name");
  // Length and control characters here, before anything else touches the
  // name; Docker's character rule (names::validate_network_name) is the
  // service's to apply.
  names::validate_text("network name", spec.name, names::kMaxNetworkName);
  if (auto driver = root.non_empty_string("Driver")) {
    names::validate_text("driver", *driver, names::kMaxShortText);
    spec.driver = *driver;
  }
  spec.attachable = root.boolean("Attachable", false);

  if (auto ipam = root.object("IPAM")) {
    if (auto driver = ipam->non_empty_string("Driver"); driver && *driver != "default") {
      bad_request("IPAM driver " + names::quoted_preview(*driver) + " is not supported (only \"default\" is)");
    }
    const auto configs = ipam->array("Config");
    if (configs.size() > 1) bad_request("\"IPAM.Config\" has " + std::to_string(configs.size()) +
                                        " entries; a network has exactly one subnet");
    if (configs.size() == 1) {
      const ObjectReader config = ObjectReader::of(*configs[0].first, configs[0].second);
      spec.subnet = config.non_empty_string("Subnet");
      spec.gateway = config.non_empty_string("Gateway");
      if (spec.subnet) names::validate_text("subnet", *spec.subnet, names::kMaxShortText);
      if (spec.gateway) names::validate_text("gateway", *spec.gateway, names::kMaxShortText);
    }
  }
  return spec;
}

AttachRequest parse_network_connect(std::string_view network, std::string_view body) {
  const json document = parse_body(body);
  const ObjectReader root = ObjectReader::of(document, "");

  AttachRequest request;
  request.network = std::string(network);
  request.netns = root.required_string("Container");
  names::validate_netns(request.netns);
  // Only an explicit name must be a DNS name; the default one the service
  // derives from the (already validated) namespace is bounded and printable.
  request.name = root.non_empty_string("Name");
  if (request.name) names::validate_endpoint_name(*request.name);
  if (auto endpoint_config = root.object("EndpointConfig")) {
    if (auto ipam_config = endpoint_config->object("IPAMConfig")) {
      request.ip = ipam_config->non_empty_string("IPv4Address");
      if (request.ip) names::validate_text("IPv4 address", *request.ip, names::kMaxShortText);
    }
    // Docker's place for them: EndpointConfig.Aliases, a list of names.
    const auto aliases = endpoint_config->array("Aliases");
    if (aliases.size() > names::kMaxAliases)
      bad_request("\"" + endpoint_config->path_of("Aliases") + "\" has " + std::to_string(aliases.size()) +
                  " entries; an endpoint has at most " + std::to_string(names::kMaxAliases) + " aliases");
    for (const auto& [value, path] : aliases) {
      if (!value->is_string()) bad_request("\"" + path + "\" must be a string, got " + value->type_name());
      request.aliases.push_back(value->get<std::string>());
    }
    names::validate_aliases(request.aliases);
  }
  // weft's extension: the endpoint becomes a backend of this service.
  request.service = root.non_empty_string("Service");
  if (request.service) validate_service_ref(*request.service);
  return request;
}

DetachRequest parse_network_disconnect(std::string_view network, std::string_view body) {
  const json document = parse_body(body);
  const ObjectReader root = ObjectReader::of(document, "");

  DetachRequest request;
  request.network = std::string(network);
  request.netns = root.required_string("Container");
  // Bounded but not held to attach's name-or-absolute-path rule, so an
  // endpoint attached by an older agent can still be detached.
  names::validate_text("network namespace", request.netns, names::kMaxNetnsPath);
  // Nothing keeps a weft endpoint busy, so Force changes nothing; it is
  // still type-checked so a malformed request is not silently accepted.
  (void)root.boolean("Force", false);
  // weft's extension: a service backend first drains for this long.
  if (auto seconds = root.unsigned_integer("DrainSeconds", std::numeric_limits<std::uint32_t>::max())) {
    request.drain_seconds = static_cast<std::uint32_t>(*seconds);
  }
  return request;
}

SwarmLeaveRequest parse_swarm_leave(std::string_view body) {
  const json document = parse_body(body);
  const ObjectReader root = ObjectReader::of(document, "");
  SwarmLeaveRequest request;
  if (auto seconds = root.unsigned_integer("DrainSeconds", kMaxLeaveDrainSeconds))
    request.drain_seconds = static_cast<std::uint32_t>(*seconds);
  return request;
}

std::string parse_node_update(std::string_view body, const std::string& current_role) {
  const json document = parse_body(body);
  const ObjectReader root = ObjectReader::of(document, "");
  if (auto role = root.non_empty_string("Role"); role && *role != current_role)
    bad_request("weft nodes have no role to change (every weft node is a peer, shown as " + current_role +
                "): only Availability can be updated");
  if (auto labels = root.object("Labels"); labels && document.at("Labels").is_object() && !document.at("Labels").empty())
    bad_request("weft nodes have no labels: only Availability can be updated");
  const auto availability = root.non_empty_string("Availability");
  if (!availability) bad_request("Availability is required: active, pause or drain");
  if (!is_node_availability(*availability))
    bad_request("invalid Availability \"" + *availability + "\": expected active, pause or drain");
  return *availability;
}

std::string dump(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

}  // namespace api
}  // namespace weft::control
