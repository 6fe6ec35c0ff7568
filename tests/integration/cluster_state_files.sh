#!/usr/bin/env bash
# Damaged cluster state files (issue 7, item 8): a garbage tables.bin is
# discarded with a warning that names the file, how many bytes went and that
# the tables come back from peers, and the node keeps its address ranges
# (ranges.bin); a corrupt swarm.json stops the agent with an error that
# names the file and what is wrong.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

testbed_install_traps
set +e
testbed_up -n 1 || { echo "FAIL - test-bed with one node did not come up"; exit 1; }
cluster_dir=$(tb_state_dir 1)/cluster
log=$(tb_log_file 1)

require "swarm init" tb_weft 1 swarm init
require "network create" tb_weft 1 network create -d overlay net-a
tb_agent_stop 1
require "tables.bin was saved on stop" test -s "$cluster_dir/tables.bin"

# --- garbage tables.bin ------------------------------------------------------------
printf 'garbage!%.0s' {1..40} >"$cluster_dir/tables.bin"  # 320 bytes
lines_before=$(wc -l <"$log")
tb_agent_start 1
require "the agent starts with a garbage tables.bin" tb_agent_wait_ready 1
warning=$(tail -n +"$((lines_before + 1))" "$log" | grep -i "tables.bin")
echo "$warning"
check_match "the warning names the file" "$warning" "$cluster_dir/tables.bin"
check_match "it says how much was discarded" "$warning" "discard.*320 bytes"
check_match "it says the tables are rebuilt from peers" "$warning" "rebuilt from peers"
check "the node still holds its address ranges: network create works" tb_weft 1 network create -d overlay net-b

# --- corrupt swarm.json --------------------------------------------------------------
tb_agent_stop 1
printf '{"node_id": "abc", "key": ' >"$cluster_dir/swarm.json"
lines_before=$(wc -l <"$log")
tb_agent_start 1
pid=$(tb_agent_pid 1)
exited() { ! kill -0 "$pid" 2>/dev/null || [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]]; }
check "the agent stops on a corrupt swarm.json" wait_for 15 exited
error=$(tail -n +"$((lines_before + 1))" "$log" | grep -iE "critical|error")
echo "$error"
check_match "the error names the file" "$error" "$cluster_dir/swarm.json"
check_match "and says what is wrong" "$error" "corrupt.*parse error"

tb_summary
