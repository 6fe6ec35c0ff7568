#include "control/discovery/dns_sync_driver.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace weft::control::discovery {

DnsSyncDriver::DnsSyncDriver(DnsAgent& agent, std::function<DnsInputs()> read, DnsSyncTiming timing)
    : agent_(agent), read_(std::move(read)), timing_(timing) {
  urgent_ = true;  // the first sync is due at once
  thread_ = std::thread([this] { run(); });
}

DnsSyncDriver::~DnsSyncDriver() { stop(); }

void DnsSyncDriver::changed() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    const auto now = Clock::now();
    if (!first_change_) first_change_ = now;
    last_change_ = now;
  }
  wake_.notify_one();
}

bool DnsSyncDriver::sync_now(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (stopping_) return false;
  // A sync under way may have read the inputs before the caller's change.
  const std::uint64_t wanted = started_ + 1;
  urgent_ = true;
  wake_.notify_one();
  const bool done =
      synced_.wait_for(lock, timeout, [&] { return stopping_ || finished_ >= wanted; }) && finished_ >= wanted;
  if (!done && !stopping_)
    spdlog::warn("dns: names not updated within {} ms of a change; they follow shortly", timeout.count());
  return done;
}

void DnsSyncDriver::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  synced_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::uint64_t DnsSyncDriver::syncs() const {
  std::lock_guard lock(mutex_);
  return finished_;
}

std::uint64_t DnsSyncDriver::prunes() const {
  std::lock_guard lock(mutex_);
  return prunes_;
}

void DnsSyncDriver::run() {
  auto next_prune = Clock::now() + timing_.prune_interval;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    const auto now = Clock::now();
    std::optional<Clock::time_point> sync_at;
    if (urgent_) sync_at = now;
    else if (first_change_) sync_at = std::min(*last_change_ + timing_.debounce, *first_change_ + timing_.max_delay);

    if (sync_at && *sync_at <= now) {
      urgent_ = false;
      first_change_.reset();
      last_change_.reset();
      const std::uint64_t number = ++started_;
      lock.unlock();
      try {
        agent_.sync(read_);  // logs its own errors; this catches the unexpected
      } catch (const std::exception& e) {
        spdlog::error("dns: sync failed: {}", e.what());
      }
      lock.lock();
      finished_ = number;
      synced_.notify_all();
      // sync() pruned too.
      next_prune = Clock::now() + timing_.prune_interval;
      continue;
    }
    if (now >= next_prune) {
      lock.unlock();
      try {
        agent_.prune();
      } catch (const std::exception& e) {
        spdlog::error("dns: prune failed: {}", e.what());
      }
      lock.lock();
      ++prunes_;
      next_prune = Clock::now() + timing_.prune_interval;
      continue;
    }
    wake_.wait_until(lock, sync_at ? std::min(*sync_at, next_prune) : next_prune);
  }
}

}  // namespace weft::control::discovery
