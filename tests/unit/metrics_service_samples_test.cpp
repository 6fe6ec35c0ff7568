// weft_service_backends counts a service's backends from the load balancer's
// view, whichever way the view carries them: a list of backends, or the
// network manager's shared snapshot of every endpoint (issue 9), where
// endpoints without a service are skipped.
#include <gtest/gtest.h>

#include <memory>

#include "observe/metrics_agent.h"

namespace weft::observe {
namespace {

control::Endpoint endpoint(const std::string& id, const std::string& service_id, control::BackendState state) {
  control::Endpoint e;
  e.id = id;
  e.service_id = service_id;
  e.backend_state = state;
  return e;
}

TEST(MetricsServiceSamplesTest, BackendsAreCountedFromTheSharedSnapshot) {
  control::services::LbView view;
  control::Service redis;
  redis.id = std::string(64, '5');
  redis.name = "redis";
  view.services.push_back(redis);
  view.all_endpoints = control::EndpointSnapshot::of({endpoint("a", redis.id, control::BackendState::active),
                                                      endpoint("b", redis.id, control::BackendState::draining),
                                                      endpoint("c", redis.id, control::BackendState::active),
                                                      endpoint("client", "", control::BackendState::active)},
                                                     7);

  MetricsSamples out;
  add_service_samples(view, {}, out);
  ASSERT_EQ(out.services.size(), 1u);
  EXPECT_EQ(out.services[0].name, "redis");
  EXPECT_EQ(out.services[0].active_backends, 2u);
  EXPECT_EQ(out.services[0].draining_backends, 1u);

  // The same from a plain list.
  view.all_endpoints.reset();
  view.backends = {endpoint("a", redis.id, control::BackendState::active)};
  MetricsSamples listed;
  add_service_samples(view, {}, listed);
  ASSERT_EQ(listed.services.size(), 1u);
  EXPECT_EQ(listed.services[0].active_backends, 1u);
}

}  // namespace
}  // namespace weft::observe
