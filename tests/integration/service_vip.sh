#!/usr/bin/env bash
# Services and their VIPs on two emulated nodes, through the load balancer
# weftd runs (WEFT_LB_BACKEND: ebpf, the default, or nftables; see
# service_vip_nftables.sh): the first service on a fresh /24 gets 10.0.0.2;
# 200 connections from a client to VIP:6379 of a service with 4 redis
# backends on 2 nodes reach every backend, none more than twice its share;
# `weft lb lookup` predicts the backend (eBPF); ping VIP answers; a detach
# with --drain stops new connections to that backend while an open one goes
# on until the drain ends; a detach without drain resets its open flows
# while the others' survive; a backend reaches its own VIP (hairpin, also
# when it picks itself); a service without backends refuses at once; UDP is
# balanced per flow; kill -9 of the client node's agent during a transfer
# through a VIP loses nothing and the agent comes back with the same maps;
# bad input is refused with a message and leaves nothing behind.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

LB=${WEFT_LB_BACKEND:-ebpf}
export TB_WEFTD_ARGS="--lb-backend $LB ${TB_WEFTD_ARGS:-}"
LBC="python3 $WEFT_SRC/tests/support/lb_client.py"

testbed_install_traps
set +e
testbed_up -n 3 || { echo "FAIL - test-bed with three nodes did not come up"; exit 1; }
work=$TESTBED_RUN_DIR/work
mkdir -p "$work"
echo "load balancer: $LB"

# --- cluster and network ---------------------------------------------------------
init_out=$(tb_weft 1 swarm init)
token=$(grep -o 'WEFT-1-[A-Za-z0-9_-]*' <<<"$init_out" | head -1)
require "node 2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "node 3 joins" tb_weft 3 swarm join --token "$token" "$(tb_addr 1):7946"
require "network create" tb_weft 1 network create -d overlay net-test
has_network() { tb_weft "$1" network ls --format json | tb_json '[n["Name"] for n in d]' | grep -q "$2"; }
require "net-test reaches node 2" wait_for 15 has_network 2 net-test

# --- the service and its VIP -----------------------------------------------------
svc_id=$(tb_weft 1 service create --name redis --network net-test)
check_match "service create prints the id" "$svc_id" '^[0-9a-f]{64}$'
inspect=$(tb_weft 1 service inspect redis)
echo "$inspect" | head -40
check_eq "endpoint mode is vip" "$(tb_json 'd[0]["Endpoint"]["Spec"]["Mode"]' <<<"$inspect")" vip
vip_cidr=$(tb_json 'd[0]["Endpoint"]["VirtualIPs"][0]["Addr"]' <<<"$inspect")
check_eq "the first service on a fresh /24 gets 10.0.0.2" "$vip_cidr" "10.0.0.2/24"
VIP=${vip_cidr%/*}
has_service() { tb_weft "$1" service ls | grep -q "$2"; }
check "node 2 lists the service" wait_for 10 has_service 2 redis
check_eq "node 2 shows the same VIP" \
  "$(tb_weft 2 service inspect redis | tb_json 'd[0]["Endpoint"]["VirtualIPs"][0]["Addr"]')" "10.0.0.2/24"

# --- four redis backends, two per node ---------------------------------------------
declare -A backend_ip backend_node
for b in b1 b2 b3 b4; do
  node=1; [[ $b == b3 || $b == b4 ]] && node=2
  ns=$(tb_netns_add "$b")
  ip=$(tb_weft "$node" endpoint attach net-test --netns "$ns" --service redis --name "$b")
  backend_ip[$b]=$ip
  backend_node[$b]=$node
  ip netns exec "$ns" setsid redis-server --port 6379 --protected-mode no --save '' --appendonly no \
    --daemonize no --logfile "$work/redis-$b.log" </dev/null >/dev/null 2>&1 &
  disown "$!"
done
echo "backends: b1 ${backend_ip[b1]} b2 ${backend_ip[b2]} (node1), b3 ${backend_ip[b3]} b4 ${backend_ip[b4]} (node2)"
redis_up() { ip netns exec "$TESTBED_PREFIX$1" redis-cli -h "${backend_ip[$1]}" set whoami "$1" | grep -q OK; }
for b in b1 b2 b3 b4; do check "redis on $b answers on its own address" wait_for 10 redis_up "$b"; done

client=$(tb_netns_add client)
# The flows below pick their source ports (41001-41006, 42001-42030); keep the
# kernel from handing one of them to the 200 redis-cli connections first, which
# would leave it in TIME_WAIT (EADDRINUSE on bind).
ip netns exec "$client" sysctl -qw net.ipv4.ip_local_reserved_ports=41000-42999
client_ip=$(tb_weft 1 endpoint attach net-test --netns "$client" --name client)
active_backends() { tb_weft "$1" service inspect redis | tb_json 'len([b for b in d[0]["Backends"] if b["State"] == "active"])'; }
backends_are() { [[ $(active_backends "$1") == "$2" ]]; }
check "node 1 sees the 4 backends" wait_for 15 backends_are 1 4
check "node 2 sees the 4 backends" wait_for 15 backends_are 2 4

ask() { ip netns exec "$1" redis-cli -h "$2" get whoami 2>&1; }
vip_answers() { [[ $(ask "$client" "$VIP") == b? ]]; }
check "the VIP answers from the client" wait_for 15 vip_answers
check "ping VIP answers" ip netns exec "$client" ping -c 2 -W 1 "$VIP"

# 200 connections, one request each.
declare -A hits=()
for _ in $(seq 200); do
  who=$(ask "$client" "$VIP")
  hits[$who]=$((${hits[$who]:-0} + 1))
done
summary=$(for k in "${!hits[@]}"; do echo "$k=${hits[$k]}"; done | sort | tr '\n' ' ')
echo "200 connections: $summary"
for b in b1 b2 b3 b4; do
  n=${hits[$b]:-0}
  check "$b got some of the 200 connections and at most twice its share ($n)" test "$n" -gt 0 -a "$n" -le 100
done
check_eq "every connection reached a backend" "$((${hits[b1]:-0} + ${hits[b2]:-0} + ${hits[b3]:-0} + ${hits[b4]:-0}))" 200

counters=$(tb_weft 1 service inspect redis | tb_json 'sum(b.get("Connections", 0) for b in d[0]["Backends"])')
check "service inspect counts the client node's connections (>= 200: $counters)" test "$counters" -ge 200

# --- which backend gets this flow ----------------------------------------------------
if [[ $LB == ebpf ]]; then
  agree=0
  for sport in 41001 41002 41003 41004 41005 41006; do
    predicted=$(tb_weft 1 lb lookup redis --src "$client_ip:$sport" --dport 6379 --format json |
      tb_json 'd["Backend"]["Addr"]')
    got=$(ip netns exec "$client" $LBC ask "$VIP" 6379 --sport "$sport")
    [[ ${backend_ip[$got]:-none} == "$predicted" ]] && agree=$((agree + 1))
    echo "sport $sport: lookup $predicted, connection reached $got"
  done
  check_eq "weft lb lookup predicts the backend of 6 flows" "$agree" 6
else
  check_match "weft lb lookup says nftables draws at random" \
    "$(tb_weft 1 lb lookup redis --src "$client_ip:41001" --dport 6379 2>&1)" "random|nftables"
fi

# --- open connections, then drain one backend and remove another ----------------------
# The client holds COUNT connections to VIP:6379 open; each check round asks
# every one of them again (see lb_client.py hold), through the fifo on fd 7.
mkfifo "$work/ctl"
hold_open() {  # hold_open COUNT DESCRIPTION
  : >"$work/held"
  ip netns exec "$client" $LBC hold "$VIP" 6379 --count "$1" --out "$work/held" --ctl "$work/ctl" &
  holder=$!
  exec 7>"$work/ctl"
  n_check=0
  check "$2" wait_for 15 grep -q '^ready$' "$work/held"
}
release_held() { echo quit >&7; exec 7>&-; wait "$holder" 2>/dev/null; }
held_on() { awk -v b="$1" 'NF == 2 && $2 == b {print $1}' "$work/held"; }
held_answer() { awk -v i="$1" '$1 == i' <<<"$round"; }  # this round's line for held connection $1
hold_open 24 "24 connections held open"
cat "$work/held" | tr '\n' ' '; echo
check_round() {  # sets $round to the "i backend|ERR ..." lines of a new check round
  n_check=$((n_check + 1))
  echo "check $n_check" >&7
  round="no answer from the holder"
  wait_for 30 grep -q "^$n_check done$" "$work/held" || return 1
  round=$(awk -v n="$n_check" '$1 == n && $2 != "done" {$1 = ""; print substr($0, 2)}' "$work/held")
}
check_round
check_eq "every held connection still answers before any change" "$(grep -c ERR <<<"$round")" 0

drained=b1; removed=b3
for b in b1 b2 b3 b4; do [[ -n $(held_on "$b") ]] || echo "note: no held connection on $b"; done
t0=$(date +%s)
require "detach $drained with --drain 12" tb_weft 1 endpoint detach net-test --netns "$TESTBED_PREFIX$drained" --drain 12
draining_seen() { tb_weft 1 service inspect redis | tb_json '[b["State"] for b in d[0]["Backends"] if b["Name"] == "'"$drained"'"]' | grep -q draining; }
check "service inspect shows $drained draining" wait_for 5 draining_seen
sleep 1
declare -A after=()
for _ in $(seq 60); do who=$(ask "$client" "$VIP"); after[$who]=$((${after[$who]:-0} + 1)); done
echo "60 connections while $drained drains: $(for k in "${!after[@]}"; do echo "$k=${after[$k]}"; done | sort | tr '\n' ' ')"
check_eq "new connections avoid the draining backend" "${after[$drained]:-0}" 0
check_round
check_eq "held connections (incl. those on the draining $drained) all work during the drain" \
  "$(grep -c ERR <<<"$round")" 0

require "detach $removed (node 2) without drain" tb_weft 2 endpoint detach net-test --netns "$TESTBED_PREFIX$removed"
gone_seen() { ! tb_weft 1 service inspect redis | grep -q "\"$removed\""; }
check "node 1 no longer lists $removed as a backend" wait_for 10 gone_seen
sleep 1
check_round
echo "$round" | tr '\n' ';'; echo
for i in $(held_on "$removed"); do
  check_match "held connection $i on the removed $removed fails" "$(held_answer "$i")" "ERR"
done
for b in b2 b4; do
  for i in $(held_on "$b"); do
    check_match "held connection $i on $b survives" "$(held_answer "$i")" "^$i $b$"
  done
done
for i in $(held_on "$drained"); do
  check_match "held connection $i on the draining $drained still works" "$(held_answer "$i")" "^$i $drained$"
done
# The drain ends: the endpoint goes, its flows with it.
left=$((t0 + 14 - $(date +%s)))
((left > 0)) && sleep "$left"
drained_gone() { ! ip -n "$TESTBED_PREFIX$drained" -o addr show | grep -q "${backend_ip[$drained]}/"; }
check "after the drain time $drained's endpoint is gone" wait_for 10 drained_gone
check_round
for i in $(held_on "$drained"); do
  check_match "held connection $i on $drained ends with the drain" "$(held_answer "$i")" "ERR"
done
for i in $(held_on b2); do
  check_match "held connection $i on b2 still survives" "$(held_answer "$i")" "^$i b2$"
done
release_held

# --- hairpin: a backend connects to its own service's VIP ------------------------------
declare -A hp=()
hp_fail=0
for _ in $(seq 30); do
  who=$(ask "$TESTBED_PREFIX"b2 "$VIP")
  [[ $who == b? ]] || hp_fail=$((hp_fail + 1))
  hp[$who]=$((${hp[$who]:-0} + 1))
done
echo "b2 -> its own VIP, 30 connections: $(for k in "${!hp[@]}"; do echo "$k=${hp[$k]}"; done | sort | tr '\n' ' ')"
check_eq "a backend reaches its own service's VIP (30 of 30)" "$hp_fail" 0
check "a backend reaches itself through its VIP (hairpin)" test "${hp[b2]:-0}" -gt 0

# --- a service without backends refuses at once ------------------------------------------
tb_weft 1 service create --name empty --network net-test >/dev/null
empty_vip=$(tb_weft 1 service inspect empty | tb_json 'd[0]["Endpoint"]["VirtualIPs"][0]["Addr"]')
empty_vip=${empty_vip%/*}
check "the empty service's VIP answers ping" wait_for 10 ip netns exec "$client" ping -c 1 -W 1 "$empty_vip"
out=$(ip netns exec "$client" $LBC ask "$empty_vip" 6379)
ms=$(sed -n 's/.*(after \([0-9]*\) ms)$/\1/p' <<<"$out")
ms=${ms:-99999}
check_match "a connection to a service without backends is refused ($ms ms)" "$out" "ConnectionRefused|reset"
check "... at once (< 1000 ms)" test "$ms" -lt 1000

# --- UDP, balanced per flow ----------------------------------------------------------------
tb_weft 1 service create --name echo --network net-test --port 9000/udp >/dev/null
# Node 2 attaches u3: it must have heard of the service first (gossip, not
# instant under load: "service echo not found" otherwise).
check "node 2 lists the echo service" wait_for 10 has_service 2 echo
udp_vip=$(tb_weft 1 service inspect echo | tb_json 'd[0]["Endpoint"]["VirtualIPs"][0]["Addr"]')
udp_vip=${udp_vip%/*}
for u in u1 u2 u3; do
  node=1; [[ $u == u3 ]] && node=2
  ns=$(tb_netns_add "$u")
  tb_weft "$node" endpoint attach net-test --netns "$ns" --service echo --name "$u" >/dev/null
  ip netns exec "$ns" setsid $LBC serve-udp 9000 "$u" </dev/null >/dev/null 2>&1 &
  disown "$!"
done
udp_ready() { tb_weft 1 service inspect echo | tb_json 'len(d[0]["Backends"])' | grep -qx 3; }
check "node 1 sees the 3 UDP backends" wait_for 15 udp_ready
sleep 1
declare -A udp_hits=()
sticky=0
for sport in $(seq 42001 42030); do
  first=$(ip netns exec "$client" $LBC udp "$udp_vip" 9000 --sport "$sport")
  second=$(ip netns exec "$client" $LBC udp "$udp_vip" 9000 --sport "$sport")
  if [[ $first == "$second" && $first == u? ]]; then sticky=$((sticky + 1)); else echo "flow from port $sport: $first, then $second"; fi
  udp_hits[$first]=$((${udp_hits[$first]:-0} + 1))
done
echo "30 UDP flows: $(for k in "${!udp_hits[@]}"; do echo "$k=${udp_hits[$k]}"; done | sort | tr '\n' ' ')"
check_eq "each UDP flow keeps its backend (30 of 30)" "$sticky" 30
check "UDP flows are spread over at least 2 backends" test "$(for k in "${!udp_hits[@]}"; do [[ $k == u? ]] && echo "$k"; done | wc -l)" -ge 2

# --- kill -9 of the client node's agent during a transfer through a VIP --------------------
tb_weft 1 service create --name bulk --network net-test >/dev/null
check "node 2 lists the bulk service" wait_for 10 has_service 2 bulk
bulk_ns=$(tb_netns_add bulk)
tb_weft 2 endpoint attach net-test --netns "$bulk_ns" --service bulk --name bulk >/dev/null
bulk_vip=$(tb_weft 1 service inspect bulk | tb_json 'd[0]["Endpoint"]["VirtualIPs"][0]["Addr"]')
bulk_vip=${bulk_vip%/*}
bulk_ready() { tb_weft 1 service inspect bulk | tb_json 'len(d[0]["Backends"])' | grep -qx 1; }
check "node 1 sees the bulk backend" wait_for 15 bulk_ready
head -c 40M /dev/urandom >"$work/payload"
ip netns exec "$bulk_ns" timeout 60 socat -u TCP-LISTEN:5001,reuseaddr "CREATE:$work/received" &
server=$!
wait_for 10 bash -c "ip netns exec '$bulk_ns' ss -Hltn 'sport = :5001' | grep -q ."
maps_before=""
if [[ $LB == ebpf ]]; then
  maps_before=$(bpftool -j map show pinned "$(tb_pin_dir 1)/lb_conntrack" 2>/dev/null | tb_json 'd["id"]')
fi
ip netns exec "$client" timeout 60 $LBC send "$bulk_vip" 5001 --file "$work/payload" --seconds 8 &
sender=$!
sleep 2
check "kill -9 and restart of node 1's agent mid-transfer" tb_restart_agent 1 --kill
wait "$sender"; send_rc=$?
wait "$server"; server_rc=$?
check_eq "the sender finished without error" "$send_rc" 0
check_eq "the receiver finished without error" "$server_rc" 0
check_eq "40 MB arrived intact through the VIP" "$(sha256sum <"$work/received" | cut -d' ' -f1)" \
  "$(sha256sum <"$work/payload" | cut -d' ' -f1)"
rm -f "$work/payload" "$work/received"
if [[ $LB == ebpf ]]; then
  maps_after=$(bpftool -j map show pinned "$(tb_pin_dir 1)/lb_conntrack" 2>/dev/null | tb_json 'd["id"]')
  check_eq "the restarted agent kept the pinned conntrack map" "$maps_after" "$maps_before"
fi
check "the VIP still balances after the restart" wait_for 15 vip_answers

# --- bad input --------------------------------------------------------------------------------
services_before=$(tb_weft 1 service ls | wc -l)
refused() {  # DESC REGEX CMD...: non-zero exit and a message matching REGEX
  local desc=$1 re=$2 out rc; shift 2
  out=$("$@" 2>&1); rc=$?
  if ((rc == 0)); then not_ok "$desc is refused" "exit 0: $out"; return; fi
  check_match "$desc is refused with a clear message" "$out" "$re"
}
refused "a service on an unknown network" "network.*(not found|no such|unknown)" tb_weft 1 service create --name x1 --network nope
refused "a duplicate service name" "exists|already|in use" tb_weft 1 service create --name redis --network net-test
refused "an unknown endpoint mode" "endpoint mode|mode" tb_weft 1 service create --name x2 --network net-test --endpoint-mode ipvs
refused "port 70000" "port" tb_weft 1 service create --name x3 --network net-test --port 70000
refused "protocol sctp" "port|protocol|sctp" tb_weft 1 service create --name x4 --network net-test --port 80/sctp
tb_weft 1 network create -d overlay net-b >/dev/null
tb_weft 1 service create --name on-b --network net-b >/dev/null
stray=$(tb_netns_add stray)
refused "--service naming a service not on that network" "not on|network" \
  tb_weft 1 endpoint attach net-test --netns "$stray" --service on-b
refused "--service naming no service" "not found|no such|unknown" \
  tb_weft 1 endpoint attach net-test --netns "$stray" --service nope
check_eq "the refused attaches left no interface in the namespace" "$(ip -n "$stray" -o link | grep -vc ': lo:')" 0
body=$(curl -s -w ' %{http_code}' --unix-socket "$(tb_sock 1)" -X POST -H 'Content-Type: application/json' \
  -d '{"Name": "x5", "TaskTemplate": ' http://weft/services/create)
check_match "malformed JSON gets 400 and a message" "$body" '"message".* 400$'
check_eq "the refused creates left no service behind" "$(tb_weft 1 service ls | wc -l)" "$((services_before + 1))"

# --- rm ------------------------------------------------------------------------------------
require "service rm empty" tb_weft 1 service rm empty
forgot_empty() { ! tb_weft 2 service ls | grep -qw empty; }
check "node 2 forgets the removed service" wait_for 10 forgot_empty
vip_unanswered() { ! ip netns exec "$client" ping -c 1 -W 1 "$empty_vip" >/dev/null; }
check "the removed service's VIP no longer answers" wait_for 10 vip_unanswered

# --- a node leaving gracefully drains its backends first --------------------------------
b5=$(tb_netns_add b5)
backend_ip[b5]=$(tb_weft 3 endpoint attach net-test --netns "$b5" --service redis --name b5)
ip netns exec "$b5" setsid redis-server --port 6379 --protected-mode no --save '' --appendonly no \
  --daemonize no --logfile "$work/redis-b5.log" </dev/null >/dev/null 2>&1 &
disown "$!"
check "redis on b5 (node 3) answers" wait_for 10 redis_up b5
b5_state() { tb_weft 1 service inspect redis | tb_json '[b["State"] for b in d[0]["Backends"] if b["Name"] == "b5"]'; }
b5_active() { [[ $(b5_state) == '["active"]' ]]; }
check "node 1 has b5 as an active backend" wait_for 15 b5_active
hold_open 16 "16 connections held open"
on_b5=$(held_on b5)
echo "held on b5: $(echo ${on_b5:-none})"
tb_weft 3 swarm leave --drain 8 >"$work/leave.out" 2>&1 &
leaver=$!
b5_draining() { [[ $(b5_state) == '["draining"]' ]]; }
check "node 1 sees node 3's backend draining while node 3 leaves" wait_for 5 b5_draining
declare -A during=()
for _ in $(seq 40); do who=$(ask "$client" "$VIP"); during[$who]=$((${during[$who]:-0} + 1)); done
echo "40 connections while node 3 leaves: $(for k in "${!during[@]}"; do echo "$k=${during[$k]}"; done | sort | tr '\n' ' ')"
check_eq "new connections avoid the leaving node's backend" "${during[b5]:-0}" 0
check_round
for i in $on_b5; do
  check_match "held connection $i on b5 keeps working during the leave's drain" "$(held_answer "$i")" "^$i b5$"
done
wait "$leaver"; leave_rc=$?
check_eq "swarm leave --drain 8 returns 0 after the drain ($(cat "$work/leave.out"))" "$leave_rc" 0
b5_gone() { [[ $(b5_state) == '[]' ]]; }
check "node 1 withdraws b5 once node 3 has left" wait_for 15 b5_gone
check_round
for i in $on_b5; do
  check_match "held connection $i on b5 ends once node 3 has left" "$(held_answer "$i")" "ERR"
done
release_held
refused "a leave drain over an hour" "3600|at most" tb_weft 2 swarm leave --drain 4000

# --- a backend's node dies: its flows get a RST on their next packet ----------------
hold_open 16 "16 connections held open again"
on_b4=$(held_on b4)
echo "held on b4: $(echo ${on_b4:-none})"
tb_agent_stop 2 --kill
ip -n "$(tb_ns 2)" link set eth0 down  # node 2 is gone from the underlay
b4_withdrawn() { ! tb_weft 1 service inspect redis | grep -q '"b4"'; }
check "node 1 withdraws node 2's backend once node 2 is found dead" wait_for 60 b4_withdrawn
check_round
for i in $on_b4; do
  check_match "held connection $i to b4 on the dead node is reset, not left hanging" \
    "$(held_answer "$i")" "ERR ConnectionResetError"
done
for i in $(held_on b2); do
  check_match "held connection $i on b2 (node 1) survives node 2's death" "$(held_answer "$i")" "^$i b2$"
done
release_held

tb_summary
