#!/usr/bin/env bash
# Address ownership survives kill -9 at any moment (issue 7): a claim, a
# donation given or received, and a new network's claim are on disk before
# any number from them is used or sent.
#  1. One node: `swarm init`, kill -9 0.1-0.5 s later, restart: `network
#     create` works; kill -9 right after that create, restart: an attach to
#     the new network works. Three rounds.
#  2. Two nodes: node 3 creates a network, which needs subnets and VNIs given
#     by node 2; both agents are killed right after. Node 2 (the donor),
#     restarted alone, must not hand out what it gave away; node 3 (the
#     recipient) still has what it was given. Then more networks on both:
#     never a subnet or a VNI twice, and the saved ranges tables hold no
#     number twice.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

testbed_install_traps
# Checks count failures and go on; tb_summary decides the exit status.
set +e
testbed_up -n 3 || { echo "FAIL - test-bed with three nodes did not come up"; exit 1; }

# "SUBNET VNI" of a network as node I sees it.
net_info() {
  tb_weft "$1" network inspect "$2" |
    tb_json 'd[0]["IPAM"]["Config"][0]["Subnet"] + " " + d[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"]'
}
network_count() { tb_weft "$1" network ls --format json | tb_json 'len(d)'; }
sees_networks() { [[ $(network_count "$1") == "$2" ]]; }
ready_count() { tb_weft "$1" node ls --format json | tb_json 'len([n for n in d if n["Status"] == "ready"])'; }
all_ready() { [[ $(ready_count "$1") == "$2" ]]; }
kill_and_restart() {
  tb_agent_stop "$1" --kill
  tb_agent_start "$1"
  tb_agent_wait_ready "$1"
}

# --- 1. one node: kill -9 just after swarm init and just after a create --------
for round in 1 2 3; do
  delay=0.$((2 * round - 1))
  require "round $round: swarm init on node 1" tb_weft 1 swarm init
  sleep "$delay"
  require "round $round: node 1's agent restarts after kill -9 ${delay}s after swarm init" kill_and_restart 1
  if out=$(tb_weft 1 network create -d overlay "crash-$round" 2>&1); then
    ok "round $round: network create works after that restart"
  else
    not_ok "round $round: network create works after that restart" "$out"
  fi
  # Its addresses were claimed a moment ago, on the gossip thread.
  require "round $round: node 1's agent restarts after kill -9 right after network create" kill_and_restart 1
  c=$(tb_netns_add "c$round")
  if out=$(tb_weft 1 endpoint attach "crash-$round" --netns "$c" 2>&1); then
    ok "round $round: an attach to that network works after the restart ($out)"
  else
    not_ok "round $round: an attach to that network works after the restart" "$out"
  fi
  require "round $round: swarm leave" tb_weft 1 swarm leave
done
subnets=$(for round in 1 2 3; do net_info 1 "crash-$round" | cut -d' ' -f1; done)
check_eq "node 1's three networks have three subnets" "$(sort -u <<<"$subnets" | grep -c .)" 3

# --- 2. two nodes: kill -9 of donor and recipient right after a donation ---------
init_out=$(tb_weft 2 swarm init)
token=$(grep -o 'WEFT-1-[A-Za-z0-9_-]*' <<<"$init_out" | head -1)
require "node 3 joins node 2's swarm" tb_weft 3 swarm join --token "$token" "$(tb_addr 2):7946"
for i in 2 3; do require "node $i sees 2 nodes Ready" wait_for 15 all_ready "$i" 2; done
# Let the agents' periodic save of the tables go idle, so that what follows
# happens within the second before the next one.
sleep 2
require "node 3 creates a network from subnets and VNIs node 2 gives it" tb_weft 3 network create -d overlay gift-1
tb_agent_stop 2 --kill
tb_agent_stop 3 --kill

tb_agent_start 2
require "node 2 (the donor) restarts" tb_agent_wait_ready 2
# Alone: node 3 is down, so only node 2's own disk says what it gave away.
require "node 2, restarted alone, creates a network" tb_weft 2 network create -d overlay donor-1
tb_agent_start 3
require "node 3 (the recipient) restarts" tb_agent_wait_ready 3
check "node 3, restarted, creates a network" tb_weft 3 network create -d overlay gift-2
for n in 2 3; do
  check "node 2 creates another network ($n)" tb_weft 2 network create -d overlay "donor-$n"
  check "node 3 creates another network ($((n + 1)))" tb_weft 3 network create -d overlay "gift-$((n + 1))"
done
names=(gift-1 gift-2 gift-3 gift-4 donor-1 donor-2 donor-3)
for i in 2 3; do check "node $i sees all ${#names[@]} networks" wait_for 20 sees_networks "$i" "${#names[@]}"; done
infos=$(for name in "${names[@]}"; do printf '%s %s\n' "$name" "$(net_info 2 "$name")"; done)
echo "$infos"
check_eq "no subnet is used twice" "$(awk '{print $2}' <<<"$infos" | sort | uniq -d | tr '\n' ' ')" ""
check_eq "no VNI is used twice" "$(awk '{print $3}' <<<"$infos" | sort | uniq -d | tr '\n' ' ')" ""

# The ranges tables as saved on a graceful stop (tables.bin): per space, no
# number in two entries, and both nodes agree.
ranges_of() {
  python3 - "$1" <<'EOF'
import json, sys

def dec(b, i):
    t = b[i]; i += 1
    if t <= 0x7f: return t, i
    if 0x90 <= t <= 0x9f or t in (0xdc, 0xdd):
        if t == 0xdc: n = int.from_bytes(b[i:i + 2], "big"); i += 2
        elif t == 0xdd: n = int.from_bytes(b[i:i + 4], "big"); i += 4
        else: n = t & 0x0f
        out = []
        for _ in range(n):
            v, i = dec(b, i); out.append(v)
        return out, i
    if 0xa0 <= t <= 0xbf or t in (0xd9, 0xda, 0xdb, 0xc4, 0xc5, 0xc6):
        if t in (0xd9, 0xc4): n = b[i]; i += 1
        elif t in (0xda, 0xc5): n = int.from_bytes(b[i:i + 2], "big"); i += 2
        elif t in (0xdb, 0xc6): n = int.from_bytes(b[i:i + 4], "big"); i += 4
        else: n = t & 0x1f
        return b[i:i + n].decode(), i + n
    if t in (0xc2, 0xc3): return t == 0xc3, i
    sizes = {0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8}
    if t in sizes: return int.from_bytes(b[i:i + sizes[t]], "big"), i + sizes[t]
    raise ValueError("unexpected msgpack type 0x%x" % t)

data = open(sys.argv[1], "rb").read()
assert data[0] == 0x77, "not a weft table snapshot"
entries, _ = dec(data, 1)
ranges = []
for table, key, owner, lamport, deleted, value in entries:
    if table == "ranges" and not deleted:
        v = json.loads(value)
        ranges.append((v["space"], v["first"], v["last"], v["holder"]))
for r in sorted(ranges): print(*r)
EOF
}
overlaps() {
  python3 -c '
import sys
last = {}
bad = []
for line in sys.stdin:
    space, first, end, holder = line.split()
    first, end = int(first), int(end)
    if space in last and first <= last[space][0]:
        bad.append("%s: %d-%d (%s) overlaps %s" % (space, first, end, holder, last[space][1]))
    if space not in last or end > last[space][0]:
        last[space] = (end, "%d-%d (%s)" % (first, end, holder))
print("\n".join(bad))
'
}
sleep 2  # net-space gifts that follow the networks
for i in 2 3; do tb_agent_stop "$i"; done
r2=$(ranges_of "$(tb_state_dir 2)/cluster/tables.bin")
r3=$(ranges_of "$(tb_state_dir 3)/cluster/tables.bin")
echo "node 2's ranges table:"; grep -E '^(pool|vni) ' <<<"$r2"
check "node 2's saved tables hold ranges" test -n "$r2"
check_eq "node 2's saved ranges hold no number twice" "$(overlaps <<<"$r2")" ""
check_eq "node 3's saved ranges hold no number twice" "$(overlaps <<<"$r3")" ""
check_eq "nodes 2 and 3 saved the same ranges" "$r3" "$r2"

tb_summary
