// The worker that keeps the embedded DNS in line with the control plane, as
// ServiceDataplaneDriver does for the load balancer: a thread of its own
// that, after a change is signalled, waits a little for more (debounce) and
// calls DnsAgent::sync with the current inputs; every `prune_interval` it
// calls DnsAgent::prune (namespaces deleted without a detach). sync() runs
// only here, so `read` is never called with a caller's lock held. weftd
// wires it:
//
//   DnsSyncDriver driver(agent, [&] { return dns_inputs(networks, services); });
//   networks.on_endpoints_changed([&] { driver.changed(); });
//   networks.on_networks_changed([&] { driver.changed(); });
//   services.on_change([&] { driver.changed(); });
//   // An attach returns once its namespace is served, a detach once its
//   // names are gone on this node:
//   networks.after_local_attach_or_detach([&] { driver.sync_now(std::chrono::seconds(2)); });
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "control/discovery/dns_agent.h"

namespace weft::control::discovery {

struct DnsSyncTiming {
  // A change is synced once no other came for `debounce`, but at most
  // `max_delay` after the first of a burst.
  std::chrono::milliseconds debounce{20};
  std::chrono::milliseconds max_delay{200};
  std::chrono::milliseconds prune_interval{5000};
};

class DnsSyncDriver {
 public:
  // Starts the thread, which syncs once at once (the start's
  // reconciliation). `read` is called on that thread.
  DnsSyncDriver(DnsAgent& agent, std::function<DnsInputs()> read, DnsSyncTiming timing = {});
  ~DnsSyncDriver();  // stop()
  DnsSyncDriver(const DnsSyncDriver&) = delete;
  DnsSyncDriver& operator=(const DnsSyncDriver&) = delete;

  // Something the names follow from changed; cheap, from any thread.
  void changed();
  // Asks for a sync without the debounce and waits until one that started
  // after this call has finished, `timeout` at most. False when the wait
  // timed out or the driver is stopped. Not from the driver's own thread.
  bool sync_now(std::chrono::milliseconds timeout);
  // Ends the thread after the sync in progress; idempotent. Later calls of
  // changed() and sync_now() do nothing.
  void stop();

  std::uint64_t syncs() const;  // finished
  std::uint64_t prunes() const;

 private:
  using Clock = std::chrono::steady_clock;
  void run();

  DnsAgent& agent_;
  std::function<DnsInputs()> read_;
  DnsSyncTiming timing_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable synced_;
  bool stopping_ = false;
  bool urgent_ = false;
  std::optional<Clock::time_point> first_change_, last_change_;
  std::uint64_t started_ = 0;   // syncs begun
  std::uint64_t finished_ = 0;  // syncs ended (started_ or started_ - 1)
  std::uint64_t prunes_ = 0;
  std::thread thread_;  // last: starts once the rest is ready
};

}  // namespace weft::control::discovery
