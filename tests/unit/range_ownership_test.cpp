#include <gtest/gtest.h>

#include "control/cluster/range_ownership.h"

namespace weft::control::cluster {
namespace {

using network::ipam::Ipv4;
using network::ipam::Range;
using network::ipam::RangeSet;
using tables::ReplicatedTables;

Range r(std::uint32_t a, std::uint32_t b) { return Range{Ipv4{a}, Ipv4{b}}; }

TEST(RangeOwnershipTest, ClaimOnlyAnUnheldSpace) {
  ReplicatedTables ta("a"), tb("b");
  RangeOwnership a(ta), b(tb);
  auto claimed = a.claim("vni", r(4096, 16777215));
  ASSERT_EQ(claimed.size(), 1u);
  tb.merge(claimed);
  EXPECT_TRUE(b.claim("vni", r(4096, 5000)).empty());
  EXPECT_EQ(b.held_by("vni", "a").size(), 16777215u - 4096 + 1);
  EXPECT_EQ(b.richest_holder("vni", [](const std::string& n) { return n != "b"; }), "a");
}

TEST(RangeOwnershipTest, DonationSplitsFreeSpaceAndNothingIsHeldTwice) {
  ReplicatedTables ta("a"), tb("b"), tc("c");
  RangeOwnership a(ta), b(tb), c(tc);
  auto all = [&](const std::vector<tables::TableEntry>& es) {
    ta.merge(es);
    tb.merge(es);
    tc.merge(es);
  };
  all(a.claim("net:x", r(2, 254)));
  // a has handed out 2..9: only 10..254 is free to give.
  RangeSet free_a;
  free_a.add(r(10, 254));
  auto gift = a.donate("net:x", "b", free_a);
  ASSERT_FALSE(gift.empty());
  all(gift);
  const auto held_a = a.held_locally("net:x");
  const auto held_b = b.held_locally("net:x");
  EXPECT_TRUE(held_a.contains(r(2, 9)));
  EXPECT_GT(held_b.size(), 100u);
  EXPECT_EQ(held_a.size() + held_b.size(), 253u);
  for (const auto& range : held_b.ranges()) EXPECT_FALSE(held_a.contains(range.first));
  // b passes half of its share on to c.
  all(b.donate("net:x", "c", held_b));
  EXPECT_EQ(a.held_by("net:x", "a").size() + a.held_by("net:x", "b").size() + a.held_by("net:x", "c").size(), 253u);
  for (const auto& range : tc.entries(kRangesTable)) EXPECT_FALSE(range.value.empty());
  EXPECT_EQ(ta.digest(), tc.digest());
}

TEST(RangeOwnershipTest, DonationRespectsUnitsAndRefusesSingleUnit) {
  ReplicatedTables ta("a");
  RangeOwnership a(ta);
  a.claim("pool", r(0x0A000000, 0x0A0003FF));  // 10.0.0.0/22: four /24s
  RangeSet free;
  free.add(r(0x0A000100, 0x0A0003FF));  // the first /24 is in use
  auto gift = a.donate("pool", "b", free, 256);
  ASSERT_FALSE(gift.empty());
  auto held_b = a.held_by("pool", "b");
  ASSERT_EQ(held_b.ranges().size(), 1u);
  EXPECT_EQ(held_b.ranges()[0].first.value % 256, 0u);
  EXPECT_EQ(held_b.size() % 256, 0u);
  RangeSet one_unit;
  one_unit.add(r(0x0A000100, 0x0A0001FF));
  EXPECT_TRUE(a.donate("pool", "c", one_unit, 256).empty());
}

TEST(RangeOwnershipTest, GiftsComeFromTheBottomAndAreCapped) {
  ReplicatedTables ta("a");
  RangeOwnership a(ta);
  a.claim("vni", r(4096, 16777215));
  RangeSet free;
  free.add(r(4097, 16777215));  // 4096 is in use
  ASSERT_FALSE(a.donate("vni", "b", free, 1, 256).empty());
  auto held_b = a.held_by("vni", "b");
  ASSERT_EQ(held_b.ranges().size(), 1u);
  EXPECT_EQ(held_b.ranges()[0], r(4097, 4097 + 255));
  EXPECT_TRUE(a.held_locally("vni").contains(Ipv4{4096}));
  EXPECT_TRUE(a.held_locally("vni").contains(Ipv4{4097 + 256}));
}

TEST(RangeOwnershipTest, TakeOverOfAGoneNode) {
  ReplicatedTables ta("a"), tb("b");
  RangeOwnership a(ta), b(tb);
  tb.merge(a.claim("vni", r(4096, 8191)));
  EXPECT_EQ(b.take_over("a").size(), 1u);
  EXPECT_EQ(b.held_locally("vni").size(), 4096u);
  EXPECT_TRUE(b.held_by("vni", "a").empty());
}

}  // namespace
}  // namespace weft::control::cluster
