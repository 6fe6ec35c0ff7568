// bench_observe_feed: the live page's poller (observe/) with N services x B
// backends (the shape bench_remote_node publishes), in one process, no root:
//   - heap the event feed holds between ticks: the state JSON and the last
//     snapshot, once as it is (one shared snapshot) and once with the copy
//     the feed used to keep beside the deriver's (`--old-copy`, the same
//     program holding one more snapshot, as the old EventFeed::last_ did);
//   - the live heap's peak during one AgentStateSource::read(), the service
//     list asked for bounded (what the poller does now) or whole (as
//     list_services() gave it before: every service with its backends).
// Bytes are counted by this program's operator new/delete, so they are the
// C++ heap the code asks for, independent of glibc's arenas.
//
//   bench_observe_feed [--services 10000] [--backends 10]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench/services/bench_endpoint.h"
#include "bench/services/bench_ids.h"
#include "control/model/model.h"
#include "control/model/packed_endpoint.h"
#include "control/model/service_model.h"
#include "observe/cluster_snapshot_source.h"
#include "observe/event_feed.h"

namespace {

std::atomic<std::size_t> g_live{0};
std::atomic<std::size_t> g_peak{0};

void count_alloc(std::size_t n) {
  const std::size_t now = g_live.fetch_add(n) + n;
  std::size_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}

}  // namespace

// Sized deallocation is not guaranteed everywhere: keep the size in a header.
void* operator new(std::size_t n) {
  auto* p = static_cast<std::size_t*>(std::malloc(n + 16));
  if (p == nullptr) throw std::bad_alloc();
  *p = n;
  count_alloc(n);
  return reinterpret_cast<char*>(p) + 16;
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  auto* base = reinterpret_cast<std::size_t*>(static_cast<char*>(p) - 16);
  g_live.fetch_sub(*base);
  std::free(base);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }

namespace {

using namespace weft;
using namespace weft::control;

const auto hex_id = weft::bench::bench_id;
const std::string kNetworkId = hex_id(0xe7, 0);

Endpoint endpoint(std::uint32_t n, std::uint32_t backends) {
  return weft::bench::bench_endpoint(n, backends, kNetworkId);
}

class StubNetworks final : public NetworkService {
 public:
  explicit StubNetworks(std::shared_ptr<const EndpointSnapshot> endpoints) : endpoints_(std::move(endpoints)) {}
  Network create_network(const NetworkSpec&) override { throw std::logic_error("stub"); }
  std::vector<Network> list_networks() override {
    Network n;
    n.id = kNetworkId;
    n.name = "bench-net";
    n.subnet = *dataplane::Cidr::parse("10.96.0.0/15");
    n.vni = 4097;
    return {n};
  }
  Network get_network(const std::string&) override { throw std::logic_error("stub"); }
  void remove_network(const std::string&) override { throw std::logic_error("stub"); }
  Endpoint connect(const AttachRequest&) override { throw std::logic_error("stub"); }
  void disconnect(const DetachRequest&) override { throw std::logic_error("stub"); }
  std::vector<Endpoint> list_endpoints() override { throw std::logic_error("stub"); }
  std::shared_ptr<const EndpointSnapshot> shared_endpoints() override { return endpoints_; }

 private:
  std::shared_ptr<const EndpointSnapshot> endpoints_;
};

// Builds its details per call from the shared endpoints, as the service
// manager does; `bounded` false: ignores the bound (the whole list, as the
// poller read it before the bound).
class StubServices final : public ServiceApi {
 public:
  StubServices(std::vector<Service> services, std::shared_ptr<const EndpointSnapshot> endpoints, std::uint32_t b)
      : services_(std::move(services)), endpoints_(std::move(endpoints)), backends_(b) {}
  bool bounded = true;
  // list_services_for_page(): the services past the bound only when they
  // have tasks (false: all of them, without backends, as the bounded list
  // was before it left those without tasks out).
  bool page = true;
  Service create_service(const ServiceSpec&) override { throw std::logic_error("stub"); }
  std::vector<ServiceDetail> list_services() override { return list(services_.size(), false); }
  std::vector<ServiceDetail> list_services_for_page(std::size_t max_with_backends) override {
    return list(max_with_backends, page);
  }
  std::vector<ServiceDetail> list(std::size_t max_with_backends, bool with_tasks_only) {
    if (!bounded) max_with_backends = services_.size();
    std::vector<ServiceDetail> out;
    out.reserve(services_.size());
    for (std::size_t i = 0; i < services_.size(); ++i) {
      if (i >= max_with_backends && with_tasks_only && services_[i].command.empty()) continue;
      ServiceDetail d{.service = services_[i], .backends = {}};
      if (i < max_with_backends)
        for (std::uint32_t k = 0; k < backends_; ++k) {
          const auto& e = *endpoints_->endpoints[i * backends_ + k];
          d.backends.push_back({.endpoint_id = e.id(),
                                .endpoint_name = std::string(e.name()),
                                .network_id = e.network_id(),
                                .ip = e.ip(),
                                .node = e.node(),
                                .state = e.backend_state(),
                                .counters = BackendCounters{}});
        }
      out.push_back(std::move(d));
    }
    return out;
  }
  ServiceDetail get_service(const std::string&) override { throw std::logic_error("stub"); }
  void remove_service(const std::string&) override { throw std::logic_error("stub"); }
  LbLookupResult lookup(const LbLookupRequest&) override { throw std::logic_error("stub"); }

  // A backend drained: the next snapshot differs.
  void bump() { ++services_.front().replicas; }

 private:
  std::vector<Service> services_;
  std::shared_ptr<const EndpointSnapshot> endpoints_;
  std::uint32_t backends_;
};

double mb(std::size_t bytes) { return static_cast<double>(bytes) / 1e6; }

}  // namespace

int main(int argc, char** argv) {
  std::uint32_t services_n = 10000, backends_n = 10;
  CLI::App app{"the live page's poller: heap held and per read, N services x B backends"};
  app.add_option("--services", services_n);
  app.add_option("--backends", backends_n);
  CLI11_PARSE(app, argc, argv);

  std::vector<std::shared_ptr<const PackedEndpoint>> packed;
  packed.reserve(std::size_t{services_n} * backends_n);
  for (std::uint32_t n = 0; n < services_n * backends_n; ++n) packed.push_back(PackedEndpoint::make(endpoint(n, backends_n)));
  // The stub's services in list order (by name, then id), as the manager lists them.
  std::vector<Service> services;
  for (std::uint32_t s = 0; s < services_n; ++s) {
    Service svc;
    svc.id = hex_id(0x5e, s);
    svc.name = fmt::format("svc{}", s);
    svc.network_ids = {kNetworkId};
    svc.vips = {{kNetworkId, dataplane::Ipv4{(10u << 24 | 97u << 16 | 255u << 8 | 254u) - s}, 15}};
    svc.ports = {{80, PortProtocol::tcp}};
    services.push_back(std::move(svc));
  }
  std::vector<std::size_t> order(services_n);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](auto a, auto b) {
    return std::tie(services[a].name, services[a].id) < std::tie(services[b].name, services[b].id);
  });
  std::vector<Service> sorted;
  std::vector<std::shared_ptr<const PackedEndpoint>> by_sorted;
  for (auto i : order) {
    sorted.push_back(services[i]);
    for (std::uint32_t k = 0; k < backends_n; ++k) by_sorted.push_back(packed[i * backends_n + k]);
  }
  auto snapshot = std::make_shared<EndpointSnapshot>();
  snapshot->endpoints = std::move(by_sorted);
  std::shared_ptr<const EndpointSnapshot> endpoints = snapshot;
  StubNetworks networks(endpoints);
  StubServices stub(std::move(sorted), endpoints, backends_n);
  observe::AgentStateSource source({.node_name = "node1", .advertise_addr = "192.0.2.1", .version = "bench"},
                                   networks, nullptr, &stub);

  for (const auto& [bounded, page, what] :
       {std::tuple{false, false, "whole (before)"}, std::tuple{true, false, "bounded, every service copied"},
        std::tuple{true, true, "bounded, past the bound those with tasks alone (now)"}}) {
    stub.bounded = bounded;
    stub.page = page;
    const std::size_t before = g_live.load();
    g_peak.store(before);
    { const auto read = source.read(); }
    std::printf("AgentStateSource::read(), services listed %s: peak +%.1f MB over the live heap\n", what,
                mb(g_peak.load() - before));
  }

  for (const bool old_copy : {true, false}) {
    const std::size_t before = g_live.load();
    std::optional<observe::ClusterSnapshot> copy;
    {
      observe::EventFeed feed(source);
      feed.refresh(std::chrono::steady_clock::now());
      stub.bump();
      feed.refresh(std::chrono::steady_clock::now() + std::chrono::seconds(2));
      if (old_copy) copy = source.read();  // what the feed's own last_ held
      std::printf("event feed between ticks, %s: %.1f MB (state JSON %.1f MB)\n",
                  old_copy ? "snapshot held twice (before)" : "snapshot held once (now)",
                  mb(g_live.load() - before), mb(feed.state_json().size()));
    }
  }
  return 0;
}
