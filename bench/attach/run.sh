#!/usr/bin/env bash
# Endpoint attach/detach benchmark on one emulated node.
#
#   bench/attach/run.sh [-n COUNT] [--json FILE]
#
# weft: time of each `weft endpoint attach NET --netns NS` and `detach` for
# COUNT (default 100) namespaces on one overlay network, per-call mean and p99,
# and the agent's peak RSS (VmHWM) idle and with COUNT endpoints.
# Peer, same run, same node: the CNI reference `bridge` plugin with
# `host-local` IPAM (Debian's containernetworking-plugins) doing ADD/DEL for
# COUNT namespaces. Each call is timed from a process inside the node's
# namespace (bench/attach/timing.py), so both include one process start.
# Targets: attach < 10 ms, RSS < 30 MB idle and < 60 MB with 100 endpoints.
# Everything runs in namespaces with a unique prefix, removed on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export WEFT_SRC=${WEFT_SRC:-$(cd "$here/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

count=100
json_out=""
while (($#)); do
  case "$1" in
    -n) count=$2; shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=scripts/lib/bench_prepare.sh
source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
bench_prepare weftd weft || { echo "run.sh: cannot build weftd/weft" >&2; exit 1; }
CNI_PATH=${CNI_PATH:-/usr/lib/cni}
[[ -x $CNI_PATH/bridge && -x $CNI_PATH/host-local ]] ||
  { echo "run.sh: CNI plugins not found in $CNI_PATH (scripts/setup installs containernetworking-plugins)" >&2; exit 1; }

export TB_QUIET=1 TB_LOG_LEVEL=${TB_LOG_LEVEL:-warn}
testbed_install_traps
testbed_up -n 1
RD=$TESTBED_RUN_DIR
NODE_NETNS=/run/netns/$(tb_ns 1)
echo "bench: prefix $TESTBED_PREFIX, $count endpoints, run dir $RD" >&2

# Namespaces are created (untimed) up front: w<i> for weft, k<i> for CNI.
weft_ns=() cni_ns=()
for ((i = 1; i <= count; i++)); do
  weft_ns+=("$(tb_netns_add "w$i")")
  cni_ns+=("$(tb_netns_add "k$i")")
done

agent_pid=$(tb_agent_pid 1)
idle_hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$agent_pid/status")

tb_weft 1 network create -d overlay bench-net >/dev/null

echo "bench: weft attach/detach x$count" >&2
python3 "$here/timing.py" weft --node-netns "$NODE_NETNS" \
  --weft "$WEFT_BIN/weft" --host "$(tb_host 1)" --network bench-net \
  --agent-pid "$agent_pid" "${weft_ns[@]}" >"$RD/weft.json"

# CNI bridge + host-local. ipMasq off: no iptables rules; all state
# (host-local's leases) under the run dir.
cat >"$RD/cni.conf" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "bench",
  "type": "bridge",
  "bridge": "cni0",
  "isGateway": true,
  "ipMasq": false,
  "mtu": 1450,
  "ipam": {
    "type": "host-local",
    "subnet": "10.1.0.0/16",
    "dataDir": "$RD/cni-ipam",
    "routes": [{"dst": "0.0.0.0/0"}]
  }
}
EOF
echo "bench: CNI bridge ADD/DEL x$count" >&2
python3 "$here/timing.py" cni --node-netns "$NODE_NETNS" \
  --cni-config "$RD/cni.conf" --cni-path "$CNI_PATH" "${cni_ns[@]}" >"$RD/cni.json"

python3 - "$RD/weft.json" "$RD/cni.json" "$idle_hwm" "$count" "$json_out" <<'EOF'
import json, math, statistics, sys
weft = json.load(open(sys.argv[1]))
cni = json.load(open(sys.argv[2]))
idle_kib, count, json_out = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def p99(xs):
    s = sorted(xs)
    return s[max(0, math.ceil(0.99 * len(s)) - 1)]

def stats(r):
    return {"attach_mean": statistics.mean(r["attach_ms"]), "attach_p99": p99(r["attach_ms"]),
            "detach_mean": statistics.mean(r["detach_ms"]), "detach_p99": p99(r["detach_ms"])}

w, c = stats(weft), stats(cni)
mb = lambda kib: kib / 1024
hwm_idle = mb(idle_kib)
hwm_full = mb(weft["mem_attached_kib"]["VmHWM"])
rss_full = mb(weft["mem_attached_kib"]["VmRSS"])

rows = [
    ("attach, mean (ms)", w["attach_mean"], c["attach_mean"], "< 10", w["attach_mean"] < 10),
    ("attach, p99 (ms)", w["attach_p99"], c["attach_p99"], "", None),
    ("detach, mean (ms)", w["detach_mean"], c["detach_mean"], "", None),
    ("detach, p99 (ms)", w["detach_p99"], c["detach_p99"], "", None),
]
print(f"\nEndpoint attach/detach, {count} endpoints, one node (wall time per CLI/plugin call)\n")
print(f"{'':24}{'weft':>10}{'CNI bridge':>12}{'weft/CNI':>10}  {'target':<8}")
for name, a, b, target, met in rows:
    mark = "" if met is None else ("  ok" if met else "  MISSED")
    print(f"{name:24}{a:10.2f}{b:12.2f}{a / b:10.2f}  {target:<8}{mark}")
print(f"{'(weft CLI no-op call, mean)':24}{statistics.mean(weft['noop_ms']):10.2f}"
      f"{'':12}{'':10}  (process start + one request: part of every weft call)")
print()
print(f"{'weftd peak RSS, idle (MB)':36}{hwm_idle:8.1f}  target < 30  {'ok' if hwm_idle < 30 else 'MISSED'}")
print(f"{'weftd peak RSS, %d endpoints (MB)' % count:36}{hwm_full:8.1f}  target < 60  {'ok' if hwm_full < 60 else 'MISSED'}")
print(f"{'weftd RSS now, %d endpoints (MB)' % count:36}{rss_full:8.1f}")
print(f"\nweft endpoints listed after attach: {weft['endpoints_listed']} (expected {count}); "
      f"distinct IPs: weft {len(set(weft['ips']))}, CNI {len(set(cni['ips']))}")
summary = {"count": count, "weft": w, "cni_bridge": c,
           "weft_cli_noop_mean": statistics.mean(weft["noop_ms"]),
           "weftd_vmhwm_idle_mb": hwm_idle, "weftd_vmhwm_attached_mb": hwm_full}
if json_out:
    with open(json_out, "w") as f:
        json.dump(summary, f, indent=2)
ok = weft["endpoints_listed"] == count and len(set(weft["ips"])) == count and len(set(cni["ips"])) == count
sys.exit(0 if ok else 1)
EOF
