#include "control/cluster/cluster.h"

#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <algorithm>
#include <filesystem>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "control/cluster/join_token.h"
#include "control/cluster/range_ownership.h"
#include "control/cluster/swarm_file.h"
#include "control/cluster/table_gossip.h"
#include "control/cluster/tables_journal.h"
#include "control/gossip/keyring.h"
#include "control/gossip/memberlist.h"
#include "control/gossip/serf_compat.h"
#include "control/model/record_json.h"
#include "control/network/drain_timer.h"
#include "control/network/state_file.h"
#include "control/tables/replicated_tables.h"

namespace weft::control::cluster {
namespace asio = boost::asio;
namespace gossip = weft::control::gossip;
namespace fs = std::filesystem;
using nlohmann::json;
using tables::TableEntry;

namespace {

constexpr const char* kNetworksTable = "networks";
constexpr const char* kEndpointsTable = "endpoints";
// Not node-scoped: a service outlives the node that created it.
constexpr const char* kServicesTable = "services";
// Node-scoped: a task runs where its node is (control/tasks/task_cluster.h).
constexpr const char* kTasksTable = "tasks";
// Not node-scoped: a drained node stays drained through its restarts. Key:
// the node name; value: {"Availability": "drain"}; no entry: active.
constexpr const char* kNodesTable = "nodes";
constexpr auto kJoinTimeout = std::chrono::seconds(15);
constexpr auto kRequestThrottle = std::chrono::milliseconds(400);

[[noreturn]] void conflict(const std::string& m) { throw ApiError(ApiError::Kind::Conflict, m); }

std::string random_node_id() {
  // Docker's node IDs: 25 characters of [0-9a-z].
  static constexpr char kAlphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::random_device rd;
  std::string id;
  for (int i = 0; i < 25; ++i) id += kAlphabet[rd() % 36];
  return id;
}

std::string status_of(gossip::NodeStateKind state) {
  return state == gossip::NodeStateKind::kAlive || state == gossip::NodeStateKind::kSuspect ? "ready" : "down";
}

// The agent's NetworkManager as NodeNetworks.
class NetworkManagerAdapter final : public NodeNetworks {
 public:
  explicit NetworkManagerAdapter(network::NetworkManager& nm) : nm_(nm) {}
  void attach_cluster(network::ClusterLink* link) override { nm_.attach_cluster(link); }
  void detach_cluster() override { nm_.detach_cluster(); }
  bool has_networks() override { return nm_.has_networks(); }
  std::vector<Network> local_networks() override { return nm_.local_networks(); }
  std::vector<Endpoint> local_endpoints() override { return nm_.local_endpoints(); }
  void apply_remote_network(const Network& n) override { nm_.apply_remote_network(n); }
  void forget_remote_network(const std::string& id) override { nm_.forget_remote_network(id); }
  void apply_remote_endpoint(const Endpoint& e, network::ipam::Ipv4 vtep) override {
    nm_.apply_remote_endpoint(e, vtep);
  }
  void forget_remote_endpoint(const std::string& id) override { nm_.forget_remote_endpoint(id); }
  void set_owned(const std::string& space, const network::ipam::RangeSet& owned) override {
    nm_.set_owned(space, owned);
  }
  void give_away(const std::string& space,
                 const std::function<network::ipam::RangeSet(const network::ipam::RangeSet& free)>& give) override {
    nm_.give_away(space, give);
  }
  network::ipam::Cidr address_pool() override { return nm_.address_pool(); }

 private:
  network::NetworkManager& nm_;
};

}  // namespace

struct Cluster::State {
  State(ClusterConfig c, NodeNetworks& n)
      : config(std::move(c)), nm(n), work(asio::make_work_guard(io)), save_timer(io), reap_timer(io), rejoin_timer(io) {}

  // Runs `f` on the gossip thread and waits for its result (or exception).
  template <class F>
  auto call(F f) -> decltype(f()) {
    if (std::this_thread::get_id() == thread.get_id()) return f();
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(io, [&task] { task(); });
    return result.get();
  }
  template <class F>
  void post(F f) {
    asio::post(io, std::move(f));
  }

  fs::path dir() const { return fs::path(config.state_dir) / "cluster"; }
  fs::path swarm_file() const { return dir() / "swarm.json"; }
  fs::path tables_file() const { return dir() / "tables.bin"; }
  fs::path journal_file() const { return dir() / "tables.journal"; }  // TablesJournal
  // The ranges table, written ahead of every change to what this node holds
  // (RangeOwnership); tables.bin, on a timer, may lag it by a second. A file
  // of its own because it stays small: writing it costs about one fsync
  // (~10 ms here), where tables.bin with 10 000 endpoints (3.6 MB) took
  // ~30 ms, half of it encoding, and grows with the cluster.
  fs::path ranges_file() const { return dir() / "ranges.bin"; }
  void remove_saved_tables() {
    journal.reset();
    std::error_code ec;
    fs::remove(tables_file(), ec);
    fs::remove(journal_file(), ec);
    fs::remove(ranges_file(), ec);
  }

  // --- lifecycle (gossip thread) ---
  void activate(const gossip::Bytes& gossip_key, const std::string& id, bool resume);
  void deactivate();
  void load_saved_tables();
  void claim_everything();
  void claim_local_networks();
  void publish_local_state();
  void sync_owned(const std::string& space);
  void sync_all_owned();
  void save_swarm();
  void schedule_save();
  // Appends the keys changed since the last save to the journal, or writes
  // the whole snapshot when `whole`, when the journal has outgrown it, or
  // when the journal is unusable.
  void save_tables(bool whole = false);
  void schedule_reap();
  void schedule_rejoin();
  void try_join(std::vector<std::string> peers, std::function<void(int, std::string)> done);
  std::string advertise() const {
    return config.advertise_addr + ":" + std::to_string(ml ? ml->bound_port() : config.bind_port);
  }

  // --- table traffic (gossip thread) ---
  void broadcast(const std::vector<TableEntry>& entries);
  void on_table_change(const std::optional<TableEntry>& before, const std::optional<TableEntry>& now);
  void send_range_request(const std::string& space, std::uint32_t unit);
  void handle_range_request(const RangeRequest& request);
  void handle_log_request(const LogRequest& request);
  void handle_log_reply(const LogReply& reply);
  void finish_log_fetch(std::uint64_t id);
  NodeInfo node_info(const gossip::Member& m) const;

  ClusterConfig config;
  // The underlay address endpoints of this node are reached at, as gossiped
  // in their records (weftd has checked the flag it comes from).
  network::ipam::Ipv4 vtep = network::ipam::Ipv4::parse(config.advertise_addr).value_or(network::ipam::Ipv4{});
  NodeNetworks& nm;
  services::ClusterServices* services = nullptr;
  tasks::ClusterTasks* tasks_sink = nullptr;
  Cluster* owner = nullptr;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::thread thread;

  bool active = false;
  std::string node_id;
  gossip::Bytes key;
  std::vector<std::string> peers;  // addresses to rejoin after a restart
  std::unique_ptr<tables::ReplicatedTables> tables;
  std::unique_ptr<RangeOwnership> ranges;
  std::unique_ptr<TableGossip> table_gossip;
  std::unique_ptr<gossip::SerfCompat> serf;
  std::unique_ptr<gossip::Memberlist> ml;
  std::set<std::string> removed_nodes;  // `weft node rm`
  std::map<std::string, std::chrono::steady_clock::time_point> last_request;
  // `service logs` asking the peers (request_logs): by request id.
  struct LogFetch {
    std::set<std::string> waiting;            // peers that have not answered
    std::map<std::string, std::string> got;   // node -> its text
    std::function<void(std::map<std::string, std::string>)> done;
    std::unique_ptr<asio::steady_timer> timer;
  };
  std::map<std::uint64_t, LogFetch> log_fetches;
  std::uint64_t last_log_fetch = 0;
  asio::steady_timer save_timer, reap_timer, rejoin_timer;
  bool save_pending = false;
  std::unique_ptr<TablesJournal> journal;
  // Keys changed since the last save (their current versions go to the
  // journal); not while the saved tables themselves are being loaded.
  std::set<TablesJournal::Key> unsaved;
  bool loading_saved = false;
};

// --- lifecycle ---------------------------------------------------------------

void Cluster::State::activate(const gossip::Bytes& gossip_key, const std::string& id, bool resume) {
  key = gossip_key;
  node_id = id;
  nm.attach_cluster(owner);
  if (services) services->attach_cluster(owner);
  if (tasks_sink) tasks_sink->attach_cluster(owner);
  tables = std::make_unique<tables::ReplicatedTables>(config.node_name,
                                                       std::set<std::string>{kEndpointsTable, kTasksTable},
                                                       config.tombstone_lifetime,
                                                       config.cluster_tombstone_lifetime);
  ranges = std::make_unique<RangeOwnership>(*tables, [this](const std::vector<TableEntry>& entries) {
    network::write_file_atomically(ranges_file(), encode_snapshot(entries));
  });
  tables->subscribe([this](const auto& before, const auto& now) { on_table_change(before, now); });
  journal = std::make_unique<TablesJournal>(tables_file(), journal_file());
  if (resume) {
    load_saved_tables();
  } else {
    try {
      journal->open();  // empty: a new swarm's files were removed
    } catch (const std::exception& e) {
      spdlog::warn("cluster: cannot start {}: {}; the tables are saved whole", journal_file().string(), e.what());
    }
  }

  gossip::Config gc = config.gossip_timings;
  table_gossip = std::make_unique<TableGossip>(io,
                                               TableGossipConfig{.node_name = config.node_name,
                                                                 .node_scoped_tables = {kEndpointsTable, kTasksTable},
                                                                 .retransmit_mult = gc.retransmit_mult},
                                               *tables);
  table_gossip->on_range_request([this](const RangeRequest& request) { handle_range_request(request); });
  table_gossip->on_log_request([this](const LogRequest& request) { handle_log_request(request); });
  table_gossip->on_log_reply([this](const LogReply& reply) { handle_log_reply(reply); });
  gc.name = config.node_name;
  gc.bind_addr = config.bind_addr;
  gc.bind_port = config.bind_port;
  gc.advertise_addr = config.advertise_addr;
  gc.keyring = std::make_shared<gossip::Keyring>(key);
  serf = std::make_unique<gossip::SerfCompat>(io, config.node_name, gossip::Tags{{kRoleTag, kWeftRole}, {"id", node_id}},
                                              table_gossip.get(), table_gossip.get());
  ml = std::make_unique<gossip::Memberlist>(io, gc, serf.get(), serf.get());
  serf->attach(ml.get());
  table_gossip->attach(ml.get());
  try {
    ml->start();
  } catch (...) {
    deactivate();
    throw;
  }
  active = true;
  sync_all_owned();
  schedule_reap();
  spdlog::info("cluster: gossip on {}:{} as {} ({})", config.bind_addr, ml->bound_port(), config.node_name, node_id);
}

void Cluster::State::deactivate() {
  active = false;
  rejoin_timer.cancel();
  reap_timer.cancel();
  if (ml) ml->shutdown();
  ml.reset();
  serf.reset();
  table_gossip.reset();
  ranges.reset();
  tables.reset();
  journal.reset();
  unsaved.clear();
  nm.detach_cluster();
  if (services) services->detach_cluster();
  if (tasks_sink) tasks_sink->detach_cluster();
}

namespace {
// A saved table file, decoded; nullopt (with a warning naming the file and
// what is lost) when it is missing or unreadable.
std::optional<std::vector<TableEntry>> read_saved_entries(const fs::path& path, const char* lost) {
  std::optional<std::string> bytes;
  try {
    bytes = network::read_file(path);
  } catch (const std::exception& e) {
    spdlog::warn("cluster: cannot read {}: {}; {}", path.string(), e.what(), lost);
    return std::nullopt;
  }
  if (!bytes) return std::nullopt;
  try {
    return decode_snapshot(*bytes);
  } catch (const std::exception& e) {
    spdlog::warn("cluster: discarding {} ({} bytes that are not a table snapshot: {}); {}", path.string(),
                 bytes->size(), e.what(), lost);
    return std::nullopt;
  }
}
}  // namespace

void Cluster::State::load_saved_tables() {
  const bool had_ranges_file = fs::exists(ranges_file());
  auto saved_ranges =
      read_saved_entries(ranges_file(), "this node's address ranges will be rebuilt from peers' copies");
  // Without its write-ahead copy, tables.bin's ranges may be a second older
  // than what this node gave away: trusting them could hold a range twice.
  // (A missing file is an agent from before ranges.bin: tables.bin is all
  // there is.)
  const bool trust_table_ranges = saved_ranges || !had_ranges_file;
  std::optional<std::vector<TableEntry>> saved;
  try {
    auto loaded = journal->open();
    if (loaded.records_replayed)
      spdlog::info("cluster: {} changes replayed from {}", loaded.records_replayed, journal_file().string());
    saved = std::move(loaded.entries);
  } catch (const std::exception& e) {
    // Saving writes the whole snapshot until the journal opens again.
    spdlog::warn("cluster: cannot read the saved tables: {}; the tables will be rebuilt from peers", e.what());
  }
  if (saved && !saved->empty()) {
    std::size_t skipped = 0;
    std::vector<TableEntry> kept;
    for (auto& e : *saved) {
      if (!trust_table_ranges && e.table == kRangesTable)
        ++skipped;
      else
        kept.push_back(std::move(e));
    }
    loading_saved = true;  // (merge does not throw: the listener logs what it cannot apply)
    tables->merge(kept);
    loading_saved = false;
    if (skipped) spdlog::warn("cluster: ignoring {} address range entries of {}", skipped, tables_file().string());
  }
  if (saved_ranges) tables->merge(*saved_ranges);
  ranges->mark_saved();
}

void Cluster::State::claim_everything() {
  const auto pool = nm.address_pool();
  std::vector<TableEntry> out;
  auto add = [&out](std::vector<TableEntry> es) { out.insert(out.end(), es.begin(), es.end()); };
  add(ranges->claim(network::kPoolSpace, network::ipam::Range{pool.first(), pool.last()}));
  add(ranges->claim(network::kVniSpace, network::kVniRange));
  for (const auto& n : nm.local_networks())
    add(ranges->claim(network::network_space(n.id), network::ipam::host_range(n.subnet)));
  broadcast(out);
}

// A network made here whose claim did not reach the disk before a crash: no
// peer can have heard of that claim (it is persisted before it is sent), and
// only a network's creator claims its space, so claiming it now is safe.
void Cluster::State::claim_local_networks() {
  std::vector<TableEntry> out;
  for (const auto& n : nm.local_networks()) {
    try {
      auto claimed = ranges->claim(network::network_space(n.id), network::ipam::host_range(n.subnet));
      if (!claimed.empty())
        spdlog::info("cluster: claimed the addresses of network {} again (not saved before a restart)", n.name);
      out.insert(out.end(), claimed.begin(), claimed.end());
    } catch (const std::exception& e) {
      spdlog::error("cluster: cannot save the claim of network {}'s addresses: {}", n.name, e.what());
    }
  }
  broadcast(out);
}

void Cluster::State::publish_local_state() {
  std::vector<TableEntry> out;
  for (const auto& n : nm.local_networks())
    if (!tables->get(kNetworksTable, n.id)) out.push_back(tables->put(kNetworksTable, n.id, network_record(n).dump()));
  std::set<std::string> mine;
  for (const auto& e : nm.local_endpoints()) {
    out.push_back(tables->put(kEndpointsTable, e.id, endpoint_record(e, vtep).dump()));
    mine.insert(e.id);
  }
  // Endpoints this node published before a restart that are gone now.
  // (Keys first, values not decoded: the table holds every node's endpoints.)
  std::vector<std::string> gone;
  tables->for_each(kEndpointsTable, [&](const tables::EntryView& e) {
    if (!e.deleted && e.owner == config.node_name && !mine.count(e.key)) gone.push_back(e.key);
  });
  for (const auto& key : gone)
    if (auto tomb = tables->remove(kEndpointsTable, key)) out.push_back(*tomb);
  if (services) {
    std::set<std::string> removed;
    for (const auto& e : tables->table_snapshot(kServicesTable))
      if (e.deleted) removed.insert(e.key);
    for (const auto& s : services->local_services()) {
      // Removed on another node while this one was away: not brought back.
      if (removed.count(s.id))
        services->forget_service(s.id);
      else if (!tables->get(kServicesTable, s.id))
        out.push_back(tables->put(kServicesTable, s.id, service_record(s).dump()));
    }
  }
  if (tasks_sink) {
    std::set<std::string> running;
    for (const auto& t : tasks_sink->local_tasks()) {
      out.push_back(tables->put(kTasksTable, t.key(), task_record(t).dump()));
      running.insert(t.key());
    }
    for (const auto& e : tables->entries(kTasksTable))
      if (e.owner == config.node_name && !running.count(e.key))
        if (auto tomb = tables->remove(kTasksTable, e.key)) out.push_back(*tomb);
  }
  broadcast(out);
}

void Cluster::State::sync_owned(const std::string& space) {
  if (!ranges) return;
  try {
    nm.set_owned(space, ranges->usable(space));
  } catch (const std::exception& e) {
    // Retried by the next sync; until then the allocators keep what was saved.
    spdlog::error("cluster: cannot save this node's address ranges, not using new ones of {}: {}", space, e.what());
  }
}

void Cluster::State::sync_all_owned() {
  sync_owned(network::kPoolSpace);
  sync_owned(network::kVniSpace);
  for (const auto& e : tables->entries(kNetworksTable)) sync_owned(network::network_space(e.key));
}

void Cluster::State::save_swarm() {
  network::write_file_atomically(swarm_file(), encode_swarm_file({node_id, {key.begin(), key.end()}, peers}));
}

void Cluster::State::save_tables(bool whole) {
  save_pending = false;
  if (!tables || !journal) return;
  try {
    if (whole || !journal->usable() || journal->wants_compaction()) {
      journal->compact(*tables);
    } else {
      std::vector<TableEntry> stored;
      std::vector<TablesJournal::Key> gone;
      for (const auto& [table, key] : unsaved) {
        if (auto e = tables->find(table, key))
          stored.push_back(std::move(*e));
        else
          gone.emplace_back(table, key);
      }
      journal->append(stored, gone);
    }
    unsaved.clear();
    if (ml) {
      // Remember where the cluster is, to find it again after a restart.
      std::set<std::string> known(peers.begin(), peers.end());
      for (const auto& m : ml->members())
        if (m.name != config.node_name && m.state == gossip::NodeStateKind::kAlive) known.insert(m.address());
      peers.assign(known.begin(), known.end());
      save_swarm();
    }
  } catch (const std::exception& e) {
    spdlog::error("cluster: cannot save state: {}", e.what());
  }
}

void Cluster::State::schedule_save() {
  if (save_pending) return;
  save_pending = true;
  save_timer.expires_after(std::chrono::seconds(1));
  save_timer.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) save_tables();
  });
}

void Cluster::State::schedule_reap() {
  // Twice per shortest lifetime, at most every 30 s: a walk over every entry.
  const auto shortest = std::min(config.tombstone_lifetime, config.cluster_tombstone_lifetime);
  reap_timer.expires_after(std::clamp<std::chrono::seconds>(shortest / 2, std::chrono::seconds(1),
                                                            std::chrono::seconds(30)));
  reap_timer.async_wait([this](const boost::system::error_code& ec) {
    if (ec || !tables) return;
    if (auto n = tables->reap_tombstones()) spdlog::debug("cluster: reaped {} tombstones", n);
    schedule_reap();
  });
}

void Cluster::State::try_join(std::vector<std::string> addrs, std::function<void(int, std::string)> done) {
  ml->join(std::move(addrs), [this, done = std::move(done)](int contacted, std::string error) {
    if (contacted > 0 && serf) serf->broadcast_join();
    done(contacted, std::move(error));
  });
}

void Cluster::State::schedule_rejoin() {
  rejoin_timer.expires_after(std::chrono::seconds(2));
  rejoin_timer.async_wait([this](const boost::system::error_code& ec) {
    if (ec || !active) return;
    std::vector<std::string> targets = peers;
    targets.insert(targets.end(), config.join.begin(), config.join.end());
    if (ml->num_alive() > 1 || targets.empty()) {
      schedule_rejoin();
      return;
    }
    try_join(targets, [this](int contacted, const std::string& error) {
      if (contacted > 0)
        spdlog::info("cluster: rejoined through {} peer(s)", contacted);
      else
        spdlog::debug("cluster: rejoin failed: {}", error);
      schedule_rejoin();
    });
  });
}

// --- table traffic -------------------------------------------------------------

void Cluster::State::broadcast(const std::vector<TableEntry>& entries) {
  if (!table_gossip || entries.empty()) return;
  table_gossip->broadcast(entries);
  schedule_save();
}

void Cluster::State::on_table_change(const std::optional<TableEntry>& before, const std::optional<TableEntry>& now) {
  const TableEntry& e = now ? *now : *before;
  try {
    if (e.table == kNetworksTable) {
      if (now) {
        auto network = network_from_record(json::parse(now->value));
        nm.apply_remote_network(network);
        const auto space = network::network_space(network.id);
        // Ask for addresses before anyone needs them, so an attach here does
        // not wait for a donation.
        if (network.node != config.node_name)
          post([this, space] {
            sync_owned(space);
            if (ranges && ranges->held_locally(space).empty()) send_range_request(space, 1);
          });
      } else {
        nm.forget_remote_network(before->key);
      }
    } else if (e.table == kEndpointsTable) {
      if (now) {
        auto j = json::parse(now->value);
        auto endpoint = endpoint_from_record(j);
        if (endpoint.node != config.node_name) nm.apply_remote_endpoint(endpoint, vtep_from_record(j));
      } else {
        nm.forget_remote_endpoint(before->key);
      }
    } else if (e.table == kServicesTable) {
      if (!services) {
      } else if (now) {
        services->apply_remote_service(service_from_record(json::parse(now->value)));
      } else {
        services->forget_service(before->key);
      }
    } else if (e.table == kTasksTable) {
      if (!tasks_sink) {
      } else if (now) {
        tasks_sink->apply_task(task_from_record(json::parse(now->value)));
      } else {
        tasks_sink->forget_task(before->key);
      }
    } else if (e.table == kRangesTable) {
      if (ranges) ranges->observe(before, now);
      // Deferred: a donation runs while the network manager is consulted.
      const auto space = e.key.substr(0, e.key.find('|'));
      post([this, space] { sync_owned(space); });
    }
  } catch (const std::exception& err) {
    spdlog::error("cluster: cannot apply {} entry {}: {}", e.table, e.key, err.what());
  }
  if (loading_saved) return;  // on disk already
  unsaved.emplace(e.table, e.key);
  schedule_save();
}

void Cluster::State::send_range_request(const std::string& space, std::uint32_t unit) {
  if (!active || !ranges) return;
  auto now = std::chrono::steady_clock::now();
  auto& last = last_request[space];
  if (now - last < kRequestThrottle) return;
  last = now;
  std::set<std::string> alive;
  for (const auto& m : ml->members())
    if (m.state == gossip::NodeStateKind::kAlive && m.name != config.node_name) alive.insert(m.name);
  const auto richest = ranges->richest_holder(space, [&](const std::string& n) { return alive.count(n) != 0; });
  if (!richest) {
    spdlog::warn("cluster: no live peer holds any of {}", space);
    return;
  }
  // Small gifts keep numbers dense: 16 subnets, 256 VNIs, 64 addresses.
  const std::uint64_t want = space == network::kPoolSpace ? 16 : space == network::kVniSpace ? 256 : 64;
  spdlog::debug("cluster: asking {} for part of {}", *richest, space);
  table_gossip->send(*richest, RangeRequest{.space = space, .unit = unit, .want = want, .from = config.node_name},
                     "a range request for " + space);
}

// A peer's `service logs`: this node's tails of the service's task logs,
// bounded per task and in all (a reply is one stream message).
void Cluster::State::handle_log_request(const LogRequest& request) {
  constexpr std::uint64_t kMaxPerTask = 256 * 1024;
  constexpr std::size_t kMaxReply = 4 * 1024 * 1024;
  if (!tasks_sink || request.from.empty() || request.from == config.node_name) return;
  std::string text;
  try {
    text = tasks_sink->local_logs(request.service_id, std::min(request.max_bytes, kMaxPerTask));
  } catch (const std::exception& e) {
    spdlog::debug("cluster: task logs for {}: {}", request.from, e.what());
  }
  if (text.size() > kMaxReply) {
    const auto cut = text.find('\n', text.size() - kMaxReply);
    text.erase(0, cut == std::string::npos ? text.size() : cut + 1);
  }
  table_gossip->send(request.from, LogReply{.id = request.id, .node = config.node_name, .text = std::move(text)},
                     "task logs");
}

void Cluster::State::handle_log_reply(const LogReply& reply) {
  auto it = log_fetches.find(reply.id);
  if (it == log_fetches.end() || !it->second.waiting.erase(reply.node)) return;  // late, or not asked
  it->second.got[reply.node] = reply.text;
  if (it->second.waiting.empty()) finish_log_fetch(reply.id);
}

void Cluster::State::finish_log_fetch(std::uint64_t id) {
  auto it = log_fetches.find(id);
  if (it == log_fetches.end()) return;
  LogFetch fetch = std::move(it->second);
  log_fetches.erase(it);
  if (fetch.timer) fetch.timer->cancel();
  if (fetch.done) fetch.done(std::move(fetch.got));
}

void Cluster::State::handle_range_request(const RangeRequest& request) {
  if (!ranges) return;
  const auto& [space, unit, want, from] = request;
  if (want == 0) return;  // nothing asked for
  std::vector<TableEntry> gift;
  try {
    // Under the network manager's lock: no attach can take a number of the
    // gift between choosing it and no longer owning it.
    nm.give_away(space, [&](const network::ipam::RangeSet& free) {
      gift = ranges->donate(space, from, free, unit, want);
      return ranges->usable(space);
    });
  } catch (const std::exception& e) {
    spdlog::error("cluster: not giving {} part of {}: cannot save the gift: {}", from, space, e.what());
    return;
  }
  if (gift.empty()) {
    spdlog::info("cluster: nothing of {} to spare for {}", space, from);
    return;
  }
  sync_owned(space);
  broadcast(gift);
  // The direct copy makes the requester's wait one round trip.
  table_gossip->send_to(from, gift);
  spdlog::info("cluster: gave {} part of {}", from, space);
}

NodeInfo Cluster::State::node_info(const gossip::Member& m) const {
  gossip::Tags tags;
  try {
    tags = gossip::decode_serf_tags(m.meta);
  } catch (const std::exception&) {
  }
  const bool weft = has_weft_role(tags);
  std::string availability = "active";
  if (auto entry = tables ? tables->get(kNodesTable, m.name) : std::nullopt) {
    try {
      const auto text = json::parse(entry->value).value("Availability", std::string("active"));
      if (is_node_availability(text)) availability = text;
    } catch (const std::exception&) {
      // A malformed record counts as none: the node is active.
    }
  }
  return NodeInfo{.id = tags.count("id") ? tags.at("id") : m.name,
                  .hostname = m.name,
                  .status = status_of(m.state),
                  .availability = availability,
                  .address = m.address(),
                  .role = weft ? kWeftRole : "serf",
                  .membership = gossip::node_state_name(m.state),
                  .self = m.name == config.node_name,
                  .incarnation = m.incarnation};
}

// --- Cluster -------------------------------------------------------------------

Cluster::Cluster(ClusterConfig config, network::NetworkManager& networks)
    : adapter_(std::make_unique<NetworkManagerAdapter>(networks)),
      state_(std::make_unique<State>(std::move(config), *adapter_)) {
  state_->owner = this;
}

Cluster::Cluster(ClusterConfig config, NodeNetworks& networks)
    : state_(std::make_unique<State>(std::move(config), networks)) {
  state_->owner = this;
}

Cluster::~Cluster() { stop(); }

void Cluster::set_services(services::ClusterServices* services) { state_->services = services; }

void Cluster::set_tasks(tasks::ClusterTasks* tasks) { state_->tasks_sink = tasks; }

void Cluster::start() {
  auto& s = *state_;
  s.thread = std::thread([&s] { s.io.run(); });
  s.call([&s] {
    std::optional<std::string> saved;
    try {
      saved = network::read_file(s.swarm_file());
    } catch (const std::exception& e) {
      spdlog::error("cluster: cannot read {}: {}", s.swarm_file().string(), e.what());
    }
    if (saved) {
      const auto swarm = parse_swarm_file(s.swarm_file(), *saved);
      s.peers = swarm.peers;
      s.activate(gossip::Bytes(swarm.key.begin(), swarm.key.end()), swarm.node_id, true);
      s.claim_local_networks();
      s.publish_local_state();
      s.schedule_rejoin();
      spdlog::info("cluster: resumed swarm membership");
      return;
    }
    if (s.config.key_file.empty()) return;
    auto text = network::read_file(s.config.key_file);
    if (!text) throw std::runtime_error("key file " + s.config.key_file + " does not exist");
    std::string trimmed = *text;
    while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) trimmed.pop_back();
    auto key = gossip::Keyring::decode_base64_key(trimmed);
    // A new identity: tables of an earlier one (Lamport times this node's
    // fresh clock would lose to) must not come back at the next resume.
    s.remove_saved_tables();
    s.activate(key, random_node_id(), false);
    if (s.config.join.empty()) s.claim_everything();
    s.publish_local_state();
    s.save_swarm();
    s.schedule_rejoin();
  });
}

void Cluster::stop() {
  auto& s = *state_;
  if (!s.thread.joinable()) return;
  s.post([&s] {
    if (s.tables) s.save_tables(/*whole=*/true);
    s.save_timer.cancel();
    if (s.ml) s.ml->shutdown();
    s.rejoin_timer.cancel();
    s.reap_timer.cancel();
    s.work.reset();
  });
  s.thread.join();
}

SwarmInitResult Cluster::init(const SwarmInitRequest& request) {
  auto& s = *state_;
  return s.call([&] {
    if (s.active) conflict("this node is already part of a swarm: run `weft swarm leave` first");
    // Docker's clients may add a port (2377): the gossip port is the
    // agent's --bind, so only the address has to match.
    if (request.advertise_addr && *request.advertise_addr != s.config.advertise_addr &&
        request.advertise_addr->substr(0, request.advertise_addr->rfind(':')) != s.config.advertise_addr)
      throw ApiError(ApiError::Kind::BadRequest,
                     "the advertise address is the agent's (--advertise-addr " + s.config.advertise_addr +
                         "): leave it out, or restart the agent with another --advertise-addr");
    s.remove_saved_tables();
    auto key = generate_gossip_key();
    s.activate(gossip::Bytes(key.begin(), key.end()), random_node_id(), false);
    try {
      s.claim_everything();
    } catch (...) {
      // Not saved, so not sent: this node is not in a swarm after all.
      s.deactivate();
      throw;
    }
    s.publish_local_state();
    s.save_swarm();
    spdlog::info("cluster: initialised a swarm");
    return SwarmInitResult{.node_id = s.node_id, .join_token = encode_join_token({key}), .advertise = s.advertise()};
  });
}

void Cluster::join(const SwarmJoinRequest& request) {
  auto& s = *state_;
  JoinToken token;
  try {
    token = decode_join_token(request.join_token);
  } catch (const std::invalid_argument& e) {
    throw ApiError(ApiError::Kind::BadRequest, e.what());
  }
  if (request.remote_addrs.empty())
    throw ApiError(ApiError::Kind::BadRequest, "the address of a node in the swarm is required (ADDR:PORT)");
  if (s.nm.has_networks())
    conflict("this node has networks of its own: remove them before joining a swarm");
  auto joined = std::make_shared<std::promise<std::pair<int, std::string>>>();
  auto result = joined->get_future();
  s.call([&] {
    if (s.active) conflict("this node is already part of a swarm: run `weft swarm leave` first");
    s.remove_saved_tables();
    s.activate(gossip::Bytes(token.gossip_key.begin(), token.gossip_key.end()), random_node_id(), false);
    s.try_join(request.remote_addrs, [joined](int contacted, std::string error) {
      joined->set_value({contacted, std::move(error)});
    });
  });
  if (result.wait_for(kJoinTimeout) != std::future_status::ready) {
    s.call([&] { s.deactivate(); });
    throw ApiError(ApiError::Kind::Internal, "timed out joining the swarm through " + request.remote_addrs.front());
  }
  auto [contacted, error] = result.get();
  if (contacted == 0) {
    s.call([&] { s.deactivate(); });
    throw ApiError(ApiError::Kind::Internal, "could not join the swarm: " + error);
  }
  s.call([&] {
    s.peers = request.remote_addrs;
    s.publish_local_state();
    s.save_swarm();
    s.schedule_rejoin();
    spdlog::info("cluster: joined a swarm through {}", request.remote_addrs.front());
  });
}

void Cluster::leave(const SwarmLeaveRequest& request) {
  auto& s = *state_;
  if (request.drain_seconds > kMaxLeaveDrainSeconds)
    throw ApiError(ApiError::Kind::BadRequest, "a leave drains for at most " +
                                                   std::to_string(kMaxLeaveDrainSeconds) + " seconds");
  if (request.drain_seconds > 0) drain_before_leave(std::chrono::seconds(request.drain_seconds));
  // A node that has just restarted may not have found its peers again yet;
  // a leave gossiped to nobody would look like a failure to them.
  auto rejoined = std::make_shared<std::promise<void>>();
  auto rejoin_done = rejoined->get_future();
  s.call([&] {
    if (!s.active) conflict("this node is not part of a swarm");
    s.rejoin_timer.cancel();
    std::vector<std::string> targets = s.peers;
    targets.insert(targets.end(), s.config.join.begin(), s.config.join.end());
    if (s.ml->num_alive() > 1 || targets.empty()) {
      rejoined->set_value();
      return;
    }
    s.try_join(targets, [rejoined](int, std::string) { rejoined->set_value(); });
  });
  rejoin_done.wait_for(std::chrono::seconds(5));
  auto left = std::make_shared<std::promise<bool>>();
  auto result = left->get_future();
  s.call([&] {
    if (!s.active) conflict("this node is not part of a swarm");
    s.serf->leave(std::chrono::seconds(3), std::chrono::seconds(1), [left](bool ok) { left->set_value(ok); });
  });
  if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready)
    spdlog::warn("cluster: leave was not confirmed in time");
  s.call([&] {
    auto remote = s.tables ? s.tables->entries(kNetworksTable) : std::vector<TableEntry>{};
    s.deactivate();
    for (const auto& e : remote)
      if (e.owner != s.config.node_name) s.nm.forget_remote_network(e.key);
    std::error_code ec;
    fs::remove(s.swarm_file(), ec);
    s.remove_saved_tables();
    s.peers.clear();
    s.removed_nodes.clear();
    spdlog::info("cluster: left the swarm");
  });
}

// Every node sees this node's service backends as draining (no new
// connections, open ones go on) for `drain`, and only then does the node
// leave, which withdraws them. Only the published records say so: this
// node's own state keeps them active, so a crash during the drain leaves
// nothing to undo (the restarted agent publishes them as they are), and no
// drain timer ever detaches them.
void Cluster::drain_before_leave(std::chrono::seconds drain) {
  auto& s = *state_;
  const auto until = network::rfc3339_seconds(std::chrono::system_clock::now() + drain);
  std::size_t draining = 0;
  s.call([&] {
    if (!s.active) conflict("this node is not part of a swarm");
    std::vector<TableEntry> changed;
    for (Endpoint e : s.nm.local_endpoints()) {
      if (e.service_id.empty() || e.backend_state == BackendState::draining) continue;
      e.backend_state = BackendState::draining;
      e.drain_until = until;
      changed.push_back(s.tables->put(kEndpointsTable, e.id, endpoint_record(e, s.vtep).dump()));
    }
    draining = changed.size();
    s.broadcast(changed);
  });
  spdlog::info("cluster: leaving: {} service backend(s) drain for {} s first", draining, drain.count());
  if (draining > 0) std::this_thread::sleep_for(drain);
}

SwarmInfo Cluster::info() {
  auto& s = *state_;
  return s.call([&] {
    SwarmInfo info;
    info.active = s.active;
    info.node_id = s.node_id;
    info.node_name = s.config.node_name;
    if (s.active) {
      info.gossip_key_base64 = base64_encode({s.key.begin(), s.key.end()});
      info.join_token = encode_join_token({{s.key.begin(), s.key.end()}});
      info.advertise = s.advertise();
    }
    return info;
  });
}

std::vector<NodeInfo> Cluster::list_nodes() {
  auto& s = *state_;
  return s.call([&] {
    if (!s.active) conflict("this node is not part of a swarm: run `weft swarm init` or `weft swarm join`");
    std::vector<NodeInfo> nodes;
    for (const auto& m : s.ml->members())
      if (!s.removed_nodes.count(m.name)) nodes.push_back(s.node_info(m));
    std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a.hostname < b.hostname; });
    return nodes;
  });
}

ClusterMetrics Cluster::metrics() {
  auto& s = *state_;
  return s.call([&] {
    ClusterMetrics m;
    m.active = s.active;
    if (!s.active) return m;
    for (const auto& member : s.ml->members())
      if (!s.removed_nodes.count(member.name)) ++m.nodes[s.node_info(member).status];
    if (s.tables) m.table_entries = s.tables->live_counts();
    if (s.table_gossip) m.table_sync_bytes = s.table_gossip->counters().sync_bytes.load(std::memory_order_relaxed);
    return m;
  });
}

NodeInfo Cluster::get_node(const std::string& id_or_name) {
  auto nodes = list_nodes();
  std::vector<NodeInfo> prefix;
  for (const auto& n : nodes) {
    if (n.id == id_or_name || n.hostname == id_or_name) return n;
    if (!id_or_name.empty() && n.id.starts_with(id_or_name)) prefix.push_back(n);
  }
  if (prefix.size() == 1) return prefix.front();
  if (prefix.size() > 1) conflict("node ID prefix " + id_or_name + " is ambiguous");
  throw ApiError(ApiError::Kind::NotFound, "node " + id_or_name + " not found");
}

void Cluster::remove_node(const std::string& id_or_name) {
  auto node = get_node(id_or_name);
  if (node.self) conflict("cannot remove the local node: use `weft swarm leave`");
  if (node.status == "ready")
    conflict("node " + node.hostname + " is not down and can't be removed (it must be down first)");
  auto& s = *state_;
  s.call([&] {
    s.broadcast(s.ranges->take_over(node.hostname));
    s.tables->withdraw_node(node.hostname);
    s.removed_nodes.insert(node.hostname);
    spdlog::info("cluster: removed node {}; its address ranges are now {}'s", node.hostname, s.config.node_name);
  });
}

void Cluster::set_node_availability(const std::string& id_or_name, const std::string& availability) {
  if (!is_node_availability(availability))
    throw ApiError(ApiError::Kind::BadRequest,
                   "invalid availability \"" + availability + "\": expected active, pause or drain");
  auto node = get_node(id_or_name);
  if (node.role != kWeftRole)
    conflict("node " + node.hostname + " is a serf agent, not a weft node: it runs no tasks");
  auto& s = *state_;
  s.call([&] {
    s.broadcast({s.tables->put(kNodesTable, node.hostname, json{{"Availability", availability}}.dump())});
    spdlog::info("cluster: node {} is now {}", node.hostname, availability);
  });
}

// --- ClusterLink -----------------------------------------------------------------

void Cluster::publish_network(const Network& network) {
  state_->post([s = state_.get(), network] {
    if (s->active) s->broadcast({s->tables->put(kNetworksTable, network.id, network_record(network).dump())});
  });
}

void Cluster::withdraw_network(const std::string& network_id) {
  state_->post([s = state_.get(), network_id] {
    if (!s->active) return;
    if (auto tomb = s->tables->remove(kNetworksTable, network_id)) s->broadcast({*tomb});
  });
}

void Cluster::publish_endpoint(const Endpoint& endpoint) {
  state_->post([s = state_.get(), endpoint] {
    if (!s->active) return;
    s->broadcast({s->tables->put(kEndpointsTable, endpoint.id, endpoint_record(endpoint, s->vtep).dump())});
  });
}

void Cluster::withdraw_endpoint(const std::string& endpoint_id) {
  state_->post([s = state_.get(), endpoint_id] {
    if (!s->active) return;
    if (auto tomb = s->tables->remove(kEndpointsTable, endpoint_id)) s->broadcast({*tomb});
  });
}

void Cluster::publish_service(const Service& service) {
  state_->post([s = state_.get(), service] {
    if (s->active) s->broadcast({s->tables->put(kServicesTable, service.id, service_record(service).dump())});
  });
}

void Cluster::withdraw_service(const std::string& service_id) {
  state_->post([s = state_.get(), service_id] {
    if (!s->active) return;
    if (auto tomb = s->tables->remove(kServicesTable, service_id)) s->broadcast({*tomb});
  });
}

void Cluster::publish_task(const TaskRecord& task) {
  state_->post([s = state_.get(), task] {
    if (s->active) s->broadcast({s->tables->put(kTasksTable, task.key(), task_record(task).dump())});
  });
}

void Cluster::request_logs(const std::string& service_id, std::uint64_t max_bytes, std::chrono::milliseconds timeout,
                           std::function<void(std::map<std::string, std::string>)> done) {
  state_->post([s = state_.get(), service_id, max_bytes, timeout, done = std::move(done)]() mutable {
    std::set<std::string> peers;
    if (s->active && s->ml)
      for (const auto& m : s->ml->members())
        if (m.name != s->config.node_name && !s->removed_nodes.count(m.name)) {
          const NodeInfo node = s->node_info(m);
          if (node.status == "ready" && node.role == kWeftRole) peers.insert(m.name);
        }
    if (peers.empty()) {
      done({});
      return;
    }
    const std::uint64_t id = ++s->last_log_fetch;
    auto& fetch = s->log_fetches[id];
    fetch.waiting = peers;
    fetch.done = std::move(done);
    fetch.timer = std::make_unique<asio::steady_timer>(s->io, timeout);
    fetch.timer->async_wait([s, id](const boost::system::error_code& ec) {
      if (!ec) s->finish_log_fetch(id);
    });
    for (const auto& peer : peers)
      s->table_gossip->send(
          peer, LogRequest{.id = id, .service_id = service_id, .max_bytes = max_bytes, .from = s->config.node_name},
          "a task log request", spdlog::level::debug);
  });
}

void Cluster::withdraw_task(const std::string& key) {
  state_->post([s = state_.get(), key] {
    if (!s->active) return;
    if (auto tomb = s->tables->remove(kTasksTable, key)) s->broadcast({*tomb});
  });
}

void Cluster::claim_space(const std::string& space, const network::ipam::Range& whole) {
  state_->post([s = state_.get(), space, whole] {
    if (!s->active) return;
    try {
      s->broadcast(s->ranges->claim(space, whole));
    } catch (const std::exception& e) {
      // The next start claims it again (claim_local_networks).
      spdlog::error("cluster: cannot save the claim of {}: {}", space, e.what());
    }
  });
}

void Cluster::request_range(const std::string& space, std::uint32_t unit) {
  state_->post([s = state_.get(), space, unit] { s->send_range_request(space, unit); });
}

}  // namespace weft::control::cluster
