#!/usr/bin/env bash
# Service load balancer benchmarks (results in BENCHMARKS.md): the eBPF tc
# programs through BPF_PROG_TEST_RUN (bench_lb: ns/packet with 1, 1 000 and
# 10 000 services, programming time, map memory, conntrack GC), then the
# nftables fallback against a kube-proxy-style iptables-restore (bench_nft).
# Both run in namespaces of their own. Arguments after `--` go to bench_lb.
#   bench/lb/run.sh [-- BENCH_LB_ARGS...]
set -euo pipefail
export WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
[[ ${1:-} == -- ]] && shift
((EUID == 0)) || { echo "run.sh: must run as root (BPF programs, namespaces)" >&2; exit 1; }
# shellcheck source=scripts/lib/bench_prepare.sh
source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
bench_prepare bench_lb bench_nft || { echo "run.sh: cannot build bench_lb/bench_nft" >&2; exit 1; }
"$WEFT_BIN/bench_lb" "$@"
"$WEFT_BIN/bench_nft"
