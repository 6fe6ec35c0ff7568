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

// Repairs waiting for one peer, in sync budgets (a peer sending Syncs
// faster than their repairs leave).
constexpr std::size_t kMaxOutboxBudgets = 16;

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
  // A repair or a gift: anti-entropy sends it again if it is lost.
  if (!entries.empty()) queue_entries(node, entries, false);
}

void TableGossip::queue_entries(const std::string& node, const std::vector<TableEntry>& entries, bool then_ack) {
  if (!ml_ || node == config_.node_name) return;
  const std::size_t budget = sync_budget();
  auto& outbox = outboxes_[node];
  // What waits for a peer is bounded (a peer that waits for each ack, as
  // this build does, never fills it): beyond it the entries and the ack are
  // dropped; the next push/pull finds that scope still differing.
  std::size_t total = 0;
  for (const auto& e : entries) total += encoded_size_bound(e);
  if (outbox.bytes + total > kMaxOutboxBudgets * budget && !outbox.messages.empty()) {
    ++counters_.repairs_dropped;
    spdlog::debug("cluster: {} table entries for {} dropped: {} bytes wait for it already", entries.size(), node,
                  outbox.bytes);
    return;
  }
  outbox.bytes += total;
  std::vector<TableEntry> message;
  std::size_t used = 16;
  for (const auto& e : entries) {
    const std::size_t size = encoded_size_bound(e);
    if (!message.empty() && used + size > budget) {
      outbox.messages.push_back({std::move(message), false});
      message.clear();
      used = 16;
    }
    message.push_back(e);
    used += size;
  }
  if (!message.empty()) outbox.messages.push_back({std::move(message), false});
  if (then_ack) outbox.messages.push_back({{}, true});
  send_next_entries(node);
}

void TableGossip::send_next_entries(const std::string& peer) {
  auto it = outboxes_.find(peer);
  if (it == outboxes_.end() || it->second.sending) return;
  if (it->second.messages.empty() || !ml_) {
    outboxes_.erase(it);
    return;
  }
  auto next = std::move(it->second.messages.front());
  it->second.messages.pop_front();
  for (const auto& e : next.entries) it->second.bytes -= std::min(it->second.bytes, encoded_size_bound(e));
  it->second.sending = true;
  auto msg = next.ack ? encode_direct(SyncAck{.node = config_.node_name})
                      : encode_direct(TableEntries{std::move(next.entries)});
  ml_->send_reliable(peer, std::move(msg), [this, peer, alive = std::weak_ptr<void>(alive_)](const std::string& error) {
    if (alive.expired()) return;
    auto box = outboxes_.find(peer);
    if (box == outboxes_.end()) return;
    box->second.sending = false;
    if (!error.empty()) {
      spdlog::debug("cluster: sending table entries to {} failed: {}", peer, error);
      outboxes_.erase(box);  // anti-entropy brings them
      return;
    }
    send_next_entries(peer);
  });
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
    auto message = decode(msg);
    std::visit(Overloaded{
                   [this](TableEntries& m) { handle_entries(std::move(m.entries)); },
                   [this](Sync& m) { handle_sync(std::move(m)); },
                   [this](const OwnerDigests& m) { handle_owner_digests(m); },
                   [this](const BucketDigests& m) { handle_bucket_digests(m); },
                   [this](const SyncAck& m) { handle_sync_ack(m); },
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
               message);
  } catch (const std::exception& e) {
    spdlog::warn("cluster: dropping malformed message: {}", e.what());
  }
}

std::size_t TableGossip::sync_budget() const {
  std::size_t budget = config_.sync_budget;
  if (ml_) budget = std::min(budget, ml_->config().max_stream_size / 4);
  return std::max<std::size_t>(budget, 1024);
}

void TableGossip::apply(ApplyJob job) {
  // Small batches (a gossiped change) are applied at once, as they come.
  if (apply_queue_.empty() && job.entries.size() <= config_.apply_slice) {
    apply_slice(job);
    return;
  }
  apply_queue_.push_back(std::move(job));
  if (apply_scheduled_) return;
  apply_scheduled_ = true;
  boost::asio::post(io_, [this, alive = std::weak_ptr<void>(alive_)] {
    if (!alive.expired()) apply_slices();
  });
}

void TableGossip::apply_slices() {
  apply_scheduled_ = false;
  if (apply_queue_.empty()) return;
  if (apply_slice(apply_queue_.front())) apply_queue_.pop_front();
  if (apply_queue_.empty()) return;
  // The rest after whatever else waits (probes, acks): a sync of 100 000
  // entries applied in one go stalled the loop for seconds, long enough
  // for a peer of a two-node cluster to declare this node dead.
  apply_scheduled_ = true;
  boost::asio::post(io_, [this, alive = std::weak_ptr<void>(alive_)] {
    if (!alive.expired()) apply_slices();
  });
}

bool TableGossip::apply_slice(ApplyJob& job) {
  {
    std::optional<FlagScope> anti_entropy;
    if (job.anti_entropy) anti_entropy.emplace(in_anti_entropy_);
    const std::size_t end = std::min(job.entries.size(), job.next + config_.apply_slice);
    for (; job.next < end; ++job.next)
      if (tables_.apply(job.entries[job.next])) job.fresh.push_back(job.entries[job.next]);
  }
  if (job.next < job.entries.size()) return false;
  if (job.done) job.done(job);
  return true;
}

void TableGossip::handle_entries(std::vector<TableEntry> entries) {
  apply({.entries = std::move(entries), .anti_entropy = false, .done = [this](ApplyJob& job) {
           broadcast(job.fresh);  // epidemic: pass on what was news here
         }, .next = 0, .fresh = {}});
}

gossip::Bytes TableGossip::local_state(bool join) {
  gossip::Bytes state;
  if (join) {
    // The whole copy while it fits the budget; a bigger one would be refused
    // by the receiver (the stream limit) and stall both loops: the digest
    // then starts the chunked sync.
    std::size_t size = 16;
    tables_.for_each([&size](const tables::EntryView& e) { size += encoded_size_bound(e); });
    if (size <= sync_budget()) state = encode(TableEntries{tables_.snapshot()});
  }
  if (state.empty()) state = encode(StateDigest{.node = config_.node_name, .digest = tables_.digest()});
  counters_.sync_bytes.fetch_add(state.size(), std::memory_order_relaxed);
  return state;
}

void TableGossip::merge_remote_state(gossip::ByteView state, bool join) {
  if (state.empty()) return;
  ++counters_.push_pulls;
  counters_.sync_bytes.fetch_add(state.size(), std::memory_order_relaxed);
  try {
    auto message = decode(state);
    std::visit(Overloaded{
                   [this](TableEntries& m) { merge_snapshot(std::move(m.entries)); },
                   [this, join](const StateDigest& m) { handle_state_digest(m, join); },
                   [](const auto&) { throw gossip::DecodeError("not a push/pull state"); },
               },
               message);
  } catch (const std::exception& e) {
    spdlog::warn("cluster: dropping malformed push/pull state: {}", e.what());
  }
}

void TableGossip::merge_snapshot(std::vector<TableEntry> entries) {
  apply({.entries = std::move(entries), .anti_entropy = true, .done = {}, .next = 0, .fresh = {}});
}

void TableGossip::handle_state_digest(const StateDigest& m, bool join) {
  if (m.node == config_.node_name || m.digest == tables_.digest()) return;
  // Both ends of a push/pull see the mismatch; one repair is enough. At a
  // join the other end may have sent only its digest (its copy did not fit),
  // so this end starts whatever the names.
  if (!join && config_.node_name > m.node) return;
  // A sync to it is still going: asking now would only make the peer
  // compute its bucket digests again, to be refused here.
  if (outgoing_syncs_.count(m.node)) return;
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
  if (differing.empty()) return;
  auto buckets = tables_.bucket_digests(differing);
  // Owners while they fit the budget (an owner's buckets are at most
  // kBuckets x ~30 bytes, far below any budget); the rest differ again at
  // the next push/pull.
  BucketDigests reply{.node = config_.node_name, .owners = {}, .withdrawn_mark = tables_.withdrawn_mark(peer)};
  const std::size_t budget = sync_budget();
  std::size_t used = 16 + encoded_size_bound(config_.node_name);
  for (const auto& owner : differing) {
    auto it = buckets.find(owner);
    const std::size_t count = it == buckets.end() ? 0 : it->second.size();
    const std::size_t size = encoded_size_bound(owner) + 5 + count * 32;
    if (!reply.owners.empty() && used + size > budget) break;
    used += size;
    reply.owners[owner] = it == buckets.end() ? std::map<std::uint32_t, tables::ReplicatedTables::BucketDigest>{}
                                              : std::move(it->second);
  }
  spdlog::debug("tables: differ from {}'s in {} owner(s); sending bucket digests of {}", peer, differing.size(),
                reply.owners.size());
  send(peer, reply, "bucket digests");
}

void TableGossip::handle_bucket_digests(const BucketDigests& m) {
  using tables::ReplicatedTables;
  const auto& peer = m.node;
  if (peer == config_.node_name) return;
  for (const auto& [owner, buckets] : m.owners)
    if (!buckets.empty() && buckets.rbegin()->first >= ReplicatedTables::kBuckets)
      throw gossip::DecodeError("bucket digests: a bucket out of range");
  // One sync per peer at a time: a peer asking again while one is going
  // must not make this node encode its copy again.
  if (outgoing_syncs_.count(peer)) {
    ++counters_.syncs_refused;
    spdlog::debug("tables: still syncing with {}; ignoring its bucket digests", peer);
    return;
  }
  std::set<std::string> owners;
  for (const auto& [owner, buckets] : m.owners) owners.insert(owner);
  // The peer took this node for dead (a freeze, or a one-sided partition
  // this node never noticed) and refuses the old versions of its entries:
  // they go out again with fresh times (and so in the sync below).
  if (owners.count(config_.node_name) && m.withdrawn_mark > 0 && own_entry_at_or_below(m.withdrawn_mark)) {
    spdlog::info("tables: {} had withdrawn this node's entries; republishing them", peer);
    broadcast(tables_.republish_own());
  }
  const auto ours = tables_.bucket_digests(owners);
  OutgoingSync sync;
  std::set<ReplicatedTables::Scope> differing;
  static const std::map<std::uint32_t, ReplicatedTables::BucketDigest> kNone;
  for (const auto& [owner, theirs] : m.owners) {
    auto found = ours.find(owner);
    const auto& mine = found == ours.end() ? kNone : found->second;
    for (const auto& [bucket, digest] : mine)
      if (auto it = theirs.find(bucket); it == theirs.end() || it->second.digest != digest.digest)
        differing.insert({owner, bucket});
    for (const auto& [bucket, digest] : theirs) {
      if (auto it = mine.find(bucket); it == mine.end() || it->second.digest != digest.digest)
        differing.insert({owner, bucket});
      // Roughly what its repair costs: the fields' bytes and their headers.
      sync.their_bytes[{owner, bucket}] = digest.bytes + digest.entries * 30;
    }
  }
  if (differing.empty()) return;
  sync.scopes.assign(differing.begin(), differing.end());
  sync.keys = tables_.scope_keys(differing);
  spdlog::debug("tables: syncing {} bucket(s) with {}", sync.scopes.size(), peer);
  outgoing_syncs_[peer] = std::move(sync);
  send_next_sync(peer);
}

bool TableGossip::own_entry_at_or_below(std::uint64_t lamport) const {
  bool found = false;
  for (const auto& table : config_.node_scoped_tables)
    tables_.for_each(table, [&](const tables::EntryView& e) {
      found = found || (!e.deleted && e.owner == config_.node_name && e.lamport <= lamport);
    });
  return found;
}

void TableGossip::send_next_sync(const std::string& peer) {
  auto found = outgoing_syncs_.find(peer);
  if (found == outgoing_syncs_.end()) return;
  auto& s = found->second;
  if (s.scope >= s.scopes.size() || !ml_) {
    outgoing_syncs_.erase(found);
    return;
  }
  Sync msg;
  msg.node = config_.node_name;
  msg.withdrawn_mark = tables_.withdrawn_mark(peer);
  const std::size_t budget = sync_budget();
  std::size_t used = 64 + encoded_size_bound(config_.node_name);
  std::uint64_t their_used = 0;
  static const std::vector<tables::ReplicatedTables::Key> kNoKeys;
  auto key_fields = [](const tables::ReplicatedTables::Key& k) { return std::vector<std::string>{k.first, k.second}; };
  while (s.scope < s.scopes.size()) {
    const auto& scope = s.scopes[s.scope];
    auto keys_it = s.keys.find(scope);
    const auto& keys = keys_it == s.keys.end() ? kNoKeys : keys_it->second;
    const std::uint64_t their = s.their_bytes.count(scope) ? s.their_bytes.at(scope) : 0;
    // This scope's entries from where it stands, while they fit.
    std::vector<TableEntry> part;
    std::size_t bytes = encoded_size_bound(scope.first) + 5;
    std::size_t k = s.key;
    bool complete = true;
    for (; k < keys.size(); ++k) {
      auto e = tables_.find(keys[k].first, keys[k].second);
      if (!e) continue;  // reaped or withdrawn since
      const std::size_t size = encoded_size_bound(*e);
      if (used + bytes + size > budget) {
        complete = false;
        break;
      }
      part.push_back(std::move(*e));
      bytes += size;
    }
    if (!msg.owners.empty() && (!complete || their_used + their > budget)) break;  // the next message's
    if (msg.owners.empty() && s.key > 0) msg.after = key_fields(keys[s.key - 1]);
    if (!complete) {
      // Too big for one message: this part covers the keys up to here (at
      // least one entry, even one alone over the budget).
      if (part.empty()) {
        part.push_back(*tables_.find(keys[k].first, keys[k].second));
        ++k;
      }
      msg.upto = key_fields(keys[k - 1]);
    }
    msg.owners.push_back(scope.first);
    msg.buckets.push_back(scope.second);
    for (auto& e : part) msg.entries.push_back(std::move(e));
    used += bytes;
    their_used += their;
    if (!complete) {
      s.key = k;
      break;
    }
    ++s.scope;
    s.key = 0;
    if (!msg.after.empty()) break;  // a scope's last part travels alone: the range is the message's
  }
  ++counters_.syncs_sent;
  counters_.sync_entries_sent += static_cast<long>(msg.entries.size());
  ml_->send_reliable(peer, encode_direct(msg), [this, peer, alive = std::weak_ptr<void>(alive_)](const std::string& error) {
    if (alive.expired()) return;
    auto it = outgoing_syncs_.find(peer);
    if (it == outgoing_syncs_.end()) return;
    if (!error.empty()) {
      spdlog::warn("cluster: sending a sync to {} failed: {}", peer, error);
      outgoing_syncs_.erase(it);  // the next push/pull starts over
      return;
    }
    // The next Sync once the peer has applied this one and sent its repair.
    it->second.ack_timer = std::make_unique<boost::asio::steady_timer>(io_, config_.sync_ack_timeout);
    it->second.ack_timer->async_wait([this, peer, alive](const boost::system::error_code& ec) {
      if (ec || alive.expired()) return;
      spdlog::warn("cluster: {} did not acknowledge a sync; giving up until the next push/pull", peer);
      outgoing_syncs_.erase(peer);
    });
  });
}

void TableGossip::handle_sync_ack(const SyncAck& m) {
  auto it = outgoing_syncs_.find(m.node);
  if (it == outgoing_syncs_.end() || !it->second.ack_timer) return;  // none awaited
  it->second.ack_timer.reset();  // cancels it
  send_next_sync(m.node);
}

void TableGossip::handle_sync(Sync m) {
  using tables::ReplicatedTables;
  if (m.owners.size() != m.buckets.size()) throw gossip::DecodeError("sync: owners and buckets differ in number");
  for (auto b : m.buckets)
    if (b >= ReplicatedTables::kBuckets) throw gossip::DecodeError("sync: a bucket out of range");
  if ((!m.after.empty() && m.after.size() != 2) || (!m.upto.empty() && m.upto.size() != 2))
    throw gossip::DecodeError("sync: a key range bound is not [table, key]");
  auto entries = std::move(m.entries);
  m.entries.clear();
  apply({.entries = std::move(entries), .anti_entropy = true,
         .done = [this, m = std::move(m)](ApplyJob& job) { repair_sync(m, job.entries, job.fresh); },
         .next = 0,
         .fresh = {}});
}

void TableGossip::repair_sync(const Sync& m, const std::vector<TableEntry>& theirs, const std::vector<TableEntry>& fresh) {
  using tables::ReplicatedTables;
  const auto& peer = m.node;
  broadcast(fresh);
  // Exactly the sync's scope: its (owner, bucket) pairs within its key range.
  std::map<std::string, ReplicatedTables::BucketSet> scope;
  for (std::size_t i = 0; i < m.owners.size(); ++i) scope[m.owners[i]].set(m.buckets[i]);
  std::optional<ReplicatedTables::Key> after, upto;
  if (!m.after.empty()) after = ReplicatedTables::Key{m.after[0], m.after[1]};
  if (!m.upto.empty()) upto = ReplicatedTables::Key{m.upto[0], m.upto[1]};
  auto repair = tables_.newer_than(theirs, scope, after, upto);
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
    repair = tables_.newer_than(theirs, scope, after, upto);
  }
  queue_entries(peer, repair, true);
  spdlog::debug("tables: synced {} scope(s) with {}: {} new here, {} sent back", m.owners.size(), peer, fresh.size(),
                repair.size());
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
