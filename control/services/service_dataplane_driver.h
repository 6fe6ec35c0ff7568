// The worker that keeps the node's load balancer in line with the control
// plane: a thread of its own that, after a change is signalled, waits a
// little for more (debounce), takes the current LbView and applies it.
// apply() runs only here, so the data path has one driver; an apply that
// left something undone is retried with a back-off; conntrack is collected
// every gc_interval; once applies have stopped for release_after, the heap's
// free pages go back to the system. weftd wires it to the service manager:
//
//   ServiceDataplaneDriver driver(dataplane, [&] { return services.lb_view(); });
//   services.on_change([&] { driver.changed(); });
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "control/services/lb_view.h"
#include "control/services/service_dataplane.h"
#include "observe/metrics_histogram.h"

namespace weft::control::services {

struct DriverTiming {
  // A change is applied once no other came for `debounce`, but at most
  // `max_delay` after the first of a burst.
  std::chrono::milliseconds debounce{20};
  std::chrono::milliseconds max_delay{200};
  // After an incomplete apply: first retry, doubling up to max_retry.
  std::chrono::milliseconds first_retry{500};
  std::chrono::milliseconds max_retry{30000};
  std::chrono::milliseconds gc_interval{10000};
  // Quiet time after the last apply until free heap pages are handed back
  // (malloc_trim; 0: never). Building views of thousands of services, and
  // the creates that led to them, leave glibc's arenas holding as much free
  // memory as is in use (10 000 services: 55 MB held, 25 MB in use), which
  // it would otherwise keep for good.
  std::chrono::milliseconds release_after{2000};
};

class ServiceDataplaneDriver {
 public:
  // Starts the thread, which applies the view once at once (the start's
  // reconciliation). `view` is called on that thread and must be safe there.
  ServiceDataplaneDriver(ServiceDataplane& dataplane, std::function<LbView()> view, DriverTiming timing = {});
  ~ServiceDataplaneDriver();  // stop()
  ServiceDataplaneDriver(const ServiceDataplaneDriver&) = delete;
  ServiceDataplaneDriver& operator=(const ServiceDataplaneDriver&) = delete;

  // Something in the view changed; cheap, from any thread.
  void changed();
  // Ends the thread after the apply in progress; idempotent.
  void stop();

  // Applies done and whether the last one was complete (tests, metrics).
  std::uint64_t applies() const;
  bool last_apply_complete() const;
  // Times free heap was handed back (tests, metrics).
  std::uint64_t memory_releases() const;
  // How long each apply took, the view's making included (weftd's /metrics).
  const observe::AtomicHistogram& apply_durations() const { return apply_durations_; }

 private:
  using Clock = std::chrono::steady_clock;
  void run();

  ServiceDataplane& dataplane_;
  std::function<LbView()> view_;
  DriverTiming timing_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::optional<Clock::time_point> first_change_, last_change_;
  std::uint64_t applies_ = 0;
  bool last_complete_ = false;
  std::uint64_t releases_ = 0;
  observe::AtomicHistogram apply_durations_{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  std::thread thread_;  // last: starts once the rest is ready
};

}  // namespace weft::control::services
