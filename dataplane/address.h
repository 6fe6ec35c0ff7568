// Address value types shared by the dataplane and the control plane: an IPv4
// address, an IPv4 network (CIDR) and an Ethernet MAC address. They are parsed
// once where text comes in (the API, the state file, gossip records) and carried
// as values from there on, so nothing downstream re-parses or can meet a
// malformed address. They live in the lowest layer because the kernel calls
// take them too; control/network/ipam.h re-exports Ipv4 and Cidr as
// network::ipam::Ipv4/Cidr.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace weft::dataplane {

struct Ipv4 {
  std::uint32_t value = 0;  // host byte order
  // Dotted quad, decimal octets without leading zeros ("010" would be octal
  // to inet_aton, so refusing it keeps two tools from disagreeing).
  static std::optional<Ipv4> parse(std::string_view text);
  std::string str() const;
  auto operator<=>(const Ipv4&) const = default;
};

struct Cidr {
  Ipv4 base;  // network address (host bits zero)
  int prefix = 0;
  // Refuses host bits set ("10.0.0.1/24") and prefixes outside 0..32.
  static std::optional<Cidr> parse(std::string_view text);
  // The network of `prefix` bits that holds `ip` (host bits cleared);
  // `prefix` must be 0..32.
  static Cidr containing(Ipv4 ip, int prefix);
  // Prefix within 0..32 and no host bit set: what parse() guarantees, for a
  // Cidr built from parts.
  bool well_formed() const;
  Ipv4 first() const { return base; }
  Ipv4 last() const;
  std::uint64_t size() const { return std::uint64_t{1} << (32 - prefix); }
  bool contains(Ipv4 ip) const;
  bool overlaps(const Cidr& other) const;
  std::string str() const;
  auto operator<=>(const Cidr&) const = default;
};

struct MacAddress {
  std::array<std::uint8_t, 6> bytes{};
  // "02:42:0a:00:00:02": six colon-separated hex pairs, either case.
  static std::optional<MacAddress> parse(std::string_view text);
  // Docker's scheme: 02:42 followed by the four bytes of the IPv4 address.
  static MacAddress from_ipv4(Ipv4 ip);
  std::string str() const;  // lowercase
  auto operator<=>(const MacAddress&) const = default;
};

}  // namespace weft::dataplane
