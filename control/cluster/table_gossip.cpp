#include "control/cluster/table_gossip.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <random>

#include "control/gossip/serf_compat.h"

namespace weft::control::cluster {
namespace gossip = weft::control::gossip;
using tables::TableEntry;

namespace {

// What encryption, the message type bytes and a label may add to a pushed
// packet, kept out of memberlist's UDP buffer size.
constexpr std::size_t kPushOverhead = 64;

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};

// Sets a flag for a scope, also when the scope throws.
class FlagScope {
 public:
  explicit FlagScope(bool& flag) : flag_(flag) { flag_ = true; }
  ~FlagScope() { flag_ = false; }
  FlagScope(const FlagScope&) = delete;
  FlagScope& operator=(const FlagScope&) = delete;

 private:
  bool& flag_;
};

bool is_weft(const gossip::Member& m) {
  try {
    return has_weft_role(gossip::decode_serf_tags(m.meta));
  } catch (const std::exception&) {
    return false;
  }
}

std::mt19937& rng() {
  static thread_local std::mt19937 generator{std::random_device{}()};
  return generator;
}

// Table entries waiting to be piggybacked on the gossip.
constexpr std::size_t kMaxQueuedEntries = 4096;

}  // namespace

TableGossip::TableGossip(boost::asio::io_context& io, TableGossipConfig config, tables::ReplicatedTables& tables)
    : io_(io),
      config_(std::move(config)),
      tables_(tables),
      queue_(config_.retransmit_mult, [this] { return ml_ ? ml_->num_alive() : 1; }) {}

void TableGossip::broadcast(const std::vector<TableEntry>& entries) {
  if (entries.empty()) return;
  for (const auto& e : entries) {
    auto msg = encode(TableEntries{{e}});
    to_push_.push_back({e, msg.size()});
    queue_.queue(std::move(msg), e.table + "|" + e.key);
  }
  // Bounded as serf bounds its queues (MaxQueueDepth): gossip piggybacks a
  // few entries a round, so a burst (a node publishing 100 000 endpoints)
  // queued whole held every encoded entry for minutes (~45 MB at 60 000)
  // and made each round's pick scan them all. The pushes above and the
  // push/pull repair what the queue drops.
  queue_.prune(kMaxQueuedEntries);
  // Deferred so that news arriving in one packet (a compound of several
  // entries) leaves in one push.
  if (!push_scheduled_) {
    push_scheduled_ = true;
    boost::asio::post(io_, [this, alive = std::weak_ptr<void>(alive_)] {
      if (!alive.expired()) push_now();
    });
  }
}

std::vector<std::string> TableGossip::push_targets() {
  std::vector<std::string> peers(weft_peers_.begin(), weft_peers_.end());
  std::shuffle(peers.begin(), peers.end(), rng());
  if (peers.size() > config_.push_fanout) peers.resize(config_.push_fanout);
  return peers;
}

void TableGossip::push_now() {
  push_scheduled_ = false;
  auto entries = std::move(to_push_);
  to_push_.clear();
  if (!ml_ || entries.empty() || weft_peers_.empty()) return;
  const std::size_t limit = ml_->config().udp_buffer_size - kPushOverhead;
  // Entries packed into packets that fit the UDP buffer; one too large for
  // a packet is left to the gossip queue and anti-entropy.
  std::vector<std::vector<TableEntry>> packets(1);
  std::size_t used = 0;
  for (auto& [entry, size] : entries) {
    if (size > limit) continue;
    if (used + size > limit) {
      packets.emplace_back();
      used = 0;
    }
    packets.back().push_back(std::move(entry));
    used += size;
  }
  for (const auto& packet : packets) {
    if (packet.empty()) continue;
    const auto msg = encode_direct(TableEntries{packet});
    for (const auto& peer : push_targets())
      if (ml_->send_best_effort(peer, msg)) ++counters_.pushed_packets;
  }
}

void TableGossip::send_to(const std::string& node, const std::vector<TableEntry>& entries) {
  if (entries.empty()) return;
  // A repair or a gift: anti-entropy sends it again if it is lost.
  send(node, TableEntries{entries}, "table entries", spdlog::level::debug);
}

void TableGossip::send(const std::string& node, const WeftMessage& message, std::string what,
                       spdlog::level::level_enum failure_level) {
  if (!ml_ || node == config_.node_name) return;
  ml_->send_reliable(node, encode_direct(message),
                     [node, what = std::move(what), failure_level](const std::string& error) {
                       if (!error.empty()) spdlog::log(failure_level, "cluster: sending {} to {} failed: {}", what, node, error);
                     });
}

void TableGossip::notify_msg(gossip::ByteView msg) {
  counters_.sync_bytes.fetch_add(msg.size(), std::memory_order_relaxed);
  try {
    std::visit(Overloaded{
                   [this](const TableEntries& m) { handle_entries(m.entries); },
                   [this](const Sync& m) { handle_sync(m); },
                   [this](const OwnerDigests& m) { handle_owner_digests(m); },
                   [this](const RangeRequest& m) {
                     if (on_range_request_) on_range_request_(m);
                   },
                   [this](const LogRequest& m) {
                     if (on_log_request_) on_log_request_(m);
                   },
                   [this](const LogReply& m) {
                     if (on_log_reply_) on_log_reply_(m);
                   },
                   [](const StateDigest&) { throw gossip::DecodeError("a state digest outside a push/pull"); },
               },
               decode(msg));
  } catch (const std::exception& e) {
    spdlog::warn("cluster: dropping malformed message: {}", e.what());
  }
}

void TableGossip::handle_entries(const std::vector<TableEntry>& entries) {
  std::vector<TableEntry> fresh;
  for (const auto& e : entries)
    if (tables_.apply(e)) fresh.push_back(e);
  broadcast(fresh);  // epidemic: pass on what was news here
}

gossip::Bytes TableGossip::local_state(bool join) {
  gossip::Bytes state = join ? encode(TableEntries{tables_.snapshot()})
                             : encode(StateDigest{.node = config_.node_name, .digest = tables_.digest()});
  counters_.sync_bytes.fetch_add(state.size(), std::memory_order_relaxed);
  return state;
}

void TableGossip::merge_remote_state(gossip::ByteView state, bool) {
  if (state.empty()) return;
  ++counters_.push_pulls;
  counters_.sync_bytes.fetch_add(state.size(), std::memory_order_relaxed);
  try {
    std::visit(Overloaded{
                   [this](const TableEntries& m) { merge_snapshot(m.entries); },
                   [this](const StateDigest& m) { handle_state_digest(m); },
                   [](const auto&) { throw gossip::DecodeError("not a push/pull state"); },
               },
               decode(state));
  } catch (const std::exception& e) {
    spdlog::warn("cluster: dropping malformed push/pull state: {}", e.what());
  }
}

void TableGossip::merge_snapshot(const std::vector<TableEntry>& entries) {
  FlagScope anti_entropy(in_anti_entropy_);
  tables_.merge(entries);
}

void TableGossip::handle_state_digest(const StateDigest& m) {
  if (m.node == config_.node_name || m.digest == tables_.digest()) return;
  // Both ends of a push/pull see the mismatch; one repair is enough.
  if (config_.node_name > m.node) return;
  send(m.node, OwnerDigests{.node = config_.node_name, .owners = tables_.owner_digests()}, "digests");
}

void TableGossip::handle_owner_digests(const OwnerDigests& m) {
  const auto& peer = m.node;
  if (peer == config_.node_name) return;
  // Owners whose entries differ, on either side.
  const auto& theirs = m.owners;
  const auto ours = tables_.owner_digests();
  std::set<std::string> differing;
  for (const auto& [owner, digest] : ours)
    if (auto it = theirs.find(owner); it == theirs.end() || it->second != digest) differing.insert(owner);
  for (const auto& [owner, digest] : theirs)
    if (!ours.count(owner)) differing.insert(owner);
  auto entries = tables_.snapshot(differing);
  spdlog::debug("tables: differ from {}'s in {} owner(s); sending {} entries", peer, differing.size(), entries.size());
  ++counters_.syncs_sent;
  counters_.sync_entries_sent += static_cast<long>(entries.size());
  send(peer,
       Sync{.node = config_.node_name,
            .all = false,
            .owners = std::vector<std::string>(differing.begin(), differing.end()),
            .withdrawn_mark = tables_.withdrawn_mark(peer),
            .entries = std::move(entries)},
       "a sync");
}

void TableGossip::handle_sync(const Sync& m) {
  const auto& peer = m.node;
  const auto& theirs = m.entries;
  const std::set<std::string> owners(m.owners.begin(), m.owners.end());
  const auto* scope = m.all ? nullptr : &owners;

  std::vector<TableEntry> fresh;
  {
    FlagScope anti_entropy(in_anti_entropy_);
    for (const auto& e : theirs)
      if (tables_.apply(e)) fresh.push_back(e);
  }
  broadcast(fresh);

  auto repair = tables_.newer_than(theirs, scope);
  // The peer thought this node dead and withdrew its entries (a freeze, or
  // a one-sided partition this node never noticed): it refuses their old
  // versions, so they go out again with fresh times. (An entry of ours the
  // peer merely has not heard of yet is above its mark and goes as it is.)
  const bool ours_withdrawn = std::any_of(repair.begin(), repair.end(), [&](const TableEntry& e) {
    return e.owner == config_.node_name && !e.deleted && config_.node_scoped_tables.count(e.table) &&
           e.lamport <= m.withdrawn_mark;
  });
  if (ours_withdrawn) {
    spdlog::info("tables: {} had withdrawn this node's entries; republishing them", peer);
    broadcast(tables_.republish_own());
    repair = tables_.newer_than(theirs, scope);
  }
  send_to(peer, repair);
  spdlog::debug("tables: synced with {}: {} new here, {} sent back", peer, fresh.size(), repair.size());
}

void TableGossip::notify_join(const gossip::Member& m) {
  spdlog::info("cluster: {} ({}) is alive", m.name, m.address());
  if (m.name == config_.node_name) return;
  if (is_weft(m)) weft_peers_.insert(m.name);
  // It may have withdrawn our entries while it thought us dead (a partition
  // looks the same from both sides).
  if (gone_nodes_.erase(m.name)) broadcast(tables_.republish_own());
}

void TableGossip::notify_leave(const gossip::Member& m) {
  spdlog::info("cluster: {} is {}", m.name, gossip::node_state_name(m.state));
  ++counters_.members_gone;
  weft_peers_.erase(m.name);
  if (m.name == config_.node_name) return;
  gone_nodes_.insert(m.name);
  tables_.withdraw_node(m.name);
}

void TableGossip::notify_update(const gossip::Member& m) {
  if (m.name == config_.node_name) return;
  if (is_weft(m))
    weft_peers_.insert(m.name);
  else
    weft_peers_.erase(m.name);
}

bool has_weft_role(const gossip::Tags& tags) {
  auto role = tags.find(kRoleTag);
  return role != tags.end() && role->second == kWeftRole;
}

}  // namespace weft::control::cluster
