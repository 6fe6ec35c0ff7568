// API requests answered, by route template and status code, for weftd's
// /metrics (weft_api_requests_total{route,code}). Process-wide: one agent
// per process. Labels are bounded: a route is one of the route table's
// templates or "unmatched", a code is 100..599 or 0.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::control::api {

class RequestCounters {
 public:
  struct Sample {
    std::string route;
    unsigned code = 0;
    std::uint64_t count = 0;
  };

  // `route` must be a route_pattern() result (static storage).
  void record(std::string_view route, unsigned code) {
    if (code < 100 || code > 599) code = 0;
    std::lock_guard lock(mutex_);
    ++counts_[{route, code}];
  }
  std::vector<Sample> samples() const {
    std::lock_guard lock(mutex_);
    std::vector<Sample> out;
    out.reserve(counts_.size());
    for (const auto& [key, count] : counts_) out.push_back({std::string(key.first), key.second, count});
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string_view, unsigned>, std::uint64_t> counts_;
};

inline RequestCounters& request_counters() {
  static RequestCounters counters;
  return counters;
}

}  // namespace weft::control::api
