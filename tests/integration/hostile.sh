#!/usr/bin/env bash
# Hostile input against one test-bed agent, all at once: a 30 000-character
# and a 1 MB network name, 200 gossip streams announcing 20 MiB of encrypted
# garbage each, 100 000 random datagrams to the gossip port, and more idle API
# connections than the agent has file descriptors. Throughout, the agent must
# live, its RSS stay under 100 MB, `weft network ls` answer in under 300 ms;
# its log must grow by less than 1 MB. Every check runs (no set -e), so one
# run shows all that broke.
set -uo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"
HOSTILE="$WEFT_SRC/tests/support/hostile.py"

RSS_LIMIT_KB=$((100 * 1024))
LS_LIMIT_MS=300
LOG_GROWTH_LIMIT=$((1024 * 1024))
FD_LIMIT=1024

testbed_install_traps
testbed_up -n 1 || { echo "FAIL - test-bed with one node did not come up"; exit 1; }
require "swarm init opens the gossip port" tb_weft 1 swarm init
require "a network to list" tb_weft 1 network create -d overlay hostile-net

PID=$(tb_agent_pid 1)
LOG=$(tb_log_file 1)
ADDR=$(tb_addr 1)
WORK=$TESTBED_RUN_DIR/hostile
mkdir -p "$WORK"
# A descriptor limit the idle connections can exhaust (the agent must cap
# its API connections below it and keep working).
prlimit --pid "$PID" --nofile=$FD_LIMIT:$FD_LIMIT
log_before=$(stat -c %s "$LOG")

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0; }

# Samples `network ls` latency and the agent's RSS every 0.2 s until told to
# stop; one line per sample: "<ms> <rss_kb> <exit status>".
monitor() {
  local t0 t1 rc
  # Stops by itself too when the test is gone (its run dir removed).
  while [[ ! -e $WORK/stop && -d $WORK ]] && kill -0 $$ 2>/dev/null; do
    t0=${EPOCHREALTIME/./}
    rc=0
    timeout 5 "$WEFT_BIN/weft" --host "$(tb_host 1)" network ls >/dev/null 2>&1 || rc=$?
    t1=${EPOCHREALTIME/./}
    echo "$(((t1 - t0) / 1000)) $(rss_kb) $rc" >>"$WORK/samples"
    sleep 0.2
  done
}
monitor &
MONITOR=$!

# 1. Names far beyond any limit: refused, not a crash.
long_name=$(python3 -c 'print("b" * 30000)')
refused() { ! "$@"; }
check "30 000-character network name is refused" refused tb_weft 1 network create -d overlay "$long_name"
python3 -c '
import json, sys
sys.stdout.write(json.dumps({"Name": "m" * (1 << 20), "Driver": "overlay"}))' >"$WORK/huge.json"
code=$(curl -s -o "$WORK/huge.out" -w '%{http_code}' --unix-socket "$(tb_sock 1)" \
  -H 'Content-Type: application/json' --data-binary @"$WORK/huge.json" http://weft/networks/create || true)
check_match "1 MB network name is refused (400, or 413 for the body)" "$code" '^(400|413)$' 
check "the agent lives after the long names" kill -0 "$PID"

# 4, 5, 6 at once.
tb_exec 1 python3 "$HOSTILE" gossip-streams "$ADDR" 7946 200 20 30 >"$WORK/streams.out" 2>&1 &
STREAMS=$!
tb_exec 1 python3 "$HOSTILE" udp-flood "$ADDR" 7946 100000 >"$WORK/udp.out" 2>&1 &
UDP=$!
python3 "$HOSTILE" idle-api "$(tb_sock 1)" $((FD_LIMIT + 500)) 15 >"$WORK/idle.out" 2>&1 &
IDLE=$!
wait "$STREAMS" "$UDP" "$IDLE" || true
cat "$WORK/streams.out" "$WORK/udp.out" "$WORK/idle.out"
sleep 2  # memory returned after the connections close
touch "$WORK/stop"
wait "$MONITOR" || true

check "the agent lives through it all" kill -0 "$PID"
samples=$(wc -l <"$WORK/samples")
check "the monitor took samples ($samples)" test "$samples" -ge 20
worst_ms=$(awk 'BEGIN {m = 0} $1 > m {m = $1} END {print m}' "$WORK/samples")
failed=$(awk '$3 != 0' "$WORK/samples" | wc -l)
peak_rss=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$WORK/samples")
check_eq "every network ls during the attack succeeded" 0 "$failed"
check "network ls always answered in < ${LS_LIMIT_MS} ms (worst ${worst_ms} ms)" test "$worst_ms" -lt "$LS_LIMIT_MS"
check "RSS stayed < 100 MB (peak $((peak_rss / 1024)) MB)" test "$peak_rss" -lt "$RSS_LIMIT_KB"
rss_after=$(rss_kb)
check "RSS after the attack < 100 MB ($((rss_after / 1024)) MB)" test "$rss_after" -lt "$RSS_LIMIT_KB"
growth=$(($(stat -c %s "$LOG") - log_before))
check "the log grew < 1 MB ($growth bytes)" test "$growth" -lt "$LOG_GROWTH_LIMIT"
check "the agent still creates networks" tb_weft 1 network create -d overlay hostile-after
check_match "and lists them" "$(tb_weft 1 network ls)" 'hostile-after' 

tb_summary
