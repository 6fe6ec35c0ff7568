// A service load for the load balancer benchmarks, reusable for measuring
// the agent later: N services x M backends (one VIP:80/tcp frontend each),
// programmed into either data path, and conntrack filled with established
// flows to them without sending a packet (written into the table through
// mmap, as the programs write it: dataplane/lb/conntrack_table.h).
//
// Addresses (host order): VIPs from 10.1.0.0 (service s: 10.1.0.0 + s + 1),
// backends from 10.128.0.0 (backend id b: 10.128.0.0 + b), clients from
// 10.192.0.0. Backend ids are 1 + s*M .. (s+1)*M, so max_backends must be
// at least N*M + 1.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/lb/backend.h"
#include "dataplane/lb/conntrack_table.h"
#include "dataplane/lb/load_balancer.h"
#include "ebpf/lb_abi.h"

namespace weft::bench::lb {

namespace dlb = weft::dataplane::lb;

struct ServiceLoad {
  std::vector<std::pair<dlb::Frontend, std::uint32_t>> frontends;  // frontend -> service id
  std::vector<dlb::ServiceBackends> services;
};

// Service ids 0 .. services-1, each with `backends_per_service` active
// backends (MAC from the IP, as weft does).
ServiceLoad make_service_load(std::uint32_t services, std::uint32_t backends_per_service);

// Limits of an eBPF LoadBalancer that holds `load` and `conntrack_entries`
// (two per flow) with a little room to spare.
dlb::Limits limits_for(const ServiceLoad& load, std::uint32_t conntrack_entries);

// Every frontend, then all backend lists in one bulk call (an agent's start).
void program_services(dlb::ServiceBackend& balancer, const ServiceLoad& load);

struct ConntrackFill {
  std::uint64_t flows = 0;
  std::uint64_t entries = 0;  // two per flow
  double ms = 0;
};

// Writes `flows` established TCP flows spread over the load's services (the
// backend each would get from the Maglev table), one entry per flow,
// stamped now, into the table through mmap. The flows are those of
// conntrack_flow(i).
ConntrackFill fill_conntrack(dlb::LoadBalancer& balancer, const ServiceLoad& load,
                             std::uint32_t flows);

// Conntrack entries for one write: established flows, each as lb_ct_create
// writes a flow to a backend behind one VIP: its ORIGINAL entry alone (used
// by bench_ct_fill too, against a running agent's pinned map).
struct ConntrackBatch {
  std::vector<lb_ct_key> keys;
  std::vector<lb_ct_value> values;
  // `original`: client -> VIP; `value`: its ORIGINAL entry (nat_addr is the
  // backend's address).
  void add_flow(const lb_ct_key& original, const lb_ct_value& value);
  void clear() {
    keys.clear();
    values.clear();
  }
  // Writes them into `table` (ConntrackTable::insert); the entries
  // written (an entry whose buckets hold only fresher flows is not).
  std::uint32_t write(dlb::ConntrackTable& table);
};

// Now on the clock the programs stamp entries with
// (bpf_ktime_get_coarse_ns): the fine clock runs up to a tick ahead, and an
// entry stamped ahead would look expired (now - seen underflows).
std::uint64_t coarse_now_ns();

// Flow i of fill_conntrack: client address and port, and its service.
struct FlowId {
  std::uint32_t client_ip = 0;
  std::uint16_t client_port = 0;
  std::uint32_t service_index = 0;
};
FlowId conntrack_flow(const ServiceLoad& load, std::uint32_t i);

// memlock of a BPF map or program fd as the kernel reports it in fdinfo.
std::uint64_t fdinfo_memlock(int fd);

// Fields of /proc/self/status in kB (VmRSS, VmHWM, RssAnon, RssFile,
// RssShmem); 0 when absent.
std::uint64_t proc_status_kb(const std::string& field);

}  // namespace weft::bench::lb
