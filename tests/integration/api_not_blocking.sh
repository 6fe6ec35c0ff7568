#!/usr/bin/env bash
# The API never blocks on slow work (issue 8, item 5): on a one-node
# test-bed, while `weft swarm join` to an unreachable address is pending
# (it used to hold every client for up to 15 s), `weft network ls` and a
# `_ping` over the socket each answer in under 100 ms, several times over.
# The join then fails by itself and the agent is still single-node.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

testbed_install_traps
joiner=""  # the pending `weft swarm join`, while it runs
trap 'if [[ -n $joiner ]]; then kill "$joiner" 2>/dev/null || true; fi; testbed_down' EXIT
testbed_up -n 1 || { echo "FAIL - test-bed with one node did not come up"; exit 1; }
NS=$(tb_ns 1)
SOCK=$(tb_sock 1)
work=$TESTBED_RUN_DIR/work
mkdir -p "$work"

# 198.51.100.99 routed to a neighbour that does not exist (a static entry
# with a MAC nobody has): the join's packets leave and vanish, so it waits
# for its timeout instead of failing at once with "network unreachable".
ip -n "$NS" neigh replace 192.0.2.250 lladdr 02:00:00:00:be:ef dev eth0 nud permanent
ip -n "$NS" route replace 198.51.100.0/24 via 192.0.2.250 dev eth0

# A token that decodes and checks (key and check value as the agent makes
# them), for a swarm that is not there.
token=$(python3 - <<'EOF'
import base64, hashlib, os
key = os.urandom(32)
check = hashlib.sha256(b"weft-join" + key).hexdigest()[:16]
print("WEFT-1-" + base64.urlsafe_b64encode(key).decode().rstrip("=") + "-" + check)
EOF
)

require "the agent answers before the join" tb_weft 1 network ls

tb_weft 1 swarm join --token "$token" 198.51.100.99:7946 >"$work/join.out" 2>&1 &
joiner=$!
join_started=${EPOCHREALTIME/./}
# Until the agent is inside the join: its log says it started gossip.
wait_for 5 grep -q "cluster: gossip on" "$(tb_log_file 1)" ||
  not_ok "the agent started the join" "$(tail -5 "$(tb_log_file 1)")"
sleep 0.3

# millis CMD...: runs CMD, prints how long it took in ms; fails if CMD did.
millis() {
  local start=${EPOCHREALTIME/./} rc=0
  "$@" >/dev/null 2>&1 || rc=$?
  echo $(((${EPOCHREALTIME/./} - start) / 1000))
  return "$rc"
}

slow=0
for round in 1 2 3 4 5; do
  if ! kill -0 "$joiner" 2>/dev/null; then
    not_ok "the join is still pending in round $round" "$(cat "$work/join.out")"
    break
  fi
  if ms=$(millis tb_weft 1 network ls); then :; else
    not_ok "round $round: weft network ls answers" "exit status non-zero after ${ms} ms"; slow=1; continue
  fi
  if ((ms < 100)); then ok "round $round: weft network ls answered in ${ms} ms during the join"; else
    not_ok "round $round: weft network ls answers in < 100 ms during the join" "took ${ms} ms"; slow=1; fi
  if ms=$(millis curl -sf --max-time 20 --unix-socket "$SOCK" http://weftd/_ping); then :; else
    not_ok "round $round: _ping answers" "curl failed after ${ms} ms"; slow=1; continue
  fi
  if ((ms < 100)); then ok "round $round: _ping answered in ${ms} ms during the join"; else
    not_ok "round $round: _ping answers in < 100 ms during the join" "took ${ms} ms"; slow=1; fi
done
((slow)) || ok "reads never waited for the pending join"

if kill -0 "$joiner" 2>/dev/null; then ok "the join was still pending after the measurements"; else
  not_ok "the join was still pending after the measurements" "$(cat "$work/join.out")"; fi

# The join fails by itself (timeout), with a message, and leaves no swarm.
rc=0
wait "$joiner" || rc=$?
joiner=""
took=$(((${EPOCHREALTIME/./} - join_started) / 1000000))
if ((rc != 0)); then ok "the join to an unreachable address failed (exit $rc after ${took} s): $(head -c 200 "$work/join.out")"; else
  not_ok "the join to an unreachable address fails" "$(cat "$work/join.out")"; fi
info=$(curl -sf --max-time 10 --unix-socket "$SOCK" http://weftd/swarm || true)
check_match "the node is not in a swarm afterwards" "$info" '"Active": *false'
check "the agent still answers" tb_weft 1 network ls

tb_summary
