// Maglev table construction (user space, no root needed).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <stdexcept>

#include "dataplane/lb/maglev.h"

namespace weft::dataplane::lb {
namespace {

std::vector<std::uint32_t> ids(std::uint32_t first, std::uint32_t count) {
  std::vector<std::uint32_t> v(count);
  std::iota(v.begin(), v.end(), first);
  return v;
}

double changed_fraction(const std::vector<std::uint32_t>& a, const std::vector<std::uint32_t>& b) {
  std::size_t changed = 0;
  for (std::size_t i = 0; i < a.size(); ++i) changed += a[i] != b[i];
  return static_cast<double>(changed) / static_cast<double>(a.size());
}

TEST(LbMaglevTest, PrimeSizesOnly) {
  EXPECT_TRUE(is_prime(16381));
  EXPECT_TRUE(is_prime(65537));
  EXPECT_FALSE(is_prime(16384));
  EXPECT_FALSE(is_prime(1));
  auto backends = ids(1, 3);
  EXPECT_THROW(build_maglev_table(backends, 16384), std::invalid_argument);
  EXPECT_NO_THROW(build_maglev_table(backends, 16381));
}

TEST(LbMaglevTest, RejectsReservedAndDuplicateIds) {
  std::vector<std::uint32_t> zero{0, 1};
  std::vector<std::uint32_t> dup{3, 3};
  EXPECT_THROW(build_maglev_table(zero, 251), std::invalid_argument);
  EXPECT_THROW(build_maglev_table(dup, 251), std::invalid_argument);
}

TEST(LbMaglevTest, NoBackendsGivesAnEmptyTable) {
  auto table = build_maglev_table({}, 251);
  ASSERT_EQ(table.size(), 251u);
  EXPECT_TRUE(std::all_of(table.begin(), table.end(), [](std::uint32_t v) { return v == 0; }));
}

TEST(LbMaglevTest, EverySlotFilledAndBalancedWithinOne) {
  auto backends = ids(100, 10);
  auto table = build_maglev_table(backends, kDefaultMaglevTableSize);
  std::map<std::uint32_t, std::size_t> share;
  for (std::uint32_t id : table) share[id]++;
  ASSERT_EQ(share.size(), 10u);  // no zero slot, only our ids
  std::size_t lo = table.size(), hi = 0;
  for (auto& [id, n] : share) {
    EXPECT_TRUE(std::find(backends.begin(), backends.end(), id) != backends.end());
    lo = std::min(lo, n);
    hi = std::max(hi, n);
  }
  // Round-robin population: every backend takes one slot per round.
  EXPECT_LE(hi - lo, 1u);
}

TEST(LbMaglevTest, OrderOfBackendsDoesNotMatter) {
  std::vector<std::uint32_t> a{5, 9, 2, 7};
  std::vector<std::uint32_t> b{7, 2, 9, 5};
  EXPECT_EQ(build_maglev_table(a, 1021), build_maglev_table(b, 1021));
}

// The disruption bound of issue 9: removing 1 of 10 backends moves its
// ~1/10 of the slots plus a little slack, not a reshuffle.
TEST(LbMaglevTest, RemovingOneOfTenMovesAboutATenth) {
  auto ten = ids(1, 10);
  auto before = build_maglev_table(ten, kDefaultMaglevTableSize);
  for (std::uint32_t removed : ten) {
    std::vector<std::uint32_t> nine;
    std::copy_if(ten.begin(), ten.end(), std::back_inserter(nine),
                 [&](std::uint32_t id) { return id != removed; });
    auto after = build_maglev_table(nine, kDefaultMaglevTableSize);
    double moved = changed_fraction(before, after);
    EXPECT_LE(moved, 0.10 + 0.03) << "removing backend " << removed;
    // Every slot of the removed backend had to move.
    for (std::size_t i = 0; i < before.size(); ++i) {
      if (before[i] == removed) {
        ASSERT_NE(after[i], removed);
      }
    }
  }
}

TEST(LbMaglevTest, AddingOneToTenMovesAboutAnEleventh) {
  auto ten = ids(1, 10);
  auto eleven = ids(1, 11);
  double moved = changed_fraction(build_maglev_table(ten, kDefaultMaglevTableSize),
                                  build_maglev_table(eleven, kDefaultMaglevTableSize));
  EXPECT_LE(moved, 1.0 / 11 + 0.03);
}

// Tables follow their backends: ~100 slots each when built, kept while
// they hold 50 each, so a backend more or less does not reshuffle them.
TEST(LbMaglevTest, TableSizeFollowsTheBackendsWithHysteresis) {
  constexpr std::uint32_t kMax = kDefaultMaglevTableSize;
  EXPECT_EQ(maglev_table_size_for(0, 1021, kMax), 0u);
  EXPECT_EQ(maglev_table_size_for(1, 0, kMax), 251u);
  EXPECT_EQ(maglev_table_size_for(3, 0, kMax), 509u);
  EXPECT_EQ(maglev_table_size_for(10, 0, kMax), 1021u);
  EXPECT_EQ(maglev_table_size_for(11, 0, kMax), 2039u);
  EXPECT_EQ(maglev_table_size_for(160, 0, kMax), 16381u);
  EXPECT_EQ(maglev_table_size_for(1000, 0, kMax), kMax);  // capped
  EXPECT_EQ(maglev_table_size_for(10, 0, 509), 509u);     // the cap, a prime
  // Kept: 9 or 11 or 20 backends on 1021 slots.
  EXPECT_EQ(maglev_table_size_for(9, 1021, kMax), 1021u);
  EXPECT_EQ(maglev_table_size_for(11, 1021, kMax), 1021u);
  EXPECT_EQ(maglev_table_size_for(20, 1021, kMax), 1021u);
  // Grown below 50 slots a backend, shrunk when 4 tiers too big.
  EXPECT_EQ(maglev_table_size_for(21, 1021, kMax), 4093u);
  EXPECT_EQ(maglev_table_size_for(12, 16381, kMax), 16381u);  // 3 tiers over 2039
  EXPECT_EQ(maglev_table_size_for(2, 16381, kMax), 251u);
  EXPECT_EQ(maglev_table_size_for(3, 16381, 509), 509u);  // over a smaller cap
}

}  // namespace
}  // namespace weft::dataplane::lb
