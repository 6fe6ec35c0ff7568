// Lifeguard suspicion timer for one suspected node. It starts at the maximum
// timeout and shrinks logarithmically towards the minimum as independent
// peers confirm the suspicion, so a node most of the cluster can't reach is
// declared dead quickly while a lone accuser has to wait longer.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace weft::control::gossip {

namespace asio = boost::asio;

// memberlist's remainingSuspicionTime: max - log(n+1)/log(k+1) * (max-min),
// floored to milliseconds, never below min, minus what already elapsed.
std::chrono::milliseconds remaining_suspicion_time(int confirmations, int expected, std::chrono::milliseconds elapsed,
                                                   std::chrono::milliseconds min, std::chrono::milliseconds max);

// memberlist's suspicionTimeout: mult * max(1, log10(max(1, n))) * interval.
std::chrono::milliseconds suspicion_timeout(int suspicion_mult, std::size_t num_nodes,
                                            std::chrono::milliseconds probe_interval);

class Suspicion {
 public:
  using Timeout = std::function<void(int confirmations)>;

  // `expected` (k) is how many confirmations bring the timeout down to min;
  // with k < 1 the timer starts at min. The accuser counts as the first
  // confirmation source but not towards n.
  Suspicion(asio::io_context& io, const std::string& from, int expected, std::chrono::milliseconds min,
            std::chrono::milliseconds max, Timeout on_timeout);
  ~Suspicion();
  Suspicion(const Suspicion&) = delete;
  Suspicion& operator=(const Suspicion&) = delete;

  // Returns true if this was new information (a first confirmation from
  // `from`), which the caller re-gossips.
  bool confirm(const std::string& from);

  int confirmations() const { return n_; }

 private:
  void arm(std::chrono::steady_clock::duration after);

  asio::steady_timer timer_;
  int n_ = 0;
  int k_;
  std::chrono::milliseconds min_, max_;
  std::chrono::steady_clock::time_point start_;
  std::set<std::string> seen_;
  Timeout on_timeout_;
  // Handlers hold a weak reference so one already queued when we are
  // destroyed (suspicion cleared by an alive message) does nothing.
  std::shared_ptr<Suspicion*> self_;
};

}  // namespace weft::control::gossip
