// weftd's Prometheus metrics (GET /metrics on the observability listener):
// the samples of one scrape as plain data, and their text exposition
// (format 0.0.4, through prometheus-cpp's TextSerializer; its registry and
// web server are not used: the samples are read from the agent's modules at
// scrape time, observe/metrics_agent.h, so the data path pays nothing for
// them). Labels are bounded: states, types, reasons and route templates
// from fixed sets, service names bounded by the service count; never an IP
// or a task id.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "observe/metrics_histogram.h"

namespace weft::observe {

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

struct ServiceSample {
  std::string name;
  std::uint64_t active_backends = 0;
  std::uint64_t draining_backends = 0;
  std::optional<std::uint64_t> connections;  // nullopt: no load balancer for it here
};

struct MapPressure {
  std::string map_name;
  std::uint64_t entries = 0;
  std::uint64_t capacity = 0;  // 0: reported as 0 pressure
};

struct LabelledCount {
  std::vector<std::string> labels;  // values, in the family's label order
  std::uint64_t value = 0;
};

struct MetricsSamples {
  std::string version;
  std::map<std::string, std::uint64_t> nodes;  // by state; "ready" and "down" always shown
  std::map<std::string, std::uint64_t> gossip_messages;  // by message type name
  std::uint64_t member_flaps = 0;
  std::map<std::string, std::uint64_t> table_entries;  // by table
  std::uint64_t table_sync_bytes = 0;
  std::vector<ServiceSample> services;
  std::map<std::string, std::uint64_t> lb_drops;  // by reason
  std::vector<MapPressure> maps;
  std::optional<AtomicHistogram::Snapshot> datapath_sync;
  std::vector<LabelledCount> dns_requests;   // {proto, type}
  std::vector<LabelledCount> dns_responses;  // {rcode}
  std::optional<AtomicHistogram::Snapshot> dns_duration;
  std::vector<LabelledCount> api_requests;   // {route, code}
};

// The text exposition of one scrape.
std::string render_metrics(const MetricsSamples& samples);

}  // namespace weft::observe
