#include "control/tables/slot_key.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace weft::control::tables {
namespace {

std::string random_hex(std::mt19937_64& rng, std::size_t n, const char* digits = "0123456789abcdef") {
  std::string s(n, '0');
  for (auto& c : s) c = digits[rng() % 16];
  return s;
}

// Keys as the tables meet them: ids, and the rest (names, ranges, ids with
// a digit that does not pack), sharing prefixes so the order is tested
// where it is close.
std::vector<std::string> mixed_keys() {
  std::mt19937_64 rng(7);
  std::vector<std::string> keys{"", "a", "ep1", "10.0.0.0/24", std::string(64, '0'), std::string(64, 'f'),
                                std::string(63, 'f'), std::string(65, '0')};
  for (int i = 0; i < 200; ++i) {
    const auto id = random_hex(rng, 64);
    keys.push_back(id);
    keys.push_back(id.substr(0, 1 + rng() % 63));          // a prefix of it
    keys.push_back(id + "x");                               // longer
    keys.push_back(random_hex(rng, 64, "0123456789ABCDEF"));  // upper case: held as text
    auto odd = id;
    odd[rng() % 64] = "g-/Z"[rng() % 4];
    keys.push_back(odd);
  }
  return keys;
}

int sign(int v) { return (v > 0) - (v < 0); }

TEST(SlotKeyTest, IdsArePackedAndEverythingComesBackAsItWas) {
  for (const auto& text : mixed_keys()) {
    const SlotKey key(text);
    EXPECT_EQ(key.str(), text);
    EXPECT_EQ(key.size(), text.size());
    const bool id = text.size() == 64 && text.find_first_not_of("0123456789abcdef") == std::string::npos;
    EXPECT_EQ(key.packed(), id) << text;
    EXPECT_EQ(key.heap_bytes(), id ? 0 : text.size());
  }
}

TEST(SlotKeyTest, OrdersAsTheTextsDo) {
  const auto keys = mixed_keys();
  std::vector<SlotKey> held;
  for (const auto& k : keys) held.emplace_back(k);  // (moved as the vector grows)
  for (std::size_t i = 0; i < keys.size(); ++i)
    for (std::size_t j = 0; j < keys.size(); j += 7) {
      const int want = sign(keys[i].compare(keys[j]));
      ASSERT_EQ(held[i].compare(held[j]), want) << keys[i] << " vs " << keys[j];
      ASSERT_EQ(held[i].compare(keys[j]), want) << keys[i] << " vs " << keys[j];
    }
}

TEST(SlotKeyTest, MovesKeepTheText) {
  for (const auto& text : {std::string("ep1"), std::string(64, 'a'), std::string(100, 'z')}) {
    SlotKey a(text);
    SlotKey b(std::move(a));
    EXPECT_EQ(b.str(), text);
    SlotKey c("other");
    c = std::move(b);
    EXPECT_EQ(c.str(), text);
  }
}

}  // namespace
}  // namespace weft::control::tables
