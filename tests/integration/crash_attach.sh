#!/usr/bin/env bash
# kill -9 of the agent in the middle of many parallel attaches (issue 7, item 2).
# Each round: 30 container namespaces attach at once, the agent is killed
# with SIGKILL at a random moment, then started again with the same flags.
# After every restart:
#   - every veth on the network's bridge belongs to an endpoint of the state
#     and every endpoint's veth is there (no orphans, nothing lost);
#   - every container namespace with an interface has an endpoint, with the
#     recorded interface, address and MAC (no half-made container side);
#   - no IPv4 address or MAC is held by two container namespaces;
#   - no .state.json.tmp.* file is left in the state dir;
#   - attaching the namespaces left without an endpoint works, gives eth0,
#     a fresh address (again no duplicates) and the gateway answers a ping.
# Rounds: CRASH_ROUNDS (default 10, well under 2 minutes).
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

ROUNDS=${CRASH_ROUNDS:-10}
PARALLEL=30

testbed_install_traps
testbed_up -n 1 || { echo "FAIL - test-bed with one node did not come up"; exit 1; }
STATE=$(tb_state_dir 1)
P=$TESTBED_PREFIX

require "network create" tb_weft 1 network create -d overlay net-crash
NET_NS=$(tb_network_netns_files 1)
require_eq "one per-network namespace" "$(wc -l <<<"$NET_NS")" 1

# host veth names in the network namespace (on br0 or not yet), sorted
bridge_veths() {
  nsenter --net="$NET_NS" -- ip -j link show type veth |
    python3 -c 'import json,sys; [print(l["ifname"]) for l in json.load(sys.stdin)]' | sort
}
veth_count() { nsenter --net="$NET_NS" -- ip -o link show type veth | wc -l; }
endpoints_json() { tb_weft 1 endpoint ls --format json; }
# host veth names the state accounts for: "veth" + 11 characters of the id
state_veths() { endpoints_json | tb_json '"\n".join(sorted("veth" + e["Id"][:11] for e in d))'; }

# One line per interface inside the round's container namespaces other than
# lo: "<ns> <ifname> <mac> <ipv4|-> ...".
container_interfaces() {
  local ns
  for ns in "$@"; do
    printf '%s\n' "$ns"
    ip -n "$ns" -j addr show 2>/dev/null || echo '[]'
  done | python3 -c '
import json, sys
lines = sys.stdin.read().splitlines()
for ns, text in zip(lines[0::2], lines[1::2]):
    for l in json.loads(text):
        if l["ifname"] == "lo":
            continue
        v4 = [a["local"] for a in l.get("addr_info", []) if a.get("family") == "inet"]
        print(ns, l["ifname"], l.get("address", "-"), " ".join(v4) if v4 else "-")
'
}

# What the kernel shows vs what the agent says, for the namespaces "$@".
check_consistent() {
  local round=$1; shift
  local veths want ifs eps dups
  veths=$(bridge_veths)
  want=$(state_veths)
  check_eq "round $round: veths in the network namespace = endpoints in the state" "$veths" "$want" || true
  ifs=$(container_interfaces "$@")
  eps=$(endpoints_json | tb_json '"\n".join(sorted("%s %s %s %s" % (e["Netns"], e["Interface"], e["MacAddress"], e["IPv4Address"].split("/")[0]) for e in d))')
  check_eq "round $round: container interfaces = endpoints (ns, ifname, MAC, IP)" \
    "$(sort <<<"$ifs" | sed '/^$/d')" "$(sed '/^$/d' <<<"$eps")" || true
  dups=$(awk '{print $4}' <<<"$ifs" | grep -v '^-$' | sort | uniq -d || true)
  check_eq "round $round: no IPv4 address in two containers" "$dups" "" || true
  dups=$(awk '{print $3}' <<<"$ifs" | sort | uniq -d || true)
  check_eq "round $round: no MAC in two containers" "$dups" "" || true
  check_eq "round $round: no .state.json.tmp.* left" \
    "$(find "$STATE" -maxdepth 2 -name '.*.tmp.*' | sed 's|.*/||')" "" || true
}

ping_gateway() { ip netns exec "$1" ping -c 1 -W 1 10.0.0.1; }

for ((round = 1; round <= ROUNDS; round++)); do
  names=()
  for ((i = 1; i <= PARALLEL; i++)); do names+=("$(tb_netns_add "r${round}c$i")"); done
  pids=()
  for ns in "${names[@]}"; do
    tb_weft 1 endpoint attach net-crash --netns "$ns" >/dev/null 2>&1 &
    pids+=($!)
  done
  # In the middle of the burst, while the agent is busy in the kernel: as
  # soon as a random number of veths exist (or after 3 s at most).
  target=$((RANDOM % (PARALLEL - 5) + 1))
  deadline=$((SECONDS + 3))
  while (($(veth_count) < target && SECONDS < deadline)); do :; done
  tb_agent_stop 1 --kill
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # A stale temp file as kill -9 during a state write leaves it.
  [[ -n ${CRASH_NO_TMP:-} ]] || : >"$STATE/.state.json.tmp.Ab12Cd"
  echo "round $round: killed at $SECONDS s"
  tb_agent_start 1
  require "round $round: agent starts again after kill -9" tb_agent_wait_ready 1
  attached=$(endpoints_json | tb_json 'len(d)')
  echo "round $round: $attached of $PARALLEL attaches survived the kill;" \
    "$(grep -c 'rolled back the unfinished attach' "$(tb_log_file 1)" || true) unfinished ones rolled back so far"
  check_consistent "$round" "${names[@]}"

  # The namespaces without an endpoint attach again, cleanly.
  have=$(endpoints_json | tb_json '"\n".join(e["Netns"] for e in d)')
  redo=()
  for ns in "${names[@]}"; do grep -qxF "$ns" <<<"$have" || redo+=("$ns"); done
  redo_ok=1
  pids=()
  for ns in "${redo[@]}"; do
    tb_weft 1 endpoint attach net-crash --netns "$ns" >/dev/null &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || { not_ok "round $round: a re-attach failed"; redo_ok=0; }; done
  ifnames=$(endpoints_json | tb_json '"\n".join("%s %s" % (e["Netns"], e["Interface"]) for e in d)')
  for ns in "${redo[@]}"; do
    ifname=$(awk -v n="$ns" '$1 == n {print $2}' <<<"$ifnames")
    if [[ $ifname != eth0 ]] || ! wait_for 5 ping_gateway "$ns"; then
      not_ok "round $round: re-attached $ns has eth0 and reaches the gateway" "interface: $ifname" \
        "$(ip -n "$ns" -br addr)"
      redo_ok=0
    fi
  done
  ((redo_ok)) && ok "round $round: ${#redo[@]} re-attaches give eth0 and reach the gateway"
  check_consistent "$round (after re-attach)" "${names[@]}"

  echo "round $round: checked at $SECONDS s"
  pids=()
  for ns in "${names[@]}"; do
    tb_weft 1 endpoint detach net-crash --netns "$ns" >/dev/null 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "${names[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  check_eq "round $round: detached everything" "$(bridge_veths)" "" || true
  ((TB_FAILED == 0)) || break
done

tb_summary
