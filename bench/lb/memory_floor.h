// The memory floor of a new flow, measured in the same run as the load
// balancer's programs. Any conntrack, whatever its layout, must look at
// per-flow state on a connection's first packet: with a table larger than
// the CPU's caches, that is at least one line from memory. Two tc programs
// read one 8-byte word of one 64-byte line of an ARRAY map (BPF_F_MMAPABLE,
// as lb_conntrack is) per run, a different line each run, and do nothing
// else:
//  - chained: the line read gives the next run's line (a random cycle
//    through every line), so each run waits for its line: what a packet
//    pays when nothing overlaps its miss, as between two packets that the
//    kernel's stack handles far apart;
//  - independent: the next line is known without the read (a stride that
//    jumps pages, as a hash does), so the CPU overlaps the misses of
//    several runs: the least a line can cost.
// Each figure minus the trivial program's is the line. See BENCHMARKS.md
// (bench/lb).
#pragma once

#include <cstddef>
#include <cstdint>

#include "dataplane/unique_fd.h"

namespace weft::bench::lb {

class MemoryFloor {
 public:
  // A map of `bytes` (rounded down to whole 64-byte lines, at least one)
  // and the two programs reading it. Throws lb::BpfError.
  explicit MemoryFloor(std::size_t bytes);

  struct Ns {
    double chained = 0;
    double independent = 0;
  };
  // The kernel's average ns per run of a pass over every line of the map,
  // for each program, after a first pass that touches every page (see
  // run_one in bench_lb.cpp: on this VM a program's first touch of a map's
  // page costs microseconds).
  Ns measure();

 private:
  double pass(int program);
  std::uint64_t state() const;
  void set_state(std::uint64_t value);

  std::size_t lines_;
  std::size_t stride_;  // lines between two independent runs' reads, coprime with lines_
  weft::dataplane::UniqueFd state_;  // the chained program's next line, the independent one's run count
  weft::dataplane::UniqueFd table_;
  weft::dataplane::UniqueFd chained_;
  weft::dataplane::UniqueFd independent_;
};

}  // namespace weft::bench::lb
