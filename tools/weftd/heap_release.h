// weftd hands free heap pages back to the system once a large change of its
// memory has settled. Why: glibc keeps the pages of freed chunks between live
// ones (and in the per-thread arenas) for good. After the arrival of 2 000
// services x 10 remote backends weftd's anon RSS stayed ~40% above its live
// heap (86 MB anon for ~61 MB live, heaptrack); a malloc_trim(0) from gdb had
// given -20%. The load balancer's driver trims 2 s after its last apply, but
// the DNS index, the tables' journal, the event watcher and the live page's
// poller go on churning after that. Measured (bench/services/run.sh
// --remote-backends 10 --remote-services 2000, BENCHMARKS.md "obs-trim"):
// no gain. Steady VmRSS 92.7 MB without it, 93.4 MB with it (settled
// trims only), 91.9 MB with the growth trigger against 92.2 / 91.7 MB
// without; VmHWM 133 against 132-138 MB. Anon RSS sampled every second
// shows why: its trims give back 8-100 MB and the pages are touched again
// within 1-5 s (the arrival's and the pollers' working set), and once the
// arrival ends the driver's trim has already taken what there is (a trim
// through gdb at steady state then gives back ~1.5 MB). Not done instead:
// MALLOC_ARENA_MAX=1/2 (144 / 145 MB against 121-123 MB without: worse), and
// M_TRIM_THRESHOLD (only the top of each heap; the free pages are between
// live chunks, which only malloc_trim's madvise reaches).
//
// The policy reads only the process's anon RSS (/proc/self/statm, no malloc
// lock) every `check_interval`; it trims when anon RSS has moved by at least
// `min_change` since the last trim (a large change: an arrival, a reconcile,
// a burst of table entries) and then moved by less than `settled_change`
// over one interval (the change is over), or has grown by `growth_change`
// since (a long arrival, still going), at most once per `min_interval`.
// A trim that gives back less than `min_gain` doubles that interval (up to
// `max_interval`), so a heap that cannot shrink costs one trim per
// max_interval at most; one that gains resets it.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>

namespace weft::tools {

struct HeapReleaseConfig {
  std::chrono::milliseconds check_interval{5000};
  std::size_t min_change = 16u << 20;
  std::size_t settled_change = 2u << 20;
  // Growth since the last trim after which it trims without waiting for the
  // change to settle (a long arrival: its garbage would set the peak).
  std::size_t growth_change = 48u << 20;
  std::chrono::milliseconds min_interval{30000};
  std::chrono::milliseconds max_interval{600000};
  std::size_t min_gain = 4u << 20;
};

// The decision alone (no clock, no /proc): tests drive it.
class HeapReleasePolicy {
 public:
  using Clock = std::chrono::steady_clock;
  explicit HeapReleasePolicy(HeapReleaseConfig config = {}) : config_(config), interval_(config.min_interval) {}

  // One check: anon RSS in bytes now. True: trim now, then call trimmed().
  bool check(std::size_t anon, Clock::time_point now) {
    const std::optional<std::size_t> previous = previous_;
    previous_ = anon;
    if (!baseline_) {
      baseline_ = anon;  // the start: nothing to compare with yet
      return false;
    }
    if (!previous) return false;
    if (distance(anon, *baseline_) < config_.min_change) return false;
    const bool settled = distance(anon, *previous) < config_.settled_change;
    const bool grown = anon >= *baseline_ + config_.growth_change;
    if (!settled && !grown) return false;
    if (last_trim_ && now - *last_trim_ < interval_) return false;
    return true;
  }

  // After a trim: anon RSS before and after it.
  void trimmed(std::size_t before, std::size_t after, Clock::time_point now) {
    last_trim_ = now;
    baseline_ = after;
    previous_ = after;
    const bool gained = before > after && before - after >= config_.min_gain;
    interval_ = gained ? config_.min_interval
                       : std::min<Clock::duration>(interval_ * 2, config_.max_interval);
  }

  Clock::duration interval() const { return interval_; }

 private:
  static std::size_t distance(std::size_t a, std::size_t b) { return a > b ? a - b : b - a; }

  HeapReleaseConfig config_;
  Clock::duration interval_;
  std::optional<std::size_t> baseline_;  // anon RSS after the last trim (or at the start)
  std::optional<std::size_t> previous_;  // at the last check
  std::optional<Clock::time_point> last_trim_;
};

// The process's anon RSS in bytes (resident minus file-backed and shared
// pages, from /proc/self/statm); nullopt if it cannot be read.
std::optional<std::size_t> anon_rss_bytes();

// Runs the policy on a thread of its own until stopped.
class HeapReleaser {
 public:
  explicit HeapReleaser(HeapReleaseConfig config = {});
  ~HeapReleaser();  // stop()
  HeapReleaser(const HeapReleaser&) = delete;
  HeapReleaser& operator=(const HeapReleaser&) = delete;
  void stop();

 private:
  void run();
  HeapReleaseConfig config_;
  HeapReleasePolicy policy_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace weft::tools
