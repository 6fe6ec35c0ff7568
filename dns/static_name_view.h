// An in-memory NameView: networks holding services and endpoints, and
// contexts that see some of the networks. The tests fill it directly; the
// agent can fill it from its replicated tables.
#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "dns/name_view.h"

namespace weft::dns {

enum class EndpointMode { vip, dnsrr };

struct ServicePort {
  std::string name;  // optional; `_<name>._<proto>` matches as well as the number
  uint16_t port = 0;
  std::string protocol = "tcp";
};

struct Service {
  std::string name;
  EndpointMode mode = EndpointMode::vip;
  Ipv4 vip;
  std::vector<Ipv4> backends;
  std::vector<ServicePort> ports;
};

struct Endpoint {
  std::string name;
  std::vector<std::string> aliases;
  Ipv4 address;
};

class StaticNameView final : public NameView {
 public:
  // Replaces what the network held; names are matched case-insensitively.
  void set_network(const std::string& network, std::vector<Service> services, std::vector<Endpoint> endpoints);
  void remove_network(const std::string& network);
  void set_context(const std::string& context, std::set<std::string> networks);
  void remove_context(const std::string& context);

  Ownership owns(std::string_view context, std::string_view name) const override;
  std::vector<Ipv4> lookup_a(std::string_view context, std::string_view name) const override;
  std::optional<std::string> lookup_ptr(std::string_view context, Ipv4 address) const override;
  std::vector<SrvRecord> lookup_srv(std::string_view context, std::string_view name) const override;
  Ownership resolve_a(std::string_view context, std::string_view name, std::vector<Ipv4>& out) const override;

 private:
  struct Network {
    std::vector<Service> services;
    std::vector<Endpoint> endpoints;
  };
  // The networks a context sees that a name can refer to: all of them, or
  // the one named by a `.<network>` suffix (the name then loses it).
  std::vector<std::pair<const std::string*, std::string>> candidates(std::string_view context, std::string_view name,
                                                                     bool all_networks) const;
  static bool network_owns(const Network& net, std::string_view name);
  static std::vector<Ipv4> addresses_in(const Network& net, std::string_view local);
  std::vector<Ipv4> rotated(std::string_view context, std::string_view name, std::vector<Ipv4> addresses) const;
  void rebuild_index();
  const std::set<std::string>* seen_by(std::string_view context) const;

  // One network's meaning of an indexed name: the name itself there, or
  // `<local>.<network>` (suffix), with the addresses lookup_a gives for it.
  struct Hit {
    const std::string* network;  // a key of networks_
    bool suffix;
    std::vector<Ipv4> addresses;
  };
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Entry {
    std::vector<Hit> hits;
    uint64_t turn = 0;  // rotation of the name's answers (under mutex_)
  };
  using Index = std::unordered_map<std::string, Entry, StringHash, std::equal_to<>>;
  // resolve_a for an indexed name, under mutex_.
  Ownership resolve_indexed(std::string_view context, std::string_view name, std::vector<Ipv4>& out) const;

  mutable std::mutex mutex_;
  std::map<std::string, Network, std::less<>> networks_;
  std::map<std::string, std::set<std::string>, std::less<>> contexts_;
  // Every name but the SRV ones (`_...`, matched by pattern on networks_),
  // rebuilt when a network changes: a query costs a hash lookup, not a scan
  // of every service and endpoint (that scan was a tenth of bench/dns's CPU).
  mutable Index index_;  // mutable: the rotation counters
  mutable std::unordered_map<std::string, uint64_t, StringHash, std::equal_to<>> rotation_;  // SRV-form names only
  mutable std::string rotation_key_;  // reused: no allocation per lookup
};

}  // namespace weft::dns
