#include "control/gossip/log_limiter.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace weft::control {

namespace {

std::string describe(std::chrono::milliseconds interval) {
  if (interval.count() % 1000 == 0) return fmt::format("{}s", interval.count() / 1000);
  return fmt::format("{}ms", interval.count());
}

}  // namespace

LogLimiter::LogLimiter(std::chrono::milliseconds interval, std::size_t max_sources, Sink sink)
    : interval_(interval), max_sources_(max_sources), sink_(std::move(sink)) {
  if (!sink_) sink_ = [](const std::string& line) { spdlog::warn("{}", line); };
}

bool LogLimiter::allow(std::string_view kind, std::string_view source, Clock::time_point now) {
  if (now - last_flush_ >= interval_) flush(now);
  Key key{std::string(kind), std::string(source)};
  auto it = windows_.find(key);
  if (it == windows_.end() && windows_.size() >= max_sources_) {
    // Past the limit new sources are lumped together, so spoofed addresses
    // can neither grow this table nor multiply the lines.
    key.second = std::string(kOtherSources);
    it = windows_.find(key);
  }
  if (it != windows_.end() && now - it->second.start >= interval_) {
    summarise(it->first, it->second);
    windows_.erase(it);
    it = windows_.end();
  }
  if (it == windows_.end()) {
    windows_.emplace(std::move(key), Window{now, 0});
    return true;
  }
  ++it->second.suppressed;
  return false;
}

void LogLimiter::flush(Clock::time_point now) {
  last_flush_ = now;
  for (auto it = windows_.begin(); it != windows_.end();) {
    if (now - it->second.start < interval_) {
      ++it;
      continue;
    }
    summarise(it->first, it->second);
    it = windows_.erase(it);
  }
}

void LogLimiter::summarise(const Key& key, const Window& window) {
  if (window.suppressed == 0) return;
  sink_(fmt::format("{} more {} from {} in the last {}", window.suppressed, key.first, key.second,
                    describe(interval_)));
}

}  // namespace weft::control
