#!/usr/bin/env bash
# weft-cni driven by the CNI protocol itself (CNI_* environment + config on
# stdin), as a runtime drives it, against a real weftd on a one-node
# test-bed: VERSION; ADD (result JSON, the kernel side, the endpoint's name
# from the container id or K8S_POD_NAME, a service backend); CHECK (good,
# wrong address, after DEL); DEL twice, DEL without CNI_NETNS, DEL after the
# namespace is gone, DEL on a network the agent does not have; bad config
# and environment (codes 1, 4, 6, 7, 101) leaving nothing behind; a wedged
# agent (SIGSTOP) and the agent down give code 11; STATUS (0 with the agent
# up, 50 when it is down or has no such network) and GC (detaches only the
# attachments weft-cni made that cni.dev/valid-attachments does not list).
# Ends with no endpoint and no address left.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

testbed_install_traps
set +e
[[ -x $WEFT_BIN/weft-cni ]] || { echo "FAIL - $WEFT_BIN/weft-cni is not built"; exit 1; }
testbed_up -n 1 || { echo "FAIL - test-bed with one node did not come up"; exit 1; }
P=$TESTBED_PREFIX
SOCK=$(tb_sock 1)
PLUGIN=$WEFT_BIN/weft-cni

require "network create" tb_weft 1 network create -d overlay net-cni

conf() {  # conf [EXTRA_JSON_MEMBERS]
  printf '{"cniVersion":"1.0.0","name":"net-cni","type":"weft-cni","socket":"%s"%s}' "$SOCK" "${1:+,$1}"
}
# cni COMMAND CONTAINERID NETNS IFNAME [CNI_ARGS] <config: the plugin in the
# node's namespace, as a runtime there runs it; prints stdout, then "rc=N".
cni() {
  local out rc=0
  out=$(nsenter --net="/run/netns/$(tb_ns 1)" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    CNI_COMMAND="$1" CNI_CONTAINERID="$2" CNI_NETNS="$3" CNI_IFNAME="$4" CNI_ARGS="${5:-}" \
    CNI_PATH="$WEFT_BIN" timeout 90 "$PLUGIN") || rc=$?
  printf '%s\nrc=%s\n' "$out" "$rc"
}
rc_of() { sed -n 's/^rc=//p' <<<"$1"; }
json_of() { sed '/^rc=/d' <<<"$1"; }
field() { json_of "$1" | tb_json "$2"; }
endpoints() { tb_weft 1 endpoint ls --format json; }
endpoint_count() { endpoints | tb_json 'len(d)'; }

# --- VERSION ------------------------------------------------------------------------
out=$(cni VERSION "" "" "" </dev/null)
check_eq "VERSION succeeds" "$(rc_of "$out")" 0
check_eq "VERSION lists the versions whose results weft-cni writes" \
  "$(field "$out" 'd["supportedVersions"]')" '["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]'
check_eq "VERSION says cniVersion 1.1.0" "$(field "$out" 'd["cniVersion"]')" 1.1.0

# --- ADD --------------------------------------------------------------------------
c1=$(tb_netns_add c1); c2=$(tb_netns_add c2)
id1=0123456789abcdef0123456789abcdef
add1=$(conf | cni ADD "$id1" "/run/netns/$c1" eth0)
echo "$add1"
require_eq "ADD succeeds" "$(rc_of "$add1")" 0
ip1=$(field "$add1" 'd["ips"][0]["address"]')
check_match "ADD: an address of the network, with its prefix" "$ip1" '^10\.0\.0\.[0-9]+/24$'
check_eq "ADD: the result's shape (cniVersion, interface, gateway, route, dns)" \
  "$(field "$add1" '[d["cniVersion"], d["interfaces"][0]["name"], d["interfaces"][0]["sandbox"], d["ips"][0]["gateway"], d["ips"][0]["interface"], d["routes"], d["dns"]]')" \
  "[\"1.0.0\", \"eth0\", \"/run/netns/$c1\", \"10.0.0.1\", 0, [{\"dst\": \"0.0.0.0/0\", \"gw\": \"10.0.0.1\"}], {\"nameservers\": [\"127.0.0.11\"]}]"
a=${ip1%/*}
check_eq "ADD: the MAC weft derives from the address" "$(field "$add1" 'd["interfaces"][0]["mac"]')" \
  "$(IFS=. read -r o1 o2 o3 o4 <<<"$a"; printf '02:42:%02x:%02x:%02x:%02x' "$o1" "$o2" "$o3" "$o4")"
check_match "ADD: the container has the address on eth0" "$(ip -n "$c1" -br addr show eth0)" " $ip1( |$)"
check_match "ADD: and the default route via the gateway" "$(ip -n "$c1" route show default)" '^default via 10\.0\.0\.1 dev eth0'
check_eq "ADD: the endpoint is named after the container id (12 characters)" \
  "$(endpoints | tb_json "[e['Name'] for e in d if e['Netns'] == '/run/netns/$c1']")" '["0123456789ab"]'

add2=$(conf | cni ADD "fedcba9876543210" "/run/netns/$c2" eth0 "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=web-1")
check_eq "ADD with K8S_POD_NAME succeeds" "$(rc_of "$add2")" 0
check_eq "ADD: the endpoint is named after K8S_POD_NAME" \
  "$(endpoints | tb_json "[e['Name'] for e in d if e['Netns'] == '/run/netns/$c2']")" '["web-1"]'
ip2=$(field "$add2" 'd["ips"][0]["address"]')
check "the two containers ping each other" wait_for 10 ip netns exec "$c1" ping -c 1 -W 1 "${ip2%/*}"

c6=$(tb_netns_add c6)
out=$(conf | cni ADD "dddd00001111" "/run/netns/$c6" eth0 "K8S_POD_NAME=not a dns name")
check_eq "ADD with a K8S_POD_NAME that is no DNS name names the endpoint after the container id" \
  "$(rc_of "$out"),$(endpoints | tb_json "[e['Name'] for e in d if e['Netns'] == '/run/netns/$c6']")" '0,["dddd00001111"]'
out=$(conf | cni DEL "dddd00001111" "/run/netns/$c6" eth0 "K8S_POD_NAME=not a dns name")
check_eq "  DEL of it succeeds" "$(rc_of "$out")" 0

dup=$(conf | cni ADD "fedcba9876543210" "/run/netns/$c2" eth0)
check_eq "a second ADD of an attached namespace fails with code 100 (the agent's refusal)" \
  "$(rc_of "$dup"),$(field "$dup" 'd["code"]')" 1,100
check_match "  and says why" "$(field "$dup" 'd["msg"]')" "already attached"

# --- CHECK -----------------------------------------------------------------------
with_prev() { conf "\"prevResult\":$(json_of "$1")"; }
out=$(with_prev "$add1" | cni CHECK "$id1" "/run/netns/$c1" eth0)
check_eq "CHECK of an attached container succeeds" "$(rc_of "$out")" 0
bad_prev=$(json_of "$add1" | sed 's#"address":"[0-9./]*"#"address":"10.0.0.250/24"#')
out=$(conf "\"prevResult\":$bad_prev" | cni CHECK "$id1" "/run/netns/$c1" eth0)
check_eq "CHECK with another address than the agent's fails with code 103" \
  "$(rc_of "$out"),$(field "$out" 'd["code"]')" 1,103
out=$(conf | cni CHECK "$id1" "/run/netns/$c1" eth0)
check_eq "CHECK without prevResult is an invalid config (7)" "$(field "$out" 'd["code"]')" 7

# --- service backend ----------------------------------------------------------------
require "service create" tb_weft 1 service create --name web --network net-cni
c3=$(tb_netns_add c3)
out=$(conf '"service":"web"' | cni ADD "aaaa0000bbbb1111" "/run/netns/$c3" eth0)
check_eq "ADD with \"service\" succeeds" "$(rc_of "$out")" 0
check_eq "  the endpoint is a backend of the service" \
  "$(endpoints | tb_json "[e.get('Service') != None for e in d if e['Netns'] == '/run/netns/$c3']")" '[true]'
out=$(conf '"service":"nope"' | cni ADD "aaaa0000cccc2222" "/run/netns/$c3" eth1)
check_eq "ADD with an unknown service is refused (100)" "$(field "$out" 'd["code"]')" 100

# --- DEL ----------------------------------------------------------------------------
out=$(conf | cni DEL "$id1" "/run/netns/$c1" eth0)
check_eq "DEL succeeds" "$(rc_of "$out")" 0
check_eq "  and prints nothing" "$(json_of "$out")" ""
check "  eth0 is gone from the container" bash -c "! ip -n '$c1' link show eth0"
check_eq "  the endpoint is gone" "$(endpoints | tb_json "len([e for e in d if e['Netns'] == '/run/netns/$c1'])")" 0
out=$(conf | cni DEL "$id1" "/run/netns/$c1" eth0)
check_eq "DEL again succeeds (idempotent)" "$(rc_of "$out")" 0
out=$(with_prev "$add1" | cni CHECK "$id1" "/run/netns/$c1" eth0)
check_eq "CHECK after DEL fails with code 102" "$(rc_of "$out"),$(field "$out" 'd["code"]')" 1,102

out=$(conf | cni DEL "fedcba9876543210" "" eth0 "K8S_POD_NAME=web-1")
check_eq "DEL without CNI_NETNS succeeds" "$(rc_of "$out")" 0
check_eq "  and detached the endpoint found by its name" \
  "$(endpoints | tb_json "len([e for e in d if e['Name'] == 'web-1'])")" 0

ip netns del "$c3"
out=$(conf '"service":"web"' | cni DEL "aaaa0000bbbb1111" "/run/netns/$c3" eth0)
check_eq "DEL after the namespace is gone succeeds" "$(rc_of "$out")" 0
check_eq "  and removed its endpoint" "$(endpoint_count)" 0

out=$(conf '"network":"no-such-net"' | cni DEL "$id1" "/run/netns/$c1" eth0)
check_eq "DEL on a network the agent does not have succeeds" "$(rc_of "$out")" 0

# --- bad config and environment ------------------------------------------------------
code_of() { field "$1" 'd["code"]'; }
expect_code() {  # DESC CODE OUTPUT
  check_eq "$1: exit 1, code $2" "$(rc_of "$3"),$(code_of "$3")" "1,$2"
  check_match "$1: a message" "$(field "$3" 'd["msg"]')" '.'
}
c4=$(tb_netns_add c4)
add() { cni ADD "bbbb0000" "/run/netns/$c4" eth0; }
expect_code "no network and no name" 7 "$(printf '{"cniVersion":"1.0.0","type":"weft-cni","socket":"%s"}' "$SOCK" | add)"
expect_code "wrong cniVersion" 1 "$(printf '{"cniVersion":"2.0.0","name":"net-cni","type":"weft-cni","socket":"%s"}' "$SOCK" | add)"
expect_code "no cniVersion" 7 "$(printf '{"name":"net-cni","type":"weft-cni","socket":"%s"}' "$SOCK" | add)"
expect_code "garbage on stdin" 6 "$(printf 'not json {' | add)"
expect_code "a JSON array on stdin" 6 "$(printf '[1,2]' | add)"
expect_code "an ipam section" 7 "$(conf '"ipam":{"type":"host-local"}' | add)"
expect_code "another plugin type" 7 "$(conf | sed 's/"weft-cni"/"bridge"/' | add)"
expect_code "a network name Docker would refuse" 7 "$(conf '"network":"-bad name"' | add)"
expect_code "a tcp:// socket" 7 "$(conf | sed 's#"socket":"[^"]*"#"socket":"tcp://127.0.0.1:2375"#' | add)"
expect_code "2 MiB on stdin" 6 "$(head -c 2097152 /dev/zero | tr '\0' ' ' | add)"
expect_code "1 MB of nested arrays" 6 "$(head -c 1000000 /dev/zero | tr '\0' '[' | add)"
expect_code "CNI_ARGS that are not KEY=VALUE" 4 "$(conf | cni ADD "bbbb0000" "/run/netns/$c4" eth0 "junk")"
expect_code "an unknown network" 101 "$(conf '"network":"no-such-net"' | add)"
expect_code "no CNI_NETNS on ADD" 4 "$(conf | cni ADD "bbbb0000" "" eth0)"
expect_code "no CNI_CONTAINERID" 4 "$(conf | cni ADD "" "/run/netns/$c4" eth0)"
expect_code "a CNI_CONTAINERID with a space" 4 "$(conf | cni ADD "bad id" "/run/netns/$c4" eth0)"
expect_code "a relative CNI_NETNS" 4 "$(conf | cni ADD "bbbb0000" "$c4" eth0)"
expect_code "CNI_IFNAME other than ethN" 4 "$(conf | cni ADD "bbbb0000" "/run/netns/$c4" net0)"
expect_code "an unknown CNI_COMMAND" 4 "$(conf | cni FROB "bbbb0000" "/run/netns/$c4" eth0)"
expect_code "a namespace that does not exist" 100 "$(conf | cni ADD "bbbb0000" "/run/netns/${P}nothere" eth0)"
expect_code "CHECK in a 0.3.1 config" 1 "$(conf | sed 's/"1.0.0"/"0.3.1"/' | cni CHECK "bbbb0000" "/run/netns/$c4" eth0)"
check_eq "bad input attached nothing" "$(endpoint_count)" 0
check "  and the container has no eth0" bash -c "! ip -n '$c4' link show eth0"

# 0.4.0 results carry "version" in ips.
old=$(conf | sed 's/"1.0.0"/"0.4.0"/' | add)
check_eq "ADD in a 0.4.0 config writes a 0.4.0 result" \
  "$(field "$old" '[d["cniVersion"], d["ips"][0]["version"]]')" '["0.4.0", "4"]'
out=$(conf | sed 's/"1.0.0"/"0.4.0"/' | cni DEL "bbbb0000" "/run/netns/$c4" eth0)
check_eq "  DEL of it succeeds" "$(rc_of "$out")" 0

# --- STATUS and GC (CNI 1.1.0) ---------------------------------------------------------
conf11() { conf "$@" | sed 's/"1.0.0"/"1.1.0"/'; }
out=$(conf11 | cni STATUS "" "" "")
check_eq "STATUS with the agent up: exit 0, nothing printed" "$(rc_of "$out"),$(json_of "$out")" "0,"
expect_code "STATUS for a network the agent does not have" 50 "$(conf11 '"network":"no-such-net"' | cni STATUS "" "" "")"
expect_code "STATUS in a 1.0.0 config" 1 "$(conf | cni STATUS "" "" "")"
expect_code "GC with valid-attachments not a list" 7 \
  "$(conf11 '"cni.dev/valid-attachments":{"containerID":"x"}' | cni GC "" "" "")"
# Three attachments made by weft-cni (one in a 1.1.0 config), one made by hand.
g1=$(tb_netns_add g1); g2=$(tb_netns_add g2); g3=$(tb_netns_add g3); g4=$(tb_netns_add g4)
out=$(conf | cni ADD "gc0000000001" "/run/netns/$g1" eth0)
check_eq "GC fixture: ADD 1" "$(rc_of "$out")" 0
out=$(conf | cni ADD "gc0000000002" "/run/netns/$g2" eth0)
check_eq "GC fixture: ADD 2" "$(rc_of "$out")" 0
out=$(conf11 | cni ADD "gc0000000003" "/run/netns/$g3" eth0)
check_eq "GC fixture: ADD 3 in a 1.1.0 config (a 1.0-shaped result)" \
  "$(rc_of "$out"),$(field "$out" '[d["cniVersion"], "version" in d["ips"][0]]')" '0,["1.1.0", false]'
require "GC fixture: an endpoint attached by hand" tb_weft 1 endpoint attach net-cni --netns "/run/netns/$g4" --name byhand
in_netns() { endpoints | tb_json "len([e for e in d if e['Netns'] == '/run/netns/$1'])"; }
out=$(conf11 '"cni.dev/valid-attachments":[{"containerID":"gc0000000001","ifname":"eth0"},{"containerID":"gc0000000003","ifname":"eth1"},{"containerID":"other","ifname":"eth0"}]' |
  cni GC "" "" "")
check_eq "GC succeeds and prints nothing" "$(rc_of "$out"),$(json_of "$out")" "0,"
check_eq "GC kept the listed attachment" "$(in_netns "$g1")" 1
check_eq "GC detached the unlisted one" "$(in_netns "$g2")" 0
check_eq "GC detached the one listed with another ifname" "$(in_netns "$g3")" 0
check "  and its eth0 is gone" bash -c "! ip -n '$g3' link show eth0"
check_eq "GC left the endpoint attached by hand alone" "$(in_netns "$g4")" 1
out=$(conf11 | cni GC "" "" "")
check_eq "GC with no valid attachments succeeds" "$(rc_of "$out")" 0
check_eq "  and detached the last weft-cni attachment" "$(in_netns "$g1")" 0
check_eq "  the hand-made endpoint is still there" "$(in_netns "$g4")" 1
out=$(conf11 | cni GC "" "" "")
check_eq "GC again: nothing to do, succeeds" "$(rc_of "$out")" 0
out=$(conf | cni DEL "gc0000000001" "/run/netns/$g1" eth0)
check_eq "DEL after GC detached it succeeds" "$(rc_of "$out")" 0
require "GC fixture: detach the hand-made endpoint" tb_weft 1 endpoint detach net-cni --netns "/run/netns/$g4"
check_eq "no endpoint left after GC" "$(endpoint_count)" 0

# --- a wedged agent, then the agent down ------------------------------------------------
# Stopped, the agent's socket still accepts; the plugin gives up after
# agentTimeoutSeconds. The runtime's DEL after the failed ADD then undoes
# whatever the agent did with the request once it went on.
pid=$(tb_agent_pid 1)
kill -STOP "$pid"
start=$SECONDS
out=$(conf '"agentTimeoutSeconds":2' | add)
took=$((SECONDS - start))
kill -CONT "$pid"
expect_code "ADD with a wedged agent: try again later" 11 "$out"
check "  after agentTimeoutSeconds, not the agent's pace (took ${took}s)" test "$took" -le 6
out=$(conf | cni DEL "bbbb0000" "/run/netns/$c4" eth0)
check_eq "  the DEL that follows a failed ADD succeeds" "$(rc_of "$out")" 0
check_eq "  and leaves no endpoint" "$(endpoint_count)" 0
expect_code "agentTimeoutSeconds not a number" 7 "$(conf '"agentTimeoutSeconds":"soon"' | add)"

tb_agent_stop 1
out=$(conf | add)
expect_code "ADD with the agent down: try again later" 11 "$out"
out=$(conf | cni DEL "bbbb0000" "/run/netns/$c4" eth0)
expect_code "DEL with the agent down: try again later" 11 "$out"
expect_code "STATUS with the agent down: plugin not available" 50 "$(conf11 | cni STATUS "" "" "")"
tb_agent_start 1
require "the agent comes back" tb_agent_wait_ready 1

# --- nothing left ------------------------------------------------------------------
check_eq "no endpoint left" "$(endpoint_count)" 0
# Every address handed out came back: the next attach gets the first one again.
c5=$(tb_netns_add c5)
out=$(conf | cni ADD "cccc0000" "/run/netns/$c5" eth0)
check_eq "no address leaked: a new ADD gets the network's first free address again" \
  "$(field "$out" 'd["ips"][0]["address"]')" "$ip1"
out=$(conf | cni DEL "cccc0000" "/run/netns/$c5" eth0)
check_eq "  and its DEL succeeds" "$(rc_of "$out")" 0

tb_summary
