// bench_svc_mem: the agent's load-balancer side with many services, in one
// process: ServiceDataplane (eBPF) as weftd opens it (--lb-max-services
// sizing), fed an LbView of SERVICES vip-mode services on one network with
// BACKENDS remote backend endpoints each (the shape the service manager
// builds from the replicated tables), applied once. Prints the RSS after
// each step (the mapped Maglev pool shows in RssFile, the view and the
// dataplane's own state in RssAnon), the apply time and the kernel memory
// of the pinned maps (memlock from fdinfo).
//
// What the agent holds beyond this: the service manager's and the tables'
// copies of services and endpoints, the API, gossip (bench/services/run.sh
// measures weftd with services, without backends).
//
//   bench_svc_mem [--services N] [--backends M] [--max-services N]
//                 [--max-backends N] [--conntrack N]
//
// Needs root: runs in a mount namespace of its own with a private bpffs.
#include <bpf/bpf.h>
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "bench/lb/lb_scale.h"
#include "bench/lb/private_scratch.h"
#include "control/services/service_dataplane.h"

namespace {

using namespace weft;
using weft::bench::lb::fdinfo_memlock;
using weft::bench::lb::proc_status_kb;

void print_rss(const char* step) {
  std::printf("  %-40s VmRSS %6.1f MB (anon %6.1f, file %6.1f), VmHWM %6.1f MB\n", step,
              static_cast<double>(proc_status_kb("VmRSS")) / 1e3,
              static_cast<double>(proc_status_kb("RssAnon")) / 1e3,
              static_cast<double>(proc_status_kb("RssFile")) / 1e3,
              static_cast<double>(proc_status_kb("VmHWM")) / 1e3);
  // malloc's blocks in use: what the process's structures hold, without the
  // free space the heap keeps (the figure to compare between builds).
  const struct mallinfo2 heap = mallinfo2();
  std::printf("  %-40s heap in use %6.1f MB\n", "", static_cast<double>(heap.uordblks + heap.hblkhd) / 1e6);
  std::fflush(stdout);
}

// 64 hex characters, as service, network and endpoint ids are.
std::string hex_id(unsigned kind, std::uint64_t n) { return fmt::format("{:02x}{:062x}", kind, n); }

dataplane::Ipv4 nth_ip(std::uint32_t n) { return dataplane::Ipv4{(10u << 24) + 0x10000u + n}; }

}  // namespace

int main(int argc, char** argv) {
  std::uint32_t services = 10000, backends = 10, max_services = 16384, max_backends = 131072,
                conntrack = 1000000;
  CLI::App app{"bench_svc_mem: the service load balancer's memory with many services"};
  app.add_option("--services", services);
  app.add_option("--backends", backends, "backends per service");
  app.add_option("--max-services", max_services);
  app.add_option("--max-backends", max_backends);
  app.add_option("--conntrack", conntrack, "conntrack map entries");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);
  if (geteuid() != 0) {
    std::fprintf(stderr, "bench_svc_mem: needs root (BPF maps, a private bpffs)\n");
    return 2;
  }
  try {
    bench::lb::PrivateScratch scratch("svc");
    std::printf("bench_svc_mem: %u services x %u backends; --lb-max-services %u, %u backends, %u conntrack\n",
                services, backends, max_services, max_backends, conntrack);
    print_rss("start");

    control::services::ServiceDataplaneOptions options;
    options.kind = control::services::LbKind::ebpf;
    options.pin_dir = scratch.bpffs() / "lb";
    options.state_dir = scratch.dir() / "state";
    options.limits.max_services = max_services;
    options.limits.max_frontends = std::max<std::uint32_t>(4096, 2 * max_services);  // as weftd
    options.limits.max_backends = max_backends;
    options.limits.conntrack_entries = conntrack;
    auto dp = control::services::ServiceDataplane::open(options);
    print_rss("ServiceDataplane open");

    const std::string net = hex_id(0x0e, 1);
    control::services::LbView view;
    control::services::LbNetwork network;
    network.network_id = net;
    network.netns = "/proc/self/ns/net";  // no attach points: never entered
    network.bridge = "br0";
    network.subnet = *dataplane::Cidr::parse("10.0.0.0/8");
    network.gateway = *dataplane::Ipv4::parse("10.0.0.1");
    view.networks.push_back(network);
    std::uint32_t next_ip = 0;
    for (std::uint32_t s = 0; s < services; ++s) {
      control::Service service;
      service.id = hex_id(0x5e, s);
      service.name = fmt::format("svc{}", s);
      service.network_ids = {net};
      service.vips = {control::ServiceVip{net, nth_ip(next_ip++), 8}};
      service.node = "node2";
      view.services.push_back(std::move(service));
      for (std::uint32_t b = 0; b < backends; ++b) {
        control::Endpoint e;
        e.id = hex_id(0xe0, static_cast<std::uint64_t>(s) * backends + b);
        e.name = fmt::format("svc{}.{}", s, b);
        e.network_id = net;
        e.network_name = "bench-net";
        e.ip = nth_ip(next_ip++);
        e.prefix_len = 8;
        e.mac = dataplane::MacAddress::from_ipv4(e.ip);
        e.node = "node2";
        e.service_id = view.services.back().id;
        view.backends.push_back(std::move(e));
      }
    }
    print_rss("LbView built");

    const auto t0 = std::chrono::steady_clock::now();
    const bool complete = dp.apply(view);
    const double apply_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  apply: %.0f ms, %s; service ids in use: %s\n", apply_ms, complete ? "complete" : "INCOMPLETE",
                dp.service_number(view.services.back().id, net) ? "yes" : "NO");
    print_rss("applied (view still held)");
    view = {};
    malloc_trim(0);
    print_rss("view dropped, malloc_trim");
    // A /metrics scrape leaves the per-service connection history behind.
    const auto metrics = dp.metrics();
    std::printf("  metrics(): %zu services counted\n", metrics.connections.size());
    print_rss("after a metrics() scrape");

    std::uint64_t memlock = 0;
    for (const auto& pin : std::filesystem::directory_iterator(options.pin_dir)) {
      const int fd = bpf_obj_get(pin.path().c_str());
      if (fd < 0) continue;
      bpf_map_info info{};
      std::uint32_t len = sizeof info;
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) memlock += fdinfo_memlock(fd);
      ::close(fd);
    }
    std::printf("  BPF maps pinned: %.1f MB memlock (kernel memory, in no RSS)\n", static_cast<double>(memlock) / 1e6);
    std::printf("  VmRSS / 150 MB target: %.2f\n", static_cast<double>(proc_status_kb("VmRSS")) / 1024 / 150);
    return complete ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_svc_mem: %s\n", e.what());
    return 1;
  }
}
