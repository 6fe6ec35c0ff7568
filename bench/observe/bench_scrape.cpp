// The cost of one /metrics scrape with many services (issue 12: 10 000
// services x 10 backends in < 100 ms). Measures what a scrape does in the
// agent's process from the service manager's view on: counting backends by
// state per service (add_service_samples over an LbView of 100 000 backend
// endpoints), the other families, and the text exposition (prometheus-cpp's
// TextSerializer). The sources are faked: the view is built here, not copied
// out of a ServiceManager (ServiceManager::lb_view(), measured by
// bench/services), and the per-service connection counts are given, not read
// from the BPF counter map (one lookup per backend; bench/lb measures map
// operations).
//
//   bench_scrape [SERVICES [BACKENDS [RUNS]]]     defaults 10000 10 20
// Prints min / median / max wall-clock ms per scrape, the median of its
// CPU time (steadier on a shared machine) and the text's size; and the heap
// a scrape takes at its peak over what was live before it, all of it and in
// blocks below weftd's mmap threshold (256 KiB: those the heap keeps for
// itself once freed, larger ones go back to the system), counted by this
// program's operator new.
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "observe/metrics.h"
#include "observe/metrics_agent.h"

using namespace weft;

namespace {
constexpr std::size_t kMmapThreshold = 256 * 1024;  // weftd's M_MMAP_THRESHOLD
std::atomic<std::size_t> g_live{0}, g_peak{0}, g_live_small{0}, g_peak_small{0};
void raise(std::atomic<std::size_t>& peak, std::size_t now) {
  std::size_t p = peak.load();
  while (now > p && !peak.compare_exchange_weak(p, now)) {
  }
}
}  // namespace

// Sized deallocation is not guaranteed everywhere: keep the size in a header.
void* operator new(std::size_t n) {
  auto* p = static_cast<std::size_t*>(std::malloc(n + 16));
  if (p == nullptr) throw std::bad_alloc();
  *p = n;
  raise(g_peak, g_live.fetch_add(n) + n);
  if (n < kMmapThreshold) raise(g_peak_small, g_live_small.fetch_add(n) + n);
  return reinterpret_cast<char*>(p) + 16;
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  auto* base = reinterpret_cast<std::size_t*>(static_cast<char*>(p) - 16);
  g_live -= *base;
  if (*base < kMmapThreshold) g_live_small -= *base;
  std::free(base);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }

// This thread's CPU time: what a scrape costs, apart from the time other
// processes on a loaded machine take the CPU away.
static double thread_cpu_ms() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

int main(int argc, char** argv) {
  const std::size_t services = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 10000;
  const std::size_t backends = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 10;
  const int runs = argc > 3 ? std::atoi(argv[3]) : 20;

  control::services::LbView view;
  control::services::LbMetrics lb;
  view.services.reserve(services);
  view.backends.reserve(services * backends);
  for (std::size_t s = 0; s < services; ++s) {
    control::Service service;
    char id[65];
    std::snprintf(id, sizeof id, "%064zx", s);
    service.id = id;
    service.name = "service-" + std::to_string(s);
    service.network_ids = {"net"};
    service.vips = {{.network_id = "net"}};
    for (std::size_t b = 0; b < backends; ++b) {
      control::Endpoint e;
      e.id = service.id.substr(0, 48) + std::to_string(b);
      e.name = service.name + "." + std::to_string(b);
      e.network_id = "net";
      e.service_id = service.id;
      e.backend_state = b == 0 ? control::BackendState::draining : control::BackendState::active;
      view.backends.push_back(std::move(e));
    }
    lb.connections[service.id] = 1000 + s;
    view.services.push_back(std::move(service));
  }
  // As weftd's view has it: the network manager's shared snapshot, built
  // once per change, not packed again by each scrape.
  view.all_endpoints = control::EndpointSnapshot::of(view.backends);
  view.backends.clear();
  view.backends.shrink_to_fit();
  lb.drops = {{"fragment", 1}, {"ip_options", 2}, {"no_backend", 3}, {"other", 4}};
  lb.maps = {{"lb_vips", 2 * services, 32768}, {"lb_services", services, 16384},
             {"lb_backends", services * backends, 1 << 20}, {"lb_conntrack", 1000, 262144}};
  observe::AtomicHistogram sync{0.001, 0.01, 0.1, 1};
  sync.observe(std::chrono::milliseconds(5));

  std::vector<double> ms, gather_ms, cpu_ms;
  std::size_t bytes = 0;
  const std::size_t live_before = g_live.load(), small_before = g_live_small.load();
  g_peak.store(live_before);
  g_peak_small.store(small_before);
  for (int run = 0; run < runs; ++run) {
    const auto started = std::chrono::steady_clock::now();
    const double cpu_started = thread_cpu_ms();
    observe::MetricsSamples samples;
    samples.version = "bench";
    samples.nodes = {{"ready", 30}};
    samples.table_entries = {{"endpoints", services * backends}, {"services", services}};
    samples.datapath_sync = sync.snapshot();
    observe::add_service_samples(view, lb, samples);
    gather_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
    const std::string text = observe::render_metrics(samples);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
    cpu_ms.push_back(thread_cpu_ms() - cpu_started);
    bytes = text.size();
  }
  std::sort(ms.begin(), ms.end());
  std::sort(gather_ms.begin(), gather_ms.end());
  std::sort(cpu_ms.begin(), cpu_ms.end());
  std::printf("scrape of %zu services x %zu backends: min %.1f ms, median %.1f ms, max %.1f ms over %d runs "
              "(samples from the view: median %.1f ms); CPU time median %.1f ms; %zu bytes\n",
              services, backends, ms.front(), ms[ms.size() / 2], ms.back(), runs, gather_ms[gather_ms.size() / 2],
              cpu_ms[cpu_ms.size() / 2], bytes);
  std::printf("heap during a scrape: peak +%.1f MB over the live heap, of it +%.1f MB in blocks < 256 KiB\n",
              static_cast<double>(g_peak.load() - live_before) / 1e6,
              static_cast<double>(g_peak_small.load() - small_before) / 1e6);
  return 0;
}
