// Who may hand out what, without a central allocator (Weave Net's IPAM ring,
// in table form). A "space" is a number line: the address pool, the VNI
// range, or the addresses of one network's subnet. It is cut into ranges,
// each held by one node, recorded in the replicated "ranges" table. Only a
// range's holder writes its entry, so ownership never conflicts, and a node
// hands out numbers only from ranges it holds: nothing is given twice, even
// while the cluster is partitioned.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "control/ipam.h"
#include "control/tables/replicated_tables.h"

namespace weft::control::cluster {

inline constexpr const char* kRangesTable = "ranges";

struct HeldRange {
  std::string space;
  ipam::Range range;
  std::string holder;
};

class RangeOwnership {
 public:
  explicit RangeOwnership(tables::ReplicatedTables& tables) : tables_(tables) {}

  bool known(const std::string& space) const;
  std::vector<HeldRange> ranges(const std::string& space) const;
  ipam::RangeSet held_by(const std::string& space, const std::string& node) const;
  ipam::RangeSet held_locally(const std::string& space) const { return held_by(space, tables_.local_node()); }
  // The peer to ask for a donation: of the holders `eligible` accepts (live
  // peers), the one holding the most numbers.
  std::optional<std::string> richest_holder(const std::string& space,
                                            const std::function<bool(const std::string&)>& eligible) const;

  // Takes a whole space nobody holds yet (the node that made the cluster, or
  // the creator of a network). Returns the entries to broadcast; empty when
  // the space is already held.
  std::vector<tables::TableEntry> claim(const std::string& space, const ipam::Range& whole);

  // Gives `to` the bottom of the largest stretch in `free_here` (this node's
  // free numbers in `space`): `max_units` units of `unit` numbers (aligned to
  // `unit`), but never more than half of the stretch. Taking from the bottom
  // keeps a cluster's numbers low and Docker-like (10.0.0.0/24, VNI 4096)
  // whichever node asks first. Empty when there is nothing to spare.
  std::vector<tables::TableEntry> donate(const std::string& space, const std::string& to,
                                         const ipam::RangeSet& free_here, std::uint32_t unit = 1,
                                         std::uint64_t max_units = UINT64_MAX);

  // A node gone for good: every range it held becomes this node's.
  std::vector<tables::TableEntry> take_over(const std::string& gone_node);

 private:
  tables::TableEntry write(const std::string& space, const ipam::Range& range, const std::string& holder);
  tables::ReplicatedTables& tables_;
};

}  // namespace weft::control::cluster
