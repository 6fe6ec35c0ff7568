// The narrow question the DNS responder asks about names, per client
// context. A context is whatever the agent attaches to a listening socket
// (an endpoint id); the view decides which networks that context sees.
// Names are lower case, without the trailing dot.
#pragma once

#include <boost/asio/ip/address_v4.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weft::dns {

using Ipv4 = boost::asio::ip::address_v4;

struct SrvRecord {
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;
  std::string target;  // a name the view answers A for
};

enum class Ownership {
  not_ours,  // forward it
  visible,   // ours and on a network the context sees: answer, never forward
  hidden,    // ours, but only on networks the context does not see: NXDOMAIN
};

class NameView {
 public:
  virtual ~NameView() = default;

  virtual Ownership owns(std::string_view context, std::string_view name) const = 0;
  // Empty when the name has no address records for the context. Answers with
  // several addresses (dnsrr, tasks.) start with a different one each call.
  virtual std::vector<Ipv4> lookup_a(std::string_view context, std::string_view name) const = 0;
  virtual std::optional<std::string> lookup_ptr(std::string_view context, Ipv4 address) const = 0;
  // `name` is `_<port>._<proto>.<service>`.
  virtual std::vector<SrvRecord> lookup_srv(std::string_view context, std::string_view name) const = 0;

  // The fast path's question in one call: the name's ownership and, when it
  // is visible, its A records (rotated as lookup_a's) in `out`, which is
  // cleared first and reused by the caller. A view overrides it to find the
  // name once and allocate nothing once `out` has grown; this one asks
  // owns() and lookup_a().
  virtual Ownership resolve_a(std::string_view context, std::string_view name, std::vector<Ipv4>& out) const {
    out.clear();
    const Ownership ownership = owns(context, name);
    if (ownership == Ownership::visible) out = lookup_a(context, name);
    return ownership;
  }
};

}  // namespace weft::dns
