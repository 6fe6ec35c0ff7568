// Rate limit for warnings that outside input can trigger at will (bad
// datagrams, refused streams, malformed requests): per key (a kind of
// problem and the source it came from) the first occurrence in an interval
// is logged in full by the caller, the rest are only counted and summarised
// once the interval is over:
//
//   "1234 more undecodable packets from 192.0.2.9 in the last 10s"
//
// So a flood costs at most two lines per source and interval, and at most
// `max_sources` sources are tracked: the rest share one key ("other
// sources"), which keeps both the log and this table bounded when source
// addresses are spoofed. Depends on nothing but spdlog/fmt so any part of
// the agent can use it. Not thread-safe: one limiter per thread/strand.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace weft::control {

class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  // Receives each summary line; the default writes it with spdlog::warn.
  using Sink = std::function<void(const std::string&)>;

  explicit LogLimiter(std::chrono::milliseconds interval = std::chrono::seconds(10), std::size_t max_sources = 256,
                      Sink sink = {});

  // Counts one occurrence of `kind` (e.g. "undecodable packets") from
  // `source`; true when the caller should log this one in full. Summaries of
  // intervals that are over are written first.
  bool allow(std::string_view kind, std::string_view source, Clock::time_point now = Clock::now());

  // Writes the summaries of every interval that is over and forgets those
  // keys. Call it periodically (e.g. every interval) so the count of a
  // flood that stopped is still reported.
  void flush(Clock::time_point now = Clock::now());

  std::size_t tracked() const { return windows_.size(); }
  std::chrono::milliseconds interval() const { return interval_; }

  static constexpr std::string_view kOtherSources = "other sources";

 private:
  struct Window {
    Clock::time_point start;
    std::uint64_t suppressed = 0;
  };
  using Key = std::pair<std::string, std::string>;  // kind, source

  void summarise(const Key& key, const Window& window);

  std::chrono::milliseconds interval_;
  std::size_t max_sources_;
  Sink sink_;
  std::map<Key, Window> windows_;
  Clock::time_point last_flush_{};
};

}  // namespace weft::control
