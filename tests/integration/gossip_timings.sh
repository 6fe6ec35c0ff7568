#!/usr/bin/env bash
# Gossip timings are the agent's to set (--gossip-profile and single
# settings, as serf's -profile): bad values are refused before anything is
# made, and fast timings really make failure detection fast. Three test-bed
# nodes run weftd with a 200 ms probe interval and suspicion multiplier 2; a
# kill -9 of one agent must show as Down within 3 s, where memberlist's LAN
# defaults (probe 1 s, multiplier 4) cannot take less than ~5 s.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

testbed_install_traps
set +e
testbed_up -n 3 || { echo "FAIL - test-bed with three nodes did not come up"; exit 1; }
P=$TESTBED_PREFIX

# --- bad timings: exit 2, a message naming the flag, no state made --------------------
bad_timing() {  # NAME EXPECTED-TEXT ARGS...
  local name=$1 want=$2 dir out rc
  shift 2
  dir=$TESTBED_RUN_DIR/bad-$RANDOM
  out=$(nsenter --net="/run/netns/$(tb_ns 1)" -- "$WEFT_BIN/weftd" --node-name bad --advertise-addr "$(tb_addr 1)" \
    --api-socket "$dir.sock" --state-dir "$dir" --bpf-pin-dir "$dir-pins" "$@" 2>&1 </dev/null)
  rc=$?
  check_eq "$name: exit status 2" "$rc" 2
  check_match "$name: says what is wrong" "$out" "$want"
  check "$name: leaves no state dir, socket or pin dir" bash -c "[[ ! -e '$dir' && ! -e '$dir.sock' && ! -e '$dir-pins' ]]"
}
bad_timing "unknown profile" "expected lan, wan or local" --gossip-profile fast
bad_timing "duration without a unit" "probe-interval" --probe-interval 200
bad_timing "probe timeout past the interval" "shorter than --probe-interval" --probe-interval 200ms --probe-timeout 300ms
bad_timing "suspicion multiplier 0" "suspicion-mult" --suspicion-mult 0
bad_timing "zero push/pull interval" "push-pull-interval must be positive" --push-pull-interval 0s

# --- fast timings: failure detection follows them --------------------------------------
fast=(--gossip-profile local --probe-interval 200ms --probe-timeout 100ms --gossip-interval 50ms --suspicion-mult 2)
start_fast_agent() {  # I
  local i=$1 dir
  dir=$(tb_node_dir "$i")
  tb_agent_stop "$i"
  setsid nsenter --net="/run/netns/$(tb_ns "$i")" -- "$WEFT_BIN/weftd" --node-name "node$i" \
    --advertise-addr "$(tb_addr "$i")" --api-socket "$dir/weftd.sock" --state-dir "$dir/state" \
    --bpf-pin-dir "$(tb_pin_dir "$i")" --log-level "$TB_LOG_LEVEL" "${fast[@]}" \
    </dev/null >>"$dir/weftd.log" 2>&1 &
  echo $! >"$dir/weftd.pid"  # so tb_agent_stop and testbed_down find it
  disown "$!" 2>/dev/null || true
  tb_agent_wait_ready "$i"
}
for i in 1 2 3; do require "node$i's agent starts with fast timings" start_fast_agent "$i"; done

token=$(tb_weft 1 swarm init | grep -o 'WEFT-1-[A-Za-z0-9_-]*' | head -1)
require "node2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "node3 joins" tb_weft 3 swarm join --token "$token" "$(tb_addr 1):7946"
ready_count() { tb_weft "$1" node ls | grep -c Ready; }
all_ready() { [[ $(ready_count "$1") == 3 ]]; }
# Every node must know node3 before it dies: a node that has not yet heard
# node3's alive message when the dead one reaches it ignores the death of a
# node it never knew (as memberlist does), and would never list node3 at all.
for i in 1 2 3; do require "node$i lists three nodes Ready" wait_for 10 all_ready "$i"; done

node3_down() { tb_weft 1 node ls | grep node3 | grep -q Down; }
kill -KILL "$(tb_agent_pid 3)"
start=$(date +%s%N)
wait_for 15 node3_down
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
echo "node3 (kill -9) seen Down by node1 after $elapsed_ms ms"
check "a killed agent is seen Down within 3 s with a 200 ms probe interval" test "$elapsed_ms" -lt 3000
check "node2 sees it too" wait_for 2 bash -c "'$WEFT_BIN/weft' --host '$(tb_host 2)' node ls | grep node3 | grep -q Down"

tb_summary
