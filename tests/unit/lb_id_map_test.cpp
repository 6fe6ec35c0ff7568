// The load balancer's id map: ids survive a restart through the file, freed
// ids come back last, limits hold, and a file that is not a sound id map is
// refused with a message naming it (never guessed at).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "control/services/lb_id_map.h"
#include "tests/support/scratch_netns.h"

namespace weft::control::services {
namespace {

using weft::testing::ScratchDir;

std::string hex_id(char c) { return std::string(64, c); }
LbServiceKey key(char service, char network = 'n') { return {hex_id(service), hex_id(network)}; }

class LbIdMapTest : public ::testing::Test {
 protected:
  std::filesystem::path path() const { return dir_.path() / "lb" / "ids.json"; }
  LbIdMap load(LbIdMap::Bounds bounds = {}) { return LbIdMap::load(path(), bounds); }
  void write(const std::string& text) {
    std::filesystem::create_directories(path().parent_path());
    std::ofstream(path()) << text;
  }
  // The message of the LbIdMapError that loading throws ("" if none).
  std::string refusal(LbIdMap::Bounds bounds = {}) {
    try {
      load(bounds);
    } catch (const LbIdMapError& e) {
      return e.what();
    }
    return "";
  }
  ScratchDir dir_;
};

TEST_F(LbIdMapTest, NoFileIsAnEmptyMap) {
  auto map = load();
  EXPECT_EQ(map.service_count(), 0u);
  EXPECT_EQ(map.backend_count(), 0u);
  EXPECT_FALSE(map.dirty());
  map.save();  // nothing to write
  EXPECT_FALSE(std::filesystem::exists(path()));
}

TEST_F(LbIdMapTest, IdsSurviveSaveAndLoad) {
  {
    auto map = load();
    EXPECT_EQ(map.assign_service(key('a')), 1u);
    EXPECT_EQ(map.assign_service(key('b')), 2u);
    EXPECT_EQ(map.assign_service(key('a', 'm')), 3u) << "one id per (service, network)";
    EXPECT_EQ(map.assign_service(key('a')), 1u) << "a key keeps its id";
    EXPECT_EQ(map.assign_backend(hex_id('e')), 1u);
    EXPECT_EQ(map.assign_backend(hex_id('f')), 2u);
    map.release_backend(1);
    EXPECT_TRUE(map.dirty());
    map.save();
    EXPECT_FALSE(map.dirty());
  }
  auto map = load();
  EXPECT_EQ(map.service(key('a')), 1u);
  EXPECT_EQ(map.service(key('b')), 2u);
  EXPECT_EQ(map.service(key('a', 'm')), 3u);
  EXPECT_EQ(map.backend(hex_id('f')), 2u);
  EXPECT_EQ(map.backend(hex_id('e')), std::nullopt);
  ASSERT_TRUE(map.endpoint_of(2));
  EXPECT_EQ(*map.endpoint_of(2), hex_id('f'));
  ASSERT_TRUE(map.service_key(3));
  EXPECT_EQ(*map.service_key(3), key('a', 'm'));
  // The cursor came back too: the next id is not the freed one.
  EXPECT_EQ(map.assign_backend(hex_id('g')), 3u);
}

// Model ids (64 lowercase hex) are held packed, others as strings: both
// come back with their exact text, and neither is taken for the other.
TEST_F(LbIdMapTest, PackedAndOtherEndpointIdsKeepTheirText) {
  const std::string model = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  std::string upper = model;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::string shorter = model.substr(1);
  {
    auto map = load();
    EXPECT_EQ(map.assign_backend(model), 1u);
    EXPECT_EQ(map.assign_backend(upper), 2u) << "another id than the lowercase one";
    EXPECT_EQ(map.assign_backend(shorter), 3u);
    EXPECT_EQ(map.assign_backend(model), 1u);
    EXPECT_EQ(map.endpoint_of(1), model);
    EXPECT_EQ(map.endpoint_of(2), upper);
    map.release_backend(2);
    EXPECT_EQ(map.backend(upper), std::nullopt);
    EXPECT_EQ(map.backend(model), 1u);
    map.save();
  }
  auto map = load();
  EXPECT_EQ(map.endpoint_of(1), model);
  EXPECT_EQ(map.endpoint_of(3), shorter);
  EXPECT_EQ(map.backend(shorter), 3u);
  EXPECT_EQ(map.backend_count(), 2u);
  map.release_backend(1);
  EXPECT_EQ(map.backend(model), std::nullopt);
  EXPECT_EQ(map.assign_backend(model), 4u);
}

// The file is written without a json document in memory: its text must be
// the one the document dumps, quotes escaped.
TEST_F(LbIdMapTest, SerializedTextIsTheJsonDocumentsDump) {
  auto map = load();
  EXPECT_EQ(map.serialize(), nlohmann::json::parse(map.serialize()).dump() + "\n") << "empty";
  ASSERT_TRUE(map.assign_service(key('a')));
  ASSERT_TRUE(map.assign_service({"svc\"quoted\\", hex_id('n')}));
  ASSERT_TRUE(map.assign_backend(hex_id('e')));
  ASSERT_TRUE(map.assign_backend("ep\"2"));
  map.release_backend(*map.backend(hex_id('e')));
  const std::string text = map.serialize();
  const auto doc = nlohmann::json::parse(text);
  EXPECT_EQ(text, doc.dump() + "\n");
  EXPECT_EQ(doc.at("services").size(), 2u);
  EXPECT_EQ(doc.at("services")[1].at("service"), "svc\"quoted\\");
  EXPECT_EQ(doc.at("backends")[0].at("endpoint"), "ep\"2");
  EXPECT_EQ(doc.at("next_backend"), 3);
}

// Ids are held packed with a hash index of their numbers (packed_id_table.h):
// after many assigns and releases in random order, in both shapes, every
// id is still found by its key and every key by its id, exactly as a plain
// map of the same history says, and the file says the same after a load.
TEST_F(LbIdMapTest, ManyIdsChurnedStayFoundBothWays) {
  auto map = load({.max_services = 4096, .max_backends = 8192});
  std::map<std::string, std::uint32_t> backends;
  std::map<LbServiceKey, std::uint32_t> services;
  std::uint64_t seed = 42;
  auto next = [&seed] {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return seed >> 33;
  };
  // Long shared prefixes, as tools' ids have; one in 16 of another shape.
  auto backend_key = [](std::uint64_t n) {
    std::string id = std::string(48, 'e') + fmt::format("{:016x}", n * 2654435761ULL);
    return n % 16 == 0 ? "ep-" + std::to_string(n) : id;
  };
  auto service_key = [](std::uint64_t n) {
    return LbServiceKey{n % 16 == 0 ? "svc-" + std::to_string(n) : std::string(56, '5') + fmt::format("{:08x}", n),
                        hex_id(n % 3 == 0 ? 'm' : 'n')};
  };
  for (int round = 0; round < 20000; ++round) {
    const std::uint64_t n = next() % 6000;
    if (next() % 3 == 0) {
      const auto key = backend_key(n);
      if (auto it = backends.find(key); it != backends.end()) {
        map.release_backend(it->second);
        backends.erase(it);
      } else {
        auto id = map.assign_backend(key);
        ASSERT_TRUE(id);
        backends[key] = *id;
      }
    } else if (next() % 2 == 0) {
      auto id = map.assign_backend(backend_key(n));
      ASSERT_TRUE(id);
      auto [it, fresh] = backends.try_emplace(backend_key(n), *id);
      ASSERT_EQ(it->second, *id) << "a key keeps its id";
    } else {
      const auto key = service_key(n % 3000);
      if (auto it = services.find(key); it != services.end() && next() % 2 == 0) {
        map.release_service(it->second);
        services.erase(it);
      } else {
        auto id = map.assign_service(key);
        ASSERT_TRUE(id);
        auto [it2, fresh] = services.try_emplace(key, *id);
        ASSERT_EQ(it2->second, *id);
      }
    }
  }
  auto check = [&](const LbIdMap& m) {
    ASSERT_EQ(m.backend_count(), backends.size());
    ASSERT_EQ(m.service_count(), services.size());
    for (const auto& [key, id] : backends) {
      ASSERT_EQ(m.backend(key), id) << key;
      ASSERT_EQ(m.endpoint_of(id), key);
    }
    for (const auto& [key, id] : services) {
      ASSERT_EQ(m.service(key), id) << key.service_id;
      ASSERT_EQ(m.service_key(id), key);
    }
    for (std::uint64_t n = 6000; n < 6100; ++n) ASSERT_EQ(m.backend(backend_key(n)), std::nullopt);
    std::uint32_t last = 0;
    std::size_t count = 0;
    m.for_each_backend([&](std::uint32_t id) {
      EXPECT_GT(id, last) << "in id order";
      last = id;
      ++count;
    });
    EXPECT_EQ(count, backends.size());
  };
  check(map);
  ASSERT_GT(backends.size(), 1000u);
  map.save();
  check(load({.max_services = 4096, .max_backends = 8192}));
}

// The file as the agent wrote it before the ids were packed (verbatim): it
// loads, gives the same ids, and is written again to the same text.
TEST_F(LbIdMapTest, AFileOfTheEarlierMapLoadsAndIsWrittenTheSame) {
  const std::string earlier =
      R"({"backends":[{"endpoint":")" + hex_id('e') + R"(","id":1},{"endpoint":"ep\"2","id":3},{"endpoint":")" +
      hex_id('f') + R"(","id":7}],"format":"weft-lb-ids","next_backend":8,"next_service":4,"services":[{"id":1,)" +
      R"("network":")" + hex_id('n') + R"(","service":")" + hex_id('a') + R"("},{"id":3,"network":")" + hex_id('n') +
      R"(","service":"svc1"}],"version":1})" + "\n";
  write(earlier);
  auto map = load();
  EXPECT_EQ(map.serialize(), earlier);
  EXPECT_EQ(map.backend(hex_id('e')), 1u);
  EXPECT_EQ(map.backend("ep\"2"), 3u);
  EXPECT_EQ(map.backend(hex_id('f')), 7u);
  EXPECT_EQ(map.service(key('a')), 1u);
  EXPECT_EQ(map.service({"svc1", hex_id('n')}), 3u);
  EXPECT_EQ(map.assign_backend(hex_id('g')), 8u) << "the cursor too";
}

TEST_F(LbIdMapTest, FreedIdsComeBackOnlyAfterAllOthers) {
  auto map = load({.max_services = 5, .max_backends = 4});
  for (char c : {'a', 'b', 'c'}) map.assign_backend(hex_id(c));  // 1, 2, 3
  map.release_backend(2);
  EXPECT_EQ(map.assign_backend(hex_id('d')), 2u) << "2 is the only free id of 1..3";
  map.release_backend(1);
  map.release_backend(3);
  EXPECT_EQ(map.assign_backend(hex_id('e')), 3u) << "after 2 comes 3, not the older 1";
  EXPECT_EQ(map.assign_backend(hex_id('f')), 1u);
}

TEST_F(LbIdMapTest, LimitsHold) {
  auto map = load({.max_services = 3, .max_backends = 3});
  EXPECT_EQ(map.assign_service(key('a')), 1u);
  EXPECT_EQ(map.assign_service(key('b')), 2u);
  EXPECT_EQ(map.assign_service(key('c')), std::nullopt) << "ids are 1 .. max_services-1";
  EXPECT_EQ(map.assign_backend(hex_id('a')), 1u);
  EXPECT_EQ(map.assign_backend(hex_id('b')), 2u);
  EXPECT_EQ(map.assign_backend(hex_id('c')), std::nullopt);
  map.release_service(1);
  EXPECT_EQ(map.assign_service(key('c')), 1u);
  map.save();
  // Lower limits than the file's ids: refused, naming the flag.
  auto message = refusal({.max_services = 2, .max_backends = 3});
  EXPECT_NE(message.find("--lb-max-services"), std::string::npos) << message;
}

TEST_F(LbIdMapTest, CorruptFilesAreRefusedWithAClearMessage) {
  const std::string good = [&] {
    auto map = load();
    map.assign_service(key('a'));
    map.assign_backend(hex_id('e'));
    return map.serialize();
  }();
  write(good);
  EXPECT_EQ(refusal(), "") << "the good file loads";

  auto expect_refused = [&](const std::string& text, const std::string& why) {
    SCOPED_TRACE(why);
    write(text);
    const auto message = refusal();
    ASSERT_NE(message, "") << "accepted: " << text;
    EXPECT_NE(message.find(path().string()), std::string::npos) << message;
    EXPECT_NE(message.find("move the file away"), std::string::npos) << message;
  };
  expect_refused(good.substr(0, good.size() / 2), "truncated");
  expect_refused("", "empty");
  expect_refused("[]", "not an object");
  expect_refused(R"({"format":"something-else","version":1})", "another format");
  expect_refused(R"({"format":"weft-lb-ids","version":2,"next_service":1,"next_backend":1,"services":[],"backends":[]})",
                 "another version");
  expect_refused(R"({"format":"weft-lb-ids","version":1,"next_service":1,"next_backend":1,"services":[{"id":0,"service":")" +
                     hex_id('a') + R"(","network":")" + hex_id('n') + R"("}],"backends":[]})",
                 "id 0");
  expect_refused(R"({"format":"weft-lb-ids","version":1,"next_service":1,"next_backend":1,"services":[],"backends":[{"id":1,"endpoint":")" +
                     hex_id('a') + R"("},{"id":1,"endpoint":")" + hex_id('b') + R"("}]})",
                 "one id twice");
  expect_refused(R"({"format":"weft-lb-ids","version":1,"next_service":1,"next_backend":1,"services":[],"backends":[{"id":1,"endpoint":")" +
                     hex_id('a') + R"("},{"id":2,"endpoint":")" + hex_id('a') + R"("}]})",
                 "one endpoint twice");
  expect_refused(R"({"format":"weft-lb-ids","version":1,"next_service":1,"next_backend":1,"services":[],"backends":[{"id":1,"endpoint":"a\nb"}]})",
                 "control character in a key");
  expect_refused(R"({"format":"weft-lb-ids","version":1,"next_service":1,"next_backend":1,"services":[],"backends":[{"id":"1","endpoint":"x"}]})",
                 "id of another type");
  // Far larger than any map within the limits: refused before reading it.
  expect_refused(std::string(4 * 1024 * 1024, ' '), "oversized");
}

}  // namespace
}  // namespace weft::control::services
