// Deadlines of draining service backends: a thread of its own that calls
// `due(endpoint_id)` once an endpoint's drain time is over. Deadlines are
// wall-clock times because they are recorded (drain_until) and must mean
// the same after a restart.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace weft::control::network {

// "2026-11-26T17:30:00Z" and back (seconds; UTC). nullopt for other text.
std::string rfc3339_seconds(std::chrono::system_clock::time_point t);
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(const std::string& text);

class DrainTimer {
 public:
  using Clock = std::chrono::system_clock;
  // `due` runs on the timer's thread, without the timer's lock held, so it
  // may arm() again (a retry).
  explicit DrainTimer(std::function<void(const std::string& endpoint_id)> due);
  ~DrainTimer();  // stops the thread; deadlines not reached are dropped
  DrainTimer(const DrainTimer&) = delete;
  DrainTimer& operator=(const DrainTimer&) = delete;

  // Sets (or moves) an endpoint's deadline; a past one is due at once.
  void arm(const std::string& endpoint_id, Clock::time_point when);
  void cancel(const std::string& endpoint_id);
  std::size_t pending() const;

 private:
  void run();

  std::function<void(const std::string&)> due_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, Clock::time_point> deadlines_;
  bool stopping_ = false;
  std::thread thread_;  // last: started once the rest is set up
};

}  // namespace weft::control::network
