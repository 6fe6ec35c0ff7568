#include "control/gossip/host_port.h"

#include <fmt/format.h>

#include <algorithm>

namespace weft::control::gossip {

std::string HostPort::to_string() const {
  if (ip.is_v6()) return fmt::format("[{}]:{}", ip.to_string(), port);
  return fmt::format("{}:{}", ip.to_string(), port);
}

namespace {

std::uint16_t parse_port(std::string_view text) {
  const bool digits = !text.empty() && text.size() <= 5 &&
                      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  unsigned value = 0;
  if (digits) {
    for (char c : text) value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (!digits || value > 65535) throw InvalidHostPort(fmt::format("bad port '{}'", text));
  return static_cast<std::uint16_t>(value);
}

}  // namespace

ParsedHostPort parse_host_port(std::string_view text) {
  std::string_view host = text;
  std::optional<std::string_view> port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) throw InvalidHostPort("missing ']'");
    host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') throw InvalidHostPort("expected ':' after ']'");
      port = text.substr(close + 2);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    const auto colon = text.find(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  ParsedHostPort parsed;
  boost::system::error_code ec;
  parsed.ip = boost::asio::ip::make_address(std::string(host), ec);
  if (ec) throw InvalidHostPort(fmt::format("'{}' is not an IP address", host));
  if (port) parsed.port = parse_port(*port);
  return parsed;
}

}  // namespace weft::control::gossip
