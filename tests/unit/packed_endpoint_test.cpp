// PackedEndpoint (control/model/packed_endpoint.h): the one shared form of
// an endpoint that the network manager holds and the endpoint snapshots
// point at gives back every field, compares ids as their strings do, and
// its interned strings stay while anyone holds them.
#include "control/model/packed_endpoint.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "tests/support/addresses.h"
#include "tests/support/sample_endpoint.h"

namespace weft::control {
namespace {

using testing::ipv4;
using testing::mac;

// Every field set; an empty alias among the aliases.
Endpoint full(const std::string& id) {
  return testing::sample_remote_endpoint(id, std::string(64, '5'), {"db", "", std::string(200, 'a')});
}

bool same(const Endpoint& a, const Endpoint& b) {
  return a.id == b.id && a.name == b.name && a.network_id == b.network_id && a.network_name == b.network_name &&
         a.netns == b.netns && a.ifname == b.ifname && a.ip == b.ip && a.prefix_len == b.prefix_len &&
         a.mac == b.mac && a.node == b.node && a.service_id == b.service_id && a.backend_state == b.backend_state &&
         a.drain_until == b.drain_until && a.aliases == b.aliases;
}

TEST(PackedEndpointTest, GivesBackEveryField) {
  for (const std::string& id : {std::string(64, '7'), std::string(64, 'A'), std::string("short"), std::string()}) {
    const Endpoint e = full(id);
    const auto p = PackedEndpoint::make(e);
    EXPECT_TRUE(same(p->unpack(), e)) << id;
    EXPECT_EQ(p->id(), id);
    EXPECT_EQ(p->name(), "redis-1");
    EXPECT_EQ(p->network_id(), e.network_id);
    EXPECT_EQ(p->network_name(), "net-record");
    EXPECT_EQ(p->netns(), e.netns);
    EXPECT_EQ(p->ifname(), "eth0");
    EXPECT_EQ(p->ip(), e.ip);
    EXPECT_EQ(p->prefix_len(), 24);
    EXPECT_EQ(p->mac(), e.mac);
    EXPECT_EQ(p->node(), "node2");
    EXPECT_EQ(p->service_id(), e.service_id);
    EXPECT_EQ(p->backend_state(), BackendState::draining);
    EXPECT_EQ(p->drain_until(), e.drain_until);
    EXPECT_EQ(p->aliases(), e.aliases);
  }
  Endpoint empty = full(std::string(64, '1'));
  for (auto* field : {&empty.name, &empty.network_name, &empty.netns, &empty.ifname, &empty.drain_until,
                      &empty.service_id})
    field->clear();
  empty.aliases.clear();
  EXPECT_TRUE(same(PackedEndpoint::make(empty)->unpack(), empty));
}

// "/run/netns/" is held as a flag: every other shape comes back as it was.
TEST(PackedEndpointTest, NamespacePathsComeBackAsTheyWere) {
  StringInterner strings;
  PackedEndpointChunk chunk;
  std::size_t place = 0;
  for (const std::string netns : {"/run/netns/weft-node2-0123456789ab-1", "/run/netns/", "/run/netns", "/run/netnsx/a",
                                  "run/netns/a", "/proc/4242/ns/net", "", "/run/netns//run/netns/a"}) {
    Endpoint e = full(std::string(64, '7'));
    e.netns = netns;
    const auto p = PackedEndpoint::make(e);
    EXPECT_EQ(p->netns(), netns);
    EXPECT_TRUE(same(p->unpack(), e)) << netns;
    chunk.set(place, e,
              SharedOrigin::make(EndpointOrigin{strings.get(e.network_id), strings.get(e.node), e.network_name,
                                                e.network_name}),
              strings.get(e.service_id));
    EXPECT_EQ(chunk.at(place).netns(), netns);
    EXPECT_TRUE(same(chunk.at(place).unpack(), e)) << netns;
    ++place;
  }
}

// The prefix length is one byte in the record and the MAC not held when
// it is Docker's: any other value comes back as it was, from a standalone
// record and from a chunk's.
TEST(PackedEndpointTest, PrefixLengthsAndMacsOfAnyValueComeBack) {
  StringInterner strings;
  PackedEndpointChunk chunk;
  std::size_t place = 0;
  for (const int prefix : {0, 24, 32, 255, 256, -1, 100000}) {
    for (const char* mac : {"02:42:0a:00:07:09", "02:42:0a:00:07:0a", "00:00:00:00:00:00", "de:ad:be:ef:00:01"}) {
      Endpoint e = full(std::string(64, '7'));  // 10.0.7.9
      e.prefix_len = prefix;
      e.mac = testing::mac(mac);
      const auto p = PackedEndpoint::make(e);
      EXPECT_EQ(p->prefix_len(), prefix);
      EXPECT_EQ(p->mac(), e.mac) << mac;
      EXPECT_TRUE(same(p->unpack(), e)) << prefix << " " << mac;
      EXPECT_EQ(p->aliases(), e.aliases);
      chunk.set(place, e,
                SharedOrigin::make(EndpointOrigin{strings.get(e.network_id), strings.get(e.node), e.network_name,
                                                  e.network_name}),
                strings.get(e.service_id));
      EXPECT_EQ(chunk.at(place).prefix_len(), prefix);
      EXPECT_EQ(chunk.at(place).mac(), e.mac) << mac;
      EXPECT_TRUE(same(chunk.at(place).unpack(), e)) << prefix << " " << mac;
      ++place;
    }
  }
  EXPECT_LE(sizeof(PackedEndpoint), 64u);
}

TEST(PackedEndpointTest, IdsCompareAsTheirStrings) {
  std::vector<std::string> ids = {std::string(64, '0'), std::string(64, '9'), std::string(64, 'a'),
                                  std::string(64, 'f'), std::string(64, 'F'), "zz", "0", std::string(63, 'f')};
  ids.push_back(std::string(63, 'a') + "0");
  ids.push_back(std::string(63, 'a') + "b");
  for (const auto& a : ids) {
    for (const auto& b : ids) {
      const auto pa = PackedEndpoint::make(full(a)), pb = PackedEndpoint::make(full(b));
      const int want = a.compare(b);
      const int got = pa->compare_id(*pb);
      EXPECT_EQ(got < 0, want < 0) << a << " vs " << b;
      EXPECT_EQ(got == 0, want == 0) << a << " vs " << b;
      if (a == b) {
        EXPECT_EQ(pa->id_hash(), pb->id_hash());
      }
    }
  }
}

TEST(PackedEndpointTest, AnotherNetworkNameSharesTheIds) {
  const auto p = PackedEndpoint::make(full(std::string(64, '7')));
  const auto renamed = p->with_network_name("net-here");
  EXPECT_EQ(renamed->network_name(), "net-here");
  EXPECT_EQ(p->network_name(), "net-record") << "immutable";
  EXPECT_EQ(&renamed->network_id(), &p->network_id());
  EXPECT_EQ(&renamed->service_id(), &p->service_id());
  auto want = full(std::string(64, '7'));
  want.network_name = "net-here";
  EXPECT_TRUE(same(renamed->unpack(), want));
}

TEST(PackedEndpointTest, InternedStringsStayWhileHeld) {
  StringInterner interner;
  auto a = interner.get("node2");
  EXPECT_EQ(interner.get("node2").get(), a.get()) << "one string for every user";
  EXPECT_EQ(interner.size(), 1u);
  interner.release("node2");
  EXPECT_EQ(interner.size(), 1u) << "still held";
  a.reset();
  interner.release("node2");
  EXPECT_EQ(interner.size(), 0u);

  // Held by someone else when released: the next sweep frees it.
  auto held = interner.get("node3");
  interner.release("node3");
  held.reset();
  EXPECT_EQ(interner.size(), 1u);
  interner.sweep();
  EXPECT_EQ(interner.size(), 0u);

  // Unreleased strings are swept as the interner grows: bounded by twice
  // what is held.
  std::vector<PackedEndpoint::SharedString> kept;
  for (int i = 0; i < 10000; ++i) {
    std::string name = std::to_string(i);
    name.insert(name.begin(), 's');
    auto s = interner.get(name);
    if (i % 10 == 0) kept.push_back(s);
  }
  EXPECT_LE(interner.size(), 2 * kept.size() + 64);
}

// A chunk's records give back their fields through replacements, clears
// and copies, which move their details in the arena; the arena stays
// bounded by what is live however often records are replaced.
TEST(PackedEndpointTest, ChunkRecordsSurviveTheirArenaMoving) {
  StringInterner strings;
  auto put = [&](PackedEndpointChunk& chunk, std::size_t i, const Endpoint& e, const std::string& here) {
    chunk.set(i, e,
              SharedOrigin::make(EndpointOrigin{strings.get(e.network_id), strings.get(e.node), here, e.network_name}),
              strings.get(e.service_id));
  };
  auto endpoint = [](std::size_t i, int version) {
    Endpoint e = full(i % 3 ? std::string(63, 'a') + char('0' + i % 10) : "short-" + std::to_string(i));
    e.name = "e" + std::to_string(i) + "-" + std::to_string(version);
    e.aliases.resize(version % 4, "alias-" + std::to_string(version));
    return e;
  };
  auto here_of = [](std::size_t i) { return i % 2 ? std::string("net-here") : std::string("net-record"); };
  PackedEndpointChunk chunk;
  std::vector<int> version(PackedEndpointChunk::kSize, -1);
  for (int round = 0; round < 50; ++round) {
    for (std::size_t i = round % 3; i < PackedEndpointChunk::kSize; i += 1 + round % 4) {
      if (round % 7 == 6 && i % 5 == 0) {
        chunk.clear(i);
        version[i] = -1;
      } else {
        put(chunk, i, endpoint(i, round), here_of(i));
        version[i] = round;
      }
    }
    const PackedEndpointChunk copy(chunk);
    for (std::size_t i = 0; i < PackedEndpointChunk::kSize; ++i) {
      for (const PackedEndpointChunk* c : {static_cast<const PackedEndpointChunk*>(&chunk), &copy}) {
        ASSERT_EQ(c->used(i), version[i] >= 0) << i;
        if (version[i] < 0) continue;
        auto want = endpoint(i, version[i]);
        auto got = c->at(i).unpack();
        EXPECT_EQ(c->at(i).record_network_name(), "net-record");
        want.network_name = here_of(i);
        EXPECT_TRUE(same(got, want)) << i << " round " << round;
      }
    }
  }
  // A record's block is under 400 bytes here; 50 rounds of garbage kept
  // would be ten times this.
  EXPECT_LE(chunk.arena_bytes(), PackedEndpointChunk::kSize * 800) << "garbage is dropped as the arena grows";
}

TEST(PackedEndpointTest, SharedTextCountsItsHolders) {
  auto a = SharedText::make("x");
  EXPECT_EQ(a.use_count(), 1);
  {
    auto b = a;
    EXPECT_EQ(a.use_count(), 2);
    EXPECT_EQ(b.get(), a.get());
    auto c = std::move(b);
    EXPECT_EQ(a.use_count(), 2);
    EXPECT_FALSE(b);
  }
  EXPECT_EQ(a.use_count(), 1);
  EXPECT_EQ(*a, "x");
  a.reset();
  EXPECT_FALSE(a);
  EXPECT_EQ(a.use_count(), 0);
}

TEST(PackedEndpointTest, SnapshotOfEndpointsKeepsTheirOrder) {
  const auto snapshot = EndpointSnapshot::of({full("b"), full("a")}, 9);
  EXPECT_EQ(snapshot->version, 9u);
  ASSERT_EQ(snapshot->endpoints.size(), 2u);
  EXPECT_EQ(snapshot->endpoints[0]->id(), "b");
  EXPECT_EQ(snapshot->endpoints[1]->id(), "a");
}

}  // namespace
}  // namespace weft::control
