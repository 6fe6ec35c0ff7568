#!/usr/bin/env bash
# The replicated tables survive kill -9 through tables.journal: node2 creates
# networks and a service and removes one network; node1's agent is killed
# (no graceful save: its tables.bin was never written) with a torn record at
# the end of its journal; started again alone, it lists what node2 made and
# not what node2 removed, and says what it dropped. A graceful stop folds the
# journal into tables.bin.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

testbed_install_traps
set +e
testbed_up -n 2 || { echo "FAIL - test-bed with two nodes did not come up"; exit 1; }
cluster_dir=$(tb_state_dir 1)/cluster
journal=$cluster_dir/tables.journal
log=$(tb_log_file 1)

token=$(tb_weft 1 swarm init | grep -o 'WEFT-1-[A-Za-z0-9_-]*' | head -1)
require "node2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
for n in 1 2 3; do require "node2 creates net-j$n" tb_weft 2 network create -d overlay "net-j$n"; done
require "node2 creates a service" tb_weft 2 service create --name svc-j --network net-j1
require "node2 removes net-j3" tb_weft 2 network rm net-j3
lists() { tb_weft "$1" "$2" ls | grep -qw "$3"; }
for n in 1 2; do require "node1 lists net-j$n" wait_for 15 lists 1 network "net-j$n"; done
require "node1 lists svc-j" wait_for 15 lists 1 service svc-j
require "node1 no longer lists net-j3" wait_for 15 eval '! lists 1 network net-j3'
journal_has_records() { (($(stat -c %s "$journal" 2>/dev/null || echo 0) > 16)); }
check "node1's changes reach its journal within a few seconds" wait_for 5 journal_has_records
check "node1 never wrote its whole tables.bin" test ! -e "$cluster_dir/tables.bin"

tb_agent_stop 2
tb_agent_stop 1 --kill
# A record whose length says 32 bytes, cut after 4: what a crash mid-write leaves.
printf '\x20\x00\x00\x00\x01\x02\x03\x04abcd' >>"$journal"
lines_before=$(wc -l <"$log")
tb_agent_start 1
require "node1's agent starts again, alone" tb_agent_wait_ready 1
new_log=$(tail -n +"$((lines_before + 1))" "$log")
check_match "it replays the journal" "$new_log" "changes replayed from $journal"
check_match "it drops the torn record and says so" "$new_log" "dropping the last 12 bytes"
for n in 1 2; do check "node1 lists net-j$n after kill -9" lists 1 network "net-j$n"; done
check "node1 lists svc-j after kill -9" lists 1 service svc-j
check "net-j3 stays removed" eval '! lists 1 network net-j3'
check "node1 creates a network after the restart" tb_weft 1 network create -d overlay net-after
check "which reaches its journal" wait_for 5 grep -q net-after "$journal"

tb_agent_stop 1
check "a graceful stop writes tables.bin" test -s "$cluster_dir/tables.bin"
check_eq "and starts the journal over (its header only)" "$(stat -c %s "$journal")" 16
tb_agent_start 1
require "node1's agent starts again" tb_agent_wait_ready 1
for net in net-j1 net-j2 net-after; do check "node1 lists $net from tables.bin" lists 1 network "$net"; done
check "net-j3 stays removed" eval '! lists 1 network net-j3'

tb_summary
