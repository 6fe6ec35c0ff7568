#include "bench/lb/lb_scale.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <stdexcept>

extern "C" {
#include "ebpf/lb_abi.h"
}

namespace weft::bench::lb {

namespace {

constexpr std::uint32_t kVipBase = 0x0a010000;      // 10.1.0.0
constexpr std::uint32_t kBackendBase = 0x0a800000;  // 10.128.0.0
constexpr std::uint32_t kClientBase = 0x0ac00000;   // 10.192.0.0
constexpr std::uint16_t kServicePort = 80;
// Client ports 1024..65023: 64000 flows per client address.
constexpr std::uint32_t kPortsPerClient = 64000;

}  // namespace

ServiceLoad make_service_load(std::uint32_t services, std::uint32_t backends_per_service) {
  ServiceLoad load;
  load.frontends.reserve(services);
  load.services.reserve(services);
  for (std::uint32_t s = 0; s < services; ++s) {
    load.frontends.push_back({dlb::Frontend{kVipBase + s + 1, kServicePort, dlb::Protocol::tcp}, s});
    dlb::ServiceBackends list{s, {}};
    list.backends.reserve(backends_per_service);
    for (std::uint32_t j = 0; j < backends_per_service; ++j) {
      const std::uint32_t id = 1 + s * backends_per_service + j;
      const std::uint32_t ip = kBackendBase + id;
      list.backends.push_back({id, ip, dlb::mac_from_ip(ip), dlb::BackendState::active});
    }
    load.services.push_back(std::move(list));
  }
  return load;
}

dlb::Limits limits_for(const ServiceLoad& load, std::uint32_t conntrack_entries) {
  std::uint32_t backends = 0;
  for (const auto& s : load.services) backends += static_cast<std::uint32_t>(s.backends.size());
  dlb::Limits limits;
  const auto services = static_cast<std::uint32_t>(load.services.size());
  limits.max_services = services + 1;
  limits.max_frontends = static_cast<std::uint32_t>(load.frontends.size()) + 1;
  limits.max_backends = backends + 2;
  limits.conntrack_entries = conntrack_entries;
  return limits;
}

void program_services(dlb::ServiceBackend& balancer, const ServiceLoad& load) {
  for (const auto& [frontend, service] : load.frontends) balancer.upsert_service(frontend, service);
  balancer.set_backends(load.services);
}

FlowId conntrack_flow(const ServiceLoad& load, std::uint32_t i) {
  FlowId flow;
  flow.client_ip = kClientBase + 1 + i / kPortsPerClient;
  flow.client_port = static_cast<std::uint16_t>(1024 + i % kPortsPerClient);
  flow.service_index = static_cast<std::uint32_t>(i % load.frontends.size());
  return flow;
}

ConntrackFill fill_conntrack(dlb::LoadBalancer& balancer, const ServiceLoad& load,
                             std::uint32_t flows) {
  if (load.frontends.empty()) throw std::invalid_argument("fill_conntrack: no services");
  const auto start = std::chrono::steady_clock::now();
  dlb::ConntrackTable table(balancer.map_fd("lb_conntrack"), balancer.map_fd("lb_ct_tags"));
  // Entries stamped with the current frontend epoch skip the frontend check,
  // as the program's own entries do.
  lb_config config{};
  const std::uint32_t zero = 0;
  if (bpf_map_lookup_elem(balancer.map_fd("lb_config"), &zero, &config) != 0) {
    throw dlb::BpfError(errno, "read map lb_config");
  }
  const std::uint64_t now = coarse_now_ns();
  constexpr std::uint32_t kBatchFlows = 32768;
  ConntrackBatch batch;
  batch.keys.reserve(kBatchFlows);
  batch.values.reserve(kBatchFlows);
  ConntrackFill result;
  for (std::uint32_t first = 0; first < flows; first += kBatchFlows) {
    batch.clear();
    const std::uint32_t end = std::min(flows, first + kBatchFlows);
    for (std::uint32_t i = first; i < end; ++i) {
      const FlowId flow = conntrack_flow(load, i);
      const auto& [frontend, service] = load.frontends[flow.service_index];
      auto pick = balancer.lookup(service, flow.client_ip, flow.client_port, frontend.port, frontend.proto);
      if (!pick) throw std::runtime_error("fill_conntrack: service has no backend");
      lb_ct_key original{};
      original.saddr = htonl(flow.client_ip);
      original.daddr = htonl(frontend.vip);
      original.sport = htons(flow.client_port);
      original.dport = htons(frontend.port);
      original.proto = static_cast<std::uint8_t>(frontend.proto);
      original.dir = LB_CT_DIR_ORIGINAL;
      lb_ct_value value{};
      value.seen = static_cast<std::uint32_t>(now >> LB_CT_SEEN_SHIFT);
      value.backend_id = pick->backend_id;
      value.nat_addr = htonl(pick->ip);
      value.service_id = service;
      value.flags = LB_CT_F_SYN_ORIG | LB_CT_F_SEEN_REPLY;
      value.frontend_epoch = config.frontend_epoch;
      batch.add_flow(original, value);
    }
    result.flows += end - first;
    result.entries += batch.write(table);
  }
  result.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return result;
}

void ConntrackBatch::add_flow(const lb_ct_key& original, const lb_ct_value& value) {
  keys.push_back(original);
  values.push_back(value);
}

std::uint32_t ConntrackBatch::write(dlb::ConntrackTable& table) {
  std::uint32_t count = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) count += table.insert(keys[i], values[i]) ? 1 : 0;
  return count;
}

std::uint64_t coarse_now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t fdinfo_memlock(int fd) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  std::string key;
  while (in >> key) {
    if (key == "memlock:") {
      std::uint64_t value = 0;
      in >> value;
      return value;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

std::uint64_t proc_status_kb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  const std::string prefix = field + ":";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) return std::stoull(line.substr(prefix.size()));
  }
  return 0;
}

}  // namespace weft::bench::lb
