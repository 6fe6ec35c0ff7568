// `weft top`: the live page's picture in a terminal (nodes, services,
// backends with connections per second), from the local API's
// GET /api/v1/state.
#pragma once

#include <string>

#include "observe/cluster_snapshot.h"

namespace weft::tools {

// One screen. `before` (may be null) is the previous read, `seconds` apart:
// the backends' connection counters become rates ("-" without one).
std::string render_top(const observe::ClusterSnapshot& now, const observe::ClusterSnapshot* before, double seconds);

}  // namespace weft::tools
