// RemoteEndpoints (control/network/remote_endpoints.h): the network
// manager's packed copy of other nodes' endpoints gives back every field of
// the record it was given, whatever the id's shape, and shares and frees
// the strings it interns.
#include "control/network/remote_endpoints.h"

#include <gtest/gtest.h>

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
  store.for_each([&](const RemoteEndpoints::Key& key, const RemoteEndpoints::Entry& entry) {
    if (RemoteEndpoints::id_of(key) == id) found = RemoteEndpoints::endpoint(key, entry, network_name);
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
  EXPECT_EQ(entry->vtep, ipv4("192.0.2.12"));
  EXPECT_EQ(RemoteEndpoints::name(*entry), "redis-1");
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
  auto* entry = store.put(e, ipv4("192.0.2.12"), &here).first;
  EXPECT_EQ(entry->endpoint->network_name(), "net-test");
  EXPECT_EQ(RemoteEndpoints::endpoint({}, *entry, nullptr).network_name, "net-record");
  store.name_network(e.network_id, nullptr);
  EXPECT_EQ(store.find(e.id)->endpoint->network_name(), "net-record");
  auto before = store.find(e.id)->endpoint;
  store.name_network(std::string(64, 'f'), &here);  // another network
  EXPECT_EQ(store.find(e.id)->endpoint, before);
  store.name_network(e.network_id, &here);
  EXPECT_EQ(store.find(e.id)->endpoint->network_name(), "net-test");
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
    ASSERT_NE(store.find(id), nullptr) << id;
    EXPECT_EQ(listed(store, id).id, id);
  }
  EXPECT_EQ(store.find(std::string(64, 'c')), nullptr);
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
  // Network, node, service and the record's network name: four strings
  // for ten endpoints.
  EXPECT_EQ(store.interned(), 4u);
  auto* entry = store.find(id_ending('0'));
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(&entry->endpoint->network_id(), &store.find(id_ending('9'))->endpoint->network_id());
  entry->reserved_here = true;
  auto changed = backend(id_ending('0'), std::string(64, '6'));
  changed.backend_state = BackendState::active;
  auto [replaced, fresh] = store.put(changed, ipv4("192.0.2.13"));
  EXPECT_FALSE(fresh);
  EXPECT_TRUE(replaced->reserved_here);
  EXPECT_EQ(replaced->vtep, ipv4("192.0.2.13"));
  EXPECT_TRUE(same(listed(store, changed.id), changed));
  EXPECT_EQ(store.interned(), 5u);
  // The last user of a string frees it.
  store.erase(changed.id);
  EXPECT_EQ(store.interned(), 4u);
  for (int i = 1; i < 10; ++i) store.erase(id_ending(static_cast<char>('0' + i)));
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(store.interned(), 0u);
}

}  // namespace
}  // namespace weft::control::network
