#include "control/api/docker_engine.h"

#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>

#include "control/api/routes.h"

namespace weft::control::api {

using nlohmann::json;

namespace {

std::optional<unsigned> parse_number(std::string_view digits) {
  if (digits.empty() || digits.size() > 4) return std::nullopt;
  unsigned value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value;
}

std::string version_text(ApiVersion v) { return std::to_string(v.major) + "." + std::to_string(v.minor); }

std::string os_release_pretty_name() {
  std::ifstream file("/etc/os-release");
  std::string line;
  while (std::getline(file, line)) {
    if (!line.starts_with("PRETTY_NAME=")) continue;
    std::string value = line.substr(12);
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'')) value = value.substr(1, value.size() - 2);
    return value;
  }
  return "Linux";
}

// Go's GOARCH for uname's machine names.
std::string go_arch_of(const std::string& machine) {
  if (machine == "x86_64") return "amd64";
  if (machine == "aarch64") return "arm64";
  if (machine == "i686" || machine == "i386") return "386";
  if (machine.starts_with("armv")) return "arm";
  return machine;
}

// FNV-1a, 64 bits: stable across builds and machines (std::hash is not).
std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

// Docker's ids are 25 characters of [0-9a-z]; the same alphabet here.
std::string base36(std::uint64_t high, std::uint64_t low, std::size_t length) {
  static constexpr std::string_view kDigits = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string out;
  while (out.size() < length) {
    const std::uint64_t source = out.size() % 2 == 0 ? high : low;
    out += kDigits[source % 36];
    if (out.size() % 2 == 0) {
      high /= 36;
      low /= 36;
    }
  }
  return out;
}

bool is_weft_node(const NodeInfo& node) { return node.role != "serf"; }

std::string docker_state_of(const NodeInfo& node) {
  // Docker's node states are ready, down, unknown, disconnected; a node that
  // left is down to Docker's clients (Status.Message says it left).
  return node.status == "ready" ? "ready" : "down";
}

std::string address_ip(const std::string& address) { return address.substr(0, address.rfind(':')); }

}  // namespace

std::optional<ApiVersion> parse_version_segment(std::string_view segment) {
  if (segment.size() < 4 || segment[0] != 'v') return std::nullopt;
  const auto dot = segment.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const auto major = parse_number(segment.substr(1, dot - 1));
  const auto minor = parse_number(segment.substr(dot + 1));
  if (!major || !minor) return std::nullopt;
  return ApiVersion{*major, *minor};
}

std::optional<std::string> unsupported_version_message(ApiVersion version) {
  const ApiVersion highest = *parse_version_segment("v" + std::string(kDockerApiVersion));
  const ApiVersion lowest = *parse_version_segment("v" + std::string(kDockerMinApiVersion));
  // dockerd's own words (api/server/middleware/version.go).
  if (version > highest)
    return "client version " + version_text(version) + " is too new. Maximum supported API version is " +
           std::string(kDockerApiVersion);
  if (version < lowest)
    return "client version " + version_text(version) + " is too old. Minimum supported API version is " +
           std::string(kDockerMinApiVersion) + ", please upgrade your client to a newer version";
  return std::nullopt;
}

bool is_docker_path(std::string_view target) {
  if (!target.starts_with('/')) return false;
  target.remove_prefix(1);
  const auto end = target.find_first_of("/?#");
  return parse_version_segment(target.substr(0, end)).has_value();
}

HostFacts host_facts() {
  HostFacts facts;
  struct utsname names {};
  if (::uname(&names) == 0) {
    facts.hostname = names.nodename;
    facts.kernel_version = names.release;
    facts.architecture = names.machine;
  }
  facts.go_arch = go_arch_of(facts.architecture);
  facts.operating_system = os_release_pretty_name();
  facts.ncpu = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
  struct sysinfo memory {};
  if (::sysinfo(&memory) == 0) facts.mem_total = static_cast<long long>(memory.totalram) * memory.mem_unit;
  return facts;
}

json version_json(const HostFacts& host) {
  const json details = {{"ApiVersion", kDockerApiVersion}, {"MinAPIVersion", kDockerMinApiVersion},
                        {"Os", "linux"},                   {"Arch", host.go_arch},
                        {"KernelVersion", host.kernel_version}, {"GitCommit", ""},
                        {"GoVersion", "n/a"},              {"Experimental", "false"}};
  return {{"Platform", {{"Name", "weft"}}},
          {"Components", json::array({{{"Name", "Engine"}, {"Version", kWeftVersion}, {"Details", details}}})},
          {"Version", kWeftVersion},
          {"ApiVersion", kDockerApiVersion},
          {"MinAPIVersion", kDockerMinApiVersion},
          {"GitCommit", ""},
          {"GoVersion", "n/a"},
          {"Os", "linux"},
          {"Arch", host.go_arch},
          {"KernelVersion", host.kernel_version},
          {"BuildTime", ""}};
}

std::string cluster_id(const SwarmInfo& info) {
  if (!info.active) return "";
  return base36(fnv1a(info.gossip_key_base64), fnv1a("weft-cluster:" + info.gossip_key_base64), 25);
}

json info_json(const HostFacts& host, const SwarmInfo* swarm, const std::vector<NodeInfo>& nodes,
               std::size_t networks) {
  const bool active = swarm && swarm->active;
  json swarm_part = {{"NodeID", active ? swarm->node_id : ""},
                     {"NodeAddr", active ? address_ip(swarm->advertise) : ""},
                     {"LocalNodeState", active ? "active" : "inactive"},
                     {"ControlAvailable", active},
                     {"Error", ""},
                     {"RemoteManagers", nullptr},
                     {"Nodes", 0},
                     {"Managers", 0}};
  if (active) {
    json managers = json::array();
    int weft_nodes = 0;
    for (const NodeInfo& node : nodes) {
      if (!is_weft_node(node)) continue;
      ++weft_nodes;
      if (node.status == "ready") managers.push_back({{"NodeID", node.id}, {"Addr", node.address}});
    }
    swarm_part["RemoteManagers"] = managers;
    swarm_part["Nodes"] = nodes.size();
    swarm_part["Managers"] = weft_nodes;
    swarm_part["Cluster"] = {{"ID", cluster_id(*swarm)},
                             {"Version", {{"Index", 0}}},
                             {"Spec", {{"Name", "default"}, {"Labels", json::object()}}},
                             {"TLSInfo", json::object()},
                             {"RootRotationInProgress", false},
                             {"DefaultAddrPool", nullptr},
                             {"SubnetSize", 0},
                             {"DataPathPort", 0}};
  }
  const std::string name = swarm && !swarm->node_name.empty() ? swarm->node_name : host.hostname;
  return {
      {"ID", active ? swarm->node_id : name},
      {"Name", name},
      {"ServerVersion", kWeftVersion},
      {"Containers", 0},
      {"ContainersRunning", 0},
      {"ContainersPaused", 0},
      {"ContainersStopped", 0},
      {"Images", 0},
      {"Driver", "weft"},
      {"DriverStatus", json::array({json::array({"Networks", std::to_string(networks)})})},
      {"Plugins", {{"Volume", json::array()}, {"Network", json::array({"overlay"})}, {"Authorization", nullptr},
                   {"Log", json::array()}}},
      // Docker's legacy capability flags: a client warns on stderr for each
      // false one. They are about limiting containers, which weft does not
      // run, so there is nothing to warn about.
      {"MemoryLimit", true},
      {"SwapLimit", true},
      {"KernelMemory", true},
      {"CpuCfsPeriod", true},
      {"CpuCfsQuota", true},
      {"CPUShares", true},
      {"CPUSet", true},
      {"PidsLimit", true},
      {"OomKillDisable", true},
      {"IPv4Forwarding", true},
      {"BridgeNfIptables", true},
      {"BridgeNfIp6tables", true},
      {"Debug", false},
      {"NFd", 0},
      {"NGoroutines", 0},
      {"SystemTime", ""},
      {"LoggingDriver", ""},
      {"CgroupDriver", ""},
      {"NEventsListener", 0},
      {"KernelVersion", host.kernel_version},
      {"OperatingSystem", host.operating_system},
      {"OSVersion", ""},
      {"OSType", "linux"},
      {"Architecture", host.architecture},
      {"IndexServerAddress", ""},
      {"RegistryConfig", nullptr},
      {"NCPU", host.ncpu},
      {"MemTotal", host.mem_total},
      {"DockerRootDir", ""},
      {"Labels", json::array()},
      {"ExperimentalBuild", false},
      {"Runtimes", json::object()},
      {"DefaultRuntime", ""},
      {"Swarm", swarm_part},
      {"LiveRestoreEnabled", true},
      {"Isolation", ""},
      {"InitBinary", ""},
      {"ContainerdCommit", {{"ID", ""}, {"Expected", ""}}},
      {"RuncCommit", {{"ID", ""}, {"Expected", ""}}},
      {"InitCommit", {{"ID", ""}, {"Expected", ""}}},
      {"SecurityOptions", json::array()},
      {"Warnings", json::array()},
  };
}

json docker_node_json(const NodeInfo& n) {
  const bool weft = is_weft_node(n);
  json status = {{"State", docker_state_of(n)}, {"Addr", address_ip(n.address)}};
  if (n.status == "left") status["Message"] = "left the swarm";
  json node = {{"ID", n.id},
               {"Version", {{"Index", n.incarnation}}},
               {"Spec", {{"Role", weft ? "manager" : "worker"}, {"Availability", n.availability},
                         {"Labels", json::object()}}},
               {"Description", {{"Hostname", n.hostname},
                                {"Platform", {{"OS", "linux"}}},
                                {"Engine", {{"EngineVersion", n.self ? std::string(kWeftVersion) : ""}}}}},
               {"Status", status},
               // weft's own fields, for scripts that read weft's node JSON.
               {"Hostname", n.hostname},
               {"Address", n.address},
               {"Membership", n.membership},
               {"Self", n.self}};
  if (weft) {
    node["ManagerStatus"] = {{"Leader", false},
                             {"Reachability", n.status == "ready" ? "reachable" : "unreachable"},
                             {"Addr", n.address}};
  }
  return node;
}

json docker_swarm_json(const SwarmInfo& info) {
  return {{"ID", cluster_id(info)},
          {"Version", {{"Index", 0}}},
          {"Spec", {{"Name", "default"}, {"Labels", json::object()}}},
          {"TLSInfo", json::object()},
          {"RootRotationInProgress", false},
          {"DefaultAddrPool", nullptr},
          {"SubnetSize", 0},
          {"DataPathPort", 0},
          {"JoinTokens", {{"Worker", info.join_token}, {"Manager", info.join_token}}},
          // weft's own fields.
          {"Active", info.active},
          {"NodeID", info.node_id},
          {"NodeName", info.node_name},
          {"Advertise", info.advertise}};
}

std::optional<std::string> not_implemented_message(std::string_view first) {
  struct Unsupported {
    std::string_view segment;
    std::string_view what;
    std::string_view instead;
  };
  static constexpr std::array kUnsupported{
      Unsupported{"containers", "containers", "run a command on a network with `weft run --network NET -- CMD`, "
                                              "or attach a namespace with `weft endpoint attach NET --netns NS`"},
      Unsupported{"exec", "exec", "run a command in a task's namespaces with `weft exec SERVICE.SLOT -- CMD`"},
      Unsupported{"images", "images", "weft runs commands, not images: `weft service create ... -- COMMAND`"},
      Unsupported{"build", "image builds", "weft runs commands, not images: `weft service create ... -- COMMAND`"},
      Unsupported{"commit", "image commits", "weft runs commands, not images"},
      Unsupported{"auth", "registry logins", "weft runs commands, not images"},
      Unsupported{"distribution", "registries", "weft runs commands, not images"},
      Unsupported{"volumes", "volumes", "weft manages networks only; mount storage in the command's namespace yourself"},
      Unsupported{"plugins", "plugins", "weft's only network driver is overlay (`weft network create -d overlay`)"},
      Unsupported{"secrets", "secrets", "pass them to the command of `weft service create ... -- COMMAND` yourself"},
      Unsupported{"configs", "configs", "pass them to the command of `weft service create ... -- COMMAND` yourself"},
      Unsupported{"session", "build sessions", "weft runs commands, not images"},
      Unsupported{"grpc", "BuildKit", "weft runs commands, not images"},
      Unsupported{"system", "system data usage", "see `weft network ls`, `weft endpoint ls` and `weft service ls`"},
  };
  for (const auto& u : kUnsupported) {
    if (u.segment == first)
      return "weft is a container-networking agent, not a container engine: " + std::string(u.what) +
             " are not available; " + std::string(u.instead);
  }
  return std::nullopt;
}

}  // namespace weft::control::api
