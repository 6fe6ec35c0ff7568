#!/usr/bin/env bash
# /metrics scrape cost (results in BENCHMARKS.md): bench_scrape gathers and
# renders one scrape with SERVICES x BACKENDS (default 10 000 x 10), RUNS
# times, and prints wall and CPU time per scrape (target < 100 ms).
#   bench/observe/run.sh [SERVICES] [BACKENDS] [RUNS]
# Installs what it needs and builds bench_scrape first, as scripts/test does.
set -euo pipefail
export WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/bench_prepare.sh
source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
bench_prepare bench_scrape || { echo "run.sh: cannot build bench_scrape" >&2; exit 1; }
echo "bench/observe: $(date -u +%FT%TZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$WEFT_BIN/bench_scrape" "${1:-10000}" "${2:-10}" "${3:-20}"
