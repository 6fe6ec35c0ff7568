#include "control/services/service_dataplane_driver.h"

#include <malloc.h>

#include <algorithm>

#include <spdlog/spdlog.h>

namespace weft::control::services {

ServiceDataplaneDriver::ServiceDataplaneDriver(ServiceDataplane& dataplane, std::function<LbView()> view,
                                               DriverTiming timing)
    : dataplane_(dataplane), view_(std::move(view)), timing_(timing) {
  const auto now = Clock::now() - timing_.max_delay;  // the first apply is due at once
  first_change_ = now;
  last_change_ = now;
  thread_ = std::thread([this] { run(); });
}

ServiceDataplaneDriver::~ServiceDataplaneDriver() { stop(); }

void ServiceDataplaneDriver::changed() {
  {
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    if (!first_change_) first_change_ = now;
    last_change_ = now;
  }
  wake_.notify_one();
}

void ServiceDataplaneDriver::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

std::uint64_t ServiceDataplaneDriver::applies() const {
  std::lock_guard lock(mutex_);
  return applies_;
}

bool ServiceDataplaneDriver::last_apply_complete() const {
  std::lock_guard lock(mutex_);
  return last_complete_;
}

std::uint64_t ServiceDataplaneDriver::memory_releases() const {
  std::lock_guard lock(mutex_);
  return releases_;
}

void ServiceDataplaneDriver::run() {
  std::optional<Clock::time_point> retry_at;
  auto retry_delay = timing_.first_retry;
  auto next_gc = Clock::now() + timing_.gc_interval;
  constexpr auto kNever = Clock::time_point::max();
  auto release_at = kNever;
  bool fill_warned = false;

  std::unique_lock lock(mutex_);
  while (!stopping_) {
    const auto now = Clock::now();
    std::optional<Clock::time_point> apply_at;
    if (first_change_) apply_at = std::min(*last_change_ + timing_.debounce, *first_change_ + timing_.max_delay);
    if (retry_at && (!apply_at || *retry_at < *apply_at)) apply_at = retry_at;

    if (apply_at && *apply_at <= now) {
      first_change_.reset();
      last_change_.reset();
      retry_at.reset();
      lock.unlock();
      bool complete = false;
      const auto apply_started = Clock::now();
      try {
        complete = dataplane_.apply(view_());
      } catch (const std::exception& e) {
        spdlog::warn("service load balancer: apply failed: {}", e.what());
      }
      apply_durations_.observe(Clock::now() - apply_started);
      lock.lock();
      ++applies_;
      last_complete_ = complete;
      if (timing_.release_after.count() > 0) release_at = Clock::now() + timing_.release_after;
      if (complete) {
        retry_delay = timing_.first_retry;
      } else {
        retry_at = Clock::now() + retry_delay;
        retry_delay = std::min(retry_delay * 2, timing_.max_retry);
      }
      continue;
    }
    if (now >= next_gc) {
      lock.unlock();
      try {
        if (auto fill = dataplane_.collect_garbage()) {
          const bool high = fill->capacity > 0 && fill->entries * 10 > fill->capacity * 9;
          if (high && !fill_warned) {
            spdlog::warn("service load balancer: conntrack map {}% full ({} of {} entries); raise "
                         "--lb-conntrack-entries",
                         fill->entries * 100 / fill->capacity, fill->entries, fill->capacity);
          }
          fill_warned = high;
          spdlog::debug("service load balancer: conntrack {} of {} entries, {} expired so far", fill->entries,
                        fill->capacity, fill->expired);
        }
      } catch (const std::exception& e) {
        spdlog::warn("service load balancer: conntrack collection failed: {}", e.what());
      }
      lock.lock();
      next_gc = Clock::now() + timing_.gc_interval;
      continue;
    }
    // Only in a quiet spell: a change on its way resets it.
    if (first_change_) release_at = kNever;
    if (release_at <= now) {
      release_at = kNever;
      lock.unlock();
      malloc_trim(0);
      lock.lock();
      ++releases_;
      continue;
    }
    const auto until = std::min(apply_at ? std::min(*apply_at, next_gc) : next_gc, release_at);
    wake_.wait_until(lock, until);
  }
}

}  // namespace weft::control::services
