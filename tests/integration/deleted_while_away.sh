#!/usr/bin/env bash
# What is deleted while a node is away stays deleted when it comes back,
# however long it was away within --cluster-tombstone-lifetime: node1 creates
# a network and a service, its agent stops, node2 removes both, the
# endpoints' tombstones (--tombstone-lifetime 1s) are long reaped when node1
# starts again with its saved tables, and neither comes back on either node.
# Also: a bad --cluster-tombstone-lifetime is refused before anything is made.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

export TB_WEFTD_ARGS="--tombstone-lifetime 1s ${TB_WEFTD_ARGS:-}"
testbed_install_traps
set +e
testbed_up -n 2 || { echo "FAIL - test-bed with two nodes did not come up"; exit 1; }

# --- a bad lifetime: exit 2, the flag named, no state made -----------------------------
dir=$TESTBED_RUN_DIR/bad-lifetime
out=$(nsenter --net="/run/netns/$(tb_ns 1)" -- "$WEFT_BIN/weftd" --node-name bad --advertise-addr "$(tb_addr 1)" \
  --api-socket "$dir.sock" --state-dir "$dir" --bpf-pin-dir "$dir-pins" --cluster-tombstone-lifetime 500ms 2>&1 </dev/null)
check_eq "--cluster-tombstone-lifetime 500ms: exit status 2" "$?" 2
check_match "it names the flag" "$out" "cluster-tombstone-lifetime"
check "it leaves no state dir, socket or pin dir" bash -c "[[ ! -e '$dir' && ! -e '$dir.sock' && ! -e '$dir-pins' ]]"

# --- node1 creates, goes away; node2 deletes ---------------------------------------------
token=$(tb_weft 1 swarm init | grep -o 'WEFT-1-[A-Za-z0-9_-]*' | head -1)
require "node2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "network create on node1" tb_weft 1 network create -d overlay net-away
require "service create on node1" tb_weft 1 service create --name away --network net-away
has_service() { tb_weft "$1" service ls | grep -qw away; }
has_network() { tb_weft "$1" network ls | grep -qw net-away; }
require "node2 lists the service" wait_for 15 has_service 2
require "node2 lists the network" wait_for 15 has_network 2

tb_agent_stop 1
node1_down() { tb_weft 2 node ls | grep node1 | grep -q Down; }
require "node2 sees node1 Down" wait_for 30 node1_down
require "node2 removes node1's service" tb_weft 2 service rm away
require "node2 removes node1's network" tb_weft 2 network rm net-away
check "node2 no longer lists the service" eval '! has_service 2'
# With --tombstone-lifetime 1s the agent reaps every second: past a few
# rounds every endpoint tombstone is gone (and with the old single lifetime,
# the service's and network's too).
sleep 4

# --- node1 comes back with its saved tables -------------------------------------------------
tb_agent_start 1
require "node1's agent starts again" tb_agent_wait_ready 1
node1_ready_on_2() { tb_weft 2 node ls | grep node1 | grep -q Ready; }
require "node2 sees node1 Ready again" wait_for 30 node1_ready_on_2
# Anti-entropy runs at join and every push/pull interval: give it time to
# bring the stale copy back, if anything would.
sleep 8
check "the service is not back on node2" eval '! has_service 2'
check "the network is not back on node2" eval '! has_network 2'
check "node1 learnt the service was removed" eval '! has_service 1'
check "node1 learnt the network was removed" eval '! has_network 1'
check "node1 released the service's state file" bash -c "! ls '$(tb_state_dir 1)/services/' 2>/dev/null | grep -q json"

tb_summary
