#!/usr/bin/env bash
# Gossip benchmark: weft's gossip stack vs real serf agents, on loopback.
#
#   bench/gossip/run.sh [--quick] [--sizes "10 50 100"] [--serf-sizes "..."]
#                       [--trials T] [--rest-seconds S] [--json FILE] [--keep]
#   bench/gossip/run.sh --tables-save   saving the replicated tables per
#                       second of changes at 110 000 and 10 000 entries:
#                       tables.bin written whole (before) vs tables.journal
#                       appended (now), both in one run (bench_tables_save)
#
# weft: bench_gossip hosts N instances (Memberlist + SerfCompat +
# ReplicatedTables wired as the agent wires them) in one process on
# 127.0.0.1 with a shared AES key and LAN timings. Per N: membership
# convergence, RSS per instance (members only, then with 1000 endpoint
# entries in every copy), bytes/s per node at rest, endpoint-change
# convergence (p50/p99 over T puts) and the traffic meanwhile; at the
# largest N also a burst of 100 endpoint changes at once.
# serf, same run: N `serf agent` processes on 127.0.0.1 with the same key:
# membership convergence measured the same way, bytes/s at rest, RSS per
# agent. Each run gets a network namespace of its own (unique prefix, removed
# on exit), so its loopback counters are its own traffic.
# Full run ~5 minutes (more if a change misses a node: trials then wait for
# anti-entropy, up to a push/pull interval + 15 s); --quick (weft N=10,100,
# serf N=10, fewer trials, short windows) under a minute.
# Installs what it runs and builds bench_gossip (scripts/lib/bench_prepare.sh;
# WEFT_BIN overrides <repo>/build/bin).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

quick=0 tables_save=0
sizes="" serf_sizes="" trials="" rest="" json_out="" keep=0
while (($#)); do
  case "$1" in
    --quick) quick=1; shift ;;
    --sizes) sizes=$2; shift 2 ;;
    --serf-sizes) serf_sizes=$2; shift 2 ;;
    --trials) trials=$2; shift 2 ;;
    --rest-seconds) rest=$2; shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --tables-save) tables_save=1; shift ;;
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if ((quick)); then
  sizes=${sizes:-"10 100"} serf_sizes=${serf_sizes:-"10"} trials=${trials:-10} rest=${rest:-3}
  settle=2 burst=0
else
  sizes=${sizes:-"10 50 100"} serf_sizes=${serf_sizes:-"10 50 100"} trials=${trials:-30} rest=${rest:-10}
  settle=5 burst=100
fi
largest=$(tr ' ' '\n' <<<"$sizes" | sort -n | tail -1)

((EUID == 0)) || { echo "run.sh: must run as root (network namespaces)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "run.sh: python3 is required" >&2; exit 1; }

# --- binaries -------------------------------------------------------------------
export WEFT_SRC=$repo
# shellcheck source=scripts/lib/bench_prepare.sh
source "$repo/scripts/lib/bench_prepare.sh"
if ((tables_save)); then
  bench_prepare bench_tables_save || { echo "run.sh: cannot build bench_tables_save" >&2; exit 1; }
  for entries in 110000 10000; do "$WEFT_BIN/bench_tables_save" --entries "$entries" --rounds 7; done
  exit 0
fi
bench_prepare bench_gossip || { echo "run.sh: cannot build bench_gossip" >&2; exit 1; }
bin=$WEFT_BIN
have_serf=1
command -v serf >/dev/null || have_serf=0

# --- namespaces and cleanup -------------------------------------------------------
prefix=wg$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n' | cut -c1-5)
work=$(mktemp -d /tmp/weft-bench-gossip.XXXXXX)
child=""

cleanup() {
  local rc=$? ns pid
  trap - EXIT INT TERM HUP
  if [[ -n $child ]]; then kill -TERM "$child" 2>/dev/null || true; fi
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  if [[ -n $child ]]; then wait "$child" 2>/dev/null || true; fi
  if ((keep)); then echo "bench: results kept in $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Counters of UDP and TCP bytes sent, inside the bench namespaces only, so
# traffic at rest can be split into probes/gossip (UDP) and push/pull (TCP).
nft_table=wgbench
serf_bind_base=17000
serf_ports=$serf_bind_base-$((serf_bind_base + 999))  # serf agents' gossip ports (TCP counted apart from RPC)
have_nft=0
command -v nft >/dev/null && have_nft=1

# in_netns NAME CMD...: CMD in a fresh namespace (lo up), namespace removed after.
in_netns() {
  local ns=$prefix$1 rc=0; shift
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  if ((have_nft)); then
    ip netns exec "$ns" nft -f - <<EOF || echo "bench: warning: no nft counters in $ns" >&2
table inet $nft_table {
  counter udp_out { }
  counter tcp_out { }
  counter tcp_ports { }
  chain out {
    type filter hook output priority 0; policy accept;
    meta l4proto udp counter name "udp_out"
    meta l4proto tcp counter name "tcp_out"
    tcp sport $serf_ports counter name "tcp_ports"
    tcp dport $serf_ports counter name "tcp_ports"
  }
}
EOF
  fi
  ip netns exec "$ns" "$@" &
  child=$!
  wait "$child" || rc=$?
  child=""
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  ip netns del "$ns"
  return "$rc"
}

key=$(head -c 32 /dev/urandom | base64)
echo "bench: prefix $prefix, weft sizes: $sizes, serf sizes: $serf_sizes, $trials trials, ${rest}s rest windows" >&2

for n in $sizes; do
  extra=(--entries 1000)
  if ((n == largest && burst > 0)); then extra+=(--burst "$burst"); fi
  echo "bench: weft, $n instances" >&2
  in_netns "w$n" "$bin/bench_gossip" --nodes "$n" --trials "$trials" --rest-seconds "$rest" \
    --settle-seconds "$settle" --key "$key" --json "$work/weft-$n.json" --nft-table "$nft_table" "${extra[@]}" \
    2> >(tee "$work/weft-$n.log" >&2) || echo "bench: weft run with $n instances failed" >&2
done

if ((have_serf)); then
  for n in $serf_sizes; do
    echo "bench: serf, $n agents" >&2
    in_netns "s$n" python3 "$here/serf_peer.py" --nodes "$n" --key "$key" --rest-seconds "$rest" \
      --settle-seconds "$settle" --json "$work/serf-$n.json" --work-dir "$work/serf-$n" --nft-table "$nft_table" \
      --bind-base "$serf_bind_base" \
      2> >(tee "$work/serf-$n.log" >&2) || echo "bench: serf run with $n agents failed" >&2
  done
else
  echo "bench: serf not installed (apt-get install serf): no peer numbers" >&2
fi

python3 "$here/report.py" --work "$work" --sizes "$sizes" --serf-sizes "$serf_sizes" \
  --serf-version "$( ((have_serf)) && serf version | head -1 || echo none)" \
  --threads 2 --quick "$quick" ${json_out:+--json "$json_out"}
