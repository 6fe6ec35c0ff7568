#!/usr/bin/env bash
# Service tasks on three emulated nodes, the parts service_tasks.sh leaves
# out (control/tasks, issue 11):
# - restart conditions: on-failure leaves a task that exits 0 Complete (its
#   namespace and backend gone, still Complete after an agent restart) and
#   restarts one that exits non-zero; none never restarts; `service ps` says
#   Complete / Failed with Docker's ERROR "task: non-zero exit (N)";
# - the restart back-off grows (first delay 1 s through the test knob
#   WEFT_TASK_RESTART_DELAY_MS, doubling);
# - `service logs` from one node shows every node's task lines, prefixed as
#   Docker does (name.slot.id@node | line); a node that does not answer is
#   left out with a note, in bounded time; --follow prints each new line
#   once;
# - `weft exec` into a task on another node names that node;
# - a partition healed: a node cut off (underlay down, agent running) while
#   its slot runs elsewhere, starting no copies of the others' slots (it has
#   no majority); after the heal each slot runs once (its stale copy stops,
#   the majority's tasks keep their processes), nothing moves after that,
#   and the counts settle.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

# The agents inherit it: restarts 1 s, 2 s, 4 s ... apart instead of 5 s, 10 s ...
export WEFT_TASK_RESTART_DELAY_MS=1000

svc_ids=()
# Their task namespaces (weft-<node>-<service id, 12>-<slot>, outside the
# test-bed's prefix) go with testbed_down, which finds them in the agents'
# task state files.
testbed_install_traps
set +e
testbed_up -n 3 || { echo "FAIL - test-bed with three nodes did not come up"; exit 1; }
RUN=$TESTBED_RUN_DIR

init_out=$(tb_weft 1 swarm init)
token=$(grep -o 'WEFT-1-[A-Za-z0-9_-]*' <<<"$init_out" | head -1)
require "node 2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "node 3 joins" tb_weft 3 swarm join --token "$token" "$(tb_addr 1):7946"
require "network create" tb_weft 1 network create -d overlay net-r
has_network() { tb_weft "$1" network ls --format json | tb_json '[n["Name"] for n in d]' | grep -q net-r; }
for i in 2 3; do require "net-r reaches node $i" wait_for 15 has_network "$i"; done

create() {  # NAME ARGS... -- COMMAND...: prints nothing, records the id
  local name=$1 id
  shift
  id=$(tb_weft 1 service create --name "$name" --network net-r "$@")
  if [[ $id =~ ^[0-9a-f]{64}$ ]]; then svc_ids+=("$id"); ok "service create $name"; else not_ok "service create $name: $id"; fi
}
# ps_row NODE SERVICE SLOT: that task's row of `service ps` on node NODE.
ps_row() { tb_weft "$1" service ps "$2" | awk -v n="$2.$3" '$2 == n'; }
state_is() { ps_row 1 "$1" 1 | grep -Eq " $2 "; }

# --- restart conditions ----------------------------------------------------------------
create done0 --restart-condition on-failure -- sh -c "echo run >>$RUN/done0.runs; sleep 1; exit 0"
create fail3 --restart-condition on-failure -- sh -c "date +%s.%N >>$RUN/fail3.runs; exit 3"
create none4 --restart-condition none -- sh -c "echo run >>$RUN/none4.runs; sleep 1; exit 4"

check "on-failure, exit 0: the task is Complete" wait_for 40 state_is done0 Complete
check "none, exit 4: the task is Failed" wait_for 40 state_is none4 Failed
ps_row 1 none4 1
check_match "  service ps shows ERROR task: non-zero exit (4)" "$(ps_row 1 none4 1)" 'Failed .*task: non-zero exit \(4\)$'
check_match "  node 2's service ps says the same" "$(ps_row 2 none4 1)" 'Failed .*task: non-zero exit \(4\)$'
check_match "  on-failure's Complete task: DESIRED STATE Shutdown, no ERROR" "$(ps_row 1 done0 1)" ' Shutdown +Complete .*ago$'
check_match "  the Failed one is Shutdown too" "$(ps_row 1 none4 1)" ' Shutdown +Failed '

# Restarts of fail3 (each start appends its time): 1 s, 2 s, 4 s, 8 s apart.
runs_at_least() { (($(wc -l <"$RUN/fail3.runs" 2>/dev/null || echo 0) >= $1)); }
check "on-failure, exit 3: restarted (5 starts)" wait_for 60 runs_at_least 5
ps_row 1 fail3 1
check_match "  service ps shows ERROR task: non-zero exit (3)" "$(ps_row 1 fail3 1)" 'task: non-zero exit \(3\)$'
gaps=$(head -5 "$RUN/fail3.runs" | awk 'NR > 1 {printf "%.1f ", $1 - prev} {prev = $1}')
echo "restart gaps (s): $gaps"
read -r g1 g2 g3 g4 <<<"$gaps"
# Each delay doubles (1, 2, 4, 8 s); the agent looks every 0.5 s, so a gap
# may be up to 0.5 s longer than its delay: gap N+1 exceeds gap N by at
# least the growth of the delay less that.
grows() { awk -v a="$1" -v b="$2" -v by="$3" 'BEGIN {exit !(b - a >= by - 0.6)}'; }
check "the back-off grows: gap 2 ($g2 s) is about 1 s longer than gap 1 ($g1 s)" grows "$g1" "$g2" 1
check "  gap 3 ($g3 s) about 2 s longer than gap 2" grows "$g2" "$g3" 2
check "  gap 4 ($g4 s) about 4 s longer than gap 3" grows "$g3" "$g4" 4
check "  the first delay is the knob's 1 s, not 5 s (gap 1 $g1 s)" awk -v a="$g1" 'BEGIN {exit !(a >= 0.9 && a < 3)}'

done_node=$(ps_row 1 done0 1 | awk '{print $3}')
done_ns="weft-$done_node-${svc_ids[0]:0:12}-1"
check "the Complete task's namespace is gone" wait_for 10 eval "! ip netns list | awk '{print \$1}' | grep -qx $done_ns"
check_eq "  and it is no backend any more (no endpoint in its namespace)" \
  "$(tb_weft "${done_node#node}" endpoint ls --format json | tb_json "len([e for e in d if '$done_ns' in e['Netns']])")" 0
tb_restart_agent "${done_node#node}" --kill
require "$done_node's agent is back" tb_agent_wait_ready "${done_node#node}"
sleep 8  # past the agent's start-up settle
check "after an agent restart the Complete task is still Complete" state_is done0 Complete
check_eq "on-failure, exit 0: never started again" "$(wc -l <"$RUN/done0.runs")" 1
check_eq "none: never started again" "$(wc -l <"$RUN/none4.runs")" 1
check "the Complete and Failed tasks stay so" eval "state_is done0 Complete && state_is none4 Failed"
for s in done0 fail3 none4; do tb_weft 1 service rm "$s" >/dev/null; done

# --- service logs: prefixes, other nodes, --follow -----------------------------------------
create talk --replicas 4 -- sh -c 'i=0; while :; do echo "tick $i"; i=$((i + 1)); sleep 0.5; done'
talk_id=${svc_ids[-1]}
replicas_are() { [[ $(tb_weft "$1" service ls | awk -v s="$2" '$2 == s {print $NF}') == "$3" ]]; }
check "talk: 4/4" wait_for 40 replicas_are 1 talk 4/4
running() {  # NODE SERVICE: "slot node pid" per running task as NODE sees them
  curl -s --max-time 5 --unix-socket "$(tb_sock "$1")" "http://weft/services/$2/tasks" |
    tb_json '"\n".join("%s %s %s" % (t["Slot"], t["NodeID"], t["Status"]["PID"]) for t in d if t["Status"]["State"] == "running" and t["DesiredState"] == "running")' | sort -n
}
two=$(running 1 talk | awk '{print $2}' | sort | uniq -c | awk '$1 == 2 {print $2}')
one=$(running 1 talk | awk -v t="$two" '$2 != t {print $2}' | head -1)
require "fixture: a node with two talk tasks" test -n "$two"
ti=${two#node}
sleep 2
out=$(tb_weft "$ti" service logs talk 2>"$RUN/logs.err")
check_match "service logs prefixes lines name.slot.id@node | " "$out" \
  "^talk\.[0-9]+\.${talk_id:0:12}@$two \| tick [0-9]+$"
expected=$(running 1 talk | awk '{print $1 "@" $2}' | sort | tr '\n' ' ')
check_eq "  shows all four tasks' lines, each with the node it runs on (asked from $two)" \
  "$(sed -n 's/^talk\.\([0-9]*\)\.[0-9a-f]*\(@node[0-9]\) | tick .*/\1\2/p' <<<"$out" | sort -u | tr '\n' ' ')" "$expected"
check_eq "  every line has a task's prefix" "$(grep -cvE "^talk\.[0-9]+\.${talk_id:0:12}@node[0-9] \| " <<<"$out")" 0
check_eq "  and no note on stderr (every node answered)" "$(cat "$RUN/logs.err")" ""
# A node whose agent does not answer: its tasks' lines are missing, a note
# says so, and the command does not hang.
si=${one#node}
kill -STOP "$(tb_agent_pid "$si")"
start=$SECONDS
out=$(tb_weft "$ti" service logs talk 2>"$RUN/logs.err")
took=$((SECONDS - start))
kill -CONT "$(tb_agent_pid "$si")"
cat "$RUN/logs.err"
check "with $one's agent stopped, service logs still answers in time (${took}s)" test "$took" -le 5
check "  without $one's lines" eval "! grep -q '@$one | ' <<<\"\$out\""
check "  with $two's" grep -q "@$two | tick" <<<"$out"
check_match "  and a note naming the task on $one" "$(cat "$RUN/logs.err")" "no log lines of talk\.[0-9]+, which runs on $one"
timeout 5 "$WEFT_BIN/weft" --host "$(tb_host "$ti")" service logs --follow talk >"$RUN/follow.out" 2>/dev/null
lines=$(wc -l <"$RUN/follow.out")
dups=$(sort "$RUN/follow.out" | uniq -d | wc -l)
echo "--follow: $lines lines, $dups repeated"
check "service logs --follow keeps printing new lines" \
  test "$(grep -c "@$two | tick" "$RUN/follow.out")" -gt "$(grep -c "@$two | tick" <<<"$out")"
check_eq "  each line once, with four tasks logging" "$dups" 0
check "  the newest ticks of the tasks on other nodes too" eval "test \$(tail -8 '$RUN/follow.out' | grep -vc '@$two | ') -ge 1"

# --- weft exec into a task on another node ----------------------------------------------
r_slot=$(running 1 talk | awk '$2 != "node1" {print $1}' | head -1)
r_node=$(running 1 talk | awk -v s="$r_slot" '$1 == s {print $2}')
out=$(tb_weft 1 exec "talk.$r_slot" -- true 2>&1)
rc=$?
check "weft exec talk.$r_slot on node1 fails" test "$rc" -ne 0
check_match "  and names $r_node, where it runs" "$out" "runs on node $r_node"
tb_weft 1 service rm talk >/dev/null

# --- a partition heals -----------------------------------------------------------------
# Each task runs `sleep <marker>`: the processes on the machine tell how many
# copies run, whatever any agent believes.
marker=$((100000 + RANDOM))
create part --replicas 3 -- sleep "$marker"
check "part: 3/3" wait_for 40 replicas_are 1 part 3/3
copies() { pgrep -xf "sleep $marker" | wc -l; }
check_eq "3 copies run" "$(copies)" 3
before=$(running 1 part)
echo "$before"
cut=$(awk '$2 != "node1" {print $2}' <<<"$before" | head -1)
ci=${cut#node}
c_slot=$(awk -v n="$cut" '$2 == n {print $1}' <<<"$before" | head -1)
c_pid=$(awk -v n="$cut" '$2 == n {print $3}' <<<"$before" | head -1)
echo "cutting $cut off (underlay down, agent running): its slot $c_slot, pid $c_pid"
ip -n "$(tb_ns "$ci")" link set eth0 down
moved() { running 1 part | awk -v s="$c_slot" -v n="$cut" '$1 == s && $2 != n' | grep -q .; }
check "slot $c_slot runs on another node while $cut is cut off" wait_for 60 moved
check "$cut's agent still runs" kill -0 "$(tb_agent_pid "$ci")"
sleep 10
echo "during the partition: $(copies) copies; $cut sees: $(running "$ci" part | tr '\n' ';')"
check_eq "the cut-off $cut started no copy of the others' slots (no majority): 4 copies" "$(copies)" 4

ip -n "$(tb_ns "$ci")" link set eth0 up
all_ready() { [[ $(tb_weft 1 node ls --format json | tb_json 'sorted(set(n["Status"] for n in d))') == '["ready"]' ]]; }
check "after the heal every node is Ready" wait_for 60 all_ready
three_copies() { [[ $(copies) == 3 ]]; }
check "after the heal 3 copies run, one per slot (the stale ones stopped)" wait_for 60 three_copies
check "  $cut's stale copy of slot $c_slot stopped" wait_for 20 eval "! kill -0 $c_pid 2>/dev/null"
settled=$(running 1 part)
pids=$(pgrep -xf "sleep $marker" | sort | tr '\n' ' ')
echo "$settled"
sleep 15
check_eq "nothing moved or restarted in the 15 s after (slots, nodes, pids)" \
  "$(running 1 part) / $(pgrep -xf "sleep $marker" | sort | tr '\n' ' ')" "$settled / $pids"
others=$(awk -v n="$cut" '$2 != n {print $1, $2, $3}' <<<"$before")
check_eq "the slots that ran on the majority side kept their nodes and processes" \
  "$(running 1 part | awk -v n="$cut" -v s="$c_slot" '$1 != s {print $1, $2, $3}')" "$others"
check_eq "each slot 1..3 runs once" "$(awk '{print $1}' <<<"$settled" | sort -n | tr '\n' ' ')" "1 2 3 "
for i in 1 2 3; do check "node $i: part 3/3" wait_for 20 replicas_are "$i" part 3/3; done
check "$c_slot did not move back to $cut" eval "! running 1 part | awk -v s=$c_slot -v n=$cut '\$1 == s && \$2 == n' | grep -q ."
tb_weft 1 service rm part >/dev/null
no_copies() { [[ $(copies) == 0 ]]; }
check "service rm stops every copy" wait_for 30 no_copies

tb_summary service_tasks_restart
