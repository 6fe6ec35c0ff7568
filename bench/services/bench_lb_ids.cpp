// bench_lb_ids: heap bytes of the load balancer's id map (LbIdMap: ids of
// N services x 1 network and N x B backend endpoints, 64-hex ids as weft's)
// once filled, and of its ids.json text; no root, no kernel. Bytes are
// counted by this program's operator new/delete.
//
//   bench_lb_ids [--services 10000] [--backends 10]
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>

#include <CLI/CLI.hpp>

#include "bench/services/bench_ids.h"
#include "control/services/lb_id_map.h"

namespace {
std::atomic<std::size_t> g_live{0};
}

void* operator new(std::size_t n) {
  auto* p = static_cast<std::size_t*>(std::malloc(n + 16));
  if (p == nullptr) throw std::bad_alloc();
  *p = n;
  g_live += n;
  return reinterpret_cast<char*>(p) + 16;
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  auto* base = reinterpret_cast<std::size_t*>(static_cast<char*>(p) - 16);
  g_live -= *base;
  std::free(base);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }

int main(int argc, char** argv) {
  using namespace weft::control::services;
  std::uint32_t services = 10000, backends = 10;
  CLI::App app{"the load balancer's id map: heap with N services x B backends"};
  app.add_option("--services", services);
  app.add_option("--backends", backends);
  CLI11_PARSE(app, argc, argv);
  const auto dir = std::filesystem::temp_directory_path() / ("bench-lb-ids-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string network = weft::bench::bench_id(0xe7, 0);
  {
    const std::size_t before = g_live;
    auto map = LbIdMap::load(dir / "ids.json", {.max_services = 16384, .max_backends = 131072});
    for (std::uint32_t s = 0; s < services; ++s) {
      map.assign_service({weft::bench::bench_id(0x5e, s), network});
      for (std::uint32_t b = 0; b < backends; ++b) map.assign_backend(weft::bench::bench_id(0xe0, s * backends + b));
    }
    const std::size_t held = g_live - before;
    const std::string text = map.serialize();
    std::printf("LbIdMap, %u services x %u backends: %.1f MB held (ids.json %.1f MB)\n", services, backends,
                static_cast<double>(held) / 1e6, static_cast<double>(text.size()) / 1e6);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
