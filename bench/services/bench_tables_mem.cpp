// bench_tables_mem: the replicated tables' heap with the entries an agent
// holds at 10 000 services x 10 remote backends (issue 9): 100 000 endpoint
// and 10 000 service records shaped as bench_remote_node publishes them
// (control/model/record_json.cpp's JSON, 64-hex ids), applied as a remote
// owner's entries. Prints heap bytes (mallinfo2) per entry, by part as the
// tables count them (ReplicatedTables::memory_use(): slots, keys, packed
// values, dictionaries; the rest is the allocator's), the time of the
// arrival and of what the cluster layer asks of the tables (find, for_each,
// digests, snapshot) in CPU time, and checks that every value comes back
// byte-identical.
//
//   bench_tables_mem [--endpoints 100000] [--services 10000] [--rounds 3]
#include <malloc.h>

#include <algorithm>
#include <ctime>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench/services/bench_ids.h"
#include "control/model/record_json.h"
#include "control/tables/replicated_tables.h"

namespace {

using namespace weft;
using namespace weft::control;
using tables::ReplicatedTables;
using tables::TableEntry;
using weft::bench::bench_id;

std::size_t heap_in_use() {
  const auto info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

// This thread's CPU time: the machine is shared, and wall time measured
// what else ran more than what this did.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// What bench_remote_node publishes (its services and endpoints), as entries
// of its node.
std::vector<TableEntry> remote_entries(std::uint32_t services, std::uint32_t endpoints) {
  const std::string node = "fake-remote", network_id = bench_id(0x4e, 0);
  const auto subnet = *dataplane::Cidr::parse("10.96.0.0/15");
  const auto vtep = *dataplane::Ipv4::parse("198.18.0.2");
  const std::uint32_t backends = services ? std::max<std::uint32_t>(1, endpoints / services) : 1;
  std::vector<TableEntry> out;
  std::uint64_t lamport = 0;
  for (std::uint32_t s = 0; s < services; ++s) {
    Service service{.id = bench_id(0x5e, s),
                    .name = fmt::format("svc{}", s),
                    .mode = EndpointMode::vip,
                    .ports = {PublishedPort{.port = 80, .protocol = PortProtocol::tcp}},
                    .network_ids = {network_id},
                    .vips = {ServiceVip{.network_id = network_id, .addr = dataplane::Ipv4{subnet.last().value - 1 - s},
                                        .prefix_len = subnet.prefix}},
                    .created = "2026-11-27T08:00:00Z",
                    .node = node};
    out.push_back({.table = "services", .key = service.id, .owner = node, .lamport = ++lamport, .deleted = false,
                   .value = service_record(service).dump()});
  }
  for (std::uint32_t n = 0; n < endpoints; ++n) {
    const std::uint32_t s = n / backends, b = n % backends;
    const std::string service_id = bench_id(0x5e, s);
    const dataplane::Ipv4 ip{subnet.base.value + 256 + n};
    Endpoint e{.id = bench_id(0xe0, n),
               .name = fmt::format("svc{}-{}", s, b + 1),
               .network_id = network_id,
               .network_name = "",
               .netns = fmt::format("/run/netns/weft-{}-{}-{}", node, service_id.substr(0, 12), b + 1),
               .ifname = "eth0",
               .ip = ip,
               .prefix_len = subnet.prefix,
               .mac = dataplane::MacAddress::from_ipv4(ip),
               .node = node,
               .service_id = service_id,
               .backend_state = BackendState::active,
               .drain_until = {}};
    out.push_back({.table = "endpoints", .key = e.id, .owner = node, .lamport = ++lamport, .deleted = false,
                   .value = endpoint_record(e, vtep).dump()});
  }
  return out;
}

template <class F>
double median_seconds(std::uint32_t rounds, F&& f) {
  std::vector<double> t;
  for (std::uint32_t r = 0; r < rounds; ++r) {
    const double start = cpu_seconds();
    f();
    t.push_back(cpu_seconds() - start);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::uint32_t endpoints = 100000, services = 10000, rounds = 3;
  CLI::App app{"bench_tables_mem: heap and access cost of the replicated tables at N remote entries"};
  app.add_option("--endpoints", endpoints)->capture_default_str();
  app.add_option("--services", services)->capture_default_str();
  app.add_option("--rounds", rounds, "timed repetitions (medians)")->capture_default_str()->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  const auto entries = remote_entries(services, endpoints);
  std::size_t value_bytes = 0;
  for (const auto& e : entries) value_bytes += e.value.size();

  malloc_trim(0);
  const std::size_t heap_before = heap_in_use();
  ReplicatedTables tables("local", {"endpoints", "tasks"});
  const double start = cpu_seconds();
  for (const auto& e : entries) tables.apply(e);
  const double arrival = cpu_seconds() - start;
  const std::size_t heap = heap_in_use() - heap_before;
  const auto use = tables.memory_use();

  // Exact: every value handed out is the text that was put.
  std::size_t mismatches = 0;
  for (const auto& e : entries) {
    const auto got = tables.find(e.table, e.key);
    if (!got || got->value != e.value) ++mismatches;
  }
  const auto snapshot = tables.snapshot();
  for (const auto& e : snapshot) {
    const auto got = tables.get(e.table, e.key);
    if (!got || *got != e) ++mismatches;
  }

  std::size_t sink = 0;
  const double find_s = median_seconds(rounds, [&] {
    for (const auto& e : entries) sink += tables.find(e.table, e.key)->value.size();
  });
  // (Also builds against main's tables, where for_each hands out the
  // stored TableEntry, for a before/after in one run.)
  const double for_each_s = median_seconds(rounds, [&] {
    tables.for_each([&](const auto& e) {
      if constexpr (requires { e.value_size(); })
        sink += e.value_size();
      else
        sink += e.value.size();
    });
  });
  const double for_each_values_s = median_seconds(rounds, [&] {
    tables.for_each([&](const auto& e) {
      if constexpr (requires { e.value(); })
        sink += e.value().size();
      else
        sink += std::string(e.value).size();
    });
  });
  const double snapshot_s = median_seconds(rounds, [&] { sink += tables.snapshot().size(); });
  const double digest_s = median_seconds(rounds, [&] { sink += tables.digest(); });
  const double buckets_s = median_seconds(rounds, [&] { sink += tables.bucket_digests({"fake-remote"}).size(); });

  const double n = static_cast<double>(entries.size());
  std::printf("bench_tables_mem: %zu entries (%u endpoints, %u services), values %.1f MB (%.0f B each)\n",
              entries.size(), endpoints, services, static_cast<double>(value_bytes) / 1e6,
              static_cast<double>(value_bytes) / n);
  std::printf("  heap of the tables     %.1f MB (%.0f B an entry)\n", static_cast<double>(heap) / 1e6,
              static_cast<double>(heap) / n);
  auto per_entry = [&](std::size_t bytes) { return static_cast<double>(bytes) / n; };
  std::printf("    slots and index      %.0f B an entry\n", per_entry(use.slots));
  std::printf("    keys apart           %.0f B an entry\n", per_entry(use.keys));
  std::printf("    packed values        %.0f B an entry\n", per_entry(use.values));
  std::printf("    exemplars            %zu B in all\n", use.exemplars);
  std::printf("    ids values name      %.0f B an entry\n", per_entry(use.ids));
  std::printf("    allocator's rounding %.0f B an entry (the rest of the heap)\n",
              per_entry(heap) - per_entry(use.slots + use.keys + use.values + use.exemplars + use.ids));
  std::printf("  arrival (apply each)   %.1f ms (%.2f us an entry)\n", arrival * 1e3, arrival * 1e6 / n);
  std::printf("  find, every entry      %.1f ms (%.2f us each)\n", find_s * 1e3, find_s * 1e6 / n);
  std::printf("  for_each, value sizes  %.1f ms\n", for_each_s * 1e3);
  std::printf("  for_each, values       %.1f ms\n", for_each_values_s * 1e3);
  std::printf("  snapshot()             %.1f ms\n", snapshot_s * 1e3);
  std::printf("  digest()               %.1f ms\n", digest_s * 1e3);
  std::printf("  bucket_digests(owner)  %.1f ms\n", buckets_s * 1e3);
  std::printf("  values byte-identical  %s (%zu mismatches)\n", mismatches ? "NO" : "yes", mismatches);
  std::printf("  (checksum %zu)\n", sink);
  return mismatches ? 1 : 0;
}
