// The replicated tables hold values packed (control/tables/packed_value.h):
// smaller for the records they carry, and every byte handed out is the byte
// that was put, whatever the value.
#include "control/tables/packed_value.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "control/model/record_json.h"
#include "control/tables/replicated_tables.h"
#include "tests/support/addresses.h"
#include "tests/support/sample_endpoint.h"

namespace weft::control::tables {
namespace {

std::string endpoint_json(const std::string& id) {
  return endpoint_record(
             testing::sample_remote_endpoint(id, std::string(64, '5'), {"cache", std::string(200, 'a')}),
             testing::ipv4("198.18.0.2"))
      .dump();
}

std::string hex_id(std::mt19937_64& rng) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 64; ++i) id += kHex[rng() % 16];
  return id;
}

// Values a peer might send: the records' JSON, other JSON layouts, bytes
// that are no JSON at all.
std::vector<std::string> odd_values(std::vector<std::string> ids = {}) {
  std::mt19937_64 rng(7);
  std::string random_bytes(600, '\0');
  for (auto& c : random_bytes) c = static_cast<char>(rng());
  std::string nuls(300, '\0');
  nuls[17] = 'x';
  while (ids.size() < 4) ids.push_back(hex_id(rng));
  return {"",
          "{}",
          std::string(63, 'a'),
          std::string(64, 'a'),
          std::string(100000, 'z'),
          random_bytes,
          nuls,
          endpoint_json(ids[0]),
          "{ \"id\" : \"" + ids[1] + "\",\n  \"name\": \"caf\xc3\xa9\", \"ip\": \"10.0.0.1\" }",
          endpoint_json(ids[2]) + " ",
          "\xff\xfe" + endpoint_json(ids[3])};
}

TEST(PackedTableValue, AnEndpointRecordIsHeldInLessThanHalfAndComesBackExact) {
  std::mt19937_64 rng(1);
  const auto text = endpoint_json(hex_id(rng));
  ASSERT_GT(text.size(), 400u);
  const auto v = PackedValue::pack(text);
  EXPECT_TRUE(v.packed());
  EXPECT_LT(v.held_bytes(), text.size() / 2);
  EXPECT_EQ(v.size(), text.size());
  EXPECT_EQ(v.text(), text);
}

TEST(PackedTableValue, AnyBytesComeBackExact) {
  for (const auto& text : odd_values()) {
    const auto v = PackedValue::pack(text);
    EXPECT_EQ(v.size(), text.size());
    EXPECT_EQ(v.text(), text) << "value of " << text.size() << " bytes";
    EXPECT_LE(v.held_bytes(), text.size());
  }
}

TEST(PackedTableValue, ShortAndIncompressibleValuesAreHeldAsTheyAre) {
  std::mt19937_64 rng(3);
  std::string random_bytes(600, '\0');
  for (auto& c : random_bytes) c = static_cast<char>(rng());
  for (const std::string& text : {std::string("{}"), std::string(63, 'a'), random_bytes}) {
    const auto v = PackedValue::pack(text);
    EXPECT_FALSE(v.packed());
    EXPECT_EQ(v.held_bytes(), text.size());
    EXPECT_EQ(v.text(), text);
  }
}

TEST(PackedTableValue, ContextTheValueRepeatsIsHeldInFewBytes) {
  std::mt19937_64 rng(5);
  const auto id = hex_id(rng);
  const auto text = endpoint_json(id);
  const auto alone = PackedValue::pack(text);
  const auto with_key = PackedValue::pack(text, {"node2", id});
  EXPECT_LT(with_key.held_bytes() + 25, alone.held_bytes());
  EXPECT_EQ(with_key.text({"node2", id}), text);
  EXPECT_EQ(alone.text(), text);
}

TEST(PackedTableValue, AHeaderIsKeptWithThePackedFormOnly) {
  std::mt19937_64 rng(8);
  const auto id = hex_id(rng);
  const auto text = endpoint_json(id);
  const std::string header("\x01\x00\x00\x00\xff", 5);
  const auto v = PackedValue::pack(text, {id}, header);
  ASSERT_TRUE(v.packed());
  EXPECT_EQ(v.header(), header);
  EXPECT_EQ(v.text({id}), text);
  EXPECT_EQ(PackedValue(v).header(), header);
  // Held as it is: no header.
  const auto raw = PackedValue::pack("{}", {}, header);
  EXPECT_FALSE(raw.packed());
  EXPECT_TRUE(raw.header().empty());
  EXPECT_EQ(raw.text(), "{}");
}

TEST(PackedTableValue, CopiesOwnTheirBytes) {
  std::mt19937_64 rng(4);
  const auto text = endpoint_json(hex_id(rng));
  auto original = std::make_unique<PackedValue>(PackedValue::pack(text));
  PackedValue copy(*original);
  PackedValue assigned;
  assigned = *original;
  original.reset();
  EXPECT_EQ(copy.text(), text);
  EXPECT_EQ(assigned.text(), text);
}

// Through every way the tables hand an entry out: the value is the text
// that was put or applied, byte for byte. The records' ids are their keys
// and "node2" (their node) owns the applied ones, as in the agent, so the
// values refer to the context they are packed with.
TEST(ReplicatedTablesPackedValues, EveryAccessHandsOutTheValueAsPut) {
  std::mt19937_64 rng(6);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(hex_id(rng));
  const auto values = odd_values(ids);
  // values[7..10] carry ids[0..3].
  auto key_of = [&](std::size_t i) -> std::string {
    if (i >= 7) return ids[i - 7];
    std::string key = "k";
    key += std::to_string(i);  // (not "k" + ...: a false -Wrestrict in GCC 12)
    return key;
  };
  ReplicatedTables tables("n1", {"endpoints"});
  std::vector<std::string> heard;
  tables.subscribe([&](const auto&, const auto& now) {
    if (now) heard.push_back(now->value);
  });
  std::vector<TableEntry> put;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::string key = key_of(i);
    if (i % 2)
      put.push_back(tables.put("endpoints", key, values[i]));
    else {
      TableEntry e{.table = "endpoints", .key = key, .owner = "node2", .lamport = i + 1, .deleted = false, .value = values[i]};
      ASSERT_TRUE(tables.apply(e));
      put.push_back(e);
    }
  }
  for (const auto& e : put) {
    EXPECT_EQ(tables.get(e.table, e.key), e);
    EXPECT_EQ(tables.find(e.table, e.key), e);
  }
  std::map<std::string, TableEntry> by_key;
  for (const auto& e : put) by_key[e.key] = e;
  auto expect_all = [&](const std::vector<TableEntry>& got) {
    ASSERT_EQ(got.size(), put.size());
    for (const auto& e : got) EXPECT_EQ(e, by_key.at(e.key));
  };
  expect_all(tables.snapshot());
  expect_all(tables.entries("endpoints"));
  expect_all(tables.table_snapshot("endpoints"));
  expect_all(tables.newer_than({}));
  std::vector<TableEntry> seen;
  tables.for_each([&](const EntryView& e) {
    EXPECT_EQ(e.value_size(), by_key.at(e.key).value.size());
    seen.push_back(e.entry());
  });
  expect_all(seen);
  ASSERT_EQ(heard.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) EXPECT_EQ(heard[i], values[i]);

  // A tombstone keeps the value it had; the listener's `before` is the old text.
  std::optional<TableEntry> before;
  tables.subscribe([&](const auto& b, const auto&) { before = b; });
  auto tomb = tables.remove("endpoints", key_of(9));
  ASSERT_TRUE(tomb);
  EXPECT_EQ(tomb->value, values[9]);
  ASSERT_TRUE(before);
  EXPECT_EQ(before->value, values[9]);
  EXPECT_EQ(tables.find("endpoints", key_of(9))->value, values[9]);
  // Another owner's entry removed here: the tombstone is this node's.
  tomb = tables.remove("endpoints", key_of(10));
  ASSERT_TRUE(tomb);
  EXPECT_EQ(tomb->owner, "n1");
  EXPECT_EQ(tomb->value, values[10]);
  EXPECT_EQ(tables.find("endpoints", key_of(10)), tomb);
  EXPECT_EQ(tables.newer_than({}).size(), values.size());
}

}  // namespace
}  // namespace weft::control::tables
