// ServiceStore (control/services/service_store.h): one file a service, so a
// change writes only its own service's record; an older agent's single
// services.json is migrated; crash leftovers and corrupt records.
#include "control/services/service_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "control/model/ids.h"
#include "control/model/record_json.h"
#include "control/network/state_file.h"
#include "control/services/service_manager.h"
#include "tests/support/addresses.h"
#include "tests/support/fake_service_networks.h"
#include "tests/support/scratch_netns.h"

namespace weft::control::services {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

Service service_named(const std::string& name) {
  Service s;
  s.id = random_id();
  s.name = name;
  s.node = "node1";
  s.created = "2026-11-26T20:00:00Z";
  return s;
}

struct FileStamp {
  ino_t inode;
  std::int64_t mtime_ns;
  bool operator==(const FileStamp&) const = default;
};
FileStamp stamp(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {0, -1};
  return {st.st_ino, st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec};
}

class ServiceStoreTest : public ::testing::Test {
 protected:
  fs::path state_dir() const { return dir.path() / "state"; }
  testing::ScratchDir dir;
};

TEST_F(ServiceStoreTest, WritesAndRemovesOneFileAService) {
  ServiceStore store(state_dir());
  EXPECT_TRUE(store.load().empty());
  auto a = service_named("a"), b = service_named("b");
  store.write(a);
  store.write(b);
  EXPECT_TRUE(fs::exists(state_dir() / "services" / (a.id + ".json")));
  b.replicas = 3;
  store.write(b);
  store.remove(a.id);
  store.remove(a.id);  // gone already: no error
  auto loaded = ServiceStore(state_dir()).load();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded.at(b.id).name, "b");
  EXPECT_EQ(loaded.at(b.id).replicas, 3u);
  EXPECT_FALSE(fs::exists(state_dir() / "services.json"));
  auto bad = service_named("bad");
  bad.id = "../escape";
  EXPECT_THROW(store.write(bad), std::invalid_argument);
}

TEST_F(ServiceStoreTest, MigratesTheSingleFileOfOlderAgents) {
  auto a = service_named("a"), b = service_named("b");
  nlohmann::json old = {{"version", 1}, {"services", {service_record(a), service_record(b)}}};
  network::write_file_atomically(state_dir() / "services.json", old.dump(2));
  // A migration a crash cut short: b has its own file already, newer.
  b.replicas = 5;
  ServiceStore(state_dir()).write(b);
  auto loaded = ServiceStore(state_dir()).load();
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded.at(a.id).name, "a");
  EXPECT_EQ(loaded.at(b.id).replicas, 5u) << "a service's own file wins over the old single file";
  EXPECT_FALSE(fs::exists(state_dir() / "services.json")) << "removed once migrated";
  EXPECT_TRUE(fs::exists(state_dir() / "services" / (a.id + ".json")));
  EXPECT_EQ(ServiceStore(state_dir()).load().size(), 2u);
}

TEST_F(ServiceStoreTest, CrashLeftoversGoAndCorruptRecordsAreNamed) {
  ServiceStore store(state_dir());
  auto a = service_named("a");
  store.write(a);
  std::ofstream(state_dir() / "services" / ("." + a.id + ".json.tmp.AbC123")) << "{\"half";
  EXPECT_EQ(ServiceStore(state_dir()).load().size(), 1u);
  EXPECT_FALSE(fs::exists(state_dir() / "services" / ("." + a.id + ".json.tmp.AbC123")));
  std::ofstream(state_dir() / "services" / (a.id + ".json")) << "{\"half";
  try {
    ServiceStore(state_dir()).load();
    ADD_FAILURE() << "a corrupt record loaded";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(a.id + ".json is corrupt"));
  }
}

// The reason for the store: a create writes its own record, not every
// service's (the single services.json was rewritten whole per create).
TEST_F(ServiceStoreTest, ACreateLeavesTheOtherServicesRecordsUntouched) {
  testing::FakeServiceNetworks fake;
  fake.add_network("net-test", "10.0.0.0/24");
  ServiceManager manager(ServiceManagerConfig{.node_name = "node1", .state_dir = state_dir()}, fake);
  manager.reconcile();
  auto first = manager.create_service({.name = "first", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  const auto first_file = state_dir() / "services" / (first.id + ".json");
  const auto before = stamp(first_file);
  ASSERT_NE(before.mtime_ns, -1) << first_file << " is missing";
  auto second = manager.create_service({.name = "second", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  manager.update_service("second", {});
  manager.remove_service("second");
  EXPECT_EQ(stamp(first_file), before) << "the first service's record was rewritten";
  EXPECT_FALSE(fs::exists(state_dir() / "services" / (second.id + ".json")));
  EXPECT_FALSE(fs::exists(state_dir() / "services.json"));
}

}  // namespace
}  // namespace weft::control::services
