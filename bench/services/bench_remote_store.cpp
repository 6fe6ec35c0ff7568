// bench_remote_store: heap bytes of the network manager's copy of N remote
// endpoints (the shape bench_remote_node publishes: 64-hex ids, a task
// namespace path, one service per BACKENDS endpoints), as it was held at
// first (a map from the id to a full Endpoint, its VTEP and a flag) and as
// it is (RemoteEndpoints: chunks of packed records, an open-addressing
// index), with the shared endpoint snapshot of them (a pointer into the
// store's chunks each): the whole holder. Then what a snapshot held while
// every chunk changes costs (copy-on-write: each chunk copied once), and
// the load balancer's per-apply list of backends as list_endpoints() made
// it (every field) and as list_backends() makes it. Heap in use from
// mallinfo2 (arena and mmapped blocks), so it needs no root and no kernel.
//
//   bench_remote_store [--endpoints 100000] [--backends 10]
#include <malloc.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench/services/bench_endpoint.h"
#include "bench/services/bench_ids.h"
#include "control/network/remote_endpoints.h"

namespace {

using namespace weft;
using namespace weft::control;

std::size_t heap_in_use() {
  malloc_trim(0);
  const auto info = mallinfo2();
  return info.uordblks + info.hblkhd;  // large blocks are mmapped apart
}

const auto hex_id = weft::bench::bench_id;

Endpoint endpoint(std::uint32_t n, std::uint32_t backends, const std::string& network_id) {
  return weft::bench::bench_endpoint(n, backends, network_id);
}

// As NetworkManager::Impl held them before.
struct OldRemoteEndpoint {
  Endpoint endpoint;
  dataplane::Ipv4 vtep;
  bool reserved_here = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::uint32_t count = 100000, backends = 10;
  CLI::App app{"bench_remote_store: the network manager's remote endpoints in memory, before and after"};
  app.add_option("--endpoints", count)->capture_default_str();
  app.add_option("--backends", backends, "endpoints per service")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (backends == 0) return 2;
  const std::string network_id = hex_id(0x0e, 1);
  const dataplane::Ipv4 vtep{0xc000020c};
  const double per = 1.0 / count;

  std::size_t base = heap_in_use();
  {
    std::map<std::string, OldRemoteEndpoint> old;
    for (std::uint32_t i = 0; i < count; ++i) {
      auto e = endpoint(i, backends, network_id);
      old.try_emplace(e.id, OldRemoteEndpoint{e, vtep});
    }
    const std::size_t bytes = heap_in_use() - base;
    std::printf("remote endpoints, map<id, Endpoint> (before): %.1f MB, %.0f bytes each\n", bytes / 1e6,
                static_cast<double>(bytes) * per);
  }
  base = heap_in_use();
  control::network::RemoteEndpoints store;
  for (std::uint32_t i = 0; i < count; ++i) store.put(endpoint(i, backends, network_id), vtep);
  const std::size_t packed = heap_in_use() - base;
  std::printf("remote endpoints, RemoteEndpoints (after):   %.1f MB, %.0f bytes each (index, chunks and places %.1f MB)\n",
              packed / 1e6, static_cast<double>(packed) * per, store.bytes() / 1e6);

  // The shared endpoint snapshot (NetworkManager::shared_endpoints): it was
  // a full Endpoint each; it is a pointer into the store's chunks each.
  base = heap_in_use();
  auto snapshot = std::make_shared<EndpointSnapshot>();
  snapshot->endpoints.reserve(store.size());
  store.for_each([&](const auto& entry) { snapshot->endpoints.push_back(store.shared(entry)); });
  const std::size_t shared = heap_in_use() - base;
  std::printf("endpoint snapshot, pointers into the store's chunks (after): %.1f MB, %.0f bytes each\n",
              shared / 1e6, static_cast<double>(shared) * per);
  std::printf("the whole holder, store and snapshot: %.1f MB, %.0f bytes an endpoint\n", (packed + shared) / 1e6,
              static_cast<double>(packed + shared) * per);

  // A change to every chunk while the snapshot is held: each chunk is
  // copied once (the snapshot keeps the old ones), then the snapshot goes.
  base = heap_in_use();
  for (std::uint32_t i = 0; i < count; i += 64) {
    auto e = endpoint(i, backends, network_id);
    e.backend_state = BackendState::draining;
    e.drain_until = "2026-11-27T12:00:00Z";
    store.put(e, vtep);
  }
  const std::size_t copied = heap_in_use() - base;
  snapshot.reset();
  const auto after_release = static_cast<double>(heap_in_use()) - static_cast<double>(base);
  std::printf("a change in every chunk under a held snapshot: +%.1f MB; the snapshot released: %+.1f MB\n",
              copied / 1e6, after_release / 1e6);

  // The load balancer's view of them, per apply.
  base = heap_in_use();
  {
    std::vector<Endpoint> all;
    store.for_each([&](const auto& entry) { all.push_back(control::network::RemoteEndpoints::endpoint(entry, nullptr)); });
    const std::size_t bytes = heap_in_use() - base;
    std::printf("LB view backends and endpoint snapshot, list_endpoints() copy (before): %.1f MB\n", bytes / 1e6);
  }
  base = heap_in_use();
  {
    std::vector<Endpoint> lb;
    lb.reserve(store.size());
    store.for_each([&](const auto& r) { lb.push_back(control::network::RemoteEndpoints::backend(r)); });
    const std::size_t bytes = heap_in_use() - base;
    std::printf("LB view backends, list_backends() (after):        %.1f MB\n", bytes / 1e6);
  }
  return 0;
}
