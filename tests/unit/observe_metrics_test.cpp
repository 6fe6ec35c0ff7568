// weftd's /metrics text (observe/metrics.h) and the counters modules keep
// for it: names, types, labels, histogram buckets; DNS query types and
// rcodes; API route templates.
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "control/api/request_counters.h"
#include "control/api/routes.h"
#include "dns/query_metrics.h"
#include "observe/metrics.h"
#include "observe/metrics_histogram.h"

namespace weft::observe {
namespace {

using namespace std::chrono_literals;

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}

MetricsSamples some_samples() {
  MetricsSamples s;
  s.version = "0.1.0";
  s.nodes = {{"ready", 3}};
  s.gossip_messages = {{"ping", 7}, {"ack", 6}};
  s.member_flaps = 2;
  s.table_entries = {{"endpoints", 4}, {"services", 1}};
  s.table_sync_bytes = 1234;
  s.services = {{"redis", 4, 1, 17}, {"web", 2, 0, std::nullopt}};
  s.lb_drops = {{"fragment", 0}, {"no_backend", 3}};
  s.maps = {{"lb_conntrack", 50, 200}, {"lb_services", 0, 0}};
  AtomicHistogram h{0.001, 0.01};
  h.observe(500us);
  h.observe(5ms);
  h.observe(2s);
  s.datapath_sync = h.snapshot();
  s.dns_requests = {{{"udp", "A"}, 10}, {{"tcp", "SRV"}, 1}};
  s.dns_responses = {{{"NOERROR"}, 9}, {{"NXDOMAIN"}, 2}};
  s.api_requests = {{{"/networks/{id}", "200"}, 5}};
  return s;
}

TEST(MetricsText, EveryFamilyHasHelpTypeAndItsSamples) {
  const std::string text = render_metrics(some_samples());
  for (const auto& [name, type] : std::vector<std::pair<std::string, std::string>>{
           {"weft_build_info", "gauge"},
           {"weft_cluster_nodes", "gauge"},
           {"weft_gossip_messages_total", "counter"},
           {"weft_gossip_member_flaps_total", "counter"},
           {"weft_table_entries", "gauge"},
           {"weft_table_sync_bytes_total", "counter"},
           {"weft_services", "gauge"},
           {"weft_service_backends", "gauge"},
           {"weft_lb_connections_total", "counter"},
           {"weft_lb_drops_total", "counter"},
           {"weft_bpf_map_pressure", "gauge"},
           {"weft_datapath_sync_duration_seconds", "histogram"},
           {"weft_dns_requests_total", "counter"},
           {"weft_dns_responses_total", "counter"},
           {"weft_dns_request_duration_seconds", "histogram"},
           {"weft_api_requests_total", "counter"}}) {
    EXPECT_TRUE(has_line(text, "# TYPE " + name + " " + type)) << name << "\n" << text;
    EXPECT_NE(text.find("# HELP " + name + " "), std::string::npos) << name;
  }
  EXPECT_TRUE(has_line(text, "weft_build_info{version=\"0.1.0\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "weft_cluster_nodes{state=\"ready\"} 3")) << text;
  EXPECT_TRUE(has_line(text, "weft_cluster_nodes{state=\"down\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "weft_gossip_messages_total{type=\"ping\"} 7")) << text;
  EXPECT_TRUE(has_line(text, "weft_gossip_member_flaps_total 2")) << text;
  EXPECT_TRUE(has_line(text, "weft_table_entries{table=\"endpoints\"} 4")) << text;
  EXPECT_TRUE(has_line(text, "weft_table_sync_bytes_total 1234")) << text;
  EXPECT_TRUE(has_line(text, "weft_services 2")) << text;
  EXPECT_TRUE(has_line(text, "weft_service_backends{service=\"redis\",state=\"active\"} 4")) << text;
  EXPECT_TRUE(has_line(text, "weft_service_backends{service=\"redis\",state=\"draining\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "weft_lb_connections_total{service=\"redis\"} 17")) << text;
  EXPECT_EQ(text.find("weft_lb_connections_total{service=\"web\"}"), std::string::npos) << text;
  EXPECT_TRUE(has_line(text, "weft_lb_drops_total{reason=\"no_backend\"} 3")) << text;
  EXPECT_TRUE(has_line(text, "weft_bpf_map_pressure{map_name=\"lb_conntrack\"} 0.25")) << text;
  EXPECT_TRUE(has_line(text, "weft_bpf_map_pressure{map_name=\"lb_services\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "weft_dns_requests_total{proto=\"udp\",type=\"A\"} 10")) << text;
  EXPECT_TRUE(has_line(text, "weft_dns_responses_total{rcode=\"NXDOMAIN\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "weft_api_requests_total{route=\"/networks/{id}\",code=\"200\"} 5")) << text;
}

// The per-service families are serialized a few hundred samples at a time
// (no ClientMetric per service held for the whole scrape): their text must be
// what one pass of the serializer over whole families writes, across the
// chunks' edges, escapes and all.
TEST(MetricsText, PerServiceFamiliesAreWhatOneSerializerPassWrites) {
  MetricsSamples s = some_samples();
  s.services.clear();
  for (int i = 0; i < 1000; ++i) {
    std::string name = "svc" + std::to_string(i);
    if (i == 255) name = "quote\"back\\slash\nnewline";
    s.services.push_back({name, static_cast<std::uint64_t>(i % 11), static_cast<std::uint64_t>(i % 3),
                          i % 7 == 0 ? std::nullopt : std::optional<std::uint64_t>(i * 1000003ull)});
  }
  const std::string text = render_metrics(s);

  using prometheus::ClientMetric;
  std::vector<prometheus::MetricFamily> reference(2);
  reference[0].name = "weft_service_backends";
  reference[0].help = "Backends of each service, by state";
  reference[0].type = prometheus::MetricType::Gauge;
  reference[1].name = "weft_lb_connections_total";
  reference[1].help = "Connections this node's load balancer gave to a backend of the service";
  reference[1].type = prometheus::MetricType::Counter;
  for (const auto& service : s.services) {
    for (const auto& [state, count] : {std::pair{"active", service.active_backends}, {"draining", service.draining_backends}}) {
      ClientMetric m;
      m.label = {{"service", service.name}, {"state", state}};
      m.gauge.value = static_cast<double>(count);
      reference[0].metric.push_back(m);
    }
    if (service.connections) {
      ClientMetric m;
      m.label = {{"service", service.name}};
      m.counter.value = static_cast<double>(*service.connections);
      reference[1].metric.push_back(m);
    }
  }
  std::ostringstream expected;
  prometheus::TextSerializer().Serialize(expected, reference);
  const auto begin = text.find("# HELP weft_service_backends ");
  const auto end = text.find("# HELP weft_lb_drops_total ");
  ASSERT_NE(begin, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(text.substr(begin, end - begin), expected.str());
  EXPECT_LT(text.find("# HELP weft_services "), begin) << "in the families' order";
}

TEST(MetricsText, HistogramBucketsAreCumulativeWithInfCountAndSum) {
  const std::string text = render_metrics(some_samples());
  EXPECT_TRUE(has_line(text, "weft_datapath_sync_duration_seconds_bucket{le=\"0.001\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "weft_datapath_sync_duration_seconds_bucket{le=\"0.01\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "weft_datapath_sync_duration_seconds_bucket{le=\"+Inf\"} 3")) << text;
  EXPECT_TRUE(has_line(text, "weft_datapath_sync_duration_seconds_count 3")) << text;
  EXPECT_TRUE(has_line(text, "weft_datapath_sync_duration_seconds_sum 2.0055")) << text;
}

TEST(MetricsText, NoSampleCarriesAnAddress) {
  // Whatever the samples, labels come from names, states and templates:
  // a dotted quad in the text would be an address leaking into a label.
  const std::string text = render_metrics(some_samples());
  EXPECT_EQ(text.find("192."), std::string::npos);
  EXPECT_EQ(text.find("10.0."), std::string::npos);
}

TEST(DnsQueryMetrics, CountsByTransportTypeAndRcode) {
  dns::QueryMetrics m;
  // Header (12 bytes, QDCOUNT 1), "a.b", type, class.
  std::vector<std::uint8_t> query = {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0,
                                     1,    'a',  1,    'b',  0,    0x00, 33, 0x00, 0x01};
  m.query(dns::Transport::udp, query);  // SRV
  query[18] = 1;
  m.query(dns::Transport::tcp, query);  // A
  query[18] = 99;
  m.query(dns::Transport::tcp, query);  // other
  const std::size_t kSrv = 8, kA = 0, kOther = dns::QueryMetrics::kTypeNames.size() - 1;
  EXPECT_EQ(dns::QueryMetrics::kTypeNames[kSrv], "SRV");
  EXPECT_EQ(m.requests(0, kSrv), 1u);
  EXPECT_EQ(m.requests(1, kA), 1u);
  EXPECT_EQ(m.requests(1, kOther), 1u);
  EXPECT_EQ(m.requests(0, kA), 0u);
  // Too short to hold a question: "other", never out of bounds.
  m.query(dns::Transport::udp, std::vector<std::uint8_t>(13, 0xff));
  EXPECT_EQ(m.requests(0, kOther), 1u);

  std::vector<std::uint8_t> answer = {0x12, 0x34, 0x81, 0x83};  // NXDOMAIN
  m.answered(answer, 2ms);
  answer[3] = 0x80;  // NOERROR
  m.answered(answer, 1ms);
  answer[3] = 0x8f;  // rcode 15: other
  m.answered(answer, 1ms);
  EXPECT_EQ(m.responses(3), 1u);
  EXPECT_EQ(m.responses(0), 1u);
  EXPECT_EQ(m.responses(dns::QueryMetrics::kRcodeNames.size() - 1), 1u);
  EXPECT_EQ(m.duration().snapshot().count(), 3u);
}

TEST(ApiRouteTemplate, IsThePatternNeverThePath) {
  namespace http = boost::beast::http;
  const auto pattern = [](http::verb verb, const char* target) {
    control::api::Request r{verb, target, 11};
    return std::string(control::api::route_pattern(r));
  };
  EXPECT_EQ(pattern(http::verb::get, "/v1.41/networks/0123abcd"), "/networks/{id}");
  EXPECT_EQ(pattern(http::verb::post, "/networks/net1/connect"), "/networks/{id}/connect");
  EXPECT_EQ(pattern(http::verb::get, "/services?filters=x"), "/services");
  EXPECT_EQ(pattern(http::verb::get, "/no/such/10.0.0.1"), "unmatched");
  EXPECT_EQ(pattern(http::verb::put, "/networks"), "unmatched");
}

TEST(ApiRequestCounters, CountAcrossReads) {
  control::api::RequestCounters c;
  c.record("/networks", 200);
  c.record("/networks", 200);
  c.record("/networks", 404);
  c.record("unmatched", 1000);  // out of range: code 0
  auto first = c.samples();
  c.record("/networks", 200);
  auto second = c.samples();
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first[0].route, "/networks");
  EXPECT_EQ(first[0].code, 200u);
  EXPECT_EQ(first[0].count, 2u);
  EXPECT_EQ(second[0].count, 3u);
  EXPECT_EQ(first[2].code, 0u);
}

}  // namespace
}  // namespace weft::observe
