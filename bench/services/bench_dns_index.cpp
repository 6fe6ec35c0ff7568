// bench_dns_index: heap bytes and lookup cost of the embedded DNS's names
// (control/discovery) at SERVICES services x BACKENDS backends on one
// network, named as bench_remote_node publishes them (service svcS with VIP
// and 80/tcp, backends svcS-1..svcS-B, 64-hex ids, a task namespace each).
// The endpoints are held as the network manager holds other nodes' (shared
// PackedEndpoints, the shared endpoint snapshot); the bench measures what
// the DNS adds to them: the discovery Snapshot a sync builds from them, and
// the compiled index (ClusterNameView) kept until the next sync. Heap in
// use from mallinfo2 (arena and mmapped blocks): no root, no kernel.
//
//   bench_dns_index [--services 10000] [--backends 10] [--lookups 2000000]
//
// Lookups: resolve_a (the responder's A path) of a service name, its
// qualified name, a tasks. name, an endpoint name, a name not ours (bare,
// and ending in the network's name), and lookup_ptr of a backend's address,
// each over all services/endpoints in a shuffled order, nanoseconds per call
// on one thread.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench/services/bench_ids.h"
#include "control/discovery/cluster_name_view.h"
#include "control/discovery/snapshot.h"
#include "control/model/packed_endpoint.h"

namespace {

using namespace weft;
using namespace weft::control;
using weft::bench::bench_id;

std::size_t heap_in_use() {
  malloc_trim(0);
  const auto info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

template <typename F>
double ns_per_call(std::size_t calls, F&& f) {
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < calls; ++i) f(i);
  const auto end = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(end - start).count() / static_cast<double>(calls);
}

}  // namespace

int main(int argc, char** argv) {
  std::uint32_t services = 10000, backends = 10;
  std::size_t lookups = 2000000;
  CLI::App app{"bench_dns_index: the DNS's compiled names in memory, and their lookup cost"};
  app.add_option("--services", services)->capture_default_str();
  app.add_option("--backends", backends, "endpoints per service")->capture_default_str();
  app.add_option("--lookups", lookups, "calls per lookup kind")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (services == 0 || backends == 0 || lookups == 0) return 2;

  const std::string network_id = bench_id(0x0e, 1);
  const std::string context = "/run/netns/client";
  const std::uint32_t base = (10u << 24) | (96u << 16);  // 10.96.0.0/15, as run.sh's bench-net
  const std::uint32_t top = base + (1u << 17) - 2;
  const std::uint32_t first_backend = base + 256;
  const std::uint32_t endpoints = services * backends;

  Network net;
  net.id = network_id;
  net.name = "bench-net";
  std::vector<Service> svcs;
  svcs.reserve(services);
  for (std::uint32_t s = 0; s < services; ++s)
    svcs.push_back(Service{.id = bench_id(0x5e, s),
                           .name = fmt::format("svc{}", s),
                           .mode = EndpointMode::vip,
                           .ports = {PublishedPort{.port = 80, .protocol = PortProtocol::tcp}},
                           .network_ids = {network_id},
                           .vips = {ServiceVip{.network_id = network_id, .addr = dataplane::Ipv4{top - s},
                                               .prefix_len = 15}},
                           .created = "2026-11-27T00:00:00Z",
                           .node = "fake-remote"});
  StringInterner strings;
  auto shared = std::make_shared<EndpointSnapshot>();
  shared->endpoints.reserve(endpoints);
  for (std::uint32_t n = 0; n < endpoints; ++n) {
    const std::uint32_t s = n / backends;
    const dataplane::Ipv4 ip{first_backend + n};
    Endpoint e{.id = bench_id(0xe0, n),
               .name = fmt::format("svc{}-{}", s, n % backends + 1),
               .network_id = network_id,
               .network_name = "bench-net",
               .netns = fmt::format("/run/netns/weft-fake-remote-{}-{}", svcs[s].id.substr(0, 12), n % backends + 1),
               .ifname = "eth0",
               .ip = ip,
               .prefix_len = 15,
               .mac = dataplane::MacAddress::from_ipv4(ip),
               .node = "fake-remote",
               .service_id = svcs[s].id,
               .backend_state = BackendState::active,
               .drain_until = {}};
    shared->endpoints.push_back(std::make_shared<const PackedEndpoint>(e, strings.get(e.network_id),
                                                                       strings.get(e.node), strings.get(e.service_id)));
  }
  Endpoint client;
  client.id = bench_id(0xc1, 0);
  client.name = "client";
  client.network_id = network_id;
  client.netns = "client";
  client.ip = dataplane::Ipv4{base + 2};
  client.node = "here";
  const std::vector<Endpoint> local = {client};
  const auto namespaces = discovery::group_by_namespace(local);

  std::printf("bench_dns_index: %u services x %u backends on one network (%u endpoints)\n", services, backends,
              endpoints);
  const double per = 1.0 / endpoints;
  std::size_t before = heap_in_use();
  {
    const auto copied = discovery::build_snapshot(svcs, shared->endpoints, {net}, namespaces);
    const std::size_t bytes = heap_in_use() - before;
    std::printf("discovery Snapshot, endpoints copied:  %6.1f MB, %4.0f bytes an endpoint\n", bytes / 1e6,
                bytes * per);
  }
  before = heap_in_use();
  auto snapshot = std::make_unique<discovery::Snapshot>(discovery::build_snapshot(svcs, shared, {net}, namespaces));
  const std::size_t snapshot_bytes = heap_in_use() - before;
  std::printf("discovery Snapshot, endpoints shared:  %6.1f MB, %4.0f bytes an endpoint\n", snapshot_bytes / 1e6,
              snapshot_bytes * per);

  discovery::ClusterNameView view;
  before = heap_in_use();
  auto t0 = std::chrono::steady_clock::now();
  view.publish(*snapshot);
  auto t1 = std::chrono::steady_clock::now();
  const std::size_t index_bytes = heap_in_use() - before;
  std::printf("compiled index (ClusterNameView):      %6.1f MB, %4.0f bytes an endpoint; compiled in %.0f ms\n",
              index_bytes / 1e6, index_bytes * per, std::chrono::duration<double, std::milli>(t1 - t0).count());
  snapshot.reset();
  const auto counts = view.counts();
  std::printf("names %zu, PTR addresses %zu, contexts %zu, skipped %zu\n", counts.names, counts.addresses,
              counts.contexts, counts.skipped);

  // The lookups, in a shuffled order so caches see what a busy responder's do.
  std::vector<std::uint32_t> order_s(services), order_e(endpoints);
  for (std::uint32_t i = 0; i < services; ++i) order_s[i] = i;
  for (std::uint32_t i = 0; i < endpoints; ++i) order_e[i] = i;
  std::mt19937 rng(42);
  std::shuffle(order_s.begin(), order_s.end(), rng);
  std::shuffle(order_e.begin(), order_e.end(), rng);
  std::vector<std::string> service_names, qualified_names, tasks_names, endpoint_names;
  for (auto s : order_s) {
    service_names.push_back(fmt::format("svc{}", s));
    qualified_names.push_back(fmt::format("svc{}.bench-net", s));
    tasks_names.push_back(fmt::format("tasks.svc{}", s));
  }
  for (auto n : order_e) endpoint_names.push_back(fmt::format("svc{}-{}", n / backends, n % backends + 1));

  std::vector<dns::Ipv4> out;
  std::size_t answered = 0;
  auto resolve = [&](const std::vector<std::string>& names, std::size_t expect) {
    return ns_per_call(lookups, [&](std::size_t i) {
      if (view.resolve_a(context, names[i % names.size()], out) == dns::Ownership::visible && out.size() == expect)
        ++answered;
    });
  };
  const double service_ns = resolve(service_names, 1);
  const double qualified_ns = resolve(qualified_names, 1);
  const double tasks_ns = resolve(tasks_names, backends);
  const double endpoint_ns = resolve(endpoint_names, 1);
  const double ptr_ns = ns_per_call(lookups, [&](std::size_t i) {
    if (view.lookup_ptr(context, dns::Ipv4(first_backend + order_e[i % endpoints]))) ++answered;
  });
  const double miss_ns = ns_per_call(lookups, [&](std::size_t i) {
    if (view.resolve_a(context, endpoint_names[i % endpoints] + "x", out) == dns::Ownership::not_ours) ++answered;
  });
  // A name not ours that ends in a network's name: the `<name>.<N>` forms
  // are derived, so this one costs two misses (the name, then the whole).
  const double miss_suffix_ns = ns_per_call(lookups, [&](std::size_t i) {
    if (view.resolve_a(context, endpoint_names[i % endpoints] + "x.bench-net", out) == dns::Ownership::not_ours)
      ++answered;
  });
  std::printf("resolve_a ns/call: service %.0f, service.network %.0f, tasks. (%u addresses) %.0f, endpoint %.0f; "
              "lookup_ptr %.0f; not ours %.0f, not ours .bench-net %.0f (incl. building the name)\n",
              service_ns, qualified_ns, backends, tasks_ns, endpoint_ns, ptr_ns, miss_ns, miss_suffix_ns);
  if (answered != 7 * lookups) {
    std::printf("wrong answers: %zu of %zu\n", 7 * lookups - answered, 7 * lookups);
    return 1;
  }
  return 0;
}
