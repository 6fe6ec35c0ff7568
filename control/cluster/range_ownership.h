// Who may hand out what, without a central allocator (Weave Net's IPAM ring,
// in table form). A "space" is a number line: the address pool, the VNI
// range, or the addresses of one network's subnet. It is cut into ranges,
// each held by one node, recorded in the replicated "ranges" table. Only a
// range's holder writes its entry, so ownership never conflicts, and a node
// hands out numbers only from ranges it holds: nothing is given twice, even
// while the cluster is partitioned.
//
// Durability (write-ahead): whatever changes what this node holds reaches
// the disk before anyone can act on it. A claim, a donation given and a
// take-over are handed to the Persist hook (which must fsync) before they
// enter the tables, so before they can be broadcast; a range a peer gives
// this node is persisted before usable() hands it to the allocators. The
// disk is thus always at least as far as anything this node said or used:
//  - safety, kept at every crash point: no number is ever held by two
//    nodes. A donor that restarts knows what it gave away; a node that
//    restarts never uses a range it had not saved, nor re-claims a space it
//    may have told anyone about.
//  - liveness, as far as a crash allows: a claim or gift saved but not yet
//    sent is in the saver's tables, and anti-entropy carries it to everyone
//    once the saver is back (meanwhile a recipient asks another live
//    holder). A gift received but not yet saved is not lost either: the
//    donor saved it first, and gossip brings it again after the restart.
//    Lost for good is only what a node held when its disk is lost; `weft
//    node rm` then hands it to a live node.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "control/network/ipam.h"
#include "control/tables/replicated_tables.h"

namespace weft::control::cluster {

inline constexpr const char* kRangesTable = "ranges";

struct HeldRange {
  std::string space;
  network::ipam::Range range;
  std::string holder;
};

class RangeOwnership {
 public:
  // Makes `ranges` durable: the whole ranges table (tombstones included) as
  // it is about to be. Throws when it cannot; the change is then not made.
  using Persist = std::function<void(const std::vector<tables::TableEntry>& ranges)>;

  // Without a Persist hook nothing is saved (tests of the ring alone).
  explicit RangeOwnership(tables::ReplicatedTables& tables, Persist persist = {})
      : tables_(tables), persist_(std::move(persist)) {}

  bool known(const std::string& space) const;
  std::vector<HeldRange> ranges(const std::string& space) const;
  network::ipam::RangeSet held_by(const std::string& space, const std::string& node) const;
  network::ipam::RangeSet held_locally(const std::string& space) const { return held_by(space, tables_.local_node()); }
  // The peer to ask for a donation: of the holders `eligible` accepts (live
  // peers), the one holding the most numbers.
  std::optional<std::string> richest_holder(const std::string& space,
                                            const std::function<bool(const std::string&)>& eligible) const;

  // Takes a whole space nobody holds yet (the node that made the cluster, or
  // the creator of a network). Returns the entries to broadcast, already
  // persisted; empty when the space is already held.
  std::vector<tables::TableEntry> claim(const std::string& space, const network::ipam::Range& whole);

  // Gives `to` the bottom of the largest stretch in `free_here` (this node's
  // free numbers in `space`): `max_units` units of `unit` numbers (aligned to
  // `unit`), but never more than half of the stretch. Taking from the bottom
  // keeps a cluster's numbers low and Docker-like (10.0.0.0/24, VNI 4096)
  // whichever node asks first. A network's addresses (kNetworkSpacePrefix)
  // are given from the top instead: its creator keeps .2 and up. Empty when there is nothing to spare. The
  // gift is persisted before it is returned (and so before it can be sent).
  std::vector<tables::TableEntry> donate(const std::string& space, const std::string& to,
                                         const network::ipam::RangeSet& free_here, std::uint32_t unit = 1,
                                         std::uint64_t max_units = UINT64_MAX);

  // A node gone for good: every range it held becomes this node's
  // (persisted before it is returned).
  std::vector<tables::TableEntry> take_over(const std::string& gone_node);

  // A change to the ranges table that did not come through this class (a
  // peer's entry): remembered as unsaved when it gives this node a range or
  // takes one from it. Called by the tables' listener.
  void observe(const std::optional<tables::TableEntry>& before, const std::optional<tables::TableEntry>& now);
  // What the allocators may hand out of `space`: the ranges held here, after
  // persisting any unsaved change observed. Throws when that fails.
  network::ipam::RangeSet usable(const std::string& space);
  // The tables were just loaded from disk: what they hold is already saved.
  void mark_saved() { unsaved_ = false; }
  bool unsaved() const { return unsaved_; }

 private:
  tables::TableEntry entry(const std::string& space, const network::ipam::Range& range, const std::string& holder,
                           std::uint64_t lamport) const;
  // Persists the ranges table with `planned` (this node's next writes) in
  // it, then applies them: write-ahead.
  std::vector<tables::TableEntry> commit(std::vector<tables::TableEntry> planned);
  bool is_mine(const std::optional<tables::TableEntry>& e) const;

  tables::ReplicatedTables& tables_;
  Persist persist_;
  bool unsaved_ = false;
};

}  // namespace weft::control::cluster
