#!/usr/bin/env bash
# The embedded DNS at 127.0.0.11 on two emulated nodes, asked by real
# clients inside endpoint namespaces (`ip netns exec`): a vip service's name
# is its VIP (UDP and TCP), tasks.<service> its backends on both nodes, a
# dnsrr name rotates; glibc (`getent hosts`, redis-cli) resolves through the
# resolv.conf weft wrote at /etc/netns/NAME/resolv.conf; endpoint names,
# --alias names and <name>.<network> resolve from the other node; PTR of a
# backend; a name on a network the client is not on is NXDOMAIN; AAAA of a
# service name is NOERROR/empty and never reaches the upstream (a dnsmasq on
# the test-bed switch, logging its queries), which answers other names; a
# detach removes the records at once on its node and within seconds on the
# other, and the namespace's resolv.conf; `service rm` removes the name;
# endpoint JSON and `endpoint inspect` show DNS and Aliases; after a stop or
# a kill -9 the agent serves the namespaces again, and removes the
# resolv.conf of one deleted while it was down; bad --dns-* flags and
# aliases are refused.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

# The upstream resolver: on the test-bed switch, beyond the nodes' addresses.
UPSTREAM=${TB_UNDERLAY_NET}.53
export TB_WEFTD_ARGS="--dns-upstream $UPSTREAM --dns-timeout 1s ${TB_WEFTD_ARGS:-}"

# The agents write /etc/netns/<namespace>/resolv.conf for the test's
# namespaces; testbed_down removes what is left of them, and this test
# /etc/netns too when it made it.
etc_netns_existed=0
[[ -d /etc/netns ]] && etc_netns_existed=1
testbed_install_traps
trap 'testbed_down; ((etc_netns_existed)) || rmdir /etc/netns 2>/dev/null || true' EXIT
set +e
testbed_up -n 2 || { echo "FAIL - test-bed with two nodes did not come up"; exit 1; }
work=$TESTBED_RUN_DIR/work
mkdir -p "$work"

# --- the upstream: dnsmasq in a namespace on the switch --------------------------------
up=$(tb_netns_add up)
ip -n "${TESTBED_PREFIX}sw" link add upl type veth peer name eth0 netns "$up"
ip -n "${TESTBED_PREFIX}sw" link set upl master br0
ip -n "${TESTBED_PREFIX}sw" link set upl up
ip -n "$up" addr add "$UPSTREAM/24" dev eth0
ip -n "$up" link set eth0 up
upstream_log=$work/upstream.log
: >"$upstream_log"
ip netns exec "$up" setsid dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null \
  --bind-interfaces --listen-address="$UPSTREAM" --interface=eth0 --pid-file= --user=root --group=root \
  --address=/example.test/192.0.2.200 --log-queries --log-facility="$upstream_log" </dev/null >/dev/null 2>&1 &
disown "$!"  # the test-bed's teardown kills it; no job notice then
upstream_answers() { [[ $(tb_exec 1 dig @"$UPSTREAM" +short +time=1 +tries=1 probe.example.test) == 192.0.2.200 ]]; }
require "the upstream answers from node 1's namespace" wait_for 10 upstream_answers

# --- cluster, networks, services ---------------------------------------------------------
init_out=$(tb_weft 1 swarm init)
token=$(grep -o 'WEFT-1-[A-Za-z0-9_-]*' <<<"$init_out" | head -1)
require "node 2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "network create" tb_weft 1 network create -d overlay net-test
has_network() { tb_weft "$1" network ls --format json | tb_json '[n["Name"] for n in d]' | grep -q "$2"; }
require "net-test reaches node 2" wait_for 15 has_network 2 net-test
require "service redis (vip)" tb_weft 1 service create --name redis --network net-test --port 6379
VIP=$(tb_weft 1 service inspect redis | tb_json 'd[0]["Endpoint"]["VirtualIPs"][0]["Addr"]')
VIP=${VIP%/*}
require "service rr (dnsrr)" tb_weft 1 service create --name rr --network net-test --endpoint-mode dnsrr
has_service() { tb_weft "$1" service ls | grep -qw "$2"; }
require "node 2 knows rr" wait_for 10 has_service 2 rr
require "node 2 knows redis" wait_for 10 has_service 2 redis

declare -A ip_of
attach() {  # attach NODE NAME ARGS...: namespace <P>NAME on net-test
  local node=$1 name=$2 ns
  shift 2
  ns=$(tb_netns_add "$name")
  ip_of[$name]=$(tb_weft "$node" endpoint attach net-test --netns "$ns" --name "$name" "$@")
}
attach 1 r1 --service redis
attach 2 r2 --service redis
attach 1 d1 --service rr
attach 2 d2 --service rr
attach 1 client --alias db-client
attach 2 peer --alias peer-alias --alias Other.Name
client=${TESTBED_PREFIX}client
peer=${TESTBED_PREFIX}peer
for b in r1 r2; do
  ip netns exec "$TESTBED_PREFIX$b" setsid redis-server --port 6379 --protected-mode no --save '' \
    --appendonly no --daemonize no --logfile "$work/redis-$b.log" </dev/null >/dev/null 2>&1 &
  disown "$!"
done
echo "VIP $VIP; r1 ${ip_of[r1]} r2 ${ip_of[r2]} d1 ${ip_of[d1]} d2 ${ip_of[d2]} client ${ip_of[client]} peer ${ip_of[peer]}"

# dig at the embedded DNS from inside a namespace; extra arguments as dig's.
ask() { local ns=$1; shift; ip netns exec "$ns" dig @127.0.0.11 +time=2 +tries=1 "$@"; }
short() { ask "$1" +short "${@:2}" | sort | tr '\n' ' ' | sed 's/ $//'; }
status() { ask "$1" "${@:2}" | grep -o 'status: [A-Z]*' | cut -d' ' -f2; }
answers() { ask "$1" "${@:2}" | grep -o 'ANSWER: [0-9]*' | cut -d' ' -f2; }
sorted() { printf '%s\n' "$@" | sort | tr '\n' ' ' | sed 's/ $//'; }
short_is() { [[ $(short "$1" "$2") == "$3" ]]; }

# --- names of services ---------------------------------------------------------------------
check_eq "redis is the VIP (UDP)" "$(short "$client" redis)" "$VIP"
check_eq "redis is the VIP (TCP)" "$(short "$client" +tcp redis)" "$VIP"
check_eq "redis.net-test is the VIP" "$(short "$client" redis.net-test)" "$VIP"
check "tasks.redis is both backends (one on each node)" \
  wait_for 10 short_is "$client" tasks.redis "$(sorted "${ip_of[r1]}" "${ip_of[r2]}")"
check "rr (dnsrr) is both backends" wait_for 10 short_is "$client" rr "$(sorted "${ip_of[d1]}" "${ip_of[d2]}")"
first1=$(ask "$client" +short rr | head -1)
first2=$(ask "$client" +short rr | head -1)
check "successive dnsrr answers start with a different backend ($first1, then $first2)" \
  test -n "$first1" -a -n "$first2" -a "$first1" != "$first2"
check_eq "the TTL is --dns-ttl's default, 5 s" "$(ask "$client" +noall +answer redis | awk '{print $2}')" 5
check_eq "SRV _6379._tcp.redis" "$(ask "$client" +short SRV _6379._tcp.redis)" "0 0 6379 redis.net-test."

# --- glibc through the resolv.conf weft wrote -----------------------------------------------
check_match "/etc/netns/<client>/resolv.conf points at 127.0.0.11" \
  "$(cat "/etc/netns/$client/resolv.conf" 2>&1)" '^nameserver 127\.0\.0\.11$'
check_eq "getent hosts redis (glibc)" "$(ip netns exec "$client" getent hosts redis | awk '{print $1}')" "$VIP"
redis_pong() { [[ $(ip netns exec "$client" redis-cli -h redis ping 2>&1) == PONG ]]; }
check "redis-cli -h redis ping answers PONG" wait_for 10 redis_pong

# --- endpoint names and aliases, across nodes ----------------------------------------------
check "the client's name resolves on node 2" wait_for 10 short_is "$peer" client "${ip_of[client]}"
check_eq "its alias resolves on node 2" "$(short "$peer" db-client)" "${ip_of[client]}"
check_eq "client.net-test resolves on node 2" "$(short "$peer" client.net-test)" "${ip_of[client]}"
check_eq "node 2's endpoint alias resolves on node 1" "$(short "$client" peer-alias)" "${ip_of[peer]}"
check_eq "an alias is case-insensitive" "$(short "$client" OTHER.name)" "${ip_of[peer]}"
check_eq "PTR of a backend" "$(short "$client" -x "${ip_of[r2]}")" "r2.net-test."
check_eq "PTR of the VIP" "$(short "$client" -x "$VIP")" "redis.net-test."

# --- scope, owned names, forwarding --------------------------------------------------------
require "network net-b" tb_weft 1 network create -d overlay net-b
require "service only-b on net-b" tb_weft 1 service create --name only-b --network net-b
other=$(tb_netns_add other)
tb_weft 1 endpoint attach net-b --netns "$other" --name on-b >/dev/null
check_eq "the other network's endpoint answers its own namespace" "$(status "$other" only-b)" NOERROR
check_eq "a service on a network the client is not on is NXDOMAIN" "$(status "$client" only-b)" NXDOMAIN
check_eq "an endpoint on a network the client is not on is NXDOMAIN" "$(status "$client" on-b)" NXDOMAIN
check_eq "AAAA redis is NOERROR" "$(status "$client" AAAA redis)" NOERROR
check_eq "AAAA redis has no answer" "$(answers "$client" AAAA redis)" 0
check_eq "an upstream name resolves through forwarding" "$(short "$client" www.example.test)" 192.0.2.200
check_match "the upstream saw the forwarded query" "$(cat "$upstream_log")" 'query\[A\] www\.example\.test'
if grep -qiE 'query\[[A-Z]+\] (redis|tasks\.redis|rr|client|db-client|only-b|on-b)(\.|\s|$)' "$upstream_log"; then
  not_ok "no name weft owns (nor one hidden on another network) reached the upstream" "$(cat "$upstream_log")"
else
  ok "no name weft owns (nor one hidden on another network) reached the upstream"
fi

# --- JSON --------------------------------------------------------------------------------
eps=$(tb_weft 1 endpoint ls --format json)
check_eq "endpoint ls shows the DNS address" \
  "$(tb_json '[e["DNS"] for e in d if e["Name"] == "client"][0]' <<<"$eps")" 127.0.0.11
check_eq "endpoint ls shows the aliases" \
  "$(tb_json '",".join([e["Aliases"] for e in d if e["Name"] == "client"][0])' <<<"$eps")" db-client
check_eq "node 1 shows node 2's aliases" \
  "$(tb_json '",".join([e["Aliases"] for e in d if e["Name"] == "peer"][0])' <<<"$eps")" "peer-alias,Other.Name"
check_eq "network inspect Containers show DNS and aliases" \
  "$(tb_weft 1 network inspect net-test |
    tb_json '[c["DNS"] + " " + ",".join(c["Aliases"]) for c in d[0]["Containers"].values() if c["Name"] == "client"][0]')" \
  "127.0.0.11 db-client"

check_eq "endpoint inspect shows the client's DNS address and aliases" \
  "$(tb_weft 1 endpoint inspect net-test --netns "$client" | tb_json 'd[0]["DNS"] + " " + ",".join(d[0]["Aliases"])')" \
  "127.0.0.11 db-client"

# --- attach and detach return once the DNS has followed them -------------------------------
# No waiting here: a namespace is served, and its name answers, as soon as
# its attach returns; both are gone as soon as its detach returns.
late=0
for i in 1 2 3 4 5; do
  ns=$(tb_netns_add "quick$i")
  tb_weft 1 endpoint attach net-test --netns "$ns" --name "quick$i" --alias "quick-alias$i" >/dev/null
  [[ $(short "$ns" "quick-alias$i") == "$(short "$ns" "quick$i")" && -n $(short "$ns" "quick$i") &&
     -e /etc/netns/$ns/resolv.conf ]] || late=$((late + 1))
  tb_weft 1 endpoint detach net-test --netns "$ns"
  [[ -z $(short "$client" "quick$i") && ! -e /etc/netns/$ns/resolv.conf ]] || late=$((late + 1))
done
check_eq "5 attaches and detaches: names and resolv.conf followed each before it returned" "$late late" "0 late"

# --- freshness ----------------------------------------------------------------------------
require "detach d1 (node 1)" tb_weft 1 endpoint detach net-test --netns "${TESTBED_PREFIX}d1"
check_eq "on its node, rr loses d1 at once" "$(short "$client" rr)" "${ip_of[d2]}"
check "on the other node, within seconds" wait_for 5 short_is "$peer" rr "${ip_of[d2]}"
check "the detached namespace's resolv.conf is gone" test ! -e "/etc/netns/${TESTBED_PREFIX}d1/resolv.conf"
check_match "the detached namespace is no longer served" "$(short "${TESTBED_PREFIX}d1" redis 2>&1)" \
  'timed out|no servers|refused|unreachable'
require "detach r2 (node 2)" tb_weft 2 endpoint detach net-test --netns "${TESTBED_PREFIX}r2"
check_eq "on its node, tasks.redis loses r2 at once" "$(short "$peer" tasks.redis)" "${ip_of[r1]}"
check "on the other node, within seconds" wait_for 5 short_is "$client" tasks.redis "${ip_of[r1]}"
require "service rm rr" tb_weft 1 service rm rr
# No longer weft's: no answer, and the query goes to the upstream now
# (which has no such name).
rr_gone() { [[ -z $(short "$1" rr) ]]; }
check "service rm removes its name on its node" wait_for 5 rr_gone "$client"
check "and on the other" wait_for 5 rr_gone "$peer"
check_match "a removed service's name is forwarded, as any name weft does not own" \
  "$(cat "$upstream_log")" 'query\[A\] rr from'
check_eq "tasks.rr is gone too" "$(short "$client" tasks.rr)" ""

# --- restarts ------------------------------------------------------------------------------
# A stop leaves the resolv.conf files (the namespaces keep pointing at
# 127.0.0.11) and the restarted agent serves them again; so does one that
# was killed.
require "graceful restart of node 1's agent" tb_restart_agent 1
check_match "the agent stopped cleanly" "$(grep -c '\] info stopped$' "$(tb_log_file 1)")" '^1$'
check "the client's resolv.conf is still there" test -e "/etc/netns/$client/resolv.conf"
check "the client is served again after the restart" wait_for 10 short_is "$client" redis "$VIP"
vanish=$(tb_netns_add vanish)
tb_weft 1 endpoint attach net-test --netns "$vanish" >/dev/null
check "a namespace attached on node 1 has its resolv.conf" test -e "/etc/netns/$vanish/resolv.conf"
require "kill -9 of node 1's agent" tb_agent_stop 1 --kill
ip netns del "$vanish"
tb_agent_start 1
require "node 1's agent answers again" tb_agent_wait_ready 1
resolv_swept() { [[ ! -e /etc/netns/$vanish ]]; }
check "the resolv.conf of a namespace deleted while the agent was down is removed at its start" \
  wait_for 5 resolv_swept
check "the client is served again after kill -9" wait_for 10 short_is "$client" redis "$VIP"
check_eq "its alias is still known on node 2" "$(short "$peer" db-client)" "${ip_of[client]}"

# --- refused input ------------------------------------------------------------------------
refused() {  # refused DESC REGEX CMD...
  local desc=$1 re=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  if ((rc == 0)); then not_ok "$desc is refused" "exit 0: $out"; return; fi
  check_match "$desc is refused with a clear message" "$out" "$re"
}
bad=$(tb_netns_add bad)
refused "an alias that is no DNS name" "alias" tb_weft 1 endpoint attach net-test --netns "$bad" --alias "no way"
many=()
for i in $(seq 17); do many+=(--alias "a$i"); done
refused "17 aliases" "at most 16" tb_weft 1 endpoint attach net-test --netns "$bad" "${many[@]}"
# weftd refuses bad flags before it does anything (a scratch namespace and
# state dir all the same).
bad_weftd() {
  timeout 10 nsenter --net="/run/netns/$bad" "$WEFT_BIN/weftd" --node-name bad --advertise-addr 192.0.2.99 \
    --state-dir "$work/bad" --api-socket "$work/bad.sock" --bpf-pin-dir "$work/bad-pins" "$@"
}
refused "--dns-upstream not an address" "dns-upstream" bad_weftd --dns-upstream not-an-ip
refused "--dns-upstream with a bad port" "dns-upstream" bad_weftd --dns-upstream 192.0.2.1:70000
refused "--dns-timeout without a unit" "dns-timeout" bad_weftd --dns-timeout 5
refused "--dns-ttl negative" "dns-ttl" bad_weftd --dns-ttl -1
refused "--dns-search with a blank" "dns-search" bad_weftd --dns-search "a b"

tb_summary
