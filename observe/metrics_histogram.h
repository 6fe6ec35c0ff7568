// A latency histogram that a hot path can feed at the cost of a few relaxed
// atomic increments, and a scrape can read from another thread. Header-only,
// so a module (dns/, control/services/) can keep one without linking the
// observability library; observe/metrics.cpp turns it into a Prometheus
// histogram. Bounds are fixed at construction, so its size never grows.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

namespace weft::observe {

class AtomicHistogram {
 public:
  // Upper bounds in seconds, ascending; +Inf is implied.
  AtomicHistogram(std::initializer_list<double> bounds)
      : bounds_(bounds), buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {}

  void observe(std::chrono::nanoseconds elapsed) {
    const double seconds = std::chrono::duration<double>(elapsed).count();
    const auto bucket = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), seconds) -
                                                 bounds_.begin());
    buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, elapsed.count())),
                      std::memory_order_relaxed);
  }

  struct Snapshot {
    std::vector<double> bounds;                // without +Inf
    std::vector<std::uint64_t> counts;         // per bucket (not cumulative), last is +Inf
    double sum_seconds = 0;
    std::uint64_t count() const {
      std::uint64_t n = 0;
      for (auto c : counts) n += c;
      return n;
    }
  };
  Snapshot snapshot() const {
    Snapshot s;
    s.bounds = bounds_;
    s.counts.resize(bounds_.size() + 1);
    for (std::size_t i = 0; i <= bounds_.size(); ++i) s.counts[i] = buckets_[i].load(std::memory_order_relaxed);
    s.sum_seconds = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
    return s;
  }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<std::uint64_t> sum_ns_{0};
};

}  // namespace weft::observe
