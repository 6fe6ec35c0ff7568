#include "observe/metrics.h"

#include <algorithm>
#include <sstream>
#include <string_view>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

namespace weft::observe {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

ClientMetric sample(std::vector<ClientMetric::Label> labels, MetricType type, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return m;
}

// One sample per map entry, labelled `label`.
MetricFamily by_label(std::string name, std::string help, MetricType type, const std::string& label,
                      const std::map<std::string, std::uint64_t>& values) {
  MetricFamily f = family(std::move(name), std::move(help), type);
  f.metric.reserve(values.size());
  for (const auto& [key, value] : values) f.metric.push_back(sample({{label, key}}, type, static_cast<double>(value)));
  return f;
}

MetricFamily labelled(std::string name, std::string help, MetricType type, const std::vector<std::string>& labels,
                      const std::vector<LabelledCount>& values) {
  MetricFamily f = family(std::move(name), std::move(help), type);
  f.metric.reserve(values.size());
  for (const auto& v : values) {
    std::vector<ClientMetric::Label> l;
    for (std::size_t i = 0; i < labels.size() && i < v.labels.size(); ++i) l.push_back({labels[i], v.labels[i]});
    f.metric.push_back(sample(std::move(l), type, static_cast<double>(v.value)));
  }
  return f;
}

MetricFamily histogram(std::string name, std::string help, const std::optional<AtomicHistogram::Snapshot>& snapshot) {
  MetricFamily f = family(std::move(name), std::move(help), MetricType::Histogram);
  if (!snapshot) return f;
  ClientMetric m;
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < snapshot->counts.size(); ++i) {
    cumulative += snapshot->counts[i];
    const double bound =
        i < snapshot->bounds.size() ? snapshot->bounds[i] : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back({cumulative, bound});
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = snapshot->sum_seconds;
  f.metric.push_back(std::move(m));
  return f;
}

// A family of many samples (one or two per service) written through the
// serializer `kChunk` samples at a time into `out`, so a scrape never holds
// them all as ClientMetric objects (10 000 services: 30 000 of them, ~10 MB
// of small blocks that the heap kept after the scrape). The text is the
// serializer's own; each chunk's family header after the first is cut off.
// add(i, metrics) appends service i's samples.
template <class Add>
void serialize_in_chunks(std::ostream& out, MetricFamily family, std::size_t count, Add&& add) {
  constexpr std::size_t kChunk = 256;
  const prometheus::TextSerializer serializer;
  std::vector<MetricFamily> one(1);
  one[0] = std::move(family);
  one[0].metric.clear();
  std::ostringstream text;
  serializer.Serialize(text, one);
  const std::string header = std::move(text).str();
  out << header;
  one[0].metric.reserve(2 * kChunk);
  for (std::size_t i = 0; i < count;) {
    one[0].metric.clear();
    for (const std::size_t end = std::min(count, i + kChunk); i < end; ++i) add(i, one[0].metric);
    text.str({});
    text.clear();
    serializer.Serialize(text, one);
    const std::string_view chunk = text.view();
    if (chunk.starts_with(header))
      out << chunk.substr(header.size());
    else
      out << chunk;
  }
}

}  // namespace

std::string render_metrics(const MetricsSamples& s) {
  std::vector<MetricFamily> families;
  families.reserve(16);

  {
    MetricFamily f = family("weft_build_info", "weftd's version; always 1", MetricType::Gauge);
    f.metric.push_back(sample({{"version", s.version}}, MetricType::Gauge, 1));
    families.push_back(std::move(f));
  }
  {
    auto nodes = s.nodes;
    nodes.try_emplace("ready", 0);
    nodes.try_emplace("down", 0);
    families.push_back(by_label("weft_cluster_nodes", "Cluster members as this node sees them, by state",
                                MetricType::Gauge, "state", nodes));
  }
  families.push_back(by_label("weft_gossip_messages_total", "Gossip messages received, by memberlist message type",
                              MetricType::Counter, "type", s.gossip_messages));
  {
    MetricFamily f = family("weft_gossip_member_flaps_total",
                            "Times a cluster member that was alive turned suspect or dead", MetricType::Counter);
    f.metric.push_back(sample({}, MetricType::Counter, static_cast<double>(s.member_flaps)));
    families.push_back(std::move(f));
  }
  families.push_back(by_label("weft_table_entries", "Live entries of the replicated tables, by table",
                              MetricType::Gauge, "table", s.table_entries));
  {
    MetricFamily f = family("weft_table_sync_bytes_total",
                            "Replicated-table data exchanged: messages received, push/pull states sent and merged",
                            MetricType::Counter);
    f.metric.push_back(sample({}, MetricType::Counter, static_cast<double>(s.table_sync_bytes)));
    families.push_back(std::move(f));
  }
  std::ostringstream out;
  const prometheus::TextSerializer serializer;
  {
    MetricFamily services = family("weft_services", "Services known to this node", MetricType::Gauge);
    services.metric.push_back(sample({}, MetricType::Gauge, static_cast<double>(s.services.size())));
    families.push_back(std::move(services));
    serializer.Serialize(out, families);
    families.clear();

    serialize_in_chunks(out, family("weft_service_backends", "Backends of each service, by state", MetricType::Gauge),
                        s.services.size(), [&](std::size_t i, std::vector<ClientMetric>& metrics) {
                          const auto& service = s.services[i];
                          metrics.push_back(sample({{"service", service.name}, {"state", "active"}}, MetricType::Gauge,
                                                   static_cast<double>(service.active_backends)));
                          metrics.push_back(sample({{"service", service.name}, {"state", "draining"}},
                                                   MetricType::Gauge, static_cast<double>(service.draining_backends)));
                        });
    serialize_in_chunks(out,
                        family("weft_lb_connections_total",
                               "Connections this node's load balancer gave to a backend of the service",
                               MetricType::Counter),
                        s.services.size(), [&](std::size_t i, std::vector<ClientMetric>& metrics) {
                          const auto& service = s.services[i];
                          if (service.connections)
                            metrics.push_back(sample({{"service", service.name}}, MetricType::Counter,
                                                     static_cast<double>(*service.connections)));
                        });
  }
  families.push_back(by_label("weft_lb_drops_total", "Packets the eBPF load balancer dropped, by reason",
                              MetricType::Counter, "reason", s.lb_drops));
  {
    MetricFamily f = family("weft_bpf_map_pressure", "How full each eBPF map of the load balancer is (0..1)",
                            MetricType::Gauge);
    for (const auto& map : s.maps) {
      const double ratio =
          map.capacity == 0 ? 0 : std::min(1.0, static_cast<double>(map.entries) / static_cast<double>(map.capacity));
      f.metric.push_back(sample({{"map_name", map.map_name}}, MetricType::Gauge, ratio));
    }
    families.push_back(std::move(f));
  }
  families.push_back(histogram("weft_datapath_sync_duration_seconds",
                               "Time to bring the load balancer's data path in line with the services",
                               s.datapath_sync));
  families.push_back(labelled("weft_dns_requests_total", "DNS queries received by the embedded DNS, by transport and type",
                              MetricType::Counter, {"proto", "type"}, s.dns_requests));
  families.push_back(labelled("weft_dns_responses_total", "DNS answers sent by the embedded DNS, by rcode",
                              MetricType::Counter, {"rcode"}, s.dns_responses));
  families.push_back(histogram("weft_dns_request_duration_seconds",
                               "Time from a DNS query's arrival to its answer (forwarded ones included)",
                               s.dns_duration));
  families.push_back(labelled("weft_api_requests_total", "Local API requests answered, by route template and status",
                              MetricType::Counter, {"route", "code"}, s.api_requests));

  serializer.Serialize(out, families);
  return std::move(out).str();
}

}  // namespace weft::observe
