#!/usr/bin/env bash
# One emulated node: an overlay network, two container namespaces attached,
# ping and a 50 MB TCP transfer between them, the container side of an
# endpoint (address, MTU, MAC, route), then agent restarts: after kill -9, and
# after devices of the per-network namespace were deleted behind the agent's
# back. Ends with detach + network rm leaving nothing behind.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

testbed_install_traps
testbed_up -n 1 || { echo "FAIL - test-bed with one node did not come up"; exit 1; }
RD=$TESTBED_RUN_DIR
NODE_NS=$(tb_ns 1)
STATE=$(tb_state_dir 1)

ping_ok() { ip netns exec "$1" ping -c 1 -W 1 "$2"; }
# Three pings, none lost (after a first one got through).
ping_3() {
  wait_for 10 ping_ok "$1" "$2" || { echo "no reply from $2 in 10s"; return 1; }
  ip netns exec "$1" ping -c 3 -i 0.2 -W 1 "$2"
}
mac_of_ip() {
  local a b c d
  IFS=. read -r a b c d <<<"$1"
  printf '02:42:%02x:%02x:%02x:%02x' "$a" "$b" "$c" "$d"
}
canon() { tb_json 'sorted(d, key=lambda x: json.dumps(x, sort_keys=True))'; }

# Device counts: per-network namespaces, their br0/vxlan/veth-on-br0, and
# vxlan devices in the node namespace.
netns_files() { tb_network_netns_files 1; }
count_kind() { awk -v k="$2" '$2 == k' <<<"$1" | wc -l; }
device_report() {
  local f links node_vx
  node_vx=$(tb_links "$NODE_NS" vxlan | wc -l)
  for f in $(netns_files); do
    links=$(tb_links "$f")
    printf 'netns=%s br0=%s vxlan=%s ports=%s\n' "$(basename "$f")" \
      "$(awk '$1 == "br0" && $2 == "bridge"' <<<"$links" | wc -l)" \
      "$(count_kind "$links" vxlan)" \
      "$(nsenter --net="$f" -- ip -o link show master br0 2>/dev/null | grep -c veth || true)"
  done
  printf 'node_vxlan=%s\n' "$node_vx"
}
vx_sum() { sed -n 's/.*vxlan=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}'; }
# exactly one network namespace with one br0, two veths on it, and one vxlan
# in total (per-network namespace + node namespace)
check_devices() {
  local what=$1 r files
  r=$(device_report)
  files=$(netns_files | wc -l)
  check_eq "$what: one per-network namespace file" "$files" 1 || echo "$r"
  check_eq "$what: one br0, two endpoint veths on it" \
    "$(grep '^netns=' <<<"$r" | sed 's/^netns=[^ ]* //; s/ vxlan=[0-9]*//')" "br0=1 ports=2" || echo "$r"
  check_eq "$what: exactly one vxlan device for the network (netns + node)" \
    "$(vx_sum <<<"$r")" 1 || echo "$r"
  check_eq "$what: no stray veth in the node namespace (only the underlay eth0)" \
    "$(tb_links "$NODE_NS" veth | awk '$1 != "eth0"' | wc -l)" 0
  check_eq "$what: containers have just lo and eth0" \
    "$(tb_links "$c1" | awk '{print $1}' | paste -sd,)/$(tb_links "$c2" | awk '{print $1}' | paste -sd,)" "eth0,lo/eth0,lo"
}

# --- network + endpoints ------------------------------------------------------
id=$(tb_weft 1 network create -d overlay net-test) || true
require "network create prints an id ($id)" grep -qE '^[0-9a-f]{12,64}$' <<<"$id"
check "network ls lists net-test" bash -c "'$WEFT_BIN/weft' --host '$(tb_host 1)' network ls | grep -q net-test"
inspect=$(tb_weft 1 network inspect net-test)
check_eq "inspect: subnet" "$(tb_json 'd[0]["IPAM"]["Config"][0]["Subnet"]' <<<"$inspect")" 10.0.0.0/24
check_eq "inspect: gateway" "$(tb_json 'd[0]["IPAM"]["Config"][0]["Gateway"]' <<<"$inspect")" 10.0.0.1
check_eq "inspect: id" "$(tb_json 'd[0]["Id"]' <<<"$inspect")" "$id"

c1=$(tb_netns_add c1)
c2=$(tb_netns_add c2)
ip1=$(tb_weft 1 endpoint attach net-test --netns "$c1") || true
ip2=$(tb_weft 1 endpoint attach net-test --netns "$c2") || true
require_eq "first endpoint gets 10.0.0.2" "$ip1" 10.0.0.2
require_eq "second endpoint gets 10.0.0.3" "$ip2" 10.0.0.3

# --- the container side of an endpoint -------------------------------------------
underlay_mtu=$(ip -n "$NODE_NS" -j link show eth0 | tb_json 'd[0]["mtu"]')
for pair in "$c1 $ip1" "$c2 $ip2"; do
  read -r ns ip <<<"$pair"
  link=$(ip -n "$ns" -j link show eth0 2>&1) || true
  check_eq "$ns: eth0 MTU = underlay MTU - 50" "$(tb_json 'd[0]["mtu"]' <<<"$link" 2>&1)" "$((underlay_mtu - 50))"
  check_eq "$ns: eth0 MAC derived from $ip" "$(tb_json 'd[0]["address"]' <<<"$link" 2>&1)" "$(mac_of_ip "$ip")"
  check_eq "$ns: eth0 is up" "$(tb_json '"UP" in d[0]["flags"]' <<<"$link" 2>&1)" true
  check_eq "$ns: eth0 has $ip/24" \
    "$(ip -n "$ns" -j -4 addr show eth0 | tb_json '" ".join(a["local"] + "/" + str(a["prefixlen"]) for a in d[0]["addr_info"])')" "$ip/24"
  check_eq "$ns: default route via 10.0.0.1 dev eth0" \
    "$(ip -n "$ns" -j route show default | tb_json '" ".join(r.get("gateway", "-") + "@" + r.get("dev", "-") for r in d)')" "10.0.0.1@eth0"
done
check_eq "MTU is 1450 on a 1500 underlay" "$underlay_mtu/$(ip -n "$c1" -j link show eth0 | tb_json 'd[0]["mtu"]')" 1500/1450

# --- traffic ----------------------------------------------------------------------
check "c1 pings c2 ($ip2)" ping_3 "$c1" "$ip2"
check "c2 pings c1 ($ip1)" ping_3 "$c2" "$ip1"

head -c 50M /dev/urandom >"$RD/send.bin"
check "50 MB TCP transfer c1 -> c2 over the overlay, sha256 matches" tb_transfer "$c1" "$c2" "$ip2" "$RD/send.bin"
rm -f "$RD/send.bin"

check_devices "before restart"

# --- kill -9 and start again ----------------------------------------------------------
nets_before=$(tb_weft 1 network ls --format json | canon)
eps_before=$(tb_weft 1 endpoint ls --format json | canon)
check_eq "endpoint ls shows two endpoints" "$(tb_json 'len(d)' <<<"$eps_before")" 2
require "agent restarts after kill -9" tb_restart_agent 1 --kill
check "after kill -9: c1 pings c2" ping_3 "$c1" "$ip2"
check "after kill -9: c2 pings c1" ping_3 "$c2" "$ip1"
check_eq "after kill -9: network ls unchanged" "$(tb_weft 1 network ls --format json | canon)" "$nets_before"
check_eq "after kill -9: endpoint ls unchanged" "$(tb_weft 1 endpoint ls --format json | canon)" "$eps_before"
check_devices "after kill -9"

# A second restart, graceful this time: nothing may be doubled either.
require "agent restarts after TERM" tb_restart_agent 1
check "after TERM restart: c1 pings c2" ping_3 "$c1" "$ip2"
check_eq "after TERM restart: endpoint ls unchanged" "$(tb_weft 1 endpoint ls --format json | canon)" "$eps_before"
check_devices "after TERM restart"

# --- devices deleted behind the agent's back ------------------------------------------
netfile=$(netns_files | head -n 1)
# Where the vxlan device lives: the per-network namespace (expected) or the node.
vx_in() { tb_links "$1" vxlan | awk '{print $1}' | head -n 1; }

tb_agent_stop 1 --kill
vx=$(vx_in "$netfile"); vx_ns=$netfile
if [[ -z $vx ]]; then vx=$(vx_in "$NODE_NS"); vx_ns=/run/netns/$NODE_NS; fi
check "found the vxlan device to delete ($vx)" test -n "$vx"
[[ -z $vx ]] || nsenter --net="$vx_ns" -- ip link del "$vx"
check_eq "vxlan deleted while the agent is down" "$(tb_links "$vx_ns" vxlan | wc -l)" 0
tb_agent_start 1
require "agent starts after its vxlan was deleted" tb_agent_wait_ready 1
check_devices "after vxlan deleted + restart"
check "vxlan re-created is a port of br0" bash -c \
  "nsenter --net='$netfile' -- ip -o link show master br0 type vxlan | grep -q . || nsenter --net='/run/netns/$NODE_NS' -- ip -o -d link show type vxlan | grep -q ."
check "after vxlan re-created: c1 pings c2" ping_3 "$c1" "$ip2"

tb_agent_stop 1 --kill
nsenter --net="$netfile" -- ip link del br0
vx=$(vx_in "$netfile")
[[ -z $vx ]] || nsenter --net="$netfile" -- ip link del "$vx"
check_eq "br0 and vxlan deleted while the agent is down" \
  "$(tb_links "$netfile" | awk '$2 == "bridge" || $2 == "vxlan"' | wc -l)" 0
tb_agent_start 1
require "agent starts after br0 and vxlan were deleted" tb_agent_wait_ready 1
check_devices "after br0 + vxlan deleted + restart"
check "after br0 re-created: c1 pings c2" ping_3 "$c1" "$ip2"
check "after br0 re-created: c2 pings c1" ping_3 "$c2" "$ip1"
check_eq "after re-creation: endpoint ls unchanged" "$(tb_weft 1 endpoint ls --format json | canon)" "$eps_before"

# --- detach and remove: nothing left behind --------------------------------------------
check "detach c1" tb_weft 1 endpoint detach net-test --netns "$c1"
check_eq "c1 has no eth0 after detach" "$(ip -n "$c1" -o link show eth0 2>/dev/null | wc -l)" 0
check_eq "after detach: one endpoint ports on br0" \
  "$(nsenter --net="$netfile" -- ip -o link show master br0 | grep -c veth || true)" 1
check "detach c2" tb_weft 1 endpoint detach net-test --netns "$c2"
check_eq "endpoint ls is empty" "$(tb_weft 1 endpoint ls --format json | tb_json 'len(d)')" 0
check "network rm net-test" tb_weft 1 network rm net-test
check_eq "network ls is empty" "$(tb_weft 1 network ls --format json | tb_json 'len(d)')" 0
check_eq "no per-network namespace file left" "$(netns_files | wc -l)" 0
check_eq "no mount left under the state dir" \
  "$(awk -v d="$STATE/" 'index($5, d) == 1' /proc/self/mountinfo | wc -l)" 0
check_eq "no vxlan left in the node namespace" "$(tb_links "$NODE_NS" vxlan | wc -l)" 0

tb_summary
