#!/usr/bin/env bash
# Swarm's node availability on three emulated nodes: `weft node update
# --availability drain node2` moves node2's tasks to the other nodes (its own
# stop), `node ls` shows Drain on every node; back to active, nothing moves
# back; `pause` keeps a node's tasks but gives it none of a scale-up; the
# docker CLI's `node update --availability` does the same through the Engine
# API; a drained node stays drained through its agent's restart; bad input
# (unknown availability, unknown node, labels, a role change) is refused with
# a clear message and changes nothing.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

testbed_install_traps
set +e
testbed_up -n 3 || { echo "FAIL - test-bed with three nodes did not come up"; exit 1; }

token=$(tb_weft 1 swarm init | grep -o 'WEFT-1-[A-Za-z0-9_-]*' | head -1)
require "node 2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "node 3 joins" tb_weft 3 swarm join --token "$token" "$(tb_addr 1):7946"
require "network create" tb_weft 1 network create -d overlay net-av
require "service create with 6 replicas" tb_weft 1 service create --name idle --network net-av --replicas 6 -- sleep 100000

# running_on I: the nodes of the running tasks, as node I lists them, one per line.
running_on() { tb_weft "$1" service ps idle | awk 'NR > 1 && $4 == "Running" && $5 == "Running" {print $3}' | sort; }
count_on() { running_on "$1" | grep -cx "$2"; }
six_running() { [[ $(running_on 1 | wc -l) == 6 ]]; }
require "6 tasks run" wait_for 60 six_running
check_eq "spread 2/2/2" "$(running_on 1 | uniq -c | awk '{print $1}' | tr '\n' ' ')" "2 2 2 "
availability_of() { tb_weft "$1" node ls | awk -v n="$2" '$2 == n || $3 == n {for (i = 1; i <= NF; i++) if ($i ~ /^(Active|Pause|Drain)$/) print $i}'; }

# --- drain -------------------------------------------------------------------------
check_eq "node update --availability drain prints the node" "$(tb_weft 1 node update --availability drain node2)" node2
for i in 1 2 3; do check "node $i shows node2 Drain" wait_for 10 eval '[[ $(availability_of '"$i"' node2) == Drain ]]'; done
drained() { [[ $(count_on 1 node2) == 0 && $(running_on 1 | wc -l) == 6 ]]; }
check "node2's tasks move: 6 run, none on node2" wait_for 60 drained
running_on 1 | uniq -c | tr '\n' ' '; echo
check "node2 runs no task of its own" eval '[[ $(tb_weft 2 service ps idle | awk '"'"'NR > 1 && $3 == "node2" && $5 == "Running"'"'"' | wc -l) == 0 ]]'

# --- active again: nothing moves back ----------------------------------------------------
check "node update --availability active" tb_weft 3 node update --availability active node2
check "node 1 shows node2 Active" wait_for 10 eval '[[ $(availability_of 1 node2) == Active ]]'
sleep 6
check_eq "nothing moved back to node2" "$(count_on 1 node2)" 0
check_eq "still 6 running" "$(running_on 1 | wc -l)" 6

# --- pause: keeps its tasks, gets none of a scale-up ---------------------------------------
on3=$(count_on 1 node3)
check "node update --availability pause node3" tb_weft 1 node update --availability pause node3
check "node 2 shows node3 Pause" wait_for 10 eval '[[ $(availability_of 2 node3) == Pause ]]'
check "scale to 9" tb_weft 1 service update --replicas 9 idle
nine_running() { [[ $(running_on 1 | wc -l) == 9 ]]; }
check "9 tasks run" wait_for 60 nine_running
check_eq "the paused node3 kept its $on3 tasks and got none of the 3 new" "$(count_on 1 node3)" "$on3"
check "node2, active again, takes new tasks" test "$(count_on 1 node2)" -gt 0

# --- the docker CLI -----------------------------------------------------------------------
d() { local i=$1; shift; DOCKER_CONFIG=$TESTBED_RUN_DIR/docker docker -H "unix://$(tb_sock "$i")" "$@"; }
check_eq "docker node update --availability drain node3" "$(d 2 node update --availability drain node3 2>&1)" node3
check_eq "docker node inspect shows drain" "$(d 1 node inspect node3 --format '{{.Spec.Availability}}')" drain
check "docker node ls shows Drain" wait_for 10 eval 'd 1 node ls | grep node3 | grep -q Drain'
check "node3's tasks move" wait_for 60 eval '[[ $(count_on 1 node3) == 0 && $(running_on 1 | wc -l) == 9 ]]'
out=$(d 1 node update --label-add zone=a node2 2>&1); rc=$?
check "docker node update --label-add is refused" test "$rc" -ne 0
check_match "it says weft nodes have no labels" "$out" "no labels"
out=$(d 1 node update --role worker node2 2>&1); rc=$?
check "docker node update --role worker is refused" test "$rc" -ne 0
check_match "it says there is no role to change" "$out" "no role to change"

# --- a drained node stays drained through a restart -------------------------------------------
tb_agent_stop 3
tb_agent_start 3
require "node3's agent starts again" tb_agent_wait_ready 3
check "node3 still Drain on node 3 after its restart" wait_for 20 eval '[[ $(availability_of 3 node3) == Drain ]]'
sleep 3
check_eq "and runs no task" "$(count_on 1 node3)" 0

# --- bad input ----------------------------------------------------------------------------------
out=$(tb_weft 1 node update --availability off node2 2>&1); rc=$?
check "an unknown availability is refused" test "$rc" -ne 0
check_match "naming the choices" "$out" "active|pause|drain"
out=$(tb_weft 1 node update --availability drain nobody 2>&1); rc=$?
check "an unknown node is refused" test "$rc" -ne 0
check_match "saying it is not found" "$out" "not found"
check_eq "node2 is still Active" "$(availability_of 1 node2)" Active

check "service rm" tb_weft 1 service rm idle
tb_summary
