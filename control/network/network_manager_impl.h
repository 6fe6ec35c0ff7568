// The network manager's insides, shared by the files that implement it
// (network_manager.cpp: networks, endpoints and reconcile;
// network_manager_services.cpp: what services need of it). Not for anyone
// else: include network_manager.h.
#pragma once

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "control/model/ids.h"
#include "control/model/record_json.h"
#include "control/network/drain_timer.h"
#include "control/network/ipam.h"
#include "control/network/network_manager.h"
#include "control/network/remote_endpoints.h"
#include "control/network/reservation_journal.h"
#include "control/network/state_file.h"
#include "dataplane/netlink.h"
#include "dataplane/netns.h"
#include "dataplane/overlay.h"

namespace weft::control::network {
namespace fs = std::filesystem;
namespace dp = weft::dataplane;
using nlohmann::json;

// How long an attach or create waits for a peer to donate a range.
inline constexpr auto kDonationWait = std::chrono::seconds(8);
inline constexpr int kStateVersion = 1;
// state.json: the generation of the reservation journal that follows it.
inline constexpr const char* kJournalGenerationKey = "reservation_journal";
// Journal lines beyond the reservations' count before it is compacted.
inline constexpr std::size_t kJournalSlack = 1024;

[[noreturn]] inline void bad_request(const std::string& message) { throw ApiError(ApiError::Kind::BadRequest, message); }
[[noreturn]] inline void not_found(const std::string& message) { throw ApiError(ApiError::Kind::NotFound, message); }
[[noreturn]] inline void conflict(const std::string& message) { throw ApiError(ApiError::Kind::Conflict, message); }

inline ApiError from_ipam(const ipam::IpamError& e) {
  using K = ipam::IpamError::Kind;
  switch (e.kind()) {
    case K::Overlap:
    case K::InUse: return ApiError(ApiError::Kind::Conflict, e.what());
    case K::Exhausted: return ApiError(ApiError::Kind::Conflict, e.what());
    case K::NotAllocated: return ApiError(ApiError::Kind::NotFound, e.what());
    case K::Invalid:
    case K::OutOfRange: break;
  }
  return ApiError(ApiError::Kind::BadRequest, e.what());
}

// Change listeners (of endpoints, networks, ...), told about a change once a scope ends: a
// ChangeNotice declared before the manager's lock is taken runs them after
// the lock is released.
class EndpointListeners {
 public:
  void add(std::function<void()> listener) {
    std::lock_guard lock(mutex_);
    listeners_.push_back(std::move(listener));
  }
  void notify() const {
    std::vector<std::function<void()>> listeners;
    {
      std::lock_guard lock(mutex_);
      listeners = listeners_;
    }
    for (const auto& listener : listeners) {
      try {
        listener();
      } catch (const std::exception& e) {
        spdlog::error("an endpoint change listener failed: {}", e.what());
      }
    }
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::function<void()>> listeners_;
};

class ChangeNotice {
 public:
  explicit ChangeNotice(const EndpointListeners& listeners) : listeners_(listeners) {}
  ~ChangeNotice() {
    if (fired_) listeners_.notify();
  }
  ChangeNotice(const ChangeNotice&) = delete;
  ChangeNotice& operator=(const ChangeNotice&) = delete;
  void fire() { fired_ = true; }

 private:
  const EndpointListeners& listeners_;
  bool fired_ = false;
};

// Two agents on one state dir would each "repair" the other's devices away.
dp::UniqueFd lock_state_dir(const fs::path& dir);

struct NetworkManager::Impl {
  explicit Impl(AgentConfig c)
      : config(std::move(c)),
        state_lock(lock_state_dir(config.state_dir)),
        pool(ipam::default_subnet_pool(config.default_addr_pool, config.default_addr_pool_mask_length)),
        underlay_ip(parse_advertise_addr(config)),
        node_mtu(dp::overlay_mtu(node, underlay_ip)) {}

  static ipam::Ipv4 parse_advertise_addr(const AgentConfig& config) {
    auto ip = ipam::Ipv4::parse(config.advertise_addr);
    if (!ip) throw std::invalid_argument("invalid advertise address \"" + config.advertise_addr + "\"");
    return *ip;
  }

  fs::path state_path() const { return fs::path(config.state_dir) / "state.json"; }
  fs::path netns_dir() const { return fs::path(config.state_dir) / "netns"; }
  fs::path netns_path(const Network& n) const { return netns_dir() / short_id(n.id); }

  dp::OverlayLayout layout(const Network& n) const {
    return dp::OverlayLayout{.netns_path = netns_path(n),
                             .vni = n.vni,
                             .gateway = n.gateway,
                             .prefix_len = n.subnet.prefix,
                             .underlay_ip = underlay_ip,
                             .mtu = node_mtu};
  }

  // "veth" and 11 characters of the id: the 15 an interface name can have.
  static dp::EndpointLayout layout(const Endpoint& e) {
    return dp::EndpointLayout{.host_ifname = "veth" + e.id.substr(0, 11), .ip = e.ip, .mac = e.mac};
  }

  // Writes memory to disk; throws std::system_error (e.g. ENOSPC). Every
  // change is made in memory, persisted, and undone in memory when that
  // fails, before the kernel is touched where the order matters (see
  // connect, disconnect, remove_network).
  void persist() { write_state(&write_file_atomically); }
  // A write-ahead record only has to outlive the kernel objects it is about:
  // they survive a kill of the agent (so does the page cache), not a reboot.
  // Skipping the fsyncs keeps an attach at one wait for the disk.
  void persist_intent() { write_state(&replace_file_unsynced); }

  void write_state(void (*write)(const fs::path&, std::string_view)) {
    // A durable snapshot takes a new journal generation (reservation_journal.h);
    // an unsynced one stays in the current generation and leaves the journal.
    const bool durable = write == &write_file_atomically;
    const std::uint64_t generation = durable ? journal_generation + 1 : journal_generation;
    json state = {{"version", kStateVersion},
                  {"networks", json::array()},
                  {"endpoints", json::array()},
                  {kJournalGenerationKey, generation}};
    for (const auto& [id, n] : networks) state["networks"].push_back(network_record(n));
    for (const auto& [id, e] : endpoints) state["endpoints"].push_back(endpoint_record(e));
    for (const auto& [id, e] : attaching) {
      auto record = endpoint_record(e);
      record[kStateKey] = kAttaching;
      state["endpoints"].push_back(std::move(record));
    }
    if (!reserved.empty()) {
      state["reservations"] = json::array();
      for (const auto& r : reserved)
        state["reservations"].push_back({{"network_id", r.network_id}, {"ip", r.ip.str()}, {"owner", r.owner}});
    }
    write(state_path(), state.dump(2) + "\n");
    if (state_behind) spdlog::info("state file {} is up to date again", state_path().string());
    state_behind = false;
    if (durable) {
      journal_generation = generation;
      try {
        reservation_journal().reset(generation);
      } catch (const std::exception& e) {
        // Until a reset works, reservations are written in the state file.
        spdlog::warn("cannot start the reservation journal over: {}; reservations go to the state file whole",
                     e.what());
      }
    }
  }

  fs::path journal_path() const { return fs::path(config.state_dir) / "reservations.journal"; }
  ReservationJournal& reservation_journal() {
    if (!journal) journal = std::make_unique<ReservationJournal>(journal_path());
    return *journal;
  }
  // A reservation made or released, on disk (throws std::system_error): one
  // fsynced journal line; the whole state file while the journal is not
  // usable (before the first durable snapshot, or after a failed write).
  // Compacted into the state file once the journal has more lines than
  // there are reservations (and at every start), so a create costs the same
  // with many services.
  void record_reservation(const ReservationChange& change) {
    auto& j = reservation_journal();
    if (!j.usable()) {
      persist();
      return;
    }
    j.append(change);
    if (j.appended() > kJournalSlack + reserved.size()) persist_or_log("compacting the reservation journal");
  }

  // For changes that are already true in the kernel and that the next start
  // derives again from the kernel or the cluster anyway: a failed write is
  // logged and the file catches up with the next successful one.
  void persist_or_log(const char* after) {
    try {
      persist();
    } catch (const std::exception& e) {
      if (!state_behind)
        spdlog::error("cannot write the state file after {}: {}; it catches up with the next change", after,
                      e.what());
      state_behind = true;
    }
  }

  // Rolls back an attach that did not complete: deletes its veth (if the
  // kernel has it) and then, only once that worked, its record and address.
  bool roll_back_attach(const std::string& id) {
    const auto& e = attaching.at(id);
    auto network = networks.find(e.network_id);
    try {
      if (network != networks.end()) dp::detach_endpoint(layout(network->second), layout(e));
    } catch (const std::exception& err) {
      spdlog::error("endpoint {} ({}): cannot remove its devices: {}; its address stays reserved", e.name, e.ip.str(),
                    err.what());
      return false;
    }
    if (auto a = addresses.find(e.network_id); a != addresses.end())
      if (a->second.is_allocated(e.ip)) a->second.release(e.ip);
    attaching.erase(id);
    return true;
  }

  // Docker's order: full ID, then exact name, then unique ID prefix.
  Network& find_network(const std::string& ref) {
    if (ref.empty()) bad_request("network name or ID is required");
    if (auto it = networks.find(ref); it != networks.end()) return it->second;
    std::vector<Network*> by_name, by_prefix;
    for (auto& [id, n] : networks) {
      if (n.name == ref) by_name.push_back(&n);
      if (id.starts_with(ref)) by_prefix.push_back(&n);
    }
    if (by_name.size() == 1) return *by_name.front();
    if (by_name.size() > 1)
      conflict("network name \"" + ref + "\" is ambiguous (" + std::to_string(by_name.size()) +
               " networks have it): use the network ID");
    if (by_prefix.size() == 1) return *by_prefix.front();
    if (by_prefix.size() > 1) conflict("network ID prefix \"" + ref + "\" is ambiguous");
    not_found("network " + ref + " not found");
  }

  // Lowest owned VNI no known network uses; nullopt when none is left.
  std::optional<std::uint32_t> free_vni() const {
    auto free = free_vnis();
    if (free.empty()) return std::nullopt;
    return free.ranges().front().first.value;
  }

  ipam::RangeSet free_vnis() const {
    ipam::RangeSet free = vni_owned;
    for (const auto& [id, n] : networks) free.remove(ipam::Range{ipam::Ipv4{n.vni}, ipam::Ipv4{n.vni}});
    return free;
  }

  ipam::AddressAllocator make_allocator(const ipam::Cidr& subnet, const std::string& network_id) const {
    // On its own a node owns all of each subnet it makes; in a cluster it
    // owns what the range table gives it.
    if (cluster) return ipam::AddressAllocator(subnet, owned_in(network_space(network_id)));
    return ipam::AddressAllocator(subnet, ipam::RangeSet(ipam::host_range(subnet)));
  }

  // Ownership that arrived before the network itself did.
  ipam::RangeSet owned_in(const std::string& space) const {
    auto it = early_ownership.find(space);
    return it == early_ownership.end() ? ipam::RangeSet{} : it->second;
  }

  // Runs `attempt` until it stops failing for lack of numbers, asking peers
  // for a range of `space` meanwhile. Only a cluster node can run out and be
  // helped; the wait releases the lock so the answer can come in.
  template <class Attempt>
  auto with_donations(std::unique_lock<std::mutex>& lock, const std::string& space, std::uint32_t unit,
                      Attempt attempt) {
    const auto deadline = std::chrono::steady_clock::now() + kDonationWait;
    for (;;) {
      try {
        return attempt();
      } catch (const ipam::IpamError& e) {
        if (e.kind() != ipam::IpamError::Kind::Exhausted || !cluster) throw;
        if (std::chrono::steady_clock::now() >= deadline)
          throw ApiError(ApiError::Kind::Conflict,
                         std::string(e.what()) + " on this node, and no peer donated a range in time");
        cluster->request_range(space, unit);
        ranges_changed.wait_for(lock, std::chrono::milliseconds(500));
      }
    }
  }

  std::vector<Endpoint*> endpoints_of(const std::string& network_id) {
    std::vector<Endpoint*> result;
    for (auto& [id, e] : endpoints)
      if (e.network_id == network_id) result.push_back(&e);
    return result;
  }

  bool endpoint_named(const std::string& network_id, const std::string& name) const {
    auto same = [&](const Endpoint& e) { return e.network_id == network_id && e.name == name; };
    if (std::any_of(endpoints.begin(), endpoints.end(), [&](const auto& kv) { return same(kv.second); }))
      return true;
    bool taken = false;
    remote_endpoints.for_each([&](const RemoteEndpoints::Entry& r) {
      if (!taken && r.endpoint->network_id() == network_id && r.endpoint->name() == name) taken = true;
    });
    return taken;
  }

  Endpoint* endpoint_in(const std::string& network_id, const std::string& netns_ref,
                        const std::optional<dp::NetnsHandle>& ns) {
    for (auto* e : endpoints_of(network_id)) {
      if (e->netns == netns_ref) return e;
      if (!ns) continue;
      try {
        if (dp::NetnsHandle::open(e->netns).same_as(*ns)) return e;
      } catch (const std::system_error&) {
        // That endpoint's namespace is gone; it cannot be this one.
      }
    }
    return nullptr;
  }

  // Removes an attached endpoint: the record first (a crash after the write
  // leaves a veth no record accounts for, which the next start deletes; a
  // failed write leaves everything as it was), then the veth; the address
  // is free only once the veth is gone. ApiError (`what` says which change)
  // when it cannot.
  void detach_now(const Endpoint& e, const Network& network, const std::string& what) {
    endpoints.erase(e.id);
    try {
      persist();
    } catch (const std::exception& err) {
      endpoints.emplace(e.id, e);
      throw ApiError(ApiError::Kind::Internal, "cannot " + what + ": cannot record it in the state file: " +
                                                   err.what() + "; the endpoint is still attached");
    }
    try {
      dp::detach_endpoint(layout(network), layout(e));
    } catch (const std::exception& err) {
      endpoints.emplace(e.id, e);
      persist_or_log("a failed detach");
      throw ApiError(ApiError::Kind::Internal, "cannot " + what + ": " + err.what());
    }
    addresses.at(network.id).release(e.ip);
    if (drains) drains->cancel(e.id);
    if (cluster) cluster->withdraw_endpoint(e.id);
  }
  // A backend's drain time is over (the drain timer's thread).
  void finish_drain(const std::string& endpoint_id);
  void start_drain(const Endpoint& e, std::uint32_t seconds, const std::string& what);

  void set_owned(const std::string& space, const ipam::RangeSet& owned);
  ipam::RangeSet free_ranges(const std::string& space) const;
  // The namespace an attach or detach names; nullopt (and why in `error`)
  // when it does not exist (any more).
  static std::optional<dp::NetnsHandle> open_request_netns(const std::string& ref, std::string* error = nullptr) {
    if (ref.empty()) bad_request("a network namespace is required (--netns NAME|PATH)");
    try {
      return dp::NetnsHandle::open(ref);
    } catch (const std::system_error& e) {
      if (error) *error = e.what();
      return std::nullopt;
    }
  }
  void load_state();
  void roll_back_attaches();
  void remove_orphan_endpoints();
  void reconcile_network(const Network& n);
  void reconcile_endpoint(Endpoint& e, std::vector<std::string>& gone);
  void remove_stale_kernel_objects();

  // This node's load-balancer addresses (node_lb_addresses.cpp).
  static bool is_node_lb_reservation(const AddressReservation& r) { return r.owner.starts_with(kNodeLbOwnerPrefix); }
  const AddressReservation* node_lb_reservation(const std::string& network_id) const;
  Endpoint node_lb_endpoint(const AddressReservation& r) const;
  std::vector<Endpoint> node_lb_endpoints() const;
  // Reserves the network's when it is wanted and missing; true when it did.
  bool ensure_node_lb_address(const std::string& network_id);
  // The network goes: its record goes from the cluster (the caller drops
  // the reservation with the network).
  void withdraw_node_lb_endpoint(const std::string& network_id);

  void realise_remote_endpoint(const RemoteEndpoints::Entry& r);
  // A remote endpoint's Endpoint again, with its network's name here.
  Endpoint remote_endpoint(const RemoteEndpoints::Entry& r) const {
    auto n = networks.find(r.endpoint->network_id());
    return RemoteEndpoints::endpoint(r, n == networks.end() ? nullptr : &n->second.name);
  }
  void publish(const Network& n) {
    if (cluster) cluster->publish_network(n);
  }

  // An attach is recorded with "state": "attaching" before it touches the
  // kernel (write-ahead), and without that key once it is complete.
  static constexpr const char* kStateKey = "state";
  static constexpr const char* kAttaching = "attaching";

  AgentConfig config;
  dp::UniqueFd state_lock;
  std::mutex mutex;
  std::condition_variable ranges_changed;
  dp::NetlinkSocket node;  // in the agent's (node's) namespace
  ipam::SubnetPool pool;
  ipam::Ipv4 underlay_ip;  // config.advertise_addr
  int node_mtu;
  ipam::RangeSet vni_owned{kVniRange};
  std::map<std::string, Network> networks;  // every known network, by id
  std::map<std::string, Endpoint> endpoints;  // attached on this node, by id
  // Attaches under way, or cut short (by a crash or a failed state write)
  // and not rolled back yet: their veths may exist, so their addresses stay
  // allocated until roll_back_attach() deleted them. By id.
  std::map<std::string, Endpoint> attaching;
  bool state_behind = false;  // the last write of the state file failed
  RemoteEndpoints remote_endpoints;  // on other nodes, by id
  std::map<std::string, ipam::AddressAllocator> addresses;  // by network id
  std::map<std::string, ipam::RangeSet> early_ownership;  // by space
  ClusterLink* cluster = nullptr;
  // Read by attaches without the lock (see connect).
  std::atomic<ServiceDirectory*> services{nullptr};
  // The shared endpoint snapshot (shared_endpoints()): the version is
  // bumped by the first endpoint and network listener, so before anyone is
  // told of a change; a snapshot is built when first asked for after one,
  // so a burst of changes makes one, not one per change.
  std::atomic<std::uint64_t> endpoints_version{1};
  std::mutex snapshot_mutex;  // one build at a time; taken before `mutex`
  std::shared_ptr<const EndpointSnapshot> endpoint_snapshot;
  EndpointListeners endpoint_listeners;
  EndpointListeners network_listeners;       // networks created or removed, here or elsewhere
  EndpointListeners local_change_listeners;  // after an attach or detach, on its thread
  std::vector<AddressReservation> reserved;  // allocated in `addresses` too
  std::uint64_t journal_generation = 0;       // of the last state file written or loaded
  std::unique_ptr<ReservationJournal> journal;  // reservation_journal()
  bool node_lb_addresses = false;  // set_node_lb_addresses
  std::set<std::string> node_lb_waiting;  // networks whose missing address was logged
  // Last: stopped first, while everything its callback uses still exists.
  std::unique_ptr<DrainTimer> drains;
};

}  // namespace weft::control::network
