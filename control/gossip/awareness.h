// Lifeguard "local health awareness": a node that keeps missing acks (or has
// to refute accusations) is probably the slow one, so it stretches its own
// probe timeouts instead of accusing healthy peers. Score 0 is healthy;
// timeouts scale by (score + 1), capped at max_multiplier.
#pragma once

#include <algorithm>
#include <chrono>

namespace weft::control::gossip {

class Awareness {
 public:
  explicit Awareness(int max_multiplier) : max_(std::max(1, max_multiplier)) {}

  void apply_delta(int delta) { score_ = std::clamp(score_ + delta, 0, max_ - 1); }
  int score() const { return score_; }

  template <class Duration>
  Duration scale(Duration timeout) const {
    return timeout * (score_ + 1);
  }

 private:
  int max_;
  int score_ = 0;
};

}  // namespace weft::control::gossip
