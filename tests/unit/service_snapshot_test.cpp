// The services the service manager hands out (lb_view(), shared_services())
// are one immutable list shared until the next change, not a copy per
// reader; a view changed by hand copies first (ServiceList, lb_view.h).
#include <gtest/gtest.h>

#include <utility>

#include "control/services/service_manager.h"
#include "tests/support/fake_service_networks.h"
#include "tests/support/scratch_netns.h"

namespace weft::control::services {
namespace {

TEST(ServiceSnapshotTest, ViewsShareOneListUntilAChange) {
  testing::ScratchDir dir;
  testing::FakeServiceNetworks fake;
  fake.add_network("net-test", "10.0.0.0/24");
  ServiceManager manager(ServiceManagerConfig{.node_name = "node1", .state_dir = dir.path() / "state"}, fake);
  manager.reconcile();
  manager.create_service({.name = "a", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  auto first = manager.lb_view();
  auto second = manager.lb_view();
  ASSERT_EQ(first.services.size(), 1u);
  EXPECT_EQ(&first.services.list(), &second.services.list()) << "each view copied the services";
  EXPECT_EQ(manager.shared_services().get(), &first.services.list());
  const Service* a = &std::as_const(first.services)[0];

  // A view changed by hand is its own; the manager's list stays.
  second.services[0].name = "changed";
  EXPECT_NE(&first.services.list(), &second.services.list());
  EXPECT_EQ(manager.lb_view().services[0].name, "a");

  manager.create_service({.name = "b", .networks = {"net-test"}, .endpoint_mode = {}, .ports = {}});
  auto third = manager.lb_view();
  EXPECT_EQ(third.services.size(), 2u) << "a change makes a new list";
  EXPECT_EQ(first.services.size(), 1u) << "and leaves the one a view holds";
  const Service* a_again = nullptr;
  for (const Service& s : third.services)
    if (s.name == "a") a_again = &s;
  EXPECT_EQ(a_again, a) << "the new list shares the unchanged service (copy on write per service)";
  manager.update_service("b", {});
  EXPECT_NE(&manager.lb_view().services.list(), &third.services.list());
  manager.remove_service("a");
  EXPECT_EQ(manager.lb_view().services.size(), 1u);
  EXPECT_EQ(manager.services().size(), 1u);
}

}  // namespace
}  // namespace weft::control::services
