#include "control/services/service_spec.h"

#include <algorithm>
#include <set>

#include "control/model/names.h"
#include "control/model/record_json.h"

namespace weft::control::services {
namespace {

[[noreturn]] void bad_request(const std::string& message) { throw ApiError(ApiError::Kind::BadRequest, message); }

// Echoed values are cut short and control characters escaped.
std::string echoed(std::string_view text) { return names::quoted_preview(text); }

std::optional<std::uint16_t> parse_port_number(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value < 1 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

}  // namespace

CheckedSpec check_spec(const ServiceSpec& spec) {
  CheckedSpec checked;
  names::validate_service_name(spec.name);
  checked.name = spec.name;
  if (spec.endpoint_mode) {
    auto mode = parse_endpoint_mode(*spec.endpoint_mode);
    if (!mode) bad_request("unknown endpoint mode " + echoed(*spec.endpoint_mode) + ": use vip or dnsrr");
    checked.mode = *mode;
  }
  if (spec.ports.size() > kMaxServicePorts)
    bad_request("too many ports (" + std::to_string(spec.ports.size()) + "): at most " +
                std::to_string(kMaxServicePorts));
  std::set<PublishedPort> ports;
  for (const auto& text : spec.ports) {
    auto port = parse_port(text);
    if (!port) bad_request("invalid port " + echoed(text) + ": expected PORT, PORT/tcp or PORT/udp with PORT 1-65535");
    ports.insert(*port);
  }
  checked.ports.assign(ports.begin(), ports.end());
  if (spec.networks.empty()) bad_request("a service needs a network (--network)");
  if (spec.networks.size() > kMaxServiceNetworks)
    bad_request("too many networks (" + std::to_string(spec.networks.size()) + "): at most " +
                std::to_string(kMaxServiceNetworks));
  for (const auto& network : spec.networks) {
    names::validate_network_ref(network);
    if (std::find(checked.networks.begin(), checked.networks.end(), network) == checked.networks.end())
      checked.networks.push_back(network);
  }
  if (spec.command.size() > kMaxCommandArgs)
    bad_request("the command has " + std::to_string(spec.command.size()) + " arguments: at most " +
                std::to_string(kMaxCommandArgs));
  std::size_t bytes = 0;
  for (const auto& arg : spec.command) {
    bytes += arg.size() + 1;
    if (arg.find('\0') != std::string::npos) bad_request("a command argument contains a NUL character");
  }
  if (bytes > kMaxCommandBytes)
    bad_request("the command is " + std::to_string(bytes) + " bytes long: at most " + std::to_string(kMaxCommandBytes));
  if (!spec.command.empty() && spec.command.front().empty()) bad_request("the command is empty: name a program to run");
  checked.command = spec.command;
  if (spec.command.empty()) {
    if (spec.replicas) bad_request("--replicas needs a command to run (service create ... -- COMMAND [ARGS...])");
    if (spec.restart_condition)
      bad_request("--restart-condition needs a command to run (service create ... -- COMMAND [ARGS...])");
    return checked;
  }
  checked.replicas = spec.replicas.value_or(1);
  check_replicas(checked.replicas);
  if (spec.restart_condition) {
    auto condition = parse_restart_condition(*spec.restart_condition);
    if (!condition)
      bad_request("unknown restart condition " + echoed(*spec.restart_condition) + ": use any, on-failure or none");
    checked.restart_condition = *condition;
  }
  return checked;
}

void check_replicas(std::uint64_t replicas) {
  if (replicas > kMaxReplicas)
    bad_request("too many replicas (" + std::to_string(replicas) + "): at most " + std::to_string(kMaxReplicas));
}

CheckedLookup check_lookup(const LbLookupRequest& request) {
  CheckedLookup checked;
  const auto colon = request.src.rfind(':');
  const auto ip = colon == std::string::npos ? std::nullopt : dataplane::Ipv4::parse(request.src.substr(0, colon));
  const auto sport = colon == std::string::npos ? std::nullopt
                                                : parse_port_number(std::string_view(request.src).substr(colon + 1));
  if (!ip || !sport)
    bad_request("invalid source " + echoed(request.src) + ": expected IP:PORT, such as 10.0.0.5:40000");
  checked.src = *ip;
  checked.sport = *sport;
  const auto dport = parse_port_number(request.dport);
  if (!dport) bad_request("invalid destination port " + echoed(request.dport) + ": expected 1-65535");
  checked.dport = *dport;
  if (request.proto) {
    if (*request.proto == "tcp")
      checked.proto = PortProtocol::tcp;
    else if (*request.proto == "udp")
      checked.proto = PortProtocol::udp;
    else
      bad_request("unknown protocol " + echoed(*request.proto) + ": use tcp or udp");
  }
  return checked;
}

}  // namespace weft::control::services
