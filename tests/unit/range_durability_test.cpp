// Write-ahead ownership (issue 7): every change to what a node holds is
// persisted before it enters the tables (and so before it can be broadcast
// or sent), and a range received from a peer is persisted before the
// allocators may use it. The Persist hook here is a fake disk that records
// when it was written relative to the tables' own changes.
#include <gtest/gtest.h>

#include <stdexcept>

#include "control/cluster/range_ownership.h"
#include "control/network/network_manager.h"

namespace weft::control::cluster {
namespace {

using network::ipam::Ipv4;
using network::ipam::Range;
using network::ipam::RangeSet;
using tables::ReplicatedTables;
using tables::TableEntry;

Range r(std::uint32_t a, std::uint32_t b) { return Range{Ipv4{a}, Ipv4{b}}; }

// One node: its tables, a fake disk holding the last persisted ranges table,
// and a log of "persist" and "apply" (a change reaching the tables, which is
// what the agent broadcasts and syncs from) in the order they happened.
struct Node {
  explicit Node(const std::string& name) : tables(name), ownership(tables, [this](const auto& ranges) {
    if (fail_persist) throw std::runtime_error("disk full");
    log.push_back("persist");
    disk = ranges;
  }) {
    tables.subscribe([this](const auto& before, const auto& now) {
      log.push_back("apply");
      ownership.observe(before, now);
    });
  }

  // What the node holds of `space` after a crash: only the disk survives.
  RangeSet held_after_crash(const std::string& space) const {
    ReplicatedTables restarted(tables.local_node());
    restarted.merge(disk);
    return RangeOwnership(restarted).held_locally(space);
  }

  ReplicatedTables tables;
  RangeOwnership ownership;
  std::vector<TableEntry> disk;
  std::vector<std::string> log;
  bool fail_persist = false;
};

TEST(RangeDurabilityTest, ClaimIsPersistedBeforeItEntersTheTables) {
  Node a("a");
  auto claimed = a.ownership.claim("pool", r(0x0A000000, 0x0AFFFFFF));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(a.log, (std::vector<std::string>{"persist", "apply"}));
  EXPECT_EQ(a.disk, claimed);
  EXPECT_EQ(a.held_after_crash("pool").size(), 1u << 24);
  EXPECT_FALSE(a.ownership.unsaved());
}

TEST(RangeDurabilityTest, GiftIsPersistedByTheDonorBeforeItCanBeSent) {
  Node a("a");
  const auto claimed = a.ownership.claim("pool", r(0x0A000000, 0x0AFFFFFF));
  a.log.clear();
  auto gift = a.ownership.donate("pool", "b", RangeSet(r(0x0A000000, 0x0AFFFFFF)), 256, 16);
  ASSERT_FALSE(gift.empty());
  // One write ahead of all three re-cut entries.
  ASSERT_GE(a.log.size(), 2u);
  EXPECT_EQ(a.log.front(), "persist");
  EXPECT_EQ(std::count(a.log.begin(), a.log.end(), "persist"), 1);
  // A crash right after the gift was made (before or after it was sent):
  // the donor no longer holds it.
  const auto given = r(0x0A000000, 0x0A000000 + 16 * 256 - 1);
  EXPECT_FALSE(a.held_after_crash("pool").contains(given.first));
  EXPECT_EQ(a.held_after_crash("pool").size() + given.size(), 1u << 24);
  // And the donor's disk says who has it: if the donor died before sending
  // it, the repair anti-entropy sends once the donor is back carries it.
  ReplicatedTables restarted("a");
  restarted.merge(a.disk);
  EXPECT_TRUE(RangeOwnership(restarted).held_by("pool", "b").contains(given));
  ReplicatedTables b("b");
  b.merge(claimed);  // b had heard of the claim only
  ASSERT_TRUE(RangeOwnership(b).held_locally("pool").empty());
  b.merge(restarted.newer_than(b.snapshot()));
  EXPECT_TRUE(RangeOwnership(b).held_locally("pool").contains(given));
}

TEST(RangeDurabilityTest, ReceivedRangeIsPersistedBeforeItIsUsable) {
  Node a("a"), b("b");
  b.tables.merge(a.ownership.claim("vni", r(4096, 16777215)));
  EXPECT_TRUE(b.ownership.usable("vni").empty());
  b.log.clear();
  auto gift = a.ownership.donate("vni", "b", RangeSet(r(4096, 16777215)), 1, 256);
  b.tables.merge(gift);  // arrives by gossip: in the tables, not yet on disk
  EXPECT_TRUE(b.ownership.unsaved());
  EXPECT_TRUE(b.held_after_crash("vni").empty());
  const auto usable = b.ownership.usable("vni");
  EXPECT_EQ(usable.size(), 256u);
  ASSERT_FALSE(b.log.empty());
  EXPECT_EQ(b.log.back(), "persist");
  EXPECT_EQ(b.held_after_crash("vni").size(), 256u);
  // Nothing new: no second write.
  b.ownership.usable("vni");
  EXPECT_EQ(std::count(b.log.begin(), b.log.end(), "persist"), 1);
}

TEST(RangeDurabilityTest, OthersRangesNeedNoWrite) {
  Node a("a"), b("b"), c("c");
  auto claimed = a.ownership.claim("vni", r(4096, 16777215));
  c.tables.merge(claimed);
  c.tables.merge(a.ownership.donate("vni", "b", RangeSet(r(4096, 16777215)), 1, 256));
  EXPECT_FALSE(c.ownership.unsaved());
  c.ownership.usable("vni");
  EXPECT_EQ(std::count(c.log.begin(), c.log.end(), "persist"), 0);
}

TEST(RangeDurabilityTest, TakeOverIsPersistedBeforeItEntersTheTables) {
  Node a("a"), b("b");
  auto claimed = b.ownership.claim("pool", r(0x0A000000, 0x0AFFFFFF));
  a.tables.merge(claimed);
  a.ownership.mark_saved();
  a.log.clear();
  auto taken = a.ownership.take_over("b");
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(a.log, (std::vector<std::string>{"persist", "apply"}));
  EXPECT_EQ(a.held_after_crash("pool").size(), 1u << 24);
}

TEST(RangeDurabilityTest, NothingChangesWhenTheWriteFails) {
  Node a("a");
  a.fail_persist = true;
  EXPECT_THROW(a.ownership.claim("pool", r(0x0A000000, 0x0AFFFFFF)), std::runtime_error);
  EXPECT_FALSE(a.ownership.known("pool"));
  EXPECT_TRUE(a.log.empty());
  a.fail_persist = false;
  a.ownership.claim("pool", r(0x0A000000, 0x0AFFFFFF));
  a.fail_persist = true;
  const auto before = a.tables.snapshot();
  EXPECT_THROW(a.ownership.donate("pool", "b", RangeSet(r(0x0A000000, 0x0AFFFFFF)), 256, 16), std::runtime_error);
  EXPECT_EQ(a.tables.snapshot(), before);
  EXPECT_TRUE(a.ownership.held_by("pool", "b").empty());
}

TEST(RangeDurabilityTest, UnsavedGiftIsNotUsableWhileTheWriteFails) {
  Node a("a"), b("b");
  b.tables.merge(a.ownership.claim("vni", r(4096, 16777215)));
  b.tables.merge(a.ownership.donate("vni", "b", RangeSet(r(4096, 16777215)), 1, 256));
  b.fail_persist = true;
  EXPECT_THROW(b.ownership.usable("vni"), std::runtime_error);
  EXPECT_TRUE(b.ownership.unsaved());
  b.fail_persist = false;
  EXPECT_EQ(b.ownership.usable("vni").size(), 256u);
}

TEST(RangeDurabilityTest, CommittedEntriesAdvanceTheClockLikePut) {
  Node a("a");
  a.tables.put("networks", "n1", "{}");
  auto claimed = a.ownership.claim("vni", r(4096, 16777215));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].lamport, 2u);
  EXPECT_EQ(claimed[0].owner, "a");
  auto gift = a.ownership.donate("vni", "b", RangeSet(r(4097, 16777215)), 1, 256);
  ASSERT_EQ(gift.size(), 3u);
  EXPECT_EQ(gift[0].lamport, 3u);
  EXPECT_EQ(gift[2].lamport, 5u);
  EXPECT_EQ(a.tables.put("networks", "n2", "{}").lamport, 6u);
  // A peer takes every entry as news.
  ReplicatedTables peer("p");
  EXPECT_EQ(peer.merge(a.tables.snapshot()), a.tables.snapshot().size());
}

// A network's creator keeps its lowest addresses whoever asks first: on a
// fresh /24 its first service still gets .2, as in Docker.
TEST(RangeDurabilityTest, NetworkAddressesAreGivenFromTheTopPoolFromTheBottom) {
  Node a("a");
  const std::string space = std::string(weft::control::network::kNetworkSpacePrefix) + "abc";
  a.ownership.claim(space, r(0x0A000002, 0x0A0000FE));  // 10.0.0.2 - 10.0.0.254
  a.ownership.donate(space, "b", RangeSet(r(0x0A000002, 0x0A0000FE)), 1, 64);
  const auto given = a.ownership.held_by(space, "b");
  ASSERT_EQ(given.size(), 64u);
  EXPECT_TRUE(given.contains(r(0x0A0000FE - 63, 0x0A0000FE)));
  EXPECT_TRUE(a.ownership.held_locally(space).contains(r(0x0A000002, 0x0A000002 + 100)));

  Node c("c");
  c.ownership.claim("pool", r(0x0A000000, 0x0AFFFFFF));
  c.ownership.donate("pool", "d", RangeSet(r(0x0A000000, 0x0AFFFFFF)), 256, 1);
  EXPECT_TRUE(c.ownership.held_by("pool", "d").contains(r(0x0A000000, 0x0A0000FF)));
}

}  // namespace
}  // namespace weft::control::cluster
