// The remote node's n-th backend endpoint as the services benches hold it:
// service n / backends, named and addressed as bench_remote_node publishes
// them (10.96.1.0 up, task-like namespace paths).
#pragma once

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "bench/services/bench_ids.h"
#include "control/model/model.h"

namespace weft::bench {

inline control::Endpoint bench_endpoint(std::uint32_t n, std::uint32_t backends, const std::string& network_id) {
  using namespace weft::control;
  const std::uint32_t s = n / backends;
  const dataplane::Ipv4 ip{(10u << 24 | 96u << 16) + 256 + n};
  const std::string service = bench_id(0x5e, s);
  return Endpoint{.id = bench_id(0xe0, n),
                  .name = fmt::format("svc{}-{}", s, n % backends + 1),
                  .network_id = network_id,
                  .network_name = "bench-net",
                  .netns = fmt::format("/run/netns/weft-fake2-{}-{}", service.substr(0, 12), n % backends + 1),
                  .ifname = "eth0",
                  .ip = ip,
                  .prefix_len = 15,
                  .mac = dataplane::MacAddress::from_ipv4(ip),
                  .node = "fake2",
                  .service_id = service,
                  .backend_state = BackendState::active,
                  .drain_until = {}};
}

}  // namespace weft::bench
