#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "control/tables/replicated_tables.h"

namespace weft::control::tables {
namespace {

using namespace std::chrono_literals;

TEST(ReplicatedTablesTest, LocalPutGetRemove) {
  ReplicatedTables t("a");
  auto e = t.put("endpoints", "ep1", "{}");
  EXPECT_EQ(e.owner, "a");
  EXPECT_EQ(e.lamport, 1u);
  ASSERT_TRUE(t.get("endpoints", "ep1"));
  auto tomb = t.remove("endpoints", "ep1");
  ASSERT_TRUE(tomb);
  EXPECT_TRUE(tomb->deleted);
  EXPECT_FALSE(t.get("endpoints", "ep1"));
  EXPECT_FALSE(t.remove("endpoints", "ep1"));
  EXPECT_EQ(t.snapshot().size(), 1u);  // the tombstone stays
}

TEST(ReplicatedTablesTest, HigherLamportWinsTiesByOwner) {
  ReplicatedTables t("c");
  EXPECT_TRUE(t.apply({"n", "k", "a", 5, false, "v-a5"}));
  EXPECT_FALSE(t.apply({"n", "k", "b", 4, false, "v-b4"}));
  EXPECT_TRUE(t.apply({"n", "k", "b", 5, false, "v-b5"}));
  EXPECT_FALSE(t.apply({"n", "k", "a", 5, false, "v-a5"}));
  EXPECT_EQ(t.get("n", "k")->value, "v-b5");
  EXPECT_GE(t.clock(), 5u);
  EXPECT_EQ(t.put("n", "k2", "x").lamport, 6u);  // the clock moved past what it saw
}

TEST(ReplicatedTablesTest, LateBroadcastCannotResurrectDeletedEntry) {
  ReplicatedTables t("b");
  TableEntry created{"endpoints", "e", "a", 1, false, "v"};
  TableEntry deleted{"endpoints", "e", "a", 2, true, "v"};
  t.apply(deleted);
  EXPECT_FALSE(t.apply(created));
  EXPECT_FALSE(t.get("endpoints", "e"));
}

TEST(ReplicatedTablesTest, ReplicasConvergeWhateverTheOrder) {
  std::vector<TableEntry> history;
  ReplicatedTables a("a"), b("b");
  history.push_back(a.put("networks", "n1", "1"));
  history.push_back(b.put("networks", "n1", "2"));
  history.push_back(a.put("networks", "n2", "x"));
  history.push_back(*a.remove("networks", "n2"));
  history.push_back(b.put("endpoints", "e1", "y"));
  std::mt19937 rng(7);
  std::vector<std::uint64_t> digests;
  for (int run = 0; run < 20; ++run) {
    auto order = history;
    std::shuffle(order.begin(), order.end(), rng);
    ReplicatedTables r("r");
    r.merge(order);
    r.merge(order);  // duplicates change nothing
    digests.push_back(r.digest());
    EXPECT_FALSE(r.get("networks", "n2"));
    EXPECT_TRUE(r.get("endpoints", "e1"));
  }
  EXPECT_TRUE(std::all_of(digests.begin(), digests.end(), [&](auto d) { return d == digests[0]; }));
}

TEST(ReplicatedTablesTest, ListenersSeeLiveChangesOnly) {
  ReplicatedTables t("a");
  std::vector<std::string> seen;
  t.subscribe([&](const auto& before, const auto& now) {
    seen.push_back(std::string(before ? "had" : "new") + "/" + (now ? now->value : "gone"));
  });
  t.put("n", "k", "1");
  t.apply({"n", "k", "z", 10, false, "2"});
  t.apply({"n", "k", "z", 11, true, "2"});
  t.apply({"n", "k", "z", 12, true, "2"});
  EXPECT_EQ(seen, (std::vector<std::string>{"new/1", "had/2", "had/gone"}));
}

TEST(ReplicatedTablesTest, DeadNodeIsWithdrawnAndComesBackWithFreshTimes) {
  ReplicatedTables origin("a", {"endpoints"}), peer("b", {"endpoints"});
  peer.merge({origin.put("endpoints", "e1", "v1"), origin.put("endpoints", "e2", "v2"),
              origin.put("networks", "n1", "net")});
  peer.put("endpoints", "mine", "m");
  int removals = 0;
  peer.subscribe([&](const auto&, const auto& now) { removals += !now; });
  peer.withdraw_node("a");
  EXPECT_EQ(removals, 2);
  EXPECT_EQ(peer.entries("endpoints").size(), 1u);
  EXPECT_TRUE(peer.get("networks", "n1")) << "networks outlive the node that made them";
  // A late copy of the old entry stays out...
  EXPECT_FALSE(peer.apply({"endpoints", "e1", "a", 1, false, "v1"}));
  // ...until the node comes back and republishes.
  auto republished = origin.republish_own();
  ASSERT_EQ(republished.size(), 2u);
  EXPECT_EQ(peer.merge(republished), 2u);
  EXPECT_EQ(peer.entries("endpoints").size(), 3u);
  peer.withdraw_node("b");  // never withdraws its own
  EXPECT_TRUE(peer.get("endpoints", "mine"));
}

TEST(ReplicatedTablesTest, TombstonesAreReapedAfterTheirLifetime) {
  ReplicatedTables t("a", {"endpoints"}, std::chrono::seconds(60), std::chrono::seconds(3600));
  const auto t0 = ReplicatedTables::Clock::now();
  t.apply({"endpoints", "k", "b", 3, true, ""}, t0);
  t.apply({"endpoints", "live", "b", 4, false, ""}, t0);
  t.apply({"services", "gone", "b", 5, true, ""}, t0);
  EXPECT_EQ(t.reap_tombstones(t0 + 59s), 0u);
  EXPECT_EQ(t.reap_tombstones(t0 + 61s), 1u);  // the endpoint's
  EXPECT_EQ(t.snapshot().size(), 2u);
  EXPECT_EQ(t.reap_tombstones(t0 + 3599s), 0u);
  EXPECT_EQ(t.reap_tombstones(t0 + 3601s), 1u);  // the service's, after the cluster lifetime
  EXPECT_EQ(t.snapshot().size(), 1u);
}

// The creator of a service is away (agent stopped, or cut off) while another
// node removes the service. Past the endpoints' tombstone lifetime, its stale
// copy arriving must not bring the service back.
TEST(ReplicatedTablesTest, ANodeAwayPastTheEndpointLifetimeCannotReviveADeletedService) {
  ReplicatedTables creator("a", {"endpoints"}, std::chrono::seconds(60));
  ReplicatedTables other("b", {"endpoints"}, std::chrono::seconds(60));
  const auto t0 = ReplicatedTables::Clock::now();
  other.apply(creator.put("services", "redis", "{}"), t0);
  other.apply(creator.put("networks", "net", "{}"), t0);
  ASSERT_TRUE(other.remove("services", "redis"));
  ASSERT_TRUE(other.remove("networks", "net"));
  EXPECT_EQ(other.reap_tombstones(t0 + std::chrono::hours(2)), 0u);
  EXPECT_EQ(other.merge(creator.snapshot(), t0 + std::chrono::hours(2)), 0u);
  EXPECT_FALSE(other.get("services", "redis"));
  EXPECT_FALSE(other.get("networks", "net"));
  // And the creator learns of the deletes.
  creator.merge(other.snapshot());
  EXPECT_FALSE(creator.get("services", "redis"));
  EXPECT_FALSE(creator.get("networks", "net"));
}

TEST(ReplicatedTablesTest, ClusterTombstonesAreBoundedOldestFirst) {
  ReplicatedTables t("a", {"endpoints"}, std::chrono::seconds(60), std::chrono::seconds(3600), 3);
  const auto t0 = ReplicatedTables::Clock::now();
  const std::vector<std::string> keys{"s0", "s1", "s2", "s3", "s4"};
  for (std::size_t i = 0; i < keys.size(); ++i)
    t.apply({"services", keys[i], "b", i + 1, true, ""}, t0 + std::chrono::seconds(i));
  t.apply({"networks", "n", "b", 9, true, ""}, t0);
  EXPECT_EQ(t.reap_tombstones(t0 + 10s), 2u);  // s0 and s1: the oldest of the five
  EXPECT_EQ(t.table_snapshot("services").size(), 3u);
  for (const auto& e : t.table_snapshot("services")) EXPECT_NE(e.key, "s0");
  EXPECT_EQ(t.table_snapshot("networks").size(), 1u);  // bounded per table
}

TEST(ReplicatedTablesTest, NewerThanIsTheRepairAPeerNeeds) {
  ReplicatedTables a("a"), b("b");
  auto shared = a.put("networks", "n1", "v1");
  b.apply(shared);
  auto only_a = a.put("endpoints", "e1", "x");
  auto updated = a.put("networks", "n1", "v2");
  b.put("endpoints", "only-b", "y");
  auto repair = a.newer_than(b.snapshot());
  EXPECT_EQ(repair, (std::vector<TableEntry>{only_a, updated}));
  b.merge(repair);
  a.merge(b.newer_than(a.snapshot()));
  EXPECT_EQ(a.digest(), b.digest());
  EXPECT_TRUE(a.newer_than(b.snapshot()).empty());
}

TEST(ReplicatedTablesTest, OwnerDigestsNameEveryOwnerOfADifferingSlot) {
  ReplicatedTables a("a"), b("b"), c("c");
  for (auto* t : {&a, &b}) t->apply({"endpoints", "c1", "c", 1, false, "x"});
  for (auto* t : {&a, &b}) t->apply({"endpoints", "d1", "d", 2, false, "y"});
  EXPECT_EQ(a.owner_digests(), b.owner_digests());
  // b deletes c's entry: the slot now differs, owned by c here and by b there.
  b.remove("endpoints", "c1");
  const auto da = a.owner_digests(), db = b.owner_digests();
  EXPECT_NE(da.at("c"), db.count("c") ? db.at("c") : 0);
  EXPECT_FALSE(da.count("b"));
  EXPECT_TRUE(db.count("b"));
  EXPECT_EQ(da.at("d"), db.at("d"));
  // Exchanging just the differing owners' entries (c and b) converges.
  const std::set<std::string> differing{"b", "c"};
  a.merge(b.snapshot(differing));
  b.merge(a.newer_than(b.snapshot(differing), &differing));
  EXPECT_EQ(a.digest(), b.digest());
  EXPECT_EQ(b.snapshot(std::set<std::string>{"d"}).size(), 1u);
}

// A record shaped like an endpoint's: most of it the same for every
// endpoint of a node (its network, its VTEP), a few fields its own.
std::string endpoint_like(const std::string& node, int i) {
  return R"({"backend_state":"active","id":"ep)" + std::to_string(i) + R"(","ifname":"eth0","ip":"10.0.)" +
         std::to_string(i % 250) + R"(","netns":"/run/netns/weft-)" + node + "-" + std::to_string(i) +
         R"(","network_id":"0c4f7d1e9a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5","node":")" + node +
         R"(","vtep":"198.18.7.)" + std::to_string(node.size()) + R"("})";
}

TEST(ReplicatedTablesTest, ValuesOfATableAndOwnerArePackedAgainstTheirFirst) {
  ReplicatedTables t("local", {"endpoints"});
  std::size_t text = 0;
  for (int i = 0; i < 100; ++i) {
    const auto value = endpoint_like("node-a", i);
    text += value.size();
    t.apply({"endpoints", "ep" + std::to_string(i), "node-a", static_cast<std::uint64_t>(i + 1), false, value});
  }
  // The network id and the node's fields are in the exemplar: a few bytes
  // for what differs (without it: ~110 bytes each).
  const auto use = t.memory_use();
  EXPECT_EQ(use.entries, 100u);
  EXPECT_LT(use.values, text / 6) << use.values << " bytes of values for " << text << " of text";
  for (int i = 0; i < 100; ++i) EXPECT_EQ(t.get("endpoints", "ep" + std::to_string(i))->value, endpoint_like("node-a", i));
}

TEST(ReplicatedTablesTest, ValuesComeBackExactWhileTheirExemplarsComeAndGo) {
  using Clock = ReplicatedTables::Clock;
  ReplicatedTables t("local", {"endpoints"}, 1s);
  std::map<std::string, std::string> expected;  // key -> value
  auto publish = [&](const std::string& node, int i, std::uint64_t lamport) {
    const auto key = "ep" + std::to_string(i);
    const auto value = endpoint_like(node, i);
    ASSERT_TRUE(t.apply({"endpoints", key, node, lamport, false, value}));
    expected[key] = value;
  };
  for (int i = 0; i < 20; ++i) publish("node-a", i, 10);
  for (int i = 20; i < 40; ++i) publish("node-b", i, 10);
  // ep0 (node-a's first, its exemplar's source) moves to node-b; ep20
  // (node-b's first) is deleted and reaped.
  publish("node-b", 0, 11);
  ASSERT_TRUE(t.apply({"endpoints", "ep20", "node-b", 11, true, expected["ep20"]}));
  expected.erase("ep20");
  EXPECT_EQ(t.reap_tombstones(Clock::now() + 1h), 1u);
  for (const auto& [key, value] : expected) EXPECT_EQ(t.get("endpoints", key)->value, value) << key;
  // node-a dies: its slots go, and its exemplar with them; it comes back
  // with other values, packed against a new exemplar.
  t.withdraw_node("node-a");
  for (int i = 1; i < 20; ++i) expected.erase("ep" + std::to_string(i));
  for (int i = 1; i < 20; ++i) publish("node-a", i + 100, 20);
  for (const auto& [key, value] : expected) EXPECT_EQ(t.get("endpoints", key)->value, value) << key;
  std::size_t seen = 0;
  t.for_each([&](const EntryView& e) {
    ++seen;
    EXPECT_EQ(e.value(), expected.at(e.key)) << e.key;
  });
  EXPECT_EQ(seen, expected.size());
}

TEST(ReplicatedTablesTest, IdsAndOtherKeysKeepTheTextsOrder) {
  // Ids are held packed (slot_key.h): lookups, ranges and for_each's
  // order are still the texts'.
  std::mt19937_64 rng(3);
  std::vector<std::pair<std::string, std::string>> keys;
  ReplicatedTables t("n1");
  for (int i = 0; i < 300; ++i) {
    std::string id(64, '0');
    for (auto& c : id) c = "0123456789abcdef"[rng() % 16];
    const std::string table = i % 3 ? "endpoints" : "services";
    for (const auto& key : {id, id.substr(0, 10), id + "-x", "ep" + std::to_string(i)}) {
      t.put(table, key, "v" + key);
      keys.emplace_back(table, key);
    }
  }
  std::sort(keys.begin(), keys.end());
  std::vector<std::pair<std::string, std::string>> seen;
  t.for_each([&](const EntryView& e) { seen.emplace_back(e.table, e.key); });
  EXPECT_EQ(seen, keys);
  for (const auto& [table, key] : keys) EXPECT_EQ(t.get(table, key)->value, "v" + key);
  seen.clear();
  t.for_each("services", [&](const EntryView& e) { seen.emplace_back(e.table, e.key); });
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(std::count_if(keys.begin(), keys.end(), [](const auto& k) {
              return k.first == "services";
            })));
  // A scoped range over (keys[10], keys[20]]: ten entries, in order.
  std::map<std::string, ReplicatedTables::BucketSet> all;
  all["n1"].set();
  const auto part = t.newer_than({}, all, keys[10], keys[20]);
  ASSERT_EQ(part.size(), 10u);
  for (std::size_t i = 0; i < part.size(); ++i) EXPECT_EQ(part[i].key, keys[11 + i].second);
}

TEST(ReplicatedTablesTest, IdsValuesNameAreHeldOnceWhileNamed) {
  using Clock = ReplicatedTables::Clock;
  std::mt19937_64 rng(11);
  auto id = [&] {
    std::string s(64, '0');
    for (auto& c : s) c = "0123456789abcdef"[rng() % 16];
    return s;
  };
  // Ten services' ids, each named by ten endpoints (and one network's by all).
  const auto network = id();
  std::vector<std::string> services;
  for (int i = 0; i < 10; ++i) services.push_back(id());
  ReplicatedTables t("local", {"endpoints"}, 1s);
  std::map<std::string, std::string> expected;
  std::size_t text = 0;
  for (int i = 0; i < 100; ++i) {
    const auto key = id();
    const auto value = R"({"id":")" + key + R"(","ip":"10.0.0.)" + std::to_string(i) + R"(","network_id":")" + network +
                       R"(","service_id":")" + services[i / 10] + R"("})";
    ASSERT_TRUE(t.apply({"endpoints", key, "node-a", static_cast<std::uint64_t>(i + 1), false, value}));
    expected[key] = value;
    text += value.size();
  }
  auto use = t.memory_use();
  EXPECT_GT(use.ids, 0u);
  // Each value: its own bytes and 8 of header; the ids' digits are in the
  // dictionary (named once each: 11 ids).
  EXPECT_LT(use.values, 100u * 40) << use.values << " bytes for " << text << " of text";
  auto check = [&] {
    for (const auto& [key, value] : expected) EXPECT_EQ(t.get("endpoints", key)->value, value) << key;
    t.for_each([&](const EntryView& e) { EXPECT_EQ(e.value(), expected.at(e.key)); });
  };
  check();
  // A value replaced by one naming other ids, some deleted and reaped:
  // the others still decode.
  auto first = expected.begin();
  const auto replaced = R"({"id":")" + first->first + R"(","network_id":")" + id() + R"(","service_id":")" + id() + R"("})";
  ASSERT_TRUE(t.apply({"endpoints", first->first, "node-a", 200, false, replaced}));
  first->second = replaced;
  int n = 0;
  for (auto it = std::next(expected.begin()); it != expected.end() && n < 30; ++n) {
    ASSERT_TRUE(t.apply({"endpoints", it->first, "node-a", 300, true, it->second}));
    it = expected.erase(it);
  }
  EXPECT_EQ(t.reap_tombstones(Clock::now() + 1h), 30u);
  check();
  // Everything gone: no id is held any more.
  t.withdraw_node("node-a");
  use = t.memory_use();
  EXPECT_EQ(use.entries, 0u);
  EXPECT_EQ(use.ids, 0u);
}

TEST(ReplicatedTablesBuckets, OneChangedEntryMakesOnlyItsBucketDiffer) {
  ReplicatedTables a("n1"), b("n2");
  for (int i = 0; i < 2000; ++i) b.apply(a.put("endpoints", "ep" + std::to_string(i), "{}"));
  ASSERT_EQ(a.bucket_digests({"n1"}), b.bucket_digests({"n1"}));
  a.put("endpoints", "ep42", R"({"x":1})");
  const auto da = a.bucket_digests({"n1"}).at("n1"), db = b.bucket_digests({"n1"}).at("n1");
  ASSERT_EQ(da.size(), db.size());
  std::vector<std::uint32_t> differing;
  for (const auto& [bucket, d] : da)
    if (db.at(bucket) != d) differing.push_back(bucket);
  EXPECT_EQ(differing, std::vector<std::uint32_t>{ReplicatedTables::bucket_of("endpoints", "ep42")});
  EXPECT_LT(da.at(differing[0]).entries, 2000u / 50);  // a bucket is a small part of the owner
}

TEST(ReplicatedTablesBuckets, ScopedNewerThanCoversOnlyItsBucketsAndKeyRange) {
  ReplicatedTables t("n1");
  for (int i = 0; i < 3000; ++i) t.put("endpoints", "ep" + std::to_string(i), "{}");
  const auto bucket = ReplicatedTables::bucket_of("endpoints", "ep7");
  std::vector<ReplicatedTables::Key> keys;  // the bucket's, in key order
  t.for_each([&](const TableEntry& e) {
    if (ReplicatedTables::bucket_of(e.table, e.key) == bucket) keys.push_back({e.table, e.key});
  });
  ASSERT_GE(keys.size(), 4u);
  std::map<std::string, ReplicatedTables::BucketSet> scope;
  scope["n1"].set(bucket);
  // The peer sent nothing: everything in scope is newer here.
  EXPECT_EQ(t.newer_than({}, scope, std::nullopt, std::nullopt).size(), keys.size());
  // (keys[0], keys[2]]: two entries.
  auto part = t.newer_than({}, scope, keys[0], keys[2]);
  ASSERT_EQ(part.size(), 2u);
  EXPECT_EQ(part[0].key, keys[1].second);
  EXPECT_EQ(part[1].key, keys[2].second);
  // The peer holding the same version of one: only the other.
  part = t.newer_than({*t.find(keys[1].first, keys[1].second)}, scope, keys[0], keys[2]);
  ASSERT_EQ(part.size(), 1u);
  EXPECT_EQ(part[0].key, keys[2].second);
  // Another owner's buckets: nothing.
  std::map<std::string, ReplicatedTables::BucketSet> other;
  other["n2"].set(bucket);
  EXPECT_TRUE(t.newer_than({}, other, std::nullopt, std::nullopt).empty());
}

}  // namespace
}  // namespace weft::control::tables
