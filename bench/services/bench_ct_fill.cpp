// bench_ct_fill: writes established TCP flows into a running agent's pinned
// conntrack map (issue 9: weftd with 1 000 000 conntrack entries), in the
// entry format of ebpf/lb_abi.h, one entry per flow, stamped now (so the
// agent's collector keeps them for the established timeout), written into
// the table through mmap (ABI 8: dataplane/lb/conntrack_table.h), without
// sending a packet. The flows go to the
// services bench_remote_node publishes (same address plan: VIP of service
// s = the subnet's last address - 1 - s, backend b of service s = base +
// 256 + s * BACKENDS + b), from clients 172.16.0.0/12; backend and service
// ids are plausible numbers, not read from the agent's id map (nothing but
// packets of those flows would read them).
//
//   bench_ct_fill --pin-dir DIR --subnet CIDR [--entries 1000000]
//                 [--services 10000] [--backends 10]
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench/lb/lb_scale.h"
#include "dataplane/address.h"
#include "ebpf/lb_abi.h"

int main(int argc, char** argv) {
  std::string pin_dir, subnet_text;
  std::uint32_t entries = 1000000, services = 10000, backends = 10;
  CLI::App app{"bench_ct_fill: established flows into an agent's pinned conntrack map"};
  app.add_option("--pin-dir", pin_dir, "the agent's --bpf-pin-dir")->required();
  app.add_option("--subnet", subnet_text, "the network's subnet (CIDR), as given to bench_remote_node")->required();
  app.add_option("--entries", entries, "conntrack entries (one per flow)")->capture_default_str();
  app.add_option("--services", services)->capture_default_str();
  app.add_option("--backends", backends, "backends per service")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const auto subnet = weft::dataplane::Cidr::parse(subnet_text);
  if (!subnet || services == 0 || backends == 0) {
    std::fprintf(stderr, "bench_ct_fill: bad --subnet, --services or --backends\n");
    return 2;
  }
  const int ct_fd = bpf_obj_get((pin_dir + "/lb_conntrack").c_str());
  const int tags_fd = bpf_obj_get((pin_dir + "/lb_ct_tags").c_str());
  const int config_fd = bpf_obj_get((pin_dir + "/lb_config").c_str());
  if (ct_fd < 0 || tags_fd < 0 || config_fd < 0) {
    std::perror("bench_ct_fill: open the pinned lb_conntrack / lb_ct_tags / lb_config");
    return 1;
  }
  lb_config config{};
  const std::uint32_t zero = 0;
  if (bpf_map_lookup_elem(config_fd, &zero, &config) != 0) {
    std::perror("bench_ct_fill: read lb_config");
    return 1;
  }
  const std::uint64_t now = weft::bench::lb::coarse_now_ns();
  const std::uint32_t top = subnet->last().value - 1;
  const std::uint32_t first_backend = subnet->base.value + 256;
  const std::uint32_t flows = entries;  // one entry each (ConntrackBatch::add_flow)
  constexpr std::uint32_t kBatchFlows = 32768;
  weft::bench::lb::ConntrackBatch batch;
  std::uint64_t written = 0;
  std::optional<weft::dataplane::lb::ConntrackTable> table;
  try {
    table.emplace(ct_fd, tags_fd);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ct_fill: %s\n", e.what());
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  for (std::uint32_t first = 0; first < flows; first += kBatchFlows) {
    batch.clear();
    const std::uint32_t end = std::min(flows, first + kBatchFlows);
    for (std::uint32_t i = first; i < end; ++i) {
      const std::uint32_t s = i % services;
      const std::uint32_t b = (i / services) % backends;
      const std::uint32_t client = (172u << 24 | 16u << 16) + (i >> 14);
      const auto client_port = static_cast<std::uint16_t>(1024 + (i & 0x3fff));
      lb_ct_key original{};
      original.saddr = htonl(client);
      original.daddr = htonl(top - s);
      original.sport = htons(client_port);
      original.dport = htons(80);
      original.proto = IPPROTO_TCP;
      original.dir = LB_CT_DIR_ORIGINAL;
      lb_ct_value value{};
      value.seen = static_cast<std::uint32_t>(now >> LB_CT_SEEN_SHIFT);
      value.backend_id = 1 + s * backends + b;
      value.nat_addr = htonl(first_backend + s * backends + b);
      value.service_id = 1 + s;
      value.flags = LB_CT_F_SYN_ORIG | LB_CT_F_SEEN_REPLY;
      value.frontend_epoch = config.frontend_epoch;
      batch.add_flow(original, value);
    }
    written += batch.write(*table);
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("bench_ct_fill: %llu conntrack entries (%u flows) written in %.0f ms\n",
              static_cast<unsigned long long>(written), flows, ms);
  table.reset();
  ::close(ct_fd);
  ::close(tags_fd);
  ::close(config_fd);
  return 0;
}
