#!/usr/bin/env bash
# DNS responder benchmark, inside one network namespace the bench makes
# (unique prefix, removed on exit). Every server is pinned to CPU 0, the load
# generators to CPU 1, all on that namespace's loopback, each serving the
# same 100 names x 4 A records (name0..name99):
#   weft     dns_bench_server: weft's responder (dns/) on a StaticNameView
#   weft-loop the same with --threads 0: every socket served by the epoll
#            loop, no receive thread for the busy one (what weft did before)
#   echo     dns_echo: sends each datagram back, no parsing (the limit)
#   dnsmasq, unbound, nsd (rrl-ratelimit: 0), knot: one worker each
#   weft-fwd dns_bench_server owning no name, forwarding to the dnsmasq
#            above with no cache (latency section only)
#   relay    dns_relay: passes queries to that dnsmasq and answers back, no
#            parsing, no ID of its own (the limit of forwarding, as the echo
#            is of answering; latency section only)
# 1. Throughput: dns_loadgen (sendmmsg/recvmmsg, 256 in flight) against each
#    server for SECONDS, ROUNDS rounds, the order rotated every round so
#    that a change of load hits every server alike; median and range.
# 2. Latency at a fixed rate (RATE q/s): dns_loadgen --rate and dnsperf -Q
#    (per-query latencies from dnsperf -v); weft-fwd minus dnsmasq is what
#    forwarding adds over the upstream's own latency, relay minus dnsmasq
#    what the extra hop alone costs on this machine.
# unbound, nsd, knot and dnsperf are installed with apt-get when missing.
#   bench/dns/run.sh [SECONDS] [ROUNDS] [MODE]   (default 5 3 all; WEFT_BIN
#   overrides build/bin, WEFT_DNS_BENCH_RATE the fixed rate, default 20000)
# MODE forwarding runs only section 2 for dnsmasq, weft-fwd and relay, alternating
# them ROUNDS times: what forwarding adds, with less else on the machine.
set -euo pipefail
export WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
seconds=${1:-5}
rounds=${2:-3}
mode=${3:-all}
[[ $mode == all || $mode == forwarding ]] || { echo "run.sh: MODE is all or forwarding" >&2; exit 2; }
rate=${WEFT_DNS_BENCH_RATE:-20000}
((EUID == 0)) || { echo "run.sh: must run as root (it makes a network namespace)" >&2; exit 1; }
# shellcheck source=scripts/lib/bench_prepare.sh
source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
bench_prepare dns_loadgen dns_echo dns_relay dns_bench_server || { echo "run.sh: cannot build the DNS bench programs" >&2; exit 1; }
bin=$WEFT_BIN

# The peers: scripts/setup (run by bench_prepare) installs them; this is for
# a WEFT_BIN of prebuilt programs on a machine set up before they were listed.
missing=()
for pkg in unbound nsd knot dnsperf; do
  [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true) == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "run.sh: installing ${missing[*]}" >&2
  if ! { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    echo "run.sh: apt-get install ${missing[*]} failed" >&2; exit 1
  fi
fi

ns=wd$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n' | cut -c1-5)dns
work=$(mktemp -d /tmp/weft-dns-bench.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$ns"
ip -n "$ns" link set lo up
in_ns() { nsenter --net="/run/netns/$ns" -- "$@"; }
echo "bench: namespace $ns, work dir $work, ${seconds}s x $rounds rounds, fixed rate $rate q/s" >&2

# name<i> -> 10.0.(i*8+k) for k=1..4: the addresses dns_bench_server serves.
addr() { local n=$(($1 * 8 + $2)); echo "10.0.$((n / 256)).$((n % 256))"; }
for i in $(seq 0 99); do for k in 1 2 3 4; do echo "$(addr "$i" "$k") name$i"; done; done >"$work/hosts"
{
  printf '. 5 IN SOA ns. hostmaster. 1 3600 600 86400 5\n. 5 IN NS ns.\nns. 5 IN A 127.0.0.1\n'
  for i in $(seq 0 99); do for k in 1 2 3 4; do echo "name$i. 5 IN A $(addr "$i" "$k")"; done; done
} >"$work/root.zone"

declare -A port=([weft]=5301 [echo]=5302 [dnsmasq]=5303 [unbound]=5304 [nsd]=5305 [knot]=5306 [weft-fwd]=5307 [relay]=5309
  [weft-loop]=5308)

cat >"$work/unbound.conf" <<EOF
server:
  interface: 127.0.0.1@${port[unbound]}
  do-ip6: no
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  so-rcvbuf: 4m
  module-config: "iterator"
  local-zone: "." static
$(for i in $(seq 0 99); do for k in 1 2 3 4; do echo "  local-data: \"name$i. 5 IN A $(addr "$i" "$k")\""; done; done)
remote-control:
  control-enable: no
EOF
cat >"$work/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1@${port[nsd]}
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$work"
  database: ""
  pidfile: "$work/nsd.pid"
  xfrdfile: "$work/xfrd.state"
  zonelistfile: "$work/zone.list"
  logfile: "$work/nsd.log"
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: "."
  zonefile: "$work/root.zone"
EOF
mkdir -p "$work/knot"
cat >"$work/knot.conf" <<EOF
server:
  listen: 127.0.0.1@${port[knot]}
  rundir: "$work/knot"
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "$work/knot"
log:
  - target: stderr
    any: warning
control:
  listen: "$work/knot/knot.sock"
zone:
  - domain: .
    file: "$work/root.zone"
    zonefile-sync: -1
    journal-content: none
EOF

start_server() {  # NAME COMMAND...: starts it on CPU 0 in the namespace, checks it answers name1 with 4 A records
  local name=$1 count; shift
  # nsenter and taskset exec the server, so $! is the server itself (a
  # function in the background would be a subshell, and killing it would
  # leave the server running).
  nsenter --net="/run/netns/$ns" -- taskset -c 0 "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  spid[$name]=$!
  [[ $name == echo ]] && { sleep 0.3; return 0; }  # the echo's answers are no DNS dig accepts
  for _ in $(seq 50); do
    count=$(in_ns dig @127.0.0.1 -p "${port[$name]}" +time=1 +tries=1 +short name1 A 2>/dev/null | grep -c '^10\.' || true)
    ((count == 4)) && return 0
    sleep 0.1
  done
  echo "$name did not answer name1 with 4 A records (got ${count:-0}): $(tail -3 "$work/$name.log")" >&2
  return 1
}

declare -A spid=()
# CPU time (clock ticks) a server and its children have used so far: the
# CPU per answered query does not depend on how often the other helpers'
# compiles took the core away, which throughput does.
cpu_ticks() {
  local p t=0 all=("${spid[$1]}") i=0
  # The server and all its descendants (nsd serves from a child); utime and
  # stime counted after the command name, which may hold spaces ("nsd: main").
  while ((i < ${#all[@]})); do
    all+=($(pgrep -P "${all[i]}" || true))
    ((++i))
  done
  for p in "${all[@]}"; do
    [[ -r /proc/$p/stat ]] && t=$((t + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
  done
  echo "$t"
}
servers=()
try_start() { local name=$1; shift; if start_server "$name" "$@"; then servers+=("$name"); fi; }
if [[ $mode == all ]]; then
  try_start weft "$bin/dns_bench_server" 127.0.0.1 "${port[weft]}"
  try_start weft-loop "$bin/dns_bench_server" 127.0.0.1 "${port[weft-loop]}" --threads 0
  try_start echo "$bin/dns_echo" 127.0.0.1 "${port[echo]}"
fi
try_start dnsmasq dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null \
  --bind-interfaces --listen-address=127.0.0.1 --interface=lo --pid-file= --user=root --group=root \
  --port="${port[dnsmasq]}" --addn-hosts="$work/hosts" --cache-size=10000 --dns-forward-max=1000 --local-ttl=5
if [[ $mode == all ]]; then
  try_start unbound unbound -d -c "$work/unbound.conf"
  try_start nsd nsd -d -c "$work/nsd.conf"
  try_start knot knotd -c "$work/knot.conf"
fi
fwd=0
if [[ " ${servers[*]} " == *" dnsmasq "* ]] &&
  start_server weft-fwd "$bin/dns_bench_server" 127.0.0.1 "${port[weft-fwd]}" 0 \
    --upstream "127.0.0.1:${port[dnsmasq]}" --cache 0; then fwd=1; fi
relay=0
if ((fwd)) && start_server relay "$bin/dns_relay" 127.0.0.1 "${port[relay]}" 127.0.0.1 "${port[dnsmasq]}"; then relay=1; fi

results=$work/results.txt
: >"$results"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$results" >&2
n=${#servers[@]}
[[ $mode == forwarding ]] && n=0
for ((r = 0; r < rounds * (n > 0); r++)); do
  for ((j = 0; j < n; j++)); do
    s=${servers[$(((j + r) % n))]}
    t0=$(cpu_ticks "$s")
    line=$(in_ns taskset -c 1 "$bin/dns_loadgen" 127.0.0.1 "${port[$s]}" "$seconds" --window 256)
    t1=$(cpu_ticks "$s")
    answered=$(sed -n 's/.*answered=\([0-9]*\).*/\1/p' <<<"$line")
    cpu_us=$(awk -v t=$((t1 - t0)) -v a="${answered:-0}" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { printf "%.3f", (a > 0 ? t * 1e6 / hz / a : 0) }')
    echo "qps $s $line cpu_us_per_q=$cpu_us load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$results" >&2
  done
done
printf 'name%d A\n' $(seq 0 99) >"$work/queries.txt"
latency_servers=("${servers[@]}")
((fwd)) && latency_servers+=(weft-fwd)
((relay)) && latency_servers+=(relay)
m=${#latency_servers[@]}
for ((r = 0; r < rounds; r++)); do
  for ((j = 0; j < m; j++)); do
    s=${latency_servers[$(((j + r) % m))]}
    line=$(in_ns taskset -c 1 "$bin/dns_loadgen" 127.0.0.1 "${port[$s]}" "$seconds" --window 256 --rate "$rate")
    echo "rate $s $line load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$results" >&2
    [[ $s == echo ]] && continue  # dnsperf counts the echoed queries as malformed answers
    t0=$(cpu_ticks "$s")
    in_ns taskset -c 1 dnsperf -s 127.0.0.1 -p "${port[$s]}" -d "$work/queries.txt" -l "$seconds" -Q "$rate" -v \
      >"$work/dnsperf-$s.txt" 2>&1 || true
    t1=$(cpu_ticks "$s")
    line=$(python3 "$(dirname "$0")/dnsperf_stats.py" "$work/dnsperf-$s.txt" "$s")
    answered=$(sed -n 's/.*answered=\([0-9]*\).*/\1/p' <<<"$line")
    cpu_us=$(awk -v t=$((t1 - t0)) -v a="${answered:-0}" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { printf "%.3f", (a > 0 ? t * 1e6 / hz / a : 0) }')
    echo "$line cpu_us_per_q=$cpu_us" | tee -a "$results" >&2
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$results" >&2

python3 - "$results" "$rate" <<'EOF'
import re, statistics, sys
rate = sys.argv[2]
qps, cpu, fixed, perf, perf_cpu, loads = {}, {}, {}, {}, {}, []
def med(runs):  # the median of each figure over the rounds; lost summed
    out = {k: str(statistics.median(float(r[k]) for r in runs)) for k in ("mean_us", "p99_us")}
    out["lost"] = str(sum(int(r.get("lost", 0)) for r in runs))
    return out
for line in open(sys.argv[1]):
    f = line.split()
    kv = dict(x.split("=", 1) for x in f[2:] if "=" in x)
    if f[0] == "qps":
        qps.setdefault(f[1], []).append(float(kv["qps"]))
        if float(kv.get("cpu_us_per_q", 0)) > 0:
            cpu.setdefault(f[1], []).append(float(kv["cpu_us_per_q"]))
    elif f[0] in ("rate", "dnsperf"):
        if f[0] == "dnsperf" and float(kv.get("cpu_us_per_q", 0)) > 0:
            perf_cpu.setdefault(f[1], []).append(float(kv["cpu_us_per_q"]))
        (fixed if f[0] == "rate" else perf).setdefault(f[1], []).append(kv)
    elif f[0] == "load":
        loads.append(line.strip())
nrounds = max([len(v) for v in list(qps.values()) + list(fixed.values())], default=0)
fixed = {s: med(r) for s, r in fixed.items()}
perf = {s: med(r) for s, r in perf.items()}
print("\nDNS, one core per server, loopback in one namespace; " + "; ".join(loads))
print(f"(latency: median over {nrounds} rounds of each round's mean and p99)")
print(f"\n{'server':10} {'q/s median':>11} {'(min-max)':>17} {'CPU us/q':>9}   "
      f"{'loadgen@' + rate + ' mean/p99 us':>28}   {'dnsperf@' + rate + ' mean/p99 us':>28}")
for s in list(qps) + [s for s in fixed if s not in qps]:
    q = qps.get(s, [])
    med = f"{statistics.median(q):11.0f}" if q else f"{'-':>11}"
    rng = f"({min(q) / 1000:.0f}k-{max(q) / 1000:.0f}k)" if q else ""
    fx = fixed.get(s, {})
    lg = f"{float(fx['mean_us']):.1f} / {float(fx['p99_us']):.1f}" if fx else "-"
    if fx and fx.get("lost", "0") != "0":
        lg += f" (lost {fx['lost']})"
    dp = perf.get(s, {})
    dps = f"{float(dp['mean_us']):.1f} / {float(dp['p99_us']):.1f}" if dp else "-"
    c = f"{statistics.median(cpu[s]):9.2f}" if s in cpu else f"{'-':>9}"
    print(f"{s:10} {med} {rng:>17} {c}   {lg:>28}   {dps:>28}")
print()
if "weft" in qps:
    w = statistics.median(qps["weft"])
    for s in qps:
        if s != "weft":
            by_cpu = (f", by CPU per query {statistics.median(cpu[s]) / statistics.median(cpu['weft']):.2f}x"
                      if s in cpu and "weft" in cpu else "")
            print(f"weft / {s:8}: {w / statistics.median(qps[s]):.2f}x{by_cpu}" + ("   (target >= 0.90x)" if s == "echo" else ""))
    for src, d in (("loadgen", fixed), ("dnsperf", perf)):
        if "weft" in d:
            p99 = float(d["weft"]["p99_us"])
            echo = f", the echo's own p99 (loadgen) {float(fixed['echo']['p99_us']):.1f} us" if "echo" in fixed else ""
            print(f"weft p99 at {rate} q/s ({src}): {p99:.1f} us{echo}   (target < 1000 us: {'met' if p99 < 1000 else 'MISSED'})")
if perf_cpu.get("weft-fwd"):
    print(f"weft-fwd CPU per forwarded query at {rate} q/s (dnsperf rounds, median): "
          f"{statistics.median(perf_cpu['weft-fwd']):.2f} us (dnsmasq answering them: "
          f"{statistics.median(perf_cpu.get('dnsmasq', [0])):.2f} us)")
for src, d in (("loadgen", fixed), ("dnsperf", perf)):
    if "weft-fwd" in d and "dnsmasq" in d:
        a, b = d["weft-fwd"], d["dnsmasq"]
        dm = float(a["mean_us"]) - float(b["mean_us"])
        dp = float(a["p99_us"]) - float(b["p99_us"])
        print(f"forwarding adds ({src}, weft->dnsmasq minus dnsmasq): mean {dm:+.1f} us, p99 {dp:+.1f} us"
              f"   (target < 50 us: {'met' if dm < 50 else 'MISSED'} on the mean)")
        if "relay" in d:
            r = d["relay"]
            rm = float(r["mean_us"]) - float(b["mean_us"])
            print(f"  the extra hop alone ({src}, relay->dnsmasq minus dnsmasq): mean {rm:+.1f} us, "
                  f"p99 {float(r['p99_us']) - float(b['p99_us']):+.1f} us; weft-fwd minus relay: mean {dm - rm:+.1f} us")
EOF
