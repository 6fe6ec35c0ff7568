#include "control/api/json.h"

#include <optional>
#include <string>
#include <utility>

#include "control/model/names.h"

namespace weft::control {

using nlohmann::json;

namespace {

[[noreturn]] void bad_request(const std::string& message) {
  throw ApiError(ApiError::Kind::BadRequest, message);
}

// Read-only view of one JSON object of a request body that reports type
// errors with the field's full path ("IPAM.Config[0].Subnet"), so a client
// can tell exactly what to fix. Null counts as absent, as it does for the Go
// clients the Docker-shaped API is meant to be usable from.
class ObjectReader {
 public:
  // `path` names `value` in messages; empty for the body itself.
  static ObjectReader of(const json& value, std::string path) {
    if (!value.is_object()) {
      bad_request(path.empty() ? "request body must be a JSON object, got " + std::string(value.type_name())
                               : "\"" + path + "\" must be an object, got " + value.type_name());
    }
    return ObjectReader(value, std::move(path));
  }

  std::optional<std::string> string(const std::string& key) const {
    const json* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) bad_request("\"" + path_of(key) + "\" must be a string, got " + value->type_name());
    return value->get<std::string>();
  }

  // Absent or "" both mean "not given": Go clients cannot tell them apart.
  std::optional<std::string> non_empty_string(const std::string& key) const {
    auto value = string(key);
    if (value && value->empty()) return std::nullopt;
    return value;
  }

  std::string required_string(const std::string& key) const {
    auto value = non_empty_string(key);
    if (!value) bad_request("missing required field \"" + path_of(key) + "\"");
    return *value;
  }

  bool boolean(const std::string& key, bool fallback) const {
    const json* value = find(key);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) bad_request("\"" + path_of(key) + "\" must be a boolean, got " + value->type_name());
    return value->get<bool>();
  }

  std::optional<ObjectReader> object(const std::string& key) const {
    const json* value = find(key);
    if (value == nullptr) return std::nullopt;
    return of(*value, path_of(key));
  }

  // The array's elements paired with their paths; empty when absent.
  std::vector<std::pair<const json*, std::string>> array(const std::string& key) const {
    std::vector<std::pair<const json*, std::string>> elements;
    const json* value = find(key);
    if (value == nullptr) return elements;
    if (!value->is_array()) bad_request("\"" + path_of(key) + "\" must be an array, got " + value->type_name());
    for (std::size_t i = 0; i < value->size(); ++i) {
      elements.emplace_back(&(*value)[i], path_of(key) + "[" + std::to_string(i) + "]");
    }
    return elements;
  }

 private:
  ObjectReader(const json& value, std::string path) : value_(value), path_(std::move(path)) {}

  const json* find(const std::string& key) const {
    auto it = value_.find(key);
    if (it == value_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::string path_of(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  const json& value_;
  std::string path_;
};

json parse_body(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return json::object();
  try {
    return json::parse(body);
  } catch (const json::parse_error& e) {
    // Drop nlohmann's "[json.exception.parse_error.101] " tag: noise to a user.
    std::string detail = e.what();
    if (auto end = detail.find("] "); detail.starts_with("[json.exception.") && end != std::string::npos) {
      detail.erase(0, end + 2);
    }
    bad_request("invalid JSON in request body: " + detail);
  }
}

// All zero (never a real MAC) in an Endpoint that was never filled in.
std::string mac_text(const Endpoint& endpoint) {
  return endpoint.mac == dataplane::MacAddress{} ? "" : endpoint.mac.str();
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
    containers[endpoint.id] = json{
        {"Name", endpoint.name},
        {"EndpointID", endpoint.id},
        {"MacAddress", mac_text(endpoint)},
        {"IPv4Address", ipv4_with_prefix(endpoint)},
        {"Netns", endpoint.netns},
    };
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
  }
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
  return request;
}

std::string dump(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

}  // namespace api
}  // namespace weft::control
