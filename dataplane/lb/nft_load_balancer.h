// The nftables fallback of the service load balancer: the same service
// semantics as the eBPF LoadBalancer, as one table of sets and maps in the
// network's namespace (see README.md, "nftables fallback"). A change is an
// element update in one transaction; there is no chain per service.
//
// Addresses and ports in this API are in host byte order.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/lb/backend.h"
#include "dataplane/lb/nft_netns.h"
#include "dataplane/lb/nft_ruleset.h"
#include "dataplane/netns.h"

namespace weft::dataplane::lb {

struct NftOptions {
  std::string table = "weft_lb";  // in family ip of the network's namespace
  std::string bridge = "br0";     // holds the VIPs, so clients' ARP is answered
  // Source of balanced flows towards backends. 0: the VIP itself (backends
  // on this node only); a node's own address in the network otherwise (the
  // agent publishes it like an endpoint, so remote backends' replies return
  // to this node).
  std::uint32_t snat_ip = 0;
  nft::TableLimits limits{};
};

// Not thread-safe: one owner drives it.
class NftLoadBalancer final : public ServiceBackend {
 public:
  // Makes the table in the namespace, or reuses one of this layout and
  // rebuilds the in-memory model from it (services, frontends, backends;
  // backends out of the slots come back as draining). VIP routes on the
  // bridge are reconciled with the table. Turns on forwarding there.
  static NftLoadBalancer open(const NetnsHandle& network_ns, const NftOptions& options = {});
  // Deletes the table and the VIP routes it made via the bridge.
  static void remove(const NetnsHandle& network_ns, const NftOptions& options = {});

  NftLoadBalancer(NftLoadBalancer&&) noexcept;
  NftLoadBalancer& operator=(NftLoadBalancer&&) noexcept;
  ~NftLoadBalancer() override;

  std::string_view kind() const override { return "nftables"; }

  void upsert_service(const Frontend& frontend, std::uint32_t service_id) override;
  // Many frontends in one transaction (an agent's start, the benchmark).
  void upsert_services(std::span<const std::pair<Frontend, std::uint32_t>> frontends);
  void remove_service(const Frontend& frontend) override;
  void remove_service(std::uint32_t service_id) override;
  void set_backends(std::uint32_t service_id, std::span<const Backend> backends) override;
  void set_backends(std::span<const ServiceBackends> services) override;
  void set_backend_state(std::uint32_t backend_id, BackendState state) override;

  // nftables draws the backend at random per connection: nothing to predict.
  std::optional<LookupResult> lookup(std::uint32_t service_id, std::uint32_t src_ip, std::uint16_t src_port,
                                     std::uint16_t dst_port, Protocol proto) const override;
  // Connections per backend (the element counters of backend_addr, read
  // once per new connection); packets and bytes are not counted.
  std::vector<BackendCounters> counters(std::uint32_t service_id) const override;

  // The model as the table holds it (for tests, tools and reconciliation).
  std::map<Frontend, std::uint32_t> frontends() const;
  std::vector<Backend> backends(std::uint32_t service_id) const;  // MAC left zero
  std::set<std::uint32_t> service_ids() const;

  // The text the last change sent to libnftables (tests check that a
  // change is a handful of element updates).
  const std::string& last_commands() const;
  std::size_t last_operations() const;  // element updates and chains in it

 private:
  struct Impl;
  explicit NftLoadBalancer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::dataplane::lb
