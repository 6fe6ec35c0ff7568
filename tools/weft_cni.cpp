// `weft-cni`: a CNI plugin (spec 1.1.0 with STATUS and GC, results also in
// the 0.3.x/0.4.0 shape) that has the local weftd attach and detach a container's network
// namespace, so container runtimes (podman's CNI backend, ...) put containers
// on weft's overlay networks as they do with any network plugin.
//
// The runtime gives the command and the container in CNI_* environment
// variables and the network's config as JSON on stdin; the plugin answers
// with a result or a CNI error as JSON on stdout. weft allocates the address
// itself (the network's ring IPAM), so an "ipam" section is refused.
//
// GC must detach only what this plugin attached, so ADD records each
// attachment (before asking the agent) in a directory next to the agent's
// socket, <socket dir>/cni/<network>/<container id>@<ifname>, and DEL
// removes the record after the detach. GC detaches the recorded attachments
// that `cni.dev/valid-attachments` does not list; endpoints attached
// otherwise (weft endpoint attach, tasks) have no record and are never
// touched.
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "control/model/names.h"
#include "tools/api_client.h"

namespace weft::cni {

namespace {

using nlohmann::json;
using tools::ApiClient;
using tools::ApiConnectionError;
using tools::ApiResponse;
namespace http = tools::http;
namespace names = control::names;

constexpr std::string_view kCurrentVersion = "1.1.0";
// The result shapes of these versions are what this plugin writes; CHECK
// exists from 0.4.0 on, STATUS and GC from 1.1.0.
const std::vector<std::string> kSupportedVersions{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
constexpr std::string_view kDefaultSocket = "/run/weft/weftd.sock";
// Inside the container, weft's DNS responder listens here (control/discovery).
constexpr std::string_view kNameserver = "127.0.0.11";

// A network config is a few hundred bytes; a runtime's prevResult adds a few
// KiB. Anything near this is not a config.
constexpr std::size_t kMaxStdin = 1 << 20;
constexpr std::size_t kMaxEnvValue = 4096;
constexpr std::size_t kMaxContainerId = 1024;
// An attach may wait for an address range from a peer; a wedged agent must
// not hang the runtime forever ("agentTimeoutSeconds" in the config).
constexpr unsigned kDefaultAgentTimeout = 60;
constexpr unsigned kMaxAgentTimeout = 3600;

// The spec's error codes (1-99 reserved), then weft's own.
enum Code : int {
  kIncompatibleVersion = 1,
  kInvalidEnvironment = 4,
  kDecodingFailure = 6,
  kInvalidConfig = 7,
  kTryAgainLater = 11,
  kPluginNotAvailable = 50,  // STATUS: ADD cannot be served now
  kAgentRefused = 100,      // the agent answered an error; msg is its message
  kNetworkNotFound = 101,   // the config's network does not exist on this agent
  kEndpointMissing = 102,   // CHECK: the container is not attached (any more)
  kEndpointDiffers = 103,   // CHECK: attached, but not as the result said
};

struct CniError : std::runtime_error {
  CniError(int code, const std::string& msg, std::string details = {})
      : std::runtime_error(msg), code(code), details(std::move(details)) {}
  int code;
  std::string details;
};

struct Environment {
  std::string command;
  std::string container_id;
  std::string netns;
  std::string ifname;
  std::map<std::string, std::string> args;  // CNI_ARGS, "K=V;K2=V2"
};

struct Config {
  std::string cni_version;
  std::string name;
  std::string network;  // weft network name or id
  std::string socket;
  std::optional<std::string> service;
  unsigned agent_timeout = kDefaultAgentTimeout;  // seconds
  json prev_result;  // CHECK (and chained ADD/DEL); null when absent
  // GC: the attachments to keep, as (container id, ifname).
  std::set<std::pair<std::string, std::string>> valid_attachments;
};

// A GC's list holds one entry per attachment the runtime keeps; this bounds
// what a broken runtime can make the plugin hold (stdin is bounded too).
constexpr std::size_t kMaxValidAttachments = 100000;

std::string env_value(const char* name) {
  const char* value = std::getenv(name);
  if (!value) return {};
  std::string text(value);
  if (text.size() > kMaxEnvValue) {
    throw CniError(kInvalidEnvironment, std::string(name) + " is too long",
                   std::to_string(text.size()) + " bytes; the limit is " + std::to_string(kMaxEnvValue));
  }
  return text;
}

std::string required_env(const char* name, std::string_view command) {
  std::string value = env_value(name);
  if (value.empty()) {
    throw CniError(kInvalidEnvironment, std::string(name) + " is required for " + std::string(command), name);
  }
  return value;
}

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// The spec's rule: an alphanumeric, then alphanumerics, '_', '.' or '-'.
void check_container_id(const std::string& id) {
  bool valid = !id.empty() && id.size() <= kMaxContainerId && is_alnum(id.front());
  for (char c : id) valid = valid && (is_alnum(c) || c == '_' || c == '.' || c == '-');
  if (!valid) {
    throw CniError(kInvalidEnvironment, "invalid CNI_CONTAINERID " + names::quoted_preview(id),
                   "CNI_CONTAINERID: an alphanumeric character, then alphanumerics, '_', '.' or '-'");
  }
}

std::map<std::string, std::string> parse_args(const std::string& text) {
  std::map<std::string, std::string> args;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto end = std::min(text.find(';', start), text.size());
    const std::string pair = text.substr(start, end - start);
    if (!pair.empty()) {
      const auto eq = pair.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw CniError(kInvalidEnvironment, "invalid CNI_ARGS: " + names::quoted_preview(pair) + " is not KEY=VALUE",
                       "CNI_ARGS");
      }
      args[pair.substr(0, eq)] = pair.substr(eq + 1);
    }
    start = end + 1;
  }
  return args;
}

// ADD, DEL and CHECK name the container; VERSION, STATUS and GC need nothing.
Environment read_environment(const std::string& command) {
  Environment env;
  env.command = command;
  if (command == "VERSION" || command == "STATUS" || command == "GC") return env;
  env.container_id = required_env("CNI_CONTAINERID", command);
  check_container_id(env.container_id);
  // DEL may come after the namespace is gone, without CNI_NETNS.
  env.netns = command == "DEL" ? env_value("CNI_NETNS") : required_env("CNI_NETNS", command);
  if (!env.netns.empty()) {
    if (auto error = names::netns_error(env.netns); error || env.netns.front() != '/') {
      throw CniError(kInvalidEnvironment, "invalid CNI_NETNS: " + error.value_or("not an absolute path"), "CNI_NETNS");
    }
  }
  env.ifname = required_env("CNI_IFNAME", command);
  env.args = parse_args(env_value("CNI_ARGS"));
  return env;
}

// weft names the container's interface eth0, or the next free ethN; a runtime
// asking for another name is told so before anything is attached.
void check_ifname(const std::string& ifname) {
  bool valid = ifname.size() > 3 && ifname.size() <= 6 && ifname.starts_with("eth");
  for (std::size_t i = 3; valid && i < ifname.size(); ++i) valid = ifname[i] >= '0' && ifname[i] <= '9';
  if (!valid) {
    throw CniError(kInvalidEnvironment, "unsupported CNI_IFNAME " + names::quoted_preview(ifname),
                   "CNI_IFNAME: weft names the container's interface eth0 (or the next free ethN)");
  }
}

std::string read_stdin() {
  std::string text;
  char buffer[65536];
  while (true) {
    const std::size_t n = std::fread(buffer, 1, sizeof buffer, stdin);
    if (n > 0) {
      if (text.size() + n > kMaxStdin) {
        throw CniError(kDecodingFailure, "network config on stdin is too large",
                       "more than " + std::to_string(kMaxStdin) + " bytes");
      }
      text.append(buffer, n);
    }
    if (n < sizeof buffer) break;
  }
  if (std::ferror(stdin)) throw CniError(kDecodingFailure, "cannot read the network config from stdin");
  return text;
}

// A string member: absent gives nullopt; present must be a string.
std::optional<std::string> string_member(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) throw CniError(kInvalidConfig, std::string("\"") + key + "\" must be a string", key);
  return it->get<std::string>();
}

Config parse_config(const std::string& text) {
  json document = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) throw CniError(kDecodingFailure, "the network config on stdin is not JSON");
  if (!document.is_object()) throw CniError(kDecodingFailure, "the network config on stdin is not a JSON object");

  Config config;
  config.cni_version = string_member(document, "cniVersion").value_or("");
  if (config.cni_version.empty()) throw CniError(kInvalidConfig, "\"cniVersion\" is required", "cniVersion");
  if (std::find(kSupportedVersions.begin(), kSupportedVersions.end(), config.cni_version) == kSupportedVersions.end()) {
    std::string supported;
    for (const auto& v : kSupportedVersions) supported += (supported.empty() ? "" : ", ") + v;
    throw CniError(kIncompatibleVersion,
                   "incompatible CNI version " + names::quoted_preview(config.cni_version),
                   "weft-cni supports " + supported);
  }
  config.name = string_member(document, "name").value_or("");
  if (const auto type = string_member(document, "type"); type && *type != "weft-cni") {
    throw CniError(kInvalidConfig, "\"type\" is " + names::quoted_preview(*type) + ", not \"weft-cni\"", "type");
  }
  if (auto ipam = document.find("ipam"); ipam != document.end() && !ipam->is_null() && !ipam->empty()) {
    throw CniError(kInvalidConfig, "weft-cni takes no \"ipam\" section",
                   "the weft network allocates the container's address itself; remove \"ipam\" from the config");
  }

  config.network = string_member(document, "network").value_or(config.name);
  if (config.network.empty()) {
    throw CniError(kInvalidConfig, "no weft network: set \"network\" (or \"name\") in the config", "network");
  }
  // Names and ids both follow Docker's name rule; what breaks it can name no
  // network, so it is a config error rather than "not found".
  if (auto error = names::network_name_error(config.network)) throw CniError(kInvalidConfig, *error, "network");

  config.socket = string_member(document, "socket").value_or(std::string(kDefaultSocket));
  if (auto error = names::text_error("socket", config.socket, names::kMaxNetnsPath); error || config.socket.empty()) {
    throw CniError(kInvalidConfig, error.value_or("\"socket\" is empty"), "socket");
  }
  config.service = string_member(document, "service");
  if (config.service && config.service->empty()) config.service.reset();
  if (config.service) {
    if (auto error = names::text_error("service", *config.service, names::kMaxShortText)) {
      throw CniError(kInvalidConfig, *error, "service");
    }
  }
  if (auto timeout = document.find("agentTimeoutSeconds"); timeout != document.end() && !timeout->is_null()) {
    if (!timeout->is_number_unsigned() || timeout->get<std::uint64_t>() < 1 ||
        timeout->get<std::uint64_t>() > kMaxAgentTimeout) {
      throw CniError(kInvalidConfig, "\"agentTimeoutSeconds\" must be a whole number from 1 to " +
                                         std::to_string(kMaxAgentTimeout), "agentTimeoutSeconds");
    }
    config.agent_timeout = timeout->get<unsigned>();
  }
  if (auto prev = document.find("prevResult"); prev != document.end()) config.prev_result = *prev;
  if (auto valid = document.find("cni.dev/valid-attachments"); valid != document.end() && !valid->is_null()) {
    if (!valid->is_array() || valid->size() > kMaxValidAttachments) {
      throw CniError(kInvalidConfig, "\"cni.dev/valid-attachments\" must be an array of at most " +
                                         std::to_string(kMaxValidAttachments) + " attachments",
                     "cni.dev/valid-attachments");
    }
    for (const json& a : *valid) {
      auto id = a.is_object() ? a.find("containerID") : a.end();
      auto ifname = a.is_object() ? a.find("ifname") : a.end();
      if (!a.is_object() || id == a.end() || !id->is_string() || ifname == a.end() || !ifname->is_string()) {
        throw CniError(kInvalidConfig,
                       "each of \"cni.dev/valid-attachments\" needs \"containerID\" and \"ifname\" strings",
                       "cni.dev/valid-attachments");
      }
      config.valid_attachments.emplace(id->get<std::string>(), ifname->get<std::string>());
    }
  }
  return config;
}

// The endpoint's name, which weft's DNS answers for: the pod (or container)
// name a runtime passes in CNI_ARGS when it is a DNS name, else the
// container id's first 12 characters, as Docker shows ids.
std::string endpoint_name(const Environment& env) {
  if (auto pod = env.args.find("K8S_POD_NAME"); pod != env.args.end() && !names::endpoint_name_error(pod->second)) {
    return pod->second;
  }
  const std::string name = env.container_id.substr(0, 12);
  if (auto error = names::endpoint_name_error(name)) {
    throw CniError(kInvalidEnvironment, "CNI_CONTAINERID cannot name a weft endpoint: " + *error, "CNI_CONTAINERID");
  }
  return name;
}

std::string text(const json& object, const char* key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

class Agent {
 public:
  explicit Agent(const std::string& socket) : client_(make_client(socket)) {}

  // Transport failures become "try again later": the agent may be starting.
  ApiResponse request(http::verb method, const std::string& target, const std::optional<json>& body = std::nullopt) {
    try {
      return client_.request(method, target, body);
    } catch (const ApiConnectionError& e) {
      throw CniError(kTryAgainLater, "the weft agent is not reachable", e.what());
    }
  }

  static CniError refused(const ApiResponse& response, const std::string& what) {
    return CniError(kAgentRefused, what + ": " + response.error_message(), "HTTP " + std::to_string(response.status));
  }

 private:
  static ApiClient make_client(const std::string& socket) {
    try {
      return ApiClient(socket);
    } catch (const std::invalid_argument& e) {
      throw CniError(kInvalidConfig, e.what(), "socket");
    }
  }

  ApiClient client_;
};

std::string network_path(const Config& config, std::string_view action = {}) {
  std::string path = "/networks/" + tools::escape_path_segment(config.network);
  if (!action.empty()) path += "/" + std::string(action);
  return path;
}

// The network as the agent shows it; CniError when it has no such network.
json inspect_network(Agent& agent, const Config& config) {
  ApiResponse response = agent.request(http::verb::get, network_path(config));
  if (response.status == 404) {
    throw CniError(kNetworkNotFound, "weft network " + names::quoted_preview(config.network) + " not found",
                   response.error_message());
  }
  if (!response.ok()) throw Agent::refused(response, "cannot inspect network " + config.network);
  return std::move(response.json);
}

std::string gateway_of(const json& network) {
  const json* configs = nullptr;
  if (network.is_object() && network.contains("IPAM") && network["IPAM"].is_object()) {
    auto it = network["IPAM"].find("Config");
    if (it != network["IPAM"].end() && it->is_array()) configs = &*it;
  }
  if (!configs || configs->empty()) return {};
  return text((*configs)[0], "Gateway");
}

// The local endpoint of this container on the network, found by the
// namespace path the runtime gave (weft keeps it as given) or, when
// `netns` is empty, by the endpoint's name. Names are unique in a network;
// a match on another node is harmless (a disconnect only acts locally).
std::optional<json> find_endpoint(Agent& agent, const json& network, const std::string& netns,
                                  const std::string& name) {
  ApiResponse response = agent.request(http::verb::get, "/endpoints");
  if (!response.ok()) throw Agent::refused(response, "cannot list endpoints");
  if (!response.json.is_array()) return std::nullopt;
  const std::string network_id = text(network, "Id");
  for (const json& endpoint : response.json) {
    if (text(endpoint, "NetworkID") != network_id) continue;
    if (text(endpoint, "Name") != name) continue;
    if (!netns.empty() && text(endpoint, "Netns") != netns) continue;
    return endpoint;
  }
  return std::nullopt;
}

bool legacy_result(const Config& config) { return config.cni_version.starts_with("0."); }

// --- the records of what this plugin attached (see the top of the file) ---

namespace fs = std::filesystem;

fs::path records_dir(const Config& config) {
  return fs::path(config.socket).parent_path() / "cni" / config.network;
}

fs::path record_path(const Config& config, const std::string& container_id, const std::string& ifname) {
  return records_dir(config) / (container_id + "@" + ifname);
}

// Written before the attach (a crash between leaves a record GC can act on,
// never an attachment without one); atomic, so a reader sees all or nothing.
void write_record(const Config& config, const Environment& env, const std::string& name) {
  std::error_code ec;
  fs::create_directories(records_dir(config), ec);
  const fs::path path = record_path(config, env.container_id, env.ifname);
  const fs::path temp = path.string() + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << json{{"containerID", env.container_id}, {"ifname", env.ifname}, {"netns", env.netns}, {"name", name}}.dump()
        << '\n';
    out.flush();
    if (!out) {
      fs::remove(temp, ec);
      throw CniError(kAgentRefused, "cannot record the attachment in " + records_dir(config).string(),
                     "weft-cni keeps what it attached there, for GC");
    }
  }
  fs::rename(temp, path, ec);
  if (ec) {
    fs::remove(temp, ec);
    throw CniError(kAgentRefused, "cannot record the attachment in " + records_dir(config).string(), ec.message());
  }
}

void remove_record(const Config& config, const std::string& container_id, const std::string& ifname) {
  std::error_code ec;
  fs::remove(record_path(config, container_id, ifname), ec);
}

struct Record {
  std::string container_id;
  std::string ifname;
  std::string netns;
};

std::optional<Record> read_record(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  // A record is a few hundred bytes: anything much larger is not one.
  if (!in || !std::getline(in, line) || line.size() > 8192) return std::nullopt;
  const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  Record r{text(j, "containerID"), text(j, "ifname"), text(j, "netns")};
  if (r.container_id.empty() || r.ifname.empty()) return std::nullopt;
  return r;
}

json make_result(const Config& config, const Environment& env, const json& endpoint, const std::string& gateway) {
  json ip{{"address", text(endpoint, "IPv4Address")}, {"interface", 0}};
  if (legacy_result(config)) ip["version"] = "4";  // 0.3.x and 0.4.0 results carry it
  json result{
      {"cniVersion", config.cni_version},
      {"interfaces", json::array({json{{"name", text(endpoint, "Interface")},
                                       {"mac", text(endpoint, "MacAddress")},
                                       {"sandbox", env.netns}}})},
      {"dns", json{{"nameservers", json::array({kNameserver})}}},
  };
  json routes = json::array();
  if (!gateway.empty()) {
    ip["gateway"] = gateway;
    routes.push_back(json{{"dst", "0.0.0.0/0"}, {"gw", gateway}});
  }
  result["ips"] = json::array({ip});
  result["routes"] = routes;
  return result;
}

void disconnect(Agent& agent, const Config& config, const std::string& netns) {
  ApiResponse response = agent.request(http::verb::post, network_path(config, "disconnect"), json{{"Container", netns}});
  // 404: not attached (any more), or no such network: nothing to undo.
  if (!response.ok() && response.status != 404) {
    throw Agent::refused(response, "cannot detach " + netns + " from network " + config.network);
  }
}

int command_add(const Config& config, const Environment& env) {
  check_ifname(env.ifname);
  const std::string name = endpoint_name(env);
  Agent agent(config.socket);
  const json network = inspect_network(agent, config);

  json body{{"Container", env.netns}, {"Name", name}};
  if (config.service) body["Service"] = *config.service;
  // A repeated ADD of an attachment must not lose the record of the first.
  std::error_code ec;
  const bool had_record = fs::exists(record_path(config, env.container_id, env.ifname), ec);
  write_record(config, env, name);
  const auto forget = [&] {
    if (!had_record) remove_record(config, env.container_id, env.ifname);
  };
  // A transport failure keeps the record: the agent may still attach, and
  // the runtime's DEL (or a GC) undoes it then.
  ApiResponse response = agent.request(http::verb::post, network_path(config, "connect"), body);
  if (!response.ok()) forget();
  // The network went between the inspect and the connect.
  if (response.status == 404 && response.error_message() == "network " + config.network + " not found") {
    throw CniError(kNetworkNotFound, "weft network " + names::quoted_preview(config.network) + " not found",
                   response.error_message());
  }
  if (!response.ok()) {
    throw Agent::refused(response, "cannot attach " + env.netns + " to weft network " + config.network);
  }
  const json& endpoint = response.json;
  if (text(endpoint, "Interface") != env.ifname) {
    // weft chose another ethN (the namespace has interfaces already): undo.
    disconnect(agent, config, env.netns);
    forget();
    throw CniError(kInvalidEnvironment,
                   "weft named the interface " + names::quoted_preview(text(endpoint, "Interface")) +
                       ", not CNI_IFNAME " + names::quoted_preview(env.ifname),
                   "CNI_IFNAME: weft names the container's interface eth0 (or the next free ethN)");
  }
  std::cout << make_result(config, env, endpoint, gateway_of(network)).dump() << '\n';
  return 0;
}

int command_del(const Config& config, const Environment& env) {
  Agent agent(config.socket);
  std::string netns = env.netns;
  if (netns.empty()) {
    if (auto record = read_record(record_path(config, env.container_id, env.ifname))) netns = record->netns;
  }
  if (!netns.empty()) {
    disconnect(agent, config, netns);
    remove_record(config, env.container_id, env.ifname);
    return 0;
  }
  // No namespace path: the endpoint is found by the name ADD gave it.
  ApiResponse response = agent.request(http::verb::get, network_path(config));
  if (response.status == 404) return 0;
  if (!response.ok()) throw Agent::refused(response, "cannot inspect network " + config.network);
  const std::string name = endpoint_name(env);
  if (auto endpoint = find_endpoint(agent, response.json, "", name)) {
    disconnect(agent, config, text(*endpoint, "Netns"));
  }
  remove_record(config, env.container_id, env.ifname);
  return 0;
}

// STATUS: ready when the agent answers and has the network (else ADD could
// not be served): nothing on stdout and exit 0, or code 50.
int command_status(const Config& config) {
  Agent agent(config.socket);
  ApiResponse response;
  try {
    response = agent.request(http::verb::get, network_path(config));
  } catch (const CniError& e) {
    throw CniError(kPluginNotAvailable, "plugin not available: the weft agent is not reachable", e.details);
  }
  if (response.status == 404) {
    throw CniError(kPluginNotAvailable,
                   "plugin not available: weft network " + names::quoted_preview(config.network) + " not found",
                   response.error_message());
  }
  if (!response.ok()) {
    throw CniError(kPluginNotAvailable, "plugin not available: the weft agent answered an error",
                   response.error_message());
  }
  return 0;
}

// GC: detaches what this plugin attached to the network and the runtime no
// longer lists in cni.dev/valid-attachments; each detach done, its record goes.
int command_gc(const Config& config) {
  Agent agent(config.socket);
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(records_dir(config), ec)) {
    const std::string file = entry.path().filename().string();
    if (file.ends_with(".tmp")) continue;  // an ADD in progress
    const auto record = read_record(entry.path());
    if (!record) {
      // Not a record (or a torn one from before the rename): nothing to detach.
      continue;
    }
    if (file != record->container_id + "@" + record->ifname) continue;
    if (config.valid_attachments.count({record->container_id, record->ifname})) continue;
    if (!record->netns.empty()) disconnect(agent, config, record->netns);
    stale.push_back(entry.path());
  }
  for (const auto& path : stale) fs::remove(path, ec);
  return 0;
}

// The first IPv4 address of a result (any of the versions above).
std::string prev_address(const json& prev_result) {
  if (!prev_result.is_object()) return {};
  auto ips = prev_result.find("ips");
  if (ips == prev_result.end() || !ips->is_array()) return {};
  for (const json& ip : *ips) {
    const std::string address = text(ip, "address");
    if (address.find('.') != std::string::npos) return address;
  }
  return {};
}

int command_check(const Config& config, const Environment& env) {
  if (config.prev_result.is_null()) {
    throw CniError(kInvalidConfig, "CHECK needs \"prevResult\" in the config", "prevResult");
  }
  const std::string want = prev_address(config.prev_result);
  if (want.empty()) throw CniError(kInvalidConfig, "\"prevResult\" holds no IPv4 address", "prevResult");
  Agent agent(config.socket);
  const json network = inspect_network(agent, config);
  const std::string name = endpoint_name(env);
  const auto endpoint = find_endpoint(agent, network, env.netns, name);
  if (!endpoint) {
    throw CniError(kEndpointMissing,
                   "container " + name + " (" + env.netns + ") is not attached to weft network " + config.network);
  }
  if (const std::string got = text(*endpoint, "IPv4Address"); got != want) {
    throw CniError(kEndpointDiffers, "endpoint " + name + " has address " + got + ", the result says " + want);
  }
  if (const std::string got = text(*endpoint, "Interface"); got != env.ifname) {
    throw CniError(kEndpointDiffers, "endpoint " + name + " is interface " + got + ", not " + env.ifname);
  }
  struct stat st{};
  if (::stat(env.netns.c_str(), &st) != 0) {
    throw CniError(kEndpointMissing, "network namespace " + env.netns + " is gone");
  }
  return 0;
}

int command_version() {
  std::cout << json{{"cniVersion", kCurrentVersion}, {"supportedVersions", kSupportedVersions}}.dump() << '\n';
  return 0;
}

std::string error_json(std::string_view version, const CniError& error) {
  json out{{"cniVersion", version}, {"code", error.code}, {"msg", error.what()}};
  if (!error.details.empty()) out["details"] = error.details;
  return out.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

// Written by the watchdog when the agent does not answer in time; prepared
// up front, since a signal handler may only write() it.
std::string timeout_reply;

extern "C" void on_agent_timeout(int) {
  [[maybe_unused]] auto n = ::write(STDOUT_FILENO, timeout_reply.data(), timeout_reply.size());
  ::_exit(1);
}

// (Re)arms the watchdog with a reply in `version`'s shape; the alarm is off
// while the reply changes, so the handler never sees it half written.
void arm_watchdog(std::string_view version, unsigned seconds, int code = kTryAgainLater) {
  ::alarm(0);
  timeout_reply = error_json(
      version, CniError(code, "no answer from the weft agent within " + std::to_string(seconds) + " s",
                        "agentTimeoutSeconds"));
  std::signal(SIGALRM, on_agent_timeout);
  ::alarm(seconds);
}

int run() {
  std::string version(kCurrentVersion);
  try {
    const std::string command = env_value("CNI_COMMAND");
    if (command.empty()) throw CniError(kInvalidEnvironment, "CNI_COMMAND is not set", "CNI_COMMAND");
    if (command == "VERSION") return command_version();
    if (command != "ADD" && command != "DEL" && command != "CHECK" && command != "STATUS" && command != "GC") {
      throw CniError(kInvalidEnvironment, "unknown CNI_COMMAND " + names::quoted_preview(command),
                     "CNI_COMMAND: weft-cni knows ADD, DEL, CHECK, STATUS, GC and VERSION");
    }
    arm_watchdog(version, kDefaultAgentTimeout);  // also bounds a runtime that never closes stdin
    const Config config = parse_config(read_stdin());
    version = config.cni_version;
    const Environment env = read_environment(command);
    if (command == "CHECK" && (config.cni_version == "0.3.0" || config.cni_version == "0.3.1")) {
      throw CniError(kIncompatibleVersion, "CHECK needs CNI version 0.4.0 or later", config.cni_version);
    }
    if ((command == "STATUS" || command == "GC") && config.cni_version != "1.1.0") {
      throw CniError(kIncompatibleVersion, command + " needs CNI version 1.1.0", config.cni_version);
    }
    arm_watchdog(version, config.agent_timeout, command == "STATUS" ? kPluginNotAvailable : kTryAgainLater);
    if (command == "STATUS") return command_status(config);
    if (command == "GC") return command_gc(config);
    if (command == "ADD") return command_add(config, env);
    if (command == "DEL") return command_del(config, env);
    return command_check(config, env);
  } catch (const CniError& error) {
    std::cout << error_json(version, error) << std::flush;
  } catch (const std::exception& error) {
    std::cout << error_json(version, CniError(kAgentRefused, std::string("weft-cni failed: ") + error.what()))
              << std::flush;
  }
  return 1;
}

}  // namespace
}  // namespace weft::cni

int main() { return weft::cni::run(); }
