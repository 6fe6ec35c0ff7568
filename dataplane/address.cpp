#include "dataplane/address.h"

#include <charconv>

namespace weft::dataplane {
namespace {

std::uint32_t prefix_mask(int prefix) {
  // Shifting a 32-bit value by 32 is undefined, hence the 64-bit detour.
  return static_cast<std::uint32_t>(~((std::uint64_t{1} << (32 - prefix)) - 1));
}

// A decimal number without sign, spaces or leading zeros ("0" itself is fine).
std::optional<unsigned> parse_decimal(std::string_view text, unsigned max) {
  if (text.empty() || text.size() > 3 || (text.size() > 1 && text.front() == '0')) {
    return std::nullopt;
  }
  unsigned value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value > max) {
    return std::nullopt;
  }
  return value;
}

std::optional<std::uint8_t> parse_hex_pair(std::string_view text) {
  std::uint8_t value = 0;
  for (char c : text) {
    int digit = 0;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    value = static_cast<std::uint8_t>(value * 16 + digit);
  }
  return value;
}

}  // namespace

// ---------------------------------------------------------------------------
// Ipv4

std::optional<Ipv4> Ipv4::parse(std::string_view text) {
  std::uint32_t value = 0;
  for (int octet_index = 0; octet_index < 4; ++octet_index) {
    const bool last_octet = octet_index == 3;
    const std::size_t dot = text.find('.');
    if (last_octet != (dot == std::string_view::npos)) {
      return std::nullopt;  // too few or too many dots
    }
    const auto octet = parse_decimal(text.substr(0, dot), 255);
    if (!octet) {
      return std::nullopt;
    }
    value = (value << 8) | *octet;
    text = last_octet ? std::string_view{} : text.substr(dot + 1);
  }
  return Ipv4{value};
}

std::string Ipv4::str() const {
  std::string out;
  for (int shift = 24; shift >= 0; shift -= 8) {
    out += std::to_string((value >> shift) & 0xFF);
    if (shift != 0) {
      out += '.';
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Cidr

std::optional<Cidr> Cidr::parse(std::string_view text) {
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return std::nullopt;
  }
  const auto base = Ipv4::parse(text.substr(0, slash));
  const auto prefix = parse_decimal(text.substr(slash + 1), 32);
  if (!base || !prefix) {
    return std::nullopt;
  }
  Cidr cidr{*base, static_cast<int>(*prefix)};
  if (!cidr.well_formed()) {
    return std::nullopt;
  }
  return cidr;
}

Cidr Cidr::containing(Ipv4 ip, int prefix) { return Cidr{Ipv4{ip.value & prefix_mask(prefix)}, prefix}; }

bool Cidr::well_formed() const { return prefix >= 0 && prefix <= 32 && (base.value & ~prefix_mask(prefix)) == 0; }

Ipv4 Cidr::last() const { return Ipv4{base.value | ~prefix_mask(prefix)}; }

bool Cidr::contains(Ipv4 ip) const { return (ip.value & prefix_mask(prefix)) == base.value; }

bool Cidr::overlaps(const Cidr& other) const { return first() <= other.last() && other.first() <= last(); }

std::string Cidr::str() const { return base.str() + "/" + std::to_string(prefix); }

// ---------------------------------------------------------------------------
// MacAddress

std::optional<MacAddress> MacAddress::parse(std::string_view text) {
  constexpr std::size_t kLength = 6 * 2 + 5;
  if (text.size() != kLength) return std::nullopt;
  MacAddress mac;
  for (std::size_t i = 0; i < mac.bytes.size(); ++i) {
    if (i > 0 && text[i * 3 - 1] != ':') return std::nullopt;
    const auto byte = parse_hex_pair(text.substr(i * 3, 2));
    if (!byte) return std::nullopt;
    mac.bytes[i] = *byte;
  }
  return mac;
}

MacAddress MacAddress::from_ipv4(Ipv4 ip) {
  return MacAddress{{0x02, 0x42, static_cast<std::uint8_t>(ip.value >> 24), static_cast<std::uint8_t>(ip.value >> 16),
                     static_cast<std::uint8_t>(ip.value >> 8), static_cast<std::uint8_t>(ip.value)}};
}

std::string MacAddress::str() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(17);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i > 0) out += ':';
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 0xF];
  }
  return out;
}

}  // namespace weft::dataplane
