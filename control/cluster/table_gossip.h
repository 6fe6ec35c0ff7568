// Replicated tables carried over memberlist: how a node's copy of the tables
// (control/tables) reaches every other node, and how copies that drifted
// apart are repaired. The agent (cluster.cpp) and bench/gossip both use it,
// so the benchmark measures the agent's code.
//
//  - A change (local, or news from a peer) is pushed at once, over UDP, to a
//    few weft peers, and also queued to be piggybacked on memberlist's gossip
//    with a retransmit limit: the push makes it fast, the queue makes it
//    reliable, and neither waits for an acknowledgement.
//  - A push/pull at join carries the whole copy while it fits the sync
//    budget (else a digest, as later ones carry). On a digest mismatch the
//    two ends compare digests per owner, then per bucket of the differing
//    owners, and exchange those buckets' entries in messages of at most the
//    budget, one at a time per peer (weft_messages.h: OwnerDigests). Big
//    syncs are applied in slices, so memberlist's probes are answered
//    while 100 000 entries arrive.
//  - A node's entries in node-scoped tables are withdrawn when memberlist
//    confirms it dead or left, never on suspicion; when it comes back, or a
//    peer's copy shows it had withdrawn this node's entries, this node
//    republishes its own.
//
// It is the gossip delegate of weft's own messages and state (SerfCompat
// hands it what is weft's): every message of weft_messages.h is decoded and
// dispatched here, and the owner sends its own through send().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/common.h>

#include "control/gossip/broadcast_queue.h"
#include "control/cluster/weft_messages.h"
#include "control/gossip/memberlist.h"
#include "control/gossip/serf_compat.h"
#include "control/tables/replicated_tables.h"

namespace weft::control::cluster {

// The serf tag that marks a member as a weft agent (plain serf agents share
// the cluster but take no part in the tables).
inline constexpr const char* kRoleTag = "role";
inline constexpr const char* kWeftRole = "weft";
bool has_weft_role(const gossip::Tags& tags);

struct TableGossipConfig {
  std::string node_name;
  // Tables whose entries live and die with their owner (ReplicatedTables).
  std::set<std::string> node_scoped_tables;
  // Retransmits of a queued entry: this times ceil(log10(N + 1)), as for
  // memberlist's own messages. (Before the push this was 6, so that an entry
  // gossip missed a node with did not wait a push/pull interval; with the
  // push in front, 4 gave the same convergence and ~15% less traffic while
  // changes flow.)
  int retransmit_mult = 4;
  // Peers each change is pushed to as soon as it is known here. Every node
  // pushes news on once, so a node is missed by all pushes with a chance of
  // about e^-fanout (gossip then brings it): 4 measured p99 72 ms at 100
  // nodes, 3 measured 380 ms (bench/gossip).
  std::size_t push_fanout = 4;
  // Largest anti-entropy message (a Sync, a repair, a join's copy, bucket
  // digests), further bounded by a quarter of memberlist's max_stream_size:
  // a receiver refuses a stream above that, and a message this size encodes
  // and applies without stalling the gossip loop.
  std::size_t sync_budget = 4 * 1024 * 1024;
  // Entries applied per turn of the io_context when a sync brings many.
  std::size_t apply_slice = 1000;
  // How long a sync waits for the peer's ack of its last message (applying
  // a budget's entries and sending the repair back take well under a
  // second); then it is given up until the next push/pull.
  std::chrono::milliseconds sync_ack_timeout = std::chrono::seconds(30);
};

class TableGossip final : public gossip::Delegate, public gossip::EventDelegate {
 public:
  // The tables must outlive this object; memberlist is attached once made
  // (it needs its delegates first).
  TableGossip(boost::asio::io_context& io, TableGossipConfig config, tables::ReplicatedTables& tables);
  TableGossip(const TableGossip&) = delete;
  TableGossip& operator=(const TableGossip&) = delete;

  void attach(gossip::Memberlist* ml) { ml_ = ml; }

  // Sends entries written here, or news learnt from a peer, to the cluster.
  void broadcast(const std::vector<tables::TableEntry>& entries);
  // Sends entries straight to one node over TCP: in messages within the
  // sync budget, one after the other.
  void send_to(const std::string& node, const std::vector<tables::TableEntry>& entries);
  // Sends a message straight to one node over TCP; `what` names it in the
  // line logged when that fails.
  void send(const std::string& node, const WeftMessage& message, std::string what,
            spdlog::level::level_enum failure_level = spdlog::level::warn);

  // Messages that are not the tables' own go to the owner's handler.
  void on_range_request(std::function<void(const RangeRequest&)> handler) { on_range_request_ = std::move(handler); }
  void on_log_request(std::function<void(const LogRequest&)> handler) { on_log_request_ = std::move(handler); }
  void on_log_reply(std::function<void(const LogReply&)> handler) { on_log_reply_ = std::move(handler); }

  // gossip::Delegate (SerfCompat's app): malformed input is logged and
  // dropped here.
  gossip::Bytes node_meta(std::size_t) override { return {}; }
  void notify_msg(gossip::ByteView msg) override;
  std::vector<gossip::Bytes> get_broadcasts(std::size_t overhead, std::size_t limit) override {
    return queue_.get(overhead, limit);
  }
  gossip::Bytes local_state(bool join) override;
  void merge_remote_state(gossip::ByteView state, bool join) override;
  // gossip::EventDelegate
  void notify_join(const gossip::Member& m) override;
  void notify_leave(const gossip::Member& m) override;
  void notify_update(const gossip::Member& m) override;

  // True while entries from a push/pull or a sync are being applied (a
  // table listener can tell anti-entropy from gossip).
  bool applying_anti_entropy() const { return in_anti_entropy_; }
  // The byte budget of one anti-entropy message (see TableGossipConfig).
  std::size_t sync_budget() const;
  std::size_t queued() const { return queue_.size(); }

  struct Counters {
    std::atomic<int> push_pulls{0};       // remote states merged (join or digest)
    std::atomic<int> syncs_sent{0};       // Sync messages sent (one per scope set or part)
    std::atomic<long> sync_entries_sent{0};
    std::atomic<int> syncs_refused{0};    // bucket digests from a peer a sync was still going to
    std::atomic<int> repairs_dropped{0};  // entries for a peer whose outbox was full
    std::atomic<long> pushed_packets{0};  // immediate UDP pushes
    std::atomic<int> members_gone{0};     // members reported dead or left
    // Table data in bytes: messages received, push/pull states sent and merged.
    std::atomic<std::uint64_t> sync_bytes{0};
  };
  const Counters& counters() const { return counters_; }

 private:
  void push_now();
  void handle_entries(std::vector<tables::TableEntry> entries);
  void merge_snapshot(std::vector<tables::TableEntry> entries);
  void handle_state_digest(const StateDigest& digest, bool join);
  void handle_owner_digests(const OwnerDigests& digests);
  void handle_bucket_digests(const BucketDigests& digests);
  void handle_sync(Sync sync);
  void repair_sync(const Sync& sync, const std::vector<tables::TableEntry>& theirs,
                   const std::vector<tables::TableEntry>& fresh);
  void send_next_sync(const std::string& peer);
  bool own_entry_at_or_below(std::uint64_t lamport) const;
  void send_next_entries(const std::string& peer);
  void queue_entries(const std::string& peer, const std::vector<tables::TableEntry>& entries, bool then_ack);
  void handle_sync_ack(const SyncAck& ack);
  std::vector<std::string> push_targets();

  // Entries applied in slices of config_.apply_slice, in arrival order;
  // `done` runs once all of a job's are applied (with those that were news).
  struct ApplyJob {
    std::vector<tables::TableEntry> entries;
    bool anti_entropy = false;
    std::function<void(ApplyJob&)> done;
    std::size_t next = 0;
    std::vector<tables::TableEntry> fresh;
  };
  void apply(ApplyJob job);
  void apply_slices();
  bool apply_slice(ApplyJob& job);

  // A sync this node is sending a peer, one message at a time (the next is
  // built from the current copy once the last is sent).
  struct OutgoingSync {
    std::vector<tables::ReplicatedTables::Scope> scopes;
    std::map<tables::ReplicatedTables::Scope, std::vector<tables::ReplicatedTables::Key>> keys;
    std::map<tables::ReplicatedTables::Scope, std::uint64_t> their_bytes;
    std::size_t scope = 0;  // the next to send
    std::size_t key = 0;    // within it, when it goes in parts
    // Armed while the peer's ack of the last Sync is awaited: a peer that
    // never answers does not block syncs with it for good.
    std::unique_ptr<boost::asio::steady_timer> ack_timer;
  };

  boost::asio::io_context& io_;
  TableGossipConfig config_;
  tables::ReplicatedTables& tables_;
  gossip::Memberlist* ml_ = nullptr;
  std::function<void(const RangeRequest&)> on_range_request_;
  std::function<void(const LogRequest&)> on_log_request_;
  std::function<void(const LogReply&)> on_log_reply_;
  gossip::BroadcastQueue queue_;
  std::set<std::string> weft_peers_;  // alive members speaking weft's tables
  std::set<std::string> gone_nodes_;  // seen dead or left
  struct Pending {
    tables::TableEntry entry;
    std::size_t encoded_size;  // alone in a message: an upper bound inside a batch
  };
  std::vector<Pending> to_push_;
  bool push_scheduled_ = false;
  bool in_anti_entropy_ = false;
  std::deque<ApplyJob> apply_queue_;
  bool apply_scheduled_ = false;
  std::map<std::string, OutgoingSync> outgoing_syncs_;  // by peer: at most one each
  // Repairs and gifts waiting to be sent, by peer: one message in flight
  // each, encoded when it goes.
  struct Outgoing {
    std::vector<tables::TableEntry> entries;
    bool ack = false;  // a SyncAck (after a sync's repair)
  };
  struct Outbox {
    std::deque<Outgoing> messages;
    std::size_t bytes = 0;  // encoded (bound) of the messages waiting
    bool sending = false;
  };
  std::map<std::string, Outbox> outboxes_;
  Counters counters_;
  // Expires with this object: a push posted just before it was destroyed
  // (the agent leaving the swarm) finds it gone and does nothing.
  std::shared_ptr<void> alive_ = std::make_shared<int>(0);
};

}  // namespace weft::control::cluster
