#!/usr/bin/env bash
# A full state dir (issue 7, item 3): the agent's state dir is a small tmpfs
# mounted in the test's run dir, filled up. Then detach, network rm, attach
# and network create must each fail with a non-zero exit status and leave the
# kernel, the agent's answers and state.json as they were. A restart (kill -9)
# with the disk still full must come up with everything in place. Once space
# is freed, the same commands succeed, and a restart keeps their results.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

testbed_install_traps
testbed_up -n 1 || { echo "FAIL - test-bed with one node did not come up"; exit 1; }
STATE=$(tb_state_dir 1)

# The state dir becomes a 1 MiB tmpfs (testbed_down unmounts it).
tb_agent_stop 1
rm -rf "${STATE:?}"/*
require "mount a 1 MiB tmpfs as the state dir" mount -t tmpfs -o size=1m,mode=0700 weft-full-disk "$STATE"
tb_agent_start 1
require "agent starts on the tmpfs" tb_agent_wait_ready 1

require "network create net-a" tb_weft 1 network create -d overlay net-a
require "network create net-b" tb_weft 1 network create -d overlay net-b
c1=$(tb_netns_add c1)
c2=$(tb_netns_add c2)
c3=$(tb_netns_add c3)
require_eq "attach c1" "$(tb_weft 1 endpoint attach net-a --netns "$c1")" 10.0.0.2
require_eq "attach c2" "$(tb_weft 1 endpoint attach net-a --netns "$c2")" 10.0.0.3

ping_ok() { ip netns exec "$1" ping -c 1 -W 1 "$2"; }
# Everything that must not change while the disk is full, in one text.
snapshot() {
  # Less the VIP reservation journal's generation, which each start that
  # can write state.json moves on (the journal folded in, begun anew).
  echo "== state.json"; grep -v '"reservation_journal":' "$STATE/state.json"
  echo "== networks"; tb_weft 1 network ls --format json | tb_json '[n["Name"] for n in d]'
  echo "== endpoints"; tb_weft 1 endpoint ls --format json | tb_json '[[e["Name"], e["IPv4Address"], e["Interface"]] for e in d]'
  echo "== netns files"; tb_network_netns_files 1 | xargs -n1 basename
  local f
  for f in $(tb_network_netns_files 1); do echo "== links of $(basename "$f")"; tb_links "$f"; done
  for f in "$c1" "$c2" "$c3"; do echo "== $f"; ip -n "$f" -br addr | awk '{print $1, $3}'; done
}
# run_fails DESC REGEX CMD...: CMD must exit non-zero with stderr matching REGEX.
run_fails() {
  local desc=$1 regex=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  if ((rc == 0)); then not_ok "$desc: exits non-zero" "exit status 0, output: $out"; return 1; fi
  ok "$desc: exits non-zero ($rc)"
  check_match "$desc: says why" "$out" "$regex" || true
}

before=$(snapshot)
cat /dev/zero >"$STATE/filler" 2>/dev/null || true
check_eq "the state dir is full" "$(df --output=avail -B1 "$STATE" | tail -1 | tr -d ' ')" 0 || true

NOSPACE='state file.*(no space|space left)'
run_fails "detach with a full disk" "$NOSPACE" tb_weft 1 endpoint detach net-a --netns "$c1" || true
check_eq "failed detach changed nothing (state.json, API, kernel)" "$(snapshot)" "$before" || true
check "c1 still reaches c2" wait_for 5 ping_ok "$c1" 10.0.0.3 || true
run_fails "network rm with a full disk" "$NOSPACE" tb_weft 1 network rm net-b || true
check_eq "failed network rm changed nothing (state.json, API, kernel)" "$(snapshot)" "$before" || true
run_fails "attach with a full disk" "$NOSPACE" tb_weft 1 endpoint attach net-a --netns "$c3" || true
check_eq "failed attach changed nothing (state.json, API, kernel)" "$(snapshot)" "$before" || true
run_fails "network create with a full disk" "$NOSPACE" tb_weft 1 network create -d overlay net-c || true
check_eq "failed network create changed nothing (state.json, API, kernel)" "$(snapshot)" "$before" || true

# A restart with the disk still full: the agent comes up and has it all.
tb_agent_stop 1 --kill
tb_agent_start 1
require "agent starts again with a full disk" tb_agent_wait_ready 1
check_eq "restart with a full disk changed nothing" "$(snapshot)" "$before" || true
check "c1 still reaches c2 after the restart" wait_for 5 ping_ok "$c1" 10.0.0.3 || true
run_fails "detach with a full disk after the restart" "$NOSPACE" tb_weft 1 endpoint detach net-a --netns "$c1" || true

# Space again: the same requests succeed and a restart keeps their results.
rm -f "$STATE/filler"
check "detach once there is space" tb_weft 1 endpoint detach net-a --netns "$c1" || true
check "network rm once there is space" tb_weft 1 network rm net-b || true
check_eq "attach once there is space" "$(tb_weft 1 endpoint attach net-a --netns "$c3" 2>&1)" 10.0.0.2 || true
after=$(snapshot)
check_eq "c1 has no interface left" "$(ip -n "$c1" -br link | awk '$1 != "lo"')" "" || true
check "c3 reaches c2" wait_for 5 ping_ok "$c3" 10.0.0.3 || true
require "agent restarts" tb_restart_agent 1 --kill
check_eq "a restart keeps the results" "$(snapshot)" "$after" || true
check_eq "network ls after the restart" "$(tb_weft 1 network ls --format json | tb_json '[n["Name"] for n in d]')" \
  '["net-a"]' || true
check_eq "endpoints after the restart" \
  "$(tb_weft 1 endpoint ls --format json | tb_json 'sorted(e["Netns"] for e in d)')" "[\"$c2\", \"$c3\"]" || true

tb_summary
