// Reads one scrape's samples (observe/metrics.h) from a running agent's
// modules. Every source is optional (null: its metrics are left out or
// zero), so an agent that has not started one yet still answers.
#pragma once

#include <functional>

#include "control/services/lb_view.h"
#include "control/services/service_dataplane.h"
#include "observe/metrics.h"

namespace weft::control::cluster {
class Cluster;
}
namespace weft::control::services {
class ServiceManager;
class ServiceDataplaneDriver;
}  // namespace weft::control::services
namespace weft::control::discovery {
class DnsAgent;
}

namespace weft::observe {

// Each returns null until its module is ready (weftd makes the load
// balancer and the DNS after reconcile, and starts the cluster then); read
// through functions so the listener may start first.
struct AgentSources {
  std::function<control::cluster::Cluster*()> cluster;
  control::services::ServiceManager* services = nullptr;
  std::function<control::services::ServiceDataplane*()> dataplane;
  std::function<control::services::ServiceDataplaneDriver*()> driver;
  std::function<control::discovery::DnsAgent*()> dns;
};

MetricsSamples gather_metrics(const AgentSources& sources);

// The service part of a scrape: backends by state and connections per
// service name, drops and map fill (pure: the bench and tests feed it).
void add_service_samples(const control::services::LbView& view, control::services::LbMetrics lb,
                         MetricsSamples& out);

}  // namespace weft::observe
