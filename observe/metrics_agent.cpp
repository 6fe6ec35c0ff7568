#include "observe/metrics_agent.h"

#include <algorithm>
#include <iterator>
#include <string_view>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "control/api/request_counters.h"
#include "control/api/routes.h"
#include "control/cluster/cluster.h"
#include "control/discovery/dns_agent.h"
#include "control/gossip/gossip_counters.h"
#include "control/services/service_dataplane.h"
#include "control/services/service_dataplane_driver.h"
#include "control/services/service_manager.h"
#include "dns/query_metrics.h"

namespace weft::observe {

namespace {

void gather_cluster(control::cluster::Cluster& cluster, MetricsSamples& out) {
  try {
    auto m = cluster.metrics();
    for (const auto& [state, count] : m.nodes) out.nodes[state] = count;
    for (const auto& [table, count] : m.table_entries) out.table_entries[table] = count;
    out.table_sync_bytes = m.table_sync_bytes;
  } catch (const std::exception& e) {
    spdlog::debug("metrics: cluster: {}", e.what());
  }
}

void gather_gossip(MetricsSamples& out) {
  const auto& counters = control::gossip::gossip_counters();
  for (std::size_t type = 0; type < counters.received.size(); ++type) {
    const auto count = counters.received[type].load(std::memory_order_relaxed);
    if (count != 0) out.gossip_messages[control::gossip::message_type_name(static_cast<std::uint8_t>(type))] = count;
  }
  out.member_flaps = counters.member_flaps.load(std::memory_order_relaxed);
}

}  // namespace

void add_service_samples(const control::services::LbView& view, control::services::LbMetrics lb,
                         MetricsSamples& out) {
  // Service id -> active, draining; hashed: 10 000 services have 100 000 backends.
  std::unordered_map<std::string_view, std::pair<std::uint64_t, std::uint64_t>> backends;
  backends.reserve(view.services.size());
  const auto source = view.backend_source();  // the keys view its strings
  for (const auto& endpoint : source->endpoints) {
    if (endpoint->service_id().empty()) continue;
    auto& [active, draining] = backends[endpoint->service_id()];
    (endpoint->backend_state() == control::BackendState::draining ? draining : active) += 1;
  }
  // Names are unique in a cluster; two records that share one (a race
  // between two creates) are summed, so no series appears twice. One
  // vector sorted by name, not a map node per service.
  std::vector<ServiceSample> samples;
  samples.reserve(view.services.size());
  for (const auto& service : view.services) {
    ServiceSample& sample = samples.emplace_back();
    sample.name = service.name;
    if (auto it = backends.find(service.id); it != backends.end()) {
      sample.active_backends = it->second.first;
      sample.draining_backends = it->second.second;
    }
    if (auto it = lb.connections.find(service.id); it != lb.connections.end()) sample.connections = it->second;
  }
  std::stable_sort(samples.begin(), samples.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::size_t kept = 0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    if (kept > 0 && samples[kept - 1].name == samples[i].name) {
      ServiceSample& into = samples[kept - 1];
      into.active_backends += samples[i].active_backends;
      into.draining_backends += samples[i].draining_backends;
      if (samples[i].connections) into.connections = into.connections.value_or(0) + *samples[i].connections;
      continue;
    }
    if (kept != i) samples[kept] = std::move(samples[i]);
    ++kept;
  }
  samples.resize(kept);
  if (out.services.empty())
    out.services = std::move(samples);
  else
    std::move(samples.begin(), samples.end(), std::back_inserter(out.services));
  out.lb_drops = std::move(lb.drops);
  for (const auto& map : lb.maps) out.maps.push_back({map.map_name, map.entries, map.capacity});
}

namespace {

void gather_services(control::services::ServiceManager& services, control::services::ServiceDataplane* dataplane,
                     MetricsSamples& out) {
  control::services::LbMetrics lb;
  if (dataplane) lb = dataplane->metrics();
  add_service_samples(services.lb_view(), std::move(lb), out);
}

void gather_dns(const dns::QueryMetrics& dns, MetricsSamples& out) {
  using Q = dns::QueryMetrics;
  static constexpr const char* kProtos[] = {"udp", "tcp"};
  for (std::size_t proto = 0; proto < 2; ++proto)
    for (std::size_t type = 0; type < Q::kTypeNames.size(); ++type)
      out.dns_requests.push_back({{kProtos[proto], std::string(Q::kTypeNames[type])}, dns.requests(proto, type)});
  for (std::size_t rcode = 0; rcode < Q::kRcodeNames.size(); ++rcode)
    out.dns_responses.push_back({{std::string(Q::kRcodeNames[rcode])}, dns.responses(rcode)});
  out.dns_duration = dns.duration().snapshot();
}

}  // namespace

MetricsSamples gather_metrics(const AgentSources& sources) {
  MetricsSamples out;
  out.version = std::string(control::api::kWeftVersion);
  if (auto* cluster = sources.cluster ? sources.cluster() : nullptr) gather_cluster(*cluster, out);
  gather_gossip(out);
  control::services::ServiceDataplane* dataplane = sources.dataplane ? sources.dataplane() : nullptr;
  if (sources.services) gather_services(*sources.services, dataplane, out);
  if (auto* driver = sources.driver ? sources.driver() : nullptr) out.datapath_sync = driver->apply_durations().snapshot();
  if (auto* agent = sources.dns ? sources.dns() : nullptr)
    if (const auto* dns = agent->query_metrics()) gather_dns(*dns, out);
  for (auto& s : control::api::request_counters().samples())
    out.api_requests.push_back({{std::move(s.route), std::to_string(s.code)}, s.count});
  return out;
}

}  // namespace weft::observe
