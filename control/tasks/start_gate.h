// Whether this node may start tasks now, from the Ready nodes it sees over
// time (the supervisor asks each tick). Placement has no manager to say that
// one side of a partition is the cluster, so each node decides for itself:
//
// - It needs a majority of the nodes it saw Ready within `memory` (half of
//   them and the first of their names, on a tie). A node cut off from the
//   others keeps its own tasks running but starts no copies of theirs: those
//   would run twice and, started last, win over the majority's long-running
//   tasks when the partition heals (placement.h rule 2). A node that left
//   stops counting after `memory`, and a node alone that long takes over.
// - Any change of the Ready set holds starts for `settle`: a node that
//   becomes Ready (a heal, a join) until its task records are in, and a node
//   that goes until the other failures are seen too (cut off, a node sees
//   its peers fail one by one; with one gone and another still suspect it
//   would seem to have a majority).
// - While any Ready node is suspect, starts hold too (and for `settle`
//   after): a cut-off node's failure detector may declare its peers dead
//   more than `settle` apart (each probe failure slows its next probe), and
//   in between the one still suspect made a majority. Seen on CI: a node
//   cut off from two started a copy of the third's slot.
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <string>

namespace weft::control::tasks {

class StartGate {
 public:
  using Clock = std::chrono::steady_clock;

  StartGate(std::chrono::milliseconds memory, std::chrono::milliseconds settle) : memory_(memory), settle_(settle) {}

  // The Ready nodes now (this node among them), and whether some of them
  // are suspect (Ready, but failing probes); true when starts may go on.
  bool observe(const std::set<std::string>& ready, Clock::time_point now, bool some_suspect = false);
  // Outside a swarm: this node alone, nothing remembered.
  void reset();

  bool has_majority() const { return majority_; }
  std::size_t remembered() const { return seen_.size(); }

 private:
  std::chrono::milliseconds memory_;
  std::chrono::milliseconds settle_;
  std::map<std::string, Clock::time_point> seen_;  // node -> last seen Ready
  std::set<std::string> last_ready_;
  Clock::time_point hold_until_{};
  bool majority_ = true;
};

}  // namespace weft::control::tasks
