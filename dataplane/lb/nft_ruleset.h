// The nftables ruleset of the fallback load balancer, as text for
// libnftables: the fixed table (created once) and the element updates one
// change makes. Pure functions, so what a change sends to the kernel can be
// checked without root.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dataplane/lb/load_balancer.h"

namespace weft::dataplane::lb::nft {

// Bumped when the table's layout changes: a table without the marker set of
// this version is replaced on open. layout_2: backend_svc records only the
// backends outside the slots (an active backend's service is its slot key).
inline constexpr const char* kLayoutMarker = "layout_2";

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

// One element as the kernel takes it: key and data in register layout
// (mark and numgen values in host order, addresses and ports in network
// order, each part of a concatenation padded to 4 bytes).
struct Element {
  std::array<std::uint8_t, 12> key{};
  std::uint8_t key_len = 0;
  std::array<std::uint8_t, 4> data{};
  std::uint8_t data_len = 0;
  std::uint32_t goto_pick = 0;  // svc_pick: the verdict "goto pick_<n>"
};

// The changes of one map in a batch, as text (what the change says, for
// tests and logs) and as elements (what is sent).
struct MapChanges {
  std::string map;
  std::vector<std::string> text;
  std::vector<Element> elements;
};

// A batch of changes. The pick chains (rules, once per n) go first, through
// libnftables; the element changes then as one transaction of element
// messages (NftElementWriter): all deletes, then all adds, one statement per
// map: so a batch must not add a key and then delete it (callers plan each
// key once).
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
  void add_backend(std::uint32_t backend_id, std::uint32_t ip);
  void delete_backend(std::uint32_t backend_id);
  // The service of a backend that holds no slot (draining or dead): the
  // slots map records the others' service, so a full load of active
  // backends writes no owner element (a third fewer elements).
  void add_owner(std::uint32_t backend_id, std::uint32_t service_id);
  void delete_owner(std::uint32_t backend_id);

  bool empty() const { return operations_ == 0; }
  // Element updates and chains in the batch.
  std::size_t operations() const { return operations_; }
  // The whole batch as nft commands: chains, deletes, adds.
  std::string text() const;
  // The new pick chains as nft commands ("" if none).
  std::string chains_text() const;
  const std::string& table() const { return table_; }
  const std::vector<MapChanges>& deletes() const { return deletes_; }
  const std::vector<MapChanges>& adds() const { return adds_; }

 private:
  static void push(std::vector<MapChanges>& list, const char* map, std::string text, const Element& element);
  std::string table_;
  std::vector<MapChanges> deletes_, adds_;
  std::vector<std::string> chains_;
  std::size_t operations_ = 0;
};

}  // namespace weft::dataplane::lb::nft
