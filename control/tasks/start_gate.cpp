#include "control/tasks/start_gate.h"

#include <algorithm>

namespace weft::control::tasks {

bool StartGate::observe(const std::set<std::string>& ready, Clock::time_point now, bool some_suspect) {
  if ((!last_ready_.empty() && ready != last_ready_) || some_suspect)
    hold_until_ = std::max(hold_until_, now + settle_);
  last_ready_ = ready;
  for (const auto& node : ready) seen_[node] = now;
  std::erase_if(seen_, [&](const auto& entry) { return now - entry.second > memory_; });
  majority_ = seen_.empty() || 2 * ready.size() > seen_.size() ||
              (2 * ready.size() == seen_.size() && ready.count(seen_.begin()->first));
  return majority_ && now >= hold_until_;
}

void StartGate::reset() {
  seen_.clear();
  last_ready_.clear();
  hold_until_ = {};
  majority_ = true;
}

}  // namespace weft::control::tasks
