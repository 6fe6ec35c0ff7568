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
  return checked;
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
