// An in-memory NameView: networks holding services and endpoints, and
// contexts that see some of the networks. The tests fill it directly; the
// agent can fill it from its replicated tables.
#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>
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
  std::vector<Ipv4> rotated(const std::string& key, std::vector<Ipv4> addresses) const;

  mutable std::mutex mutex_;
  std::map<std::string, Network, std::less<>> networks_;
  std::map<std::string, std::set<std::string>, std::less<>> contexts_;
  mutable std::map<std::string, uint64_t> rotation_;  // bounded by the names the view holds
};

}  // namespace weft::dns
