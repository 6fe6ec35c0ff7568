#!/usr/bin/env bash
# Service load balancer benchmarks (results in BENCHMARKS.md), in one run:
#  - bench_lb: the eBPF tc programs through BPF_PROG_TEST_RUN (ns/packet
#    with 1, 1 000 and 10 000 services, programming time, map memory,
#    conntrack GC);
#  - bench_nft: the nftables fallback against a kube-proxy-style
#    iptables-restore;
#  - bench_lb_tcp: short TCP connections per second from a client endpoint,
#    direct vs through the eBPF VIP vs through the nftables VIP;
#  - bench_lb_mem: BPF map bytes and RSS with 10 000 services x 10 backends
#    and 1 000 000 conntrack entries.
# Each program makes its namespaces (and bpffs) in a private mount
# namespace or netns of its own, so nothing outlives it, even a kill -9.
#   bench/lb/run.sh [--only packet|nft|tcp|mem]... [--tcp-runs N] [-- BENCH_LB_ARGS...]
set -euo pipefail
export WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
only=() tcp_runs=7 bench_lb_args=()
while (($#)); do
  case $1 in
    --only) only+=("$2"); shift 2 ;;
    --tcp-runs) tcp_runs=$2; shift 2 ;;
    --) shift; bench_lb_args=("$@"); break ;;
    *) echo "run.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
((${#only[@]})) || only=(packet nft tcp mem)
wanted() { [[ " ${only[*]} " == *" $1 "* ]]; }
((EUID == 0)) || { echo "run.sh: must run as root (BPF programs, namespaces)" >&2; exit 1; }
# shellcheck source=scripts/lib/bench_prepare.sh
source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
bench_prepare bench_lb bench_nft bench_lb_tcp bench_lb_mem ||
  { echo "run.sh: cannot build the load balancer benchmarks" >&2; exit 1; }
echo "bench/lb: $(date -u +%FT%TZ), $(nproc) CPUs, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
if wanted packet; then "$WEFT_BIN/bench_lb" "${bench_lb_args[@]}"; fi
if wanted nft; then "$WEFT_BIN/bench_nft"; fi
if wanted tcp; then "$WEFT_BIN/bench_lb_tcp" --runs "$tcp_runs" --seconds 2; fi
if wanted mem; then "$WEFT_BIN/bench_lb_mem"; fi
