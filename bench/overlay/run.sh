#!/usr/bin/env bash
# Overlay throughput: TCP endpoint-to-endpoint across two emulated nodes over
# weft's VXLAN overlay, vs. the underlay between the same two nodes.
#
#   bench/overlay/run.sh [--quick] [--manual] [--no-pin] [--rounds R] [--seconds S] [--json FILE]
#
# Two test-bed nodes (scripts/lib/testbed.sh: namespaces joined by a bridge,
# underlay 192.0.2.0/24, one weftd each). Overlay path, by default through the
# agents: `weft swarm init` on node 1, `weft swarm join` on node 2, an overlay
# network, one container namespace attached on each node. If any of that
# fails (or with --manual) the same data path is built by hand with `ip`:
# a VXLAN made in each node's namespace (nolearning proxy, local = the node's
# underlay address, dstport 4789) moved into a per-network namespace with a
# bridge, a veth to a container namespace, static `bridge fdb` + permanent
# `ip neigh` entries for the remote endpoint, and bridge netfilter off in the
# per-network namespace as weftd does. The output says which was used.
# Two hosts never share a CPU, but the two emulated nodes do: by default the
# iperf3 client runs on CPU 0 and the server on CPU 1 (iperf3 -A), for both
# paths alike, so neither end steals the other's CPU and the scheduler does
# not move them between rounds (--no-pin: no affinity; on this 2-vCPU VM the
# overlay then measured 0.87-0.89x, pinned 0.91-0.92x, see BENCHMARKS.md).
# Then iperf3 (one TCP stream, S seconds, default 10; 3 with --quick),
# alternating underlay (node 1 -> node 2 underlay addresses) and overlay
# (container 1 -> container 2), R rounds (default 3; 1 with --quick); the
# medians and their ratio are printed (target: overlay >= 0.9 x underlay).
# Everything (agents, namespaces, iperf3 servers) is removed on exit.
#
# What the data path is configured with, and why: weftd (dataplane/overlay.cpp)
# sets net.bridge.bridge-nf-call-{iptables,ip6tables,arptables}=0 in each
# per-network namespace (nothing filters there; br_netfilter, when loaded,
# defaults them to 1 in every new namespace and then runs each frame crossing
# br0 through the IP hooks). The overlay crosses that br0 on both nodes, data
# and ACKs, so this is overlay-only cost that a weft deployment does not pay;
# on the 2-vCPU test VM it gave ~+5% overlay throughput in interleaved A/B
# runs (ratio ~0.85 -> ~0.89; full runs 0.87-0.90x, so the 0.9x target is still
# missed by a hair: the rest is VXLAN encap/decap and the extra bridge and veth
# hops, which the sender's CPU pays for). Nothing else is tuned: the
# test-bed's veths keep the kernel defaults (GRO off; turning it on, node or
# switch side, measured no change: the veths carry 64 KB GSO packets end to
# end, so there is nothing to aggregate), the VXLAN keeps udpcsum (noudpcsum:
# no change), and the switch namespace's bridge keeps br_netfilter at its
# default, which both paths cross once (off there too, as on a hardware
# switch: ratio within noise, 0.87x). The output prints the bridge
# netfilter setting of node 1's network namespace.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export WEFT_SRC=${WEFT_SRC:-$(cd "$here/../.." && pwd)}

quick=0 manual=0 pin=1 rounds="" seconds="" json_out=""
while (($#)); do
  case "$1" in
    --quick) quick=1; shift ;;
    --manual) manual=1; shift ;;
    --no-pin) pin=0; shift ;;
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    -h|--help) sed -n '2,44p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if ((quick)); then rounds=${rounds:-1} seconds=${seconds:-3}; else rounds=${rounds:-3} seconds=${seconds:-10}; fi

((EUID == 0)) || { echo "run.sh: must run as root (network namespaces)" >&2; exit 1; }

# --- packages (iperf3 among them) and binaries -----------------------------------
# shellcheck source=scripts/lib/bench_prepare.sh
source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
bench_prepare weftd weft || { echo "run.sh: cannot build weftd/weft" >&2; exit 1; }

# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"
export TB_QUIET=1 TB_LOG_LEVEL=${TB_LOG_LEVEL:-warn}
testbed_install_traps
testbed_up -n 2
P=$TESTBED_PREFIX
RD=$TESTBED_RUN_DIR
echo "bench: test-bed $P (run dir $RD), underlay $(tb_addr 1) <-> $(tb_addr 2)" >&2

path=""
why_manual=""
c1="" c2="" ip1="" ip2="" net_ns1="" net_ns2="" vx=""

ping_ok() { ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }

# --- overlay through the agents ------------------------------------------------------
swarm_overlay() {
  "$WEFT_BIN/weft" swarm --help >/dev/null 2>&1 || { why_manual="weft has no swarm command"; return 1; }
  local init_out token join_addr
  init_out=$(tb_weft 1 swarm init 2>&1) || { why_manual="swarm init failed: $init_out"; return 1; }
  token=$(grep -o 'WEFT-1-[A-Za-z0-9_-]*' <<<"$init_out" | head -1)
  join_addr=$(sed -n 's/.*weft swarm join --token [^ ]* \([0-9.]*:[0-9]*\).*/\1/p' <<<"$init_out" | head -1)
  [[ -n $token && -n $join_addr ]] || { why_manual="no token/address in swarm init output: $init_out"; return 1; }
  local out
  out=$(tb_weft 2 swarm join --token "$token" "$join_addr" 2>&1) || { why_manual="swarm join failed: $out"; return 1; }
  both_ready() {
    [[ $(tb_weft "$1" node ls --format json 2>/dev/null |
      tb_json 'len([n for n in d if n["Status"] == "ready"])') == 2 ]]
  }
  wait_for 20 both_ready 1 && wait_for 20 both_ready 2 || { why_manual="nodes did not both become ready"; return 1; }
  out=$(tb_weft 1 network create -d overlay bench-net 2>&1) || { why_manual="network create failed: $out"; return 1; }
  has_net() { tb_weft 2 network ls --format json | tb_json '[n["Name"] for n in d]' | grep -q bench-net; }
  wait_for 20 has_net || { why_manual="the network did not reach node 2"; return 1; }
  c1=$(tb_netns_add c1) && c2=$(tb_netns_add c2) || { why_manual="cannot create container namespaces"; return 1; }
  ip1=$(tb_weft 1 endpoint attach bench-net --netns "$c1" 2>&1) || { why_manual="attach on node 1 failed: $ip1"; return 1; }
  ip2=$(tb_weft 2 endpoint attach bench-net --netns "$c2" 2>&1) || { why_manual="attach on node 2 failed: $ip2"; return 1; }
  wait_for 20 ping_ok "$c1" "$ip2" || { why_manual="endpoints do not reach each other over the overlay"; return 1; }
  local vni
  vni=$(tb_weft 1 network inspect bench-net |
    tb_json 'd[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"]' 2>/dev/null || true)
  vx=wvx$vni
  net_ns1=$(tb_network_netns_files 1 | head -1)
  net_ns2=$(tb_network_netns_files 2 | head -1)
  path="weft agents (weft swarm init/join, network create -d overlay, endpoint attach)"
}

# Removes what swarm_overlay made, so the manual path starts clean.
undo_swarm() {
  local i ns
  for i in 1 2; do
    [[ -n $c1 ]] && tb_weft 1 endpoint detach bench-net --netns "$c1" >/dev/null 2>&1 || true
    [[ -n $c2 ]] && tb_weft 2 endpoint detach bench-net --netns "$c2" >/dev/null 2>&1 || true
    tb_weft "$i" network rm bench-net >/dev/null 2>&1 || true
  done
  for ns in $c1 $c2; do ip netns del "$ns" 2>/dev/null || true; done
  c1="" c2=""
}

# --- the same data path by hand ---------------------------------------------------------
# Node i: VXLAN vxbench (VNI 4242) made in the node namespace, moved into
# namespace <P>x<i> with bridge br0 (gateway 10.250.0.1/24, MTU 1450), veth to
# container namespace <P>c<i> (10.250.0.1<i>/24, MAC 02:42:0a:fa:00:1<i>).
manual_overlay() {
  local i other ns_node ns_net ns_c mtu=1450
  for i in 1 2; do
    other=$((3 - i))
    ns_node=$(tb_ns "$i")
    ns_net=$(tb_netns_add "x$i")
    ns_c=$(tb_netns_add "c$i")
    ip -n "$ns_node" link add vxbench type vxlan id 4242 local "$(tb_addr "$i")" dstport 4789 nolearning proxy
    ip -n "$ns_node" link set vxbench mtu "$mtu"
    ip -n "$ns_node" link set vxbench netns "$ns_net"
    ip -n "$ns_net" link add br0 mtu "$mtu" type bridge
    # As weftd does (dataplane/overlay.cpp): no bridge netfilter in the network namespace.
    ip netns exec "$ns_net" sh -c 'for k in iptables ip6tables arptables; do
      f=/proc/sys/net/bridge/bridge-nf-call-$k; [ ! -e "$f" ] || echo 0 >"$f"; done'
    ip -n "$ns_net" addr add 10.250.0.1/24 dev br0
    ip -n "$ns_net" link set br0 up
    ip -n "$ns_net" link set vxbench master br0 up
    ip -n "$ns_net" link add "ve$i" mtu "$mtu" type veth peer name eth0 netns "$ns_c"
    ip -n "$ns_net" link set "ve$i" master br0 up
    ip -n "$ns_c" link set eth0 address "02:42:0a:fa:00:1$i" mtu "$mtu" up
    ip -n "$ns_c" addr add "10.250.0.1$i/24" dev eth0
    ip -n "$ns_c" route add default via 10.250.0.1
    # The remote endpoint: permanent neighbour (ARP answered by `proxy`) and
    # static FDB entry to the other node's underlay address.
    ip -n "$ns_net" neigh add "10.250.0.1$other" lladdr "02:42:0a:fa:00:1$other" dev vxbench nud permanent
    bridge -n "$ns_net" fdb append "02:42:0a:fa:00:1$other" dev vxbench dst "$(tb_addr "$other")"
  done
  c1=${P}c1 c2=${P}c2 ip1=10.250.0.11 ip2=10.250.0.12 vx=vxbench
  net_ns1=/run/netns/${P}x1 net_ns2=/run/netns/${P}x2
  wait_for 10 ping_ok "$c1" "$ip2" || { echo "run.sh: the hand-built overlay does not pass traffic" >&2; return 1; }
  path="hand-built with ip (VXLAN nolearning proxy dstport 4789 + bridge + veth, static fdb/neigh): $why_manual"
}

if ((manual)); then
  why_manual="--manual"
  manual_overlay
elif ! swarm_overlay; then
  echo "bench: swarm path unusable ($why_manual); building the overlay by hand" >&2
  undo_swarm
  manual_overlay
fi
echo "bench: overlay: $path" >&2
echo "bench: endpoints $ip1 ($c1, node 1) -> $ip2 ($c2, node 2)" >&2

# --- iperf3 -----------------------------------------------------------------------------------
# iperf_run KIND: one client run, JSON to $RD/iperf-KIND-<round>.json
port=5201
cli_pin=() srv_pin=()
if ((pin)) && (($(nproc) >= 2)); then cli_pin=(-A 0) srv_pin=(-A 1); else pin=0; fi
iperf_run() {
  local kind=$1 round=$2 out=$RD/iperf-$1-$2.json srv_ns cli_ns dst
  if [[ $kind == underlay ]]; then
    srv_ns=$(tb_ns 2) cli_ns=$(tb_ns 1) dst=$(tb_addr 2)
  else
    srv_ns=$c2 cli_ns=$c1 dst=$ip2
  fi
  port=$((port + 1))
  ip netns exec "$srv_ns" iperf3 "${srv_pin[@]}" -s -1 -B "$dst" -p "$port" >/dev/null 2>&1 &
  local srv=$!
  listening() { ip netns exec "$srv_ns" ss -Hltn "sport = :$port" | grep -q LISTEN; }
  wait_for 10 listening || { echo "run.sh: iperf3 server did not start in $srv_ns" >&2; return 1; }
  timeout $((seconds + 30)) ip netns exec "$cli_ns" iperf3 "${cli_pin[@]}" -c "$dst" -p "$port" -t "$seconds" -J >"$out"
  wait "$srv" 2>/dev/null || true
}

for ((r = 1; r <= rounds; r++)); do
  for kind in underlay overlay; do
    echo "bench: round $r/$rounds: $kind, ${seconds}s" >&2
    iperf_run "$kind" "$r"
  done
done

vx_tx() {  # VXLAN device transmit bytes in a per-network namespace
  [[ -n $1 && -n $vx ]] || { echo 0; return; }
  nsenter --net="$1" -- cat "/sys/class/net/$vx/statistics/tx_bytes" 2>/dev/null ||
    nsenter --net="$1" -- ip -s -j link show "$vx" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])' ||
    echo 0
}
vx_bytes=$(vx_tx "$net_ns1")
# The VXLAN as the kernel holds it on node 1 (to show both paths build the same device).
vx_info=$(nsenter --net="$net_ns1" -- ip -d -j link show "$vx" 2>/dev/null | python3 -c '
import json, sys
l = json.load(sys.stdin)[0]
d = l.get("linkinfo", {}).get("info_data", {})
keys = ["id", "local", "port", "learning", "proxy", "udp_csum", "ttl", "df"]
print("%s mtu %s: " % (l["ifname"], l["mtu"]) + ", ".join("%s=%s" % (k, d[k]) for k in keys if k in d))
' 2>/dev/null || echo "?")
# Bridge netfilter in node 1's network namespace (weftd turns it off; "n/a": br_netfilter not loaded).
brnf_info=$(nsenter --net="$net_ns1" -- sh -c 'for k in iptables ip6tables arptables; do
  f=/proc/sys/net/bridge/bridge-nf-call-$k; printf "%s=%s " "$k" "$(cat "$f" 2>/dev/null || echo n/a)"; done' 2>/dev/null || echo "?")
mtu_under=$(ip -n "$(tb_ns 1)" -j link show eth0 | tb_json 'd[0]["mtu"]')
mtu_over=$(ip -n "$c1" -j addr show | tb_json "[l['mtu'] for l in d if any(a.get('local') == '$ip1' for a in l.get('addr_info', []))][0]")

python3 - "$RD" "$rounds" "$seconds" "$path" "$vx_bytes" "$mtu_under" "$mtu_over" "$json_out" "$(uname -r)" "$(nproc)" "$vx_info" "$brnf_info" "$pin" <<'EOF'
import json, statistics, sys
rd, rounds, seconds, path, vx_bytes, mtu_under, mtu_over, json_out, kernel, cpus, vx_info, brnf_info, pin = sys.argv[1:14]
rounds = int(rounds)

def load(kind, r):
    d = json.load(open("%s/iperf-%s-%d.json" % (rd, kind, r)))
    end = d["end"]
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": end["sum_sent"].get("retransmits", 0),
            "cpu_sender": end["cpu_utilization_percent"]["host_total"],
            "cpu_receiver": end["cpu_utilization_percent"]["remote_total"]}

res = {k: [load(k, r) for r in range(1, rounds + 1)] for k in ("underlay", "overlay")}
med = {k: statistics.median(x["gbps"] for x in v) for k, v in res.items()}
ratio = med["overlay"] / med["underlay"] if med["underlay"] else 0
print()
print("Overlay vs underlay TCP throughput, two emulated nodes (iperf3, 1 stream, %ss, %d round(s), alternating)" %
      (seconds, rounds))
print("overlay path: %s" % path)
print("kernel %s, %s CPUs; underlay MTU %s (veth through a bridge namespace), overlay MTU %s" %
      (kernel, cpus, mtu_under, mtu_over))
print("VXLAN on node 1: %s" % vx_info)
print("iperf3: %s" % ("client on CPU 0, server on CPU 1 (both paths)" if pin == "1" else "no CPU affinity"))
print("bridge netfilter in node 1's network namespace: %s" % brnf_info.strip())
print()
print("%-10s %10s %10s %12s %14s %14s" % ("", "Gbit/s", "(median)", "retransmits", "sender CPU %", "receiver CPU %"))
for k in ("underlay", "overlay"):
    for i, x in enumerate(res[k], 1):
        print("%-10s %10.2f %10s %12d %14.0f %14.0f" % (k if i == 1 else "", x["gbps"], "%.2f" % med[k] if i == 1 else "",
                                                      x["retransmits"], x["cpu_sender"], x["cpu_receiver"]))
print()
print("overlay / underlay: %.2fx   target >= 0.9x: %s" % (ratio, "ok" if ratio >= 0.9 else "MISSED"))
print("(VXLAN device on node 1 sent %.1f MB: the overlay traffic did go through VXLAN)" % (int(vx_bytes) / 1e6))
if json_out:
    json.dump({"path": path, "pinned": pin == "1", "seconds": int(seconds), "rounds": rounds, "runs": res, "median_gbps": med,
               "ratio": ratio, "mtu_underlay": int(mtu_under), "mtu_overlay": int(mtu_over)},
              open(json_out, "w"), indent=2)
EOF
