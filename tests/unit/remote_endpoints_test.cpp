// RemoteEndpoints (control/network/remote_endpoints.h): the network
// manager's packed copy of other nodes' endpoints gives back every field of
// the record it was given, whatever the id's shape, and shares and frees
// the strings it interns.
#include "control/network/remote_endpoints.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>

#include "tests/support/addresses.h"
#include "tests/support/sample_endpoint.h"

namespace weft::control::network {
namespace {

using testing::ipv4;
using testing::mac;

Endpoint backend(const std::string& id, const std::string& service_id) {
  return testing::sample_remote_endpoint(id, service_id, {"db", "cache.example", std::string(200, 'a')});
}

// 64 characters: 'a's and then `last`.
std::string id_ending(char last) {
  std::string id(64, 'a');
  id.back() = last;
  return id;
}

bool same(const Endpoint& a, const Endpoint& b) {
  return a.id == b.id && a.name == b.name && a.network_id == b.network_id && a.network_name == b.network_name &&
         a.netns == b.netns && a.ifname == b.ifname && a.ip == b.ip && a.prefix_len == b.prefix_len &&
         a.mac == b.mac && a.node == b.node && a.service_id == b.service_id && a.backend_state == b.backend_state &&
         a.drain_until == b.drain_until && a.aliases == b.aliases;
}

Endpoint listed(RemoteEndpoints& store, const std::string& id, const std::string* network_name = nullptr) {
  std::optional<Endpoint> found;
  store.for_each([&](const RemoteEndpoints::Entry& entry) {
    if (entry.endpoint->id() == id) found = RemoteEndpoints::endpoint(entry, network_name);
  });
  EXPECT_TRUE(found) << id;
  return found.value_or(Endpoint{});
}

TEST(RemoteEndpointsTest, GivesBackEveryFieldOfTheRecord) {
  RemoteEndpoints store;
  std::string id(64, '7');
  id.replace(0, 16, "0123456789abcdef");
  const auto e = backend(id, std::string(64, '5'));
  auto [entry, fresh] = store.put(e, ipv4("192.0.2.12"));
  EXPECT_TRUE(fresh);
  EXPECT_EQ(entry.vtep, ipv4("192.0.2.12"));
  EXPECT_EQ(RemoteEndpoints::name(entry), "redis-1");
  EXPECT_TRUE(same(listed(store, e.id), e));
  // The network's name here stands in for the record's.
  const std::string here = "net-test";
  auto with_name = e;
  with_name.network_name = here;
  EXPECT_TRUE(same(listed(store, e.id, &here), with_name));
}

// Held with the network's name here when it is known, and renamed when the
// network arrives or goes; the record's own name is kept for the latter.
TEST(RemoteEndpointsTest, HeldWithTheNetworksNameHere) {
  RemoteEndpoints store;
  const auto e = backend(std::string(64, '7'), std::string(64, '5'));  // network_name "net-record"
  const std::string here = "net-test";
  const auto entry = store.put(e, ipv4("192.0.2.12"), &here).first;
  EXPECT_EQ(entry.endpoint->network_name(), "net-test");
  EXPECT_EQ(RemoteEndpoints::endpoint(entry, nullptr).network_name, "net-record");
  store.name_network(e.network_id, nullptr);
  EXPECT_EQ(store.find(e.id)->endpoint->network_name(), "net-record");
  auto before = store.shared(*store.find(e.id));
  store.name_network(std::string(64, 'f'), &here);  // another network
  EXPECT_EQ(store.find(e.id)->endpoint, before.get());
  store.name_network(e.network_id, &here);
  EXPECT_EQ(store.find(e.id)->endpoint->network_name(), "net-test");
  EXPECT_EQ(before->network_name(), "net-record") << "a snapshot's record never changes";
  EXPECT_EQ(&store.find(e.id)->endpoint->service_id(), &before->service_id()) << "ids still shared";
  store.erase(e.id);
  EXPECT_EQ(store.interned(), 3u) << "network, node and service ids: `before` still holds them";
  const std::string* service_id = &before->service_id();
  EXPECT_EQ(*service_id, e.service_id);
  before.reset();  // they go at the interner's next sweep, or with the store's clear()
  store.clear();
  EXPECT_EQ(store.interned(), 0u);
}

TEST(RemoteEndpointsTest, IdsOfAnyShapeComeBackAsTheyWere) {
  RemoteEndpoints store;
  const std::vector<std::string> ids = {std::string(64, 'a'),
                                        id_ending('A'),  // upper case: not packed
                                        std::string(64, 'g'),        // not hex
                                        "short-id", std::string(65, 'b'), std::string("a\0b", 3)};
  for (const auto& id : ids) store.put(backend(id, ""), ipv4("192.0.2.12"));
  EXPECT_EQ(store.size(), ids.size());
  for (const auto& id : ids) {
    ASSERT_TRUE(store.find(id)) << id;
    EXPECT_EQ(listed(store, id).id, id);
  }
  EXPECT_FALSE(store.find(std::string(64, 'c')));
}

TEST(RemoteEndpointsTest, EmptyFieldsAndNoAliasesStayEmpty) {
  RemoteEndpoints store;
  Endpoint e = backend(std::string(64, '1'), "");
  for (auto* field : {&e.name, &e.network_name, &e.netns, &e.ifname, &e.drain_until}) field->clear();
  e.aliases.clear();
  store.put(e, ipv4("192.0.2.12"));
  const auto back = listed(store, e.id);
  EXPECT_TRUE(same(back, e));
  EXPECT_TRUE(back.aliases.empty());
  EXPECT_TRUE(back.service_id.empty());
}

TEST(RemoteEndpointsTest, ReplacingKeepsTheReservationAndSharesStrings) {
  RemoteEndpoints store;
  const std::string service(64, '5');
  for (int i = 0; i < 10; ++i) store.put(backend(id_ending(static_cast<char>('0' + i)), service), ipv4("192.0.2.12"));
  // Network, node and service: three strings for ten endpoints (the
  // record's network name is in its details).
  EXPECT_EQ(store.interned(), 3u);
  auto entry = store.find(id_ending('0'));
  ASSERT_TRUE(entry);
  EXPECT_EQ(&entry->endpoint->network_id(), &store.find(id_ending('9'))->endpoint->network_id());
  store.set_reserved_here(*entry, true);
  EXPECT_TRUE(store.find(id_ending('0'))->reserved_here);
  EXPECT_FALSE(store.find(id_ending('1'))->reserved_here);
  auto changed = backend(id_ending('0'), std::string(64, '6'));
  changed.backend_state = BackendState::active;
  auto [replaced, fresh] = store.put(changed, ipv4("192.0.2.13"));
  EXPECT_FALSE(fresh);
  EXPECT_TRUE(replaced.reserved_here);
  EXPECT_EQ(replaced.vtep, ipv4("192.0.2.13"));
  EXPECT_TRUE(same(listed(store, changed.id), changed));
  EXPECT_EQ(store.interned(), 4u);
  // The last user of a string frees it.
  store.erase(changed.id);
  EXPECT_EQ(store.interned(), 3u);
  for (int i = 1; i < 10; ++i) store.erase(id_ending(static_cast<char>('0' + i)));
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(store.interned(), 0u);
  // An emptied place is filled again, without the old one's reservation.
  const auto again = store.put(backend(id_ending('0'), service), ipv4("192.0.2.12")).first;
  EXPECT_FALSE(again.reserved_here);
}

// A snapshot's records are the store's until the store changes them: then
// the store writes a copy of their chunk, and the snapshot's stay as they were.
TEST(RemoteEndpointsTest, SnapshotsKeepTheRecordsTheyPointAt) {
  RemoteEndpoints store;
  const std::string service(64, '5');
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) {
    ids.push_back(std::string(60, 'a') + fmt::format("{:04x}", i));
    store.put(backend(ids.back(), service), ipv4("192.0.2.12"));
  }
  std::vector<std::shared_ptr<const PackedEndpoint>> snapshot;
  store.for_each([&](const RemoteEndpoints::Entry& entry) { snapshot.push_back(store.shared(entry)); });
  ASSERT_EQ(snapshot.size(), ids.size());
  EXPECT_EQ(snapshot[5].get(), store.find(snapshot[5]->id())->endpoint) << "a pointer, not a copy";
  // New endpoints go into empty places without copying a held chunk.
  store.put(backend(std::string(60, 'b') + "0000", service), ipv4("192.0.2.12"));
  for (const auto& p : snapshot) EXPECT_EQ(store.find(p->id())->endpoint, p.get()) << p->id();

  const std::string here = "net-here";
  auto changed = backend(ids[3], std::string(64, '6'));
  changed.name = "renamed";
  store.put(changed, ipv4("192.0.2.13"));
  store.erase(ids[100]);
  store.name_network(changed.network_id, &here);
  for (int i = 200; i < 300; ++i) store.put(backend(std::string(60, 'a') + fmt::format("{:04x}", i), service), ipv4("192.0.2.12"));

  for (const auto& p : snapshot) {
    const auto id = p->id();
    EXPECT_EQ(p->name(), "redis-1") << id;
    EXPECT_EQ(p->network_name(), "net-record") << id;
    EXPECT_EQ(p->service_id(), service) << id;
    EXPECT_EQ(p->aliases(), backend(id, service).aliases) << id;
    if (id != ids[100]) {
      const auto now = store.find(id);
      ASSERT_TRUE(now) << id;
      EXPECT_NE(now->endpoint, p.get()) << "the store's copy is written, not the snapshot's";
      EXPECT_EQ(now->endpoint->network_name(), "net-here") << id;
    }
  }
  EXPECT_EQ(store.find(ids[3])->endpoint->name(), "renamed");
  EXPECT_FALSE(store.find(ids[100]));
  snapshot.clear();
  // Without a snapshot, changes are made in place.
  const auto* before = store.find(ids[7])->endpoint;
  store.put(backend(ids[7], std::string(64, '6')), ipv4("192.0.2.12"), &here);
  EXPECT_EQ(store.find(ids[7])->endpoint, before);
}

// The index against a plain map: puts, replacements and erasures in a
// random order, through its growth and the reuse of erased cells.
TEST(RemoteEndpointsTest, FindsWhatAMapWouldFind) {
  RemoteEndpoints store;
  std::map<std::string, std::string> model;  // id -> name
  std::mt19937 random(7);
  auto id_of = [](std::uint32_t n) {
    if (n % 17 == 0) return fmt::format("other-{}", n);  // not a model id
    return fmt::format("{:064x}", static_cast<std::uint64_t>(n) * 0x9e3779b97f4a7c15ull);
  };
  for (int step = 0; step < 20000; ++step) {
    const std::uint32_t n = random() % 3000;
    const std::string id = id_of(n);
    if (random() % 3 == 0) {
      store.erase(id);
      model.erase(id);
    } else {
      auto e = backend(id, fmt::format("{:064x}", n % 40));
      e.name = fmt::format("e{}-{}", n, step);
      store.put(e, ipv4("192.0.2.12"));
      model[id] = e.name;
    }
    if (step % 1000 == 0 || step == 19999) {
      ASSERT_EQ(store.size(), model.size());
      for (std::uint32_t m = 0; m < 3000; ++m) {
        const auto found = store.find(id_of(m));
        const auto want = model.find(id_of(m));
        ASSERT_EQ(bool(found), want != model.end()) << id_of(m);
        if (found) {
          EXPECT_EQ(found->endpoint->id(), id_of(m));
          EXPECT_EQ(found->endpoint->name(), want->second);
        }
      }
      std::size_t seen = 0;
      store.for_each([&](const RemoteEndpoints::Entry&) { ++seen; });
      EXPECT_EQ(seen, model.size());
    }
  }
  for (const auto& [id, name] : model) store.erase(id);
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(store.interned(), 0u);
}

}  // namespace
}  // namespace weft::control::network
