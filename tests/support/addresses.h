// Test helpers: address values from literals. A literal that does not parse
// is a bug in the test, reported by an exception.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include "dataplane/address.h"

namespace weft::testing {

inline dataplane::Ipv4 ipv4(std::string_view text) {
  const auto ip = dataplane::Ipv4::parse(text);
  if (!ip) throw std::invalid_argument("test: bad IPv4 literal " + std::string(text));
  return *ip;
}

inline dataplane::Cidr cidr(std::string_view text) {
  const auto c = dataplane::Cidr::parse(text);
  if (!c) throw std::invalid_argument("test: bad CIDR literal " + std::string(text));
  return *c;
}

inline dataplane::MacAddress mac(std::string_view text) {
  const auto m = dataplane::MacAddress::parse(text);
  if (!m) throw std::invalid_argument("test: bad MAC literal " + std::string(text));
  return *m;
}

}  // namespace weft::testing
