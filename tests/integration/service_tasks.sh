#!/usr/bin/env bash
# Service tasks on three emulated nodes (control/tasks): `service create ...
# -- redis-server` runs one task; `service update --replicas 4` spreads four
# over the nodes 2/1/1; `service ps` lists them; a client reaches them through
# the VIP; a task whose process is killed is started again; scaling down to 2
# stops the highest slots; a node whose agent is killed and whose underlay
# goes down has its slots run elsewhere, and when it comes back nothing moves
# back (its stale copies stop); a restarted agent adopts its running tasks
# (same pids); `service rm` leaves no process, namespace or address, not even
# one a task started in a session of its own; bad
# input is refused with a clear message and leaves nothing behind.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

svc_short=""
# Their task namespaces (weft-<node>-<service id, 12>-<slot>, outside the
# test-bed's prefix) go with testbed_down, which finds them in the agents'
# task state files.
testbed_install_traps
set +e
testbed_up -n 3 || { echo "FAIL - test-bed with three nodes did not come up"; exit 1; }

init_out=$(tb_weft 1 swarm init)
token=$(grep -o 'WEFT-1-[A-Za-z0-9_-]*' <<<"$init_out" | head -1)
require "node 2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "node 3 joins" tb_weft 3 swarm join --token "$token" "$(tb_addr 1):7946"
require "network create" tb_weft 1 network create -d overlay net-test
has_network() { tb_weft "$1" network ls --format json | tb_json '[n["Name"] for n in d]' | grep -q net-test; }
for i in 2 3; do require "net-test reaches node $i" wait_for 15 has_network "$i"; done

# --- bad input: clear errors, nothing made -----------------------------------------
expect_refused() {  # DESC PATTERN CMD...
  local desc=$1 pattern=$2 out rc
  shift 2
  out=$("$@" 2>&1); rc=$?
  if ((rc != 0)) && grep -qi -- "$pattern" <<<"$out"; then ok "$desc"; else not_ok "$desc (rc $rc: $out)"; fi
}
expect_refused "unknown network" "network nope not found" \
  tb_weft 1 service create --name bad --network nope -- sleep 100
expect_refused "replicas not a number" "invalid replicas" \
  tb_weft 1 service create --name bad --network net-test --replicas four -- sleep 100
expect_refused "empty command" "command is empty" \
  tb_weft 1 service create --name bad --network net-test -- ""
expect_refused "replicas without a command" "needs a command" \
  tb_weft 1 service create --name bad --network net-test --replicas 2
check_eq "no service was left behind by bad input" "$(tb_weft 1 service ls -q | wc -l)" 0

# --- one task ------------------------------------------------------------------
svc_id=$(tb_weft 1 service create --name redis --network net-test -- \
  redis-server --protected-mode no --port 6379 --save '' --appendonly no)
require "service create with a command prints the id" grep -Eq '^[0-9a-f]{64}$' <<<"$svc_id"
svc_short=${svc_id:0:12}
VIP=$(tb_weft 1 service inspect redis | tb_json 'd[0]["Endpoint"]["VirtualIPs"][0]["Addr"].split("/")[0]')
replicas_are() { [[ $(tb_weft "$1" service ls | awk '$2 == "redis" {print $NF}') == "$2" ]]; }
check "one task runs (REPLICAS 1/1)" wait_for 30 replicas_are 1 1/1
tb_weft 1 service ls

# tasks I: "slot node pid state" per running task, as node I sees them.
tasks() {
  curl -s --max-time 5 --unix-socket "$(tb_sock "$1")" "http://weft/services/$svc_id/tasks" |
    tb_json '"\n".join("%s %s %s %s" % (t["Slot"], t["NodeID"], t["Status"]["PID"], t["Status"]["State"]) for t in d if t["DesiredState"] == "running")'
}
running_slots() { tasks "$1" | awk '$4 == "running"' | sort -n; }
n_running() { [[ $(running_slots "$1" | awk '{print $1}' | sort -u | wc -l) == "$2" ]]; }

# --- scale to 4: spread 2/1/1 ----------------------------------------------------
check "service update --replicas 4" tb_weft 2 service update --replicas 4 redis
check "4 tasks run (REPLICAS 4/4)" wait_for 40 replicas_are 1 4/4
check "node 3 agrees: 4/4" wait_for 10 replicas_are 3 4/4
running_slots 1
spread=$(running_slots 1 | awk '{print $2}' | sort | uniq -c | awk '{print $1}' | sort -n | tr '\n' ' ')
check_eq "4 replicas on 3 nodes go 2/1/1" "$spread" "1 1 2 "
ps_out=$(tb_weft 1 service ps redis)
echo "$ps_out"
check_match "service ps has Docker's columns" "$(head -1 <<<"$ps_out")" \
  '^ID +NAME +NODE +DESIRED STATE +CURRENT STATE +ERROR'
check_match "service ps names tasks redis.N and says Running ... ago" "$ps_out" 'redis\.4 +node[0-9] +Running +Running .*ago'

l_node=$(running_slots 1 | awk '{print $2}' | head -1)
redis_logged() { tb_weft "${l_node#node}" service logs redis | grep -q "Ready to accept connections"; }
check "service logs on $l_node shows its task's output" wait_for 10 redis_logged

# --- a client reaches the tasks through the VIP ---------------------------------------
client=$(tb_netns_add client)
tb_weft 1 endpoint attach net-test --netns "$client" --name client >/dev/null
vip_pong() { [[ $(ip netns exec "$client" redis-cli -h "$VIP" ping 2>&1) == PONG ]]; }
check "redis-cli -h VIP reaches a task" wait_for 20 vip_pong
run_ids=$(for _ in $(seq 1 30); do ip netns exec "$client" redis-cli -h "$VIP" info server | grep run_id; done | sort -u | wc -l)
check "connections through the VIP land on several tasks ($run_ids run ids)" test "$run_ids" -ge 2

# --- a killed task process is started again -----------------------------------------
read -r k_slot k_node k_pid _ < <(running_slots 1 | head -1)
echo "killing task $k_slot on $k_node, pid $k_pid"
kill -KILL "$k_pid"
restarted() { running_slots 1 | awk -v s="$k_slot" -v p="$k_pid" '$1 == s && $3 != p && $3 != 0' | grep -q .; }
check "the killed task runs again with a new pid" wait_for 30 restarted
check "...and 4/4 again" wait_for 20 replicas_are 1 4/4

# --- scale down to 2: the highest slots stop ------------------------------------------
before=$(running_slots 1)
check "service update --replicas 2" tb_weft 1 service update --replicas 2 redis
check "2 tasks run (REPLICAS 2/2)" wait_for 30 replicas_are 1 2/2
gone34() { ! running_slots 1 | awk '$1 > 2' | grep -q .; }
check "slots 3 and 4 are gone" wait_for 30 gone34
# A zombie counts as alive: a task's process the agent never collected
# stays its zombie for good (seen on CI: control/tasks/task_process.h).
pid_alive() { kill -0 "$1" 2>/dev/null; }
# why_alive PID...: what to look at when a task's process outlived its stop.
why_alive() {
  local p i
  for p in "$@"; do
    pid_alive "$p" || continue
    echo "# still alive: $(ps -o pid,ppid,pgid,stat,lstart,cmd -p "$p" | tail -1)"
    for i in 1 2 3; do grep -E "tasks:" "$(tb_node_dir "$i")/weftd.log" | tail -8 | sed "s/^/# node$i: /"; done
  done
}
for s in 3 4; do
  p=$(awk -v s="$s" '$1 == s {print $3}' <<<"$before")
  check "slot $s's process (pid $p) stopped" wait_for 15 eval "! pid_alive $p"
  why_alive "$p"
done
check_eq "slots 1 and 2 kept their processes" "$(running_slots 1 | awk '{print $1, $3}')" \
  "$(awk '$1 <= 2 {print $1, $3}' <<<"$before")"

# --- a node dies: its slots move; it comes back: nothing moves back -------------------------
victim=$(running_slots 1 | awk '$2 != "node1" {print $2}' | head -1)
vi=${victim#node}
v_slot=$(running_slots 1 | awk -v n="$victim" '$2 == n {print $1}' | head -1)
v_pid=$(running_slots 1 | awk -v n="$victim" '$2 == n {print $3}' | head -1)
echo "killing $victim (slot $v_slot, task pid $v_pid): agent kill -9, underlay down"
tb_agent_stop "$vi" --kill
ip -n "$(tb_ns "$vi")" link set eth0 down
moved() { running_slots 1 | awk -v s="$v_slot" -v n="$victim" '$1 == s && $2 != n' | grep -q .; }
check "slot $v_slot of the dead $victim runs on another node" wait_for 60 moved
check "2/2 without $victim" wait_for 20 replicas_are 1 2/2
after_move=$(running_slots 1)
echo "$after_move"

ip -n "$(tb_ns "$vi")" link set eth0 up
tb_agent_start "$vi"
require "$victim's agent is back" tb_agent_wait_ready "$vi"
node_ready() { tb_weft 1 node ls --format json | tb_json '[n["Status"] for n in d if n["Hostname"] == "'"$victim"'"]' | grep -q ready; }
check "$victim is Ready again" wait_for 30 node_ready
sleep 15
check_eq "nothing moved back when $victim returned (slots, nodes, pids)" "$(running_slots 1)" "$after_move"
check "$victim's stale copy of slot $v_slot stopped" wait_for 20 eval "! pid_alive $v_pid"
check "2/2 after $victim returned" replicas_are 1 2/2

# --- an agent restart adopts its running tasks --------------------------------------------
read -r a_slot a_node a_pid _ < <(running_slots 1 | head -1)
ai=${a_node#node}
tb_restart_agent "$ai" --kill
sleep 3
check "the restarted agent on $a_node adopted slot $a_slot (same pid $a_pid)" \
  wait_for 10 eval "running_slots $ai | awk '\$1 == $a_slot {print \$3}' | grep -qx $a_pid"
check "the adopted process still runs" pid_alive "$a_pid"

# --- weft exec into a task, weft run on the network ---------------------------------------
e_slot=$(running_slots 1 | awk '$2 == "node1" {print $1}' | head -1)
if [[ -n $e_slot ]]; then
  check_eq "weft exec redis.$e_slot reaches the task's own redis" \
    "$(tb_weft 1 exec "redis.$e_slot" -- redis-cli -h 127.0.0.1 ping 2>&1)" PONG
else
  not_ok "fixture: a task on node1 for weft exec"
fi
check_match "weft exec into an endpoint by name sees its eth0" \
  "$(tb_weft 1 exec client -- ip -br -4 addr show eth0 2>&1)" '^eth0(@[a-z0-9]+)? +UP +10\.0\.0\.'

run_ns=${TESTBED_PREFIX}run1
check_eq "weft run --rm reaches the VIP" \
  "$(tb_weft 1 run --network net-test --name "$run_ns" --rm -- redis-cli -h "$VIP" ping 2>&1)" PONG
check "weft run --rm leaves no namespace" eval "! ip netns list | awk '{print \$1}' | grep -qx $run_ns"
check "weft run --rm leaves no endpoint" eval "! tb_weft 1 endpoint ls | grep -q $run_ns"
tb_weft 1 run --network net-test --name "${TESTBED_PREFIX}run2" --rm -- sh -c 'exit 7'
check_eq "weft run passes the command's exit status on" "$?" 7

# --- service rm: no process, no namespace, no address --------------------------------------
pids=$(running_slots 1 | awk '{print $3}')
check "service rm" tb_weft 1 service rm redis
for p in $pids; do check "task pid $p is gone" wait_for 20 eval "! pid_alive $p"; done
why_alive $pids
no_task_netns() { ! ip netns list | awk '{print $1}' | grep -q -- "-$svc_short-"; }
check "no task namespace is left" wait_for 20 no_task_netns
no_backend_left() { ! grep -l "$svc_id" "$TESTBED_RUN_DIR"/n*/state/state.json >/dev/null 2>&1; }
check "no node's state file holds an endpoint or address of the service" wait_for 20 no_backend_left

# --- what a task starts in a session of its own stops with it ---------------------------------
# Its process group does not hold such a process; its namespace does.
esc_secs=$((100000 + $$))
tb_weft 1 service create --name escapee --network net-test -- \
  sh -c "setsid sleep $esc_secs & exec sleep $((esc_secs + 1))" >/dev/null
esc_pid() { pgrep -x -f "sleep $esc_secs" | head -1; }
check "escapee's task started a process in a session of its own" wait_for 30 eval '[[ -n $(esc_pid) ]]'
e_pid=$(esc_pid)
check "service rm escapee" tb_weft 1 service rm escapee
check "the process in a session of its own (pid ${e_pid:-none}) stopped with its task" \
  wait_for 20 eval "! pid_alive ${e_pid:-0}"
why_alive $e_pid
[[ -n $e_pid ]] && pid_alive "$e_pid" && kill -KILL "$e_pid" 2>/dev/null

tb_summary service_tasks
