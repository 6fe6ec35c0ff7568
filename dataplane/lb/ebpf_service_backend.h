// The eBPF LoadBalancer behind the ServiceBackend interface: a forwarding
// adapter, so load_balancer.h stays as it is. (LoadBalancer could as well
// derive from ServiceBackend itself: its methods already have these
// signatures.)
#pragma once

#include <utility>

#include "dataplane/lb/backend.h"
#include "dataplane/lb/load_balancer.h"

namespace weft::dataplane::lb {

class EbpfServiceBackend final : public ServiceBackend {
 public:
  explicit EbpfServiceBackend(LoadBalancer lb) : lb_(std::move(lb)) {}

  std::string_view kind() const override { return "ebpf"; }
  void upsert_service(const Frontend& frontend, std::uint32_t service_id) override {
    lb_.upsert_service(frontend, service_id);
  }
  void remove_service(const Frontend& frontend) override { lb_.remove_service(frontend); }
  void remove_service(std::uint32_t service_id) override { lb_.remove_service(service_id); }
  void set_backends(std::uint32_t service_id, std::span<const Backend> backends) override {
    lb_.set_backends(service_id, backends);
  }
  void set_backends(std::span<const ServiceBackends> services) override { lb_.set_backends(services); }
  void set_backend_state(std::uint32_t backend_id, BackendState state) override {
    lb_.set_backend_state(backend_id, state);
  }
  std::optional<LookupResult> lookup(std::uint32_t service_id, std::uint32_t src_ip, std::uint16_t src_port,
                                     std::uint16_t dst_port, Protocol proto) const override {
    return lb_.lookup(service_id, src_ip, src_port, dst_port, proto);
  }
  std::vector<BackendCounters> counters(std::uint32_t service_id) const override {
    return lb_.counters(service_id);
  }

  // The rest (attach, gc, stats, timeouts) is eBPF's own.
  LoadBalancer& ebpf() { return lb_; }

 private:
  LoadBalancer lb_;
};

}  // namespace weft::dataplane::lb
