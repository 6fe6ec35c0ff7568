// "ip:port" text as the agent, memberlist joins and the test tools take it:
// one parser, so every place accepts and refuses the same spellings.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace weft::control::gossip {

// An IP address and a UDP/TCP port: where a gossip peer listens.
struct HostPort {
  boost::asio::ip::address ip;
  std::uint16_t port = 0;

  std::string to_string() const;  // "ip:port", "[v6]:port"
  friend bool operator==(const HostPort&, const HostPort&) = default;
  friend bool operator<(const HostPort& a, const HostPort& b) {
    return a.ip < b.ip || (a.ip == b.ip && a.port < b.port);
  }
};

// What is wrong with a host:port text; what() names the problem but not the
// whole input, so callers can say which flag or peer it came from.
class InvalidHostPort : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct ParsedHostPort {
  boost::asio::ip::address ip;
  std::optional<std::uint16_t> port;  // absent when the text names none
};

// "ip", "ip:port", "[v6]" or "[v6]:port"; an IPv6 address without brackets
// is read whole (no port). The port is decimal, 0..65535. Throws
// InvalidHostPort.
ParsedHostPort parse_host_port(std::string_view text);

}  // namespace weft::control::gossip
