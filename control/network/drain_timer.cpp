#include "control/network/drain_timer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

namespace weft::control::network {

std::string rfc3339_seconds(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(const std::string& text) {
  std::tm utc{};
  const char* rest = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &utc);
  if (!rest) return std::nullopt;
  // Fractions of a second (now_rfc3339's form) are dropped.
  if (*rest == '.') {
    ++rest;
    while (*rest >= '0' && *rest <= '9') ++rest;
  }
  if (std::string_view(rest) != "Z") return std::nullopt;
  const std::time_t seconds = ::timegm(&utc);
  if (seconds == static_cast<std::time_t>(-1)) return std::nullopt;
  return std::chrono::system_clock::from_time_t(seconds);
}

DrainTimer::DrainTimer(std::function<void(const std::string&)> due)
    : due_(std::move(due)), thread_([this] { run(); }) {}

DrainTimer::~DrainTimer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void DrainTimer::arm(const std::string& endpoint_id, Clock::time_point when) {
  {
    std::lock_guard lock(mutex_);
    deadlines_[endpoint_id] = when;
  }
  changed_.notify_all();
}

void DrainTimer::cancel(const std::string& endpoint_id) {
  std::lock_guard lock(mutex_);
  deadlines_.erase(endpoint_id);
}

std::size_t DrainTimer::pending() const {
  std::lock_guard lock(mutex_);
  return deadlines_.size();
}

void DrainTimer::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (deadlines_.empty()) {
      changed_.wait(lock);
      continue;
    }
    const auto next = std::min_element(deadlines_.begin(), deadlines_.end(),
                                       [](const auto& a, const auto& b) { return a.second < b.second; });
    if (next->second > Clock::now()) {
      changed_.wait_until(lock, next->second);
      continue;
    }
    const std::string id = next->first;
    deadlines_.erase(next);
    lock.unlock();
    try {
      due_(id);
    } catch (const std::exception& e) {
      spdlog::error("finishing the drain of endpoint {}: {}", id, e.what());
    }
    lock.lock();
  }
}

}  // namespace weft::control::network
