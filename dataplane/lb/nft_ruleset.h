// The nftables ruleset of the fallback load balancer, as text for
// libnftables: the fixed table (created once) and the element updates one
// change makes. Pure functions, so what a change sends to the kernel can be
// checked without root.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dataplane/lb/load_balancer.h"

namespace weft::dataplane::lb::nft {

// Bumped when the table's layout changes: a table without the marker set of
// this version is replaced on open.
inline constexpr const char* kLayoutMarker = "layout_1";

struct TableLimits {
  std::uint32_t max_services = 16384;
  std::uint32_t max_frontends = 65536;
  std::uint32_t max_backends = 262144;
  std::uint32_t max_backends_per_service = 4096;
};

std::string ipv4_text(std::uint32_t ip);  // host byte order in

// Replaces the table (or makes it) in one transaction: sets, maps and the
// five fixed chains. `snat_ip` 0: balanced flows leave with the VIP as
// source; otherwise with that address.
std::string create_table(const std::string& table, const TableLimits& limits, std::uint32_t snat_ip);
// Rewrites only the SNAT rule (its address is a flag of the agent).
std::string replace_snat_rule(const std::string& table, std::uint32_t snat_ip);
// Replaces (or, `snat_ip` 0, deletes) the netdev table of that name whose
// ingress chain on the bridge marks frames to the SNAT address's MAC
// (02:42:<address>) as this host's. Backends on other nodes reply to that
// MAC; the bridge hands such frames to its stack (a local FDB entry, see
// reconcile_snat_mac) but, the MAC not being its own, as another host's,
// which IP drops before any other hook could see them.
std::string replace_snat_mac_table(const std::string& table, const std::string& bridge, std::uint32_t snat_ip);

// A batch of element changes, sent as one transaction. Rendered as all
// deletes, then new chains, then all adds, one statement per map: so a
// batch must not add a key and then delete it (callers plan each key once).
class Commands {
 public:
  explicit Commands(std::string table) : table_(std::move(table)) {}

  void add_frontend(const Frontend& frontend, std::uint32_t service_id);
  void delete_frontend(const Frontend& frontend);
  void add_vip(std::uint32_t vip);
  void delete_vip(std::uint32_t vip);
  // The chain that picks one of `n` slots; made once per n in use.
  void add_pick_chain(std::uint32_t n);
  // Slots 0..n-1 of a service name its active backends; svc_pick sends the
  // service's new flows to pick_<n>.
  void add_slot(std::uint32_t service_id, std::uint32_t slot, std::uint32_t backend_id);
  void delete_slot(std::uint32_t service_id, std::uint32_t slot);
  void set_pick(std::uint32_t service_id, std::uint32_t n);  // after delete_pick if present
  void delete_pick(std::uint32_t service_id);
  void add_backend(std::uint32_t backend_id, std::uint32_t ip, std::uint32_t service_id);
  void delete_backend(std::uint32_t backend_id);

  bool empty() const { return operations_ == 0; }
  // Element updates and chains in the batch.
  std::size_t operations() const { return operations_; }
  std::string text() const;

 private:
  struct PerMap {
    std::string name;
    std::vector<std::string> elements;
  };
  static void push(std::vector<PerMap>& list, const char* map, std::string element);
  std::string table_;
  std::vector<PerMap> deletes_, adds_;
  std::vector<std::string> chains_;
  std::size_t operations_ = 0;
};

}  // namespace weft::dataplane::lb::nft
