// DnsSyncDriver: the worker that keeps the embedded DNS in line with the
// control plane. A real DnsAgent without namespaces (no root needed): what
// the driver published is read back through the agent's name view.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "control/discovery/dns_sync_driver.h"
#include "tests/support/scratch_netns.h"

namespace weft::control::discovery {
namespace {

using namespace std::chrono_literals;

// Inputs with `services` vip services "s0", "s1", ... on one network.
DnsInputs inputs_with(int services) {
  DnsInputs in;
  in.networks.push_back(Network{.id = "net-id", .name = "net", .driver = "overlay", .subnet = {}, .gateway = {},
                                .vni = 4096, .attachable = false, .created = {}, .node = "node1"});
  for (int i = 0; i < services; ++i) {
    Service s;
    s.id = "svc-" + std::to_string(i);
    s.name = "s" + std::to_string(i);
    s.network_ids = {"net-id"};
    in.services.push_back(std::move(s));
  }
  return in;
}

class DnsSyncDriverTest : public ::testing::Test {
 protected:
  DnsAgentConfig config() {
    DnsAgentConfig c;
    c.host_resolv_conf = dir_.path() / "no-resolv.conf";  // no upstreams at all
    c.node_name = "node1";
    c.state_dir = dir_.path().string();
    c.resolv_root = dir_.path() / "etc-netns";
    return c;
  }
  // The inputs the driver reads, as the managers would hold them.
  std::function<DnsInputs()> reader() {
    return [this] {
      ++reads_;
      std::lock_guard lock(mutex_);
      return inputs_with(services_);
    };
  }
  void set_services(int n) {
    std::lock_guard lock(mutex_);
    services_ = n;
  }
  // Names published: "sN" and "sN.net", and "tasks." of both, per service.
  std::size_t names() const { return agent_.view().counts().names; }

  weft::testing::ScratchDir dir_;
  DnsAgent agent_{config()};
  std::mutex mutex_;
  int services_ = 1;
  std::atomic<int> reads_{0};
};

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = 3s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

TEST_F(DnsSyncDriverTest, SyncsOnceAtStart) {
  DnsSyncDriver driver(agent_, reader());
  ASSERT_TRUE(eventually([&] { return driver.syncs() == 1; }));
  EXPECT_EQ(names(), 4u);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(driver.syncs(), 1u) << "nothing changed, nothing to sync";
}

TEST_F(DnsSyncDriverTest, ABurstOfChangesIsOneSync) {
  DnsSyncDriver driver(agent_, reader(), {.debounce = 50ms, .max_delay = 1000ms, .prune_interval = 60s});
  ASSERT_TRUE(eventually([&] { return driver.syncs() == 1; }));
  set_services(3);
  for (int i = 0; i < 20; ++i) driver.changed();
  ASSERT_TRUE(eventually([&] { return names() == 12u; }));
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(driver.syncs(), 2u);
}

// An attach or detach returns once the names are what it made them: the
// sync it waits for read the inputs after the call began.
TEST_F(DnsSyncDriverTest, SyncNowWaitsForASyncThatSawTheChange) {
  // A debounce far longer than the wait: only sync_now can be in time.
  DnsSyncDriver driver(agent_, reader(), {.debounce = 10s, .max_delay = 10s, .prune_interval = 60s});
  ASSERT_TRUE(eventually([&] { return driver.syncs() == 1; }));
  for (int n = 2; n <= 5; ++n) {
    set_services(n);
    driver.changed();
    ASSERT_TRUE(driver.sync_now(2s));
    EXPECT_EQ(names(), 4u * static_cast<std::size_t>(n)) << "right after sync_now returned";
  }
}

// A sync that is under way when sync_now is called may have read the
// inputs before the caller's change: sync_now waits for the next one.
TEST_F(DnsSyncDriverTest, SyncNowDoesNotSettleForASyncAlreadyUnderWay) {
  std::atomic<bool> slow{false};
  std::atomic<bool> reading{false};
  DnsSyncDriver driver(
      agent_,
      [&] {
        std::unique_lock lock(mutex_);
        auto in = inputs_with(services_);
        lock.unlock();
        if (slow) {
          reading = true;
          // The caller's change lands meanwhile; the next sync is as slow,
          // so a wait that settled for this one would see the old names.
          std::this_thread::sleep_for(300ms);
        }
        return in;
      },
      {.debounce = 10s, .max_delay = 10s, .prune_interval = 60s});
  ASSERT_TRUE(eventually([&] { return driver.syncs() == 1; }));
  slow = true;
  std::thread first([&] { driver.sync_now(2s); });
  ASSERT_TRUE(eventually([&] { return reading.load(); }));
  set_services(2);
  ASSERT_TRUE(driver.sync_now(2s));
  EXPECT_EQ(names(), 8u);
  first.join();
}

TEST_F(DnsSyncDriverTest, PrunesOnATimer) {
  DnsSyncDriver driver(agent_, reader(), {.debounce = 20ms, .max_delay = 200ms, .prune_interval = 50ms});
  EXPECT_TRUE(eventually([&] { return driver.prunes() >= 3; }));
}

TEST_F(DnsSyncDriverTest, AfterStopNothingWaitsOrSyncs) {
  DnsSyncDriver driver(agent_, reader());
  ASSERT_TRUE(eventually([&] { return driver.syncs() == 1; }));
  driver.stop();
  const int reads = reads_;
  driver.changed();
  const auto before = std::chrono::steady_clock::now();
  EXPECT_FALSE(driver.sync_now(2s));
  EXPECT_LT(std::chrono::steady_clock::now() - before, 500ms);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(reads_, reads);
  driver.stop();  // idempotent
}

}  // namespace
}  // namespace weft::control::discovery
