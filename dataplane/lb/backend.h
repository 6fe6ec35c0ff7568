// The service load balancer as the agent drives it, whichever data path
// carries the packets: the eBPF programs (LoadBalancer, load_balancer.h) or
// the nftables fallback (NftLoadBalancer, nft_load_balancer.h). The value
// types (Frontend, Backend, ...) are the eBPF backend's, so both speak one
// model.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "dataplane/lb/load_balancer.h"

namespace weft::dataplane::lb {

// Not thread-safe: one owner drives it. Every call either takes effect in
// the kernel or throws, leaving the previous state in place.
class ServiceBackend {
 public:
  virtual ~ServiceBackend() = default;

  // "ebpf" or "nftables", as `weftd --lb-backend` spells it.
  virtual std::string_view kind() const = 0;

  // Adds a frontend to a service or moves it to another.
  virtual void upsert_service(const Frontend& frontend, std::uint32_t service_id) = 0;
  // The last frontend of a service takes its backends along (their flows
  // are reset).
  virtual void remove_service(const Frontend& frontend) = 0;
  virtual void remove_service(std::uint32_t service_id) = 0;

  // The full backend list of a service; backends no longer listed are dead.
  virtual void set_backends(std::uint32_t service_id, std::span<const Backend> backends) = 0;
  // Many services at once (an agent's start): one kernel transaction where
  // the data path allows.
  virtual void set_backends(std::span<const ServiceBackends> services) = 0;
  virtual void set_backend_state(std::uint32_t backend_id, BackendState state) = 0;

  // The backend a new flow with this 5-tuple would get, when the data path
  // chooses deterministically (eBPF's Maglev); nullopt where the choice is
  // random per connection (nftables' numgen) or there is no backend.
  virtual std::optional<LookupResult> lookup(std::uint32_t service_id, std::uint32_t src_ip,
                                             std::uint16_t src_port, std::uint16_t dst_port,
                                             Protocol proto) const = 0;
  // Per-backend counters; a data path fills what it counts (zero otherwise).
  virtual std::vector<BackendCounters> counters(std::uint32_t service_id) const = 0;
};

}  // namespace weft::dataplane::lb
