// The node's service load balancer driven by the control plane: makes the
// eBPF maps and tc attachments, or the nftables tables of the fallback, match
// an LbView (lb_view.h), and answers the service manager's questions about
// them (LbQuery).
//
// - One load-balancer service per (service, network) of a vip-mode service
//   on a network with a namespace here: its VIP, every port (port 0), tcp and
//   udp; its backends are the view's endpoints of that service on that
//   network (active or draining); a backend that leaves the view is dead (its
//   open TCP flows get a RST). dnsrr services have nothing here.
// - Numeric ids come from LbIdMap, written to <state-dir>/lb/ids.json before
//   a kernel map uses them, so a restarted agent keeps them and conntrack
//   entries stay valid; nothing is flushed on start.
// - eBPF: the tc programs sit on the host-side veth of every local endpoint
//   (entered in its network's namespace); they stay attached while the agent
//   is down, and a new agent replaces them in place.
// - nftables: one NftLoadBalancer per network namespace.
//
// apply() diffs against what it applied last, so a small change costs a
// few map updates. A failure to program one service (or attach one veth) is
// logged, rate-limited, and left for the next apply(), which apply()'s
// result asks for; the load-balancer APIs change all or nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/services/lb_view.h"
#include "dataplane/lb/load_balancer.h"

namespace weft::control::services {

enum class LbKind : std::uint8_t { ebpf, nftables, automatic };

// "ebpf", "nftables" or "auto", as `weftd --lb-backend` spells them.
std::optional<LbKind> parse_lb_kind(std::string_view text);

struct ServiceDataplaneOptions {
  LbKind kind = LbKind::automatic;
  std::filesystem::path pin_dir;    // --bpf-pin-dir, one per agent (on a bpffs)
  std::filesystem::path state_dir;  // the id map goes to <state_dir>/lb/ids.json
  dataplane::lb::Limits limits{};
  dataplane::lb::Timeouts timeouts{};
};

struct ConntrackFill {
  std::uint64_t entries = 0;   // after the last collection
  std::uint64_t capacity = 0;  // the conntrack map's size
  std::uint64_t expired = 0;   // deleted by collections since open
};

// What weftd's /metrics reads of the load balancer (ServiceDataplane::metrics()).
struct LbMetrics {
  // Connections balanced per service id, summed over its networks and its
  // current backends (the programs' per-CPU counters; eBPF and nftables).
  std::map<std::string, std::uint64_t> connections;
  // Packets the programs dropped, by reason (eBPF only; empty with nftables).
  std::map<std::string, std::uint64_t> drops;
  // How full each eBPF map is; conntrack as of its last collection.
  struct MapFill {
    std::string map_name;
    std::uint64_t entries = 0;
    std::uint64_t capacity = 0;
  };
  std::vector<MapFill> maps;
};

class ServiceDataplane final : public LbQuery {
 public:
  // Picks the data path (auto: eBPF when its programs load and attach, else
  // nftables; the choice and why is logged), opens it and the id map.
  // Throws when the chosen data path cannot open, or the id map is corrupt
  // (LbIdMapError), or auto finds eBPF maps pinned but cannot use them
  // (switching to nftables would leave their programs on the endpoints).
  static ServiceDataplane open(const ServiceDataplaneOptions& options);

  ServiceDataplane(ServiceDataplane&&) noexcept;
  ServiceDataplane& operator=(ServiceDataplane&&) noexcept;
  // Leaves programs, maps and tables in place for the next agent.
  ~ServiceDataplane() override;

  // Makes the data path match the view. True when all of it is in place;
  // false when something failed (logged): call again later.
  // From one thread at a time.
  bool apply(const LbView& view);

  // eBPF: deletes expired conntrack entries and returns the map's fill;
  // nftables: nullopt (the kernel's conntrack ages its entries itself).
  std::optional<ConntrackFill> collect_garbage();
  // The fill as of the last collection (zeros before the first, or nftables).
  ConntrackFill conntrack_fill() const;

  // Counters and map fill for /metrics: the counter maps are read (one
  // lookup per backend, one per drop reason), the fill of the other maps
  // comes from what this object programmed. Safe from any thread.
  LbMetrics metrics() const;

  // Where the id map of a state dir lives.
  static std::filesystem::path id_map_path(const std::filesystem::path& state_dir);

  // LbQuery; safe from any thread.
  std::string_view kind() const override;
  std::optional<std::string> lookup(const std::string& service_id, const std::string& network_id,
                                    dataplane::Ipv4 src, std::uint16_t sport, std::uint16_t dport,
                                    PortProtocol proto) override;
  std::map<std::string, BackendCounters> counters(const std::string& service_id,
                                                  const std::string& network_id) override;

  // For tests and tools: the numeric ids in use (nullopt: none).
  std::optional<std::uint32_t> service_number(const std::string& service_id, const std::string& network_id) const;
  std::optional<std::uint32_t> backend_number(const std::string& endpoint_id) const;

 private:
  struct Impl;
  explicit ServiceDataplane(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control::services
