#!/usr/bin/env bash
# Three emulated nodes joined with the token: a network made on one node
# exists on all; endpoints on different nodes reach each other over VXLAN
# (ping, 50 MB over TCP) through static FDB/neighbour entries; detach removes
# those entries everywhere; a partition of one node heals and the tables
# converge; kill -9 of a node's agent plus removal of its namespace withdraws
# its endpoints everywhere.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

testbed_install_traps
# Checks count failures and go on; tb_summary decides the exit status.
set +e
testbed_up -n 3 || { echo "FAIL - test-bed with three nodes did not come up"; exit 1; }
P=$TESTBED_PREFIX
work=$TESTBED_RUN_DIR/work
mkdir -p "$work"

# --- swarm ---------------------------------------------------------------------
init_out=$(tb_weft 1 swarm init)
echo "$init_out"
token=$(grep -o 'WEFT-1-[A-Za-z0-9_-]*' <<<"$init_out" | head -1)
join_addr=$(sed -n 's/.*weft swarm join --token [^ ]* \([0-9.]*:[0-9]*\).*/\1/p' <<<"$init_out")
require_eq "init prints the join command with node 1's gossip address" "$join_addr" "$(tb_addr 1):7946"

tampered=${token%?}$([[ ${token: -1} == 0 ]] && echo 1 || echo 0)
if out=$(tb_weft 2 swarm join --token "$tampered" "$join_addr" 2>&1); then
  not_ok "a tampered token is refused" "$out"
else
  check_match "a tampered token is refused with a reason" "$out" "token"
fi
require "node 2 joins" tb_weft 2 swarm join --token "$token" "$join_addr"
require "node 3 joins" tb_weft 3 swarm join --token "$token" "$join_addr"

ready_count() { tb_weft "$1" node ls --format json | tb_json 'len([n for n in d if n["Status"] == "ready"])'; }
all_ready() { [[ $(ready_count "$1") == "$2" ]]; }
for i in 1 2 3; do
  check "node $i sees 3 nodes Ready" wait_for 15 all_ready "$i" 3
done
node_ls=$(tb_weft 2 node ls)
echo "$node_ls"
check_match "node ls marks the local node with *" "$node_ls" "\* +node2 +Ready +Active"

# --- a network made on node 2 exists everywhere ----------------------------------
require "network create on node 2" tb_weft 2 network create -d overlay net-test
has_network() { tb_weft "$1" network ls --format json | tb_json '[n["Name"] for n in d]' | grep -q net-test; }
for i in 1 3; do check "net-test appears on node $i" wait_for 10 has_network "$i"; done
vni=$(tb_weft 1 network inspect net-test | tb_json 'd[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"]')
vx=wvx$vni

c1=$(tb_netns_add c1); c2=$(tb_netns_add c2); c3=$(tb_netns_add c3)
ip1=$(tb_weft 1 endpoint attach net-test --netns "$c1")
ip2=$(tb_weft 2 endpoint attach net-test --netns "$c2")
ip3=$(tb_weft 3 endpoint attach net-test --netns "$c3")
echo "endpoints: $ip1 (node1) $ip2 (node2) $ip3 (node3)"
check "three distinct addresses" test "$(printf '%s\n' "$ip1" "$ip2" "$ip3" | sort -u | wc -l)" = 3

ping_ok() { ip netns exec "$1" ping -c 1 -W 1 "$2"; }
check "node1's endpoint pings node3's over the overlay" wait_for 15 ping_ok "$c1" "$ip3"
check "node3's endpoint pings node2's" wait_for 15 ping_ok "$c3" "$ip2"

head -c 50M /dev/urandom >"$work/payload"
check "50 MB from node1 to node3 over the overlay arrive intact (sha256)" tb_transfer "$c1" "$c3" "$ip3" "$work/payload"
rm -f "$work/payload"

# Entries on node I's VXLAN: "mac dst" lines and "ip mac" lines.
net_ns() { tb_network_netns_files "$1" | head -1; }
fdb_of() { nsenter --net="$(net_ns "$1")" -- bridge fdb show dev "$vx" |
  awk '{for (i = 2; i < NF; i++) if ($i == "dst") print $1, $(i + 1)}' | sort; }
neigh_of() { nsenter --net="$(net_ns "$1")" -- ip neigh show dev "$vx" nud permanent | awk '{print $1, $3}' | sort; }
mac_of_ip() { local a b c d; IFS=. read -r a b c d <<<"$1"; printf '02:42:%02x:%02x:%02x:%02x' "$a" "$b" "$c" "$d"; }
mac3=$(mac_of_ip "$ip3")
check_match "node1 has a static FDB entry for node3's endpoint, to node3's underlay address" \
  "$(fdb_of 1)" "^$mac3 $(tb_addr 3)$"
check_match "node1 has a permanent neighbour entry for it" "$(neigh_of 1)" "^$ip3 $mac3$"
check_eq "node2 has entries for exactly the two remote endpoints" "$(fdb_of 2 | wc -l)" 2
check "no learned (dynamic) FDB entries on node1's VXLAN" \
  bash -c "! nsenter --net='$(net_ns 1)' -- bridge fdb show dev $vx | grep -v permanent | grep -q dst"

# --- detach removes the entries everywhere -------------------------------------------
require "detach node3's endpoint" tb_weft 3 endpoint detach net-test --netns "$c3"
no_entry_for() { ! fdb_of "$1" | grep -q "^$mac3 " && ! neigh_of "$1" | grep -q "^$ip3 "; }
check "detach removes node3's entries on node1" wait_for 10 no_entry_for 1
check "detach removes node3's entries on node2" wait_for 10 no_entry_for 2
ip3=$(tb_weft 3 endpoint attach net-test --netns "$c3")
mac3=$(mac_of_ip "$ip3")
check "re-attached endpoint on node3 is reachable again" wait_for 15 ping_ok "$c1" "$ip3"

knows_endpoint() { tb_weft "$1" endpoint ls --format json | tb_json '[e["IPv4Address"] for e in d]' | grep -q "\"$2/"; }

# --- a missed broadcast is repaired by anti-entropy ----------------------------------------
# Node 3 drops every gossip datagram big enough to carry a table entry, while
# probes still get through: it misses the broadcast of a new endpoint and must
# get it from the next push/pull (digest mismatch -> sync), within one round.
ip netns exec "$(tb_ns 3)" nft add table inet weftlossy
ip netns exec "$(tb_ns 3)" nft add chain inet weftlossy in '{ type filter hook input priority 0; }'
ip netns exec "$(tb_ns 3)" nft add rule inet weftlossy in udp dport 7946 meta length gt 300 counter drop
c1m=$(tb_netns_add c1m)
ip1m=$(tb_weft 1 endpoint attach net-test --netns "$c1m")
check "node3 still learns of an endpoint whose broadcasts it missed (push/pull repair)" \
  wait_for 70 knows_endpoint 3 "$ip1m"
dropped=$(ip netns exec "$(tb_ns 3)" nft list ruleset | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
check "and broadcasts to node3 really were dropped ($dropped datagrams)" test "${dropped:-0}" -gt 0
ip netns exec "$(tb_ns 3)" nft delete table inet weftlossy
require "detach the lossy-test endpoint" tb_weft 1 endpoint detach net-test --netns "$c1m"

# --- partition: node 2's underlay link down for 20 s -----------------------------------
endpoint_count() { tb_weft "$1" endpoint ls --format json | tb_json 'len(d)'; }
ip -n "$(tb_ns 2)" link set eth0 down
sleep 20
c1b=$(tb_netns_add c1b)
ip1b=$(tb_weft 1 endpoint attach net-test --netns "$c1b")
# Both sides make an address and a network of the same name while cut off.
c2b=$(tb_netns_add c2b)
ip2b=$(tb_weft 2 endpoint attach net-test --netns "$c2b")
check "the two sides of a partition never hand out the same address" test "$ip1b" != "$ip2b"
twin1=$(tb_weft 1 network create -d overlay twin)
twin2=$(tb_weft 2 network create -d overlay twin)
ip -n "$(tb_ns 2)" link set eth0 up
check "after the partition heals, node2 learns the endpoint made during it" wait_for 45 knows_endpoint 2 "$ip1b"
check "and node1 lists node2's endpoint again" wait_for 45 knows_endpoint 1 "$ip2"
converged() { [[ $(endpoint_count 1) == 5 && $(endpoint_count 2) == 5 && $(endpoint_count 3) == 5 ]]; }
check "all three nodes converge on the same 5 endpoints" wait_for 45 converged
twins() { [[ $(tb_weft "$1" network ls --format json | tb_json 'len([n for n in d if n["Name"] == "twin"])') == 2 ]]; }
check "both networks named twin exist on node 3 after the heal" wait_for 20 twins 3
check "both networks named twin exist on node 1 after the heal" wait_for 20 twins 1
check_eq "and their IDs differ" "$([[ $twin1 != "$twin2" ]] && echo distinct)" distinct
out=$(tb_weft 3 network inspect twin 2>&1)
check_match "an ambiguous name is refused, asking for the ID" "$out" "ambiguous.*ID"
check "a twin given by ID inspects fine" tb_weft 3 network inspect "$twin2"
check "node2's endpoint reaches the one made during the partition" wait_for 15 ping_ok "$c2" "$ip1b"

# --- a one-sided false death: node 2's agent frozen for 20 s ---------------------------------
# The others declare node2 dead and withdraw its endpoints; node2 itself never
# sees anyone die. Once it runs again its endpoints must come back everywhere.
kill -STOP "$(tb_agent_pid 2)"
node2_gone_on_1() { ! knows_endpoint 1 "$ip2"; }
check "while node2's agent is frozen, node1 withdraws its endpoints" wait_for 20 node2_gone_on_1
sleep 5
kill -CONT "$(tb_agent_pid 2)"
check "after the freeze node1 lists node2's endpoint again" wait_for 75 knows_endpoint 1 "$ip2"
check "and node3 too" wait_for 30 knows_endpoint 3 "$ip2"
check "and traffic flows to it again" wait_for 15 ping_ok "$c1" "$ip2"

# --- kill -9 node 3's agent and remove its namespace ------------------------------------
tb_agent_stop 3 --kill
ip netns del "$(tb_ns 3)"
withdrawn() { ! knows_endpoint "$1" "$ip3" && no_entry_for "$1"; }
check "node3's endpoint is withdrawn on node1" wait_for 30 withdrawn 1
check "node3's endpoint is withdrawn on node2" wait_for 30 withdrawn 2
node3_down() { tb_weft 1 node ls --format json | tb_json '[n["Status"] for n in d if n["Hostname"] == "node3"]' | grep -q down; }
check "node ls shows node3 Down" wait_for 10 node3_down
check "node1 and node2 still reach each other" ping_ok "$c1" "$ip2"

out=$(tb_weft 1 node rm node2 2>&1)
check_match "node rm refuses a node that is up" "$out" "not down"
check "node rm of the dead node3" tb_weft 1 node rm node3
check "node ls no longer lists node3" bash -c "! '$WEFT_BIN/weft' --host '$(tb_host 1)' node ls | grep -q node3"
# Node 3's address ranges now belong to node 1: new endpoints still work.
c1c=$(tb_netns_add c1c)
ip1c=$(tb_weft 1 endpoint attach net-test --netns "$c1c")
check "an endpoint attached after node rm reaches node2's" wait_for 15 ping_ok "$c1c" "$ip2"

tb_summary
