#!/usr/bin/env bash
# A real container runtime on weft: podman with its CNI backend, in two
# emulated nodes, runs a busybox container on each with the weft-cni
# conflist (scripts/weft-cni.conflist's shape); the containers get weft
# addresses, ping each other across the overlay, see 127.0.0.11 as their
# nameserver and resolve a weft service by name through it; `podman rm`
# detaches them (no endpoint, no address left). Podman's storage, runtime
# state, config and CNI cache all live in the test's run dir.
#
# Needs podman, runc, conmon and busybox-static (scripts/setup installs
# them); skipped with a message without them.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

for tool in podman runc conmon busybox; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP - $tool is not installed (scripts/setup installs podman runc busybox-static)"
    exit 0
  fi
done
set +e

# Rootful podman 4.3 keeps a little in fixed places whatever its flags say:
# runc's default state dir (left empty), libcni's result cache and the image
# blob-info cache. What this test made there is removed again.
HOST_DIRS=(/run/runc /var/lib/cni /var/lib/containers)
FRESH_HOST_DIRS=()
for d in "${HOST_DIRS[@]}"; do [[ -e $d ]] || FRESH_HOST_DIRS+=("$d"); done
PODMAN_NODES=()
PODMAN_NETNS=()
# Containers (and their conmon/runc processes) go before the test-bed, while
# the agents still answer podman's CNI DEL; their namespaces are podman's
# (/run/netns/netns-*), not the test-bed's, so any left are removed here.
podman_down() {
  local rc=$? i ns pid d
  for i in "${PODMAN_NODES[@]}"; do
    pm "$i" rm -a -f -t 0 >/dev/null 2>&1 || true
  done
  for ns in "${PODMAN_NETNS[@]}"; do
    [[ -e $ns ]] || continue
    echo "cleanup: podman left $ns; removing it"
    for pid in $(ip netns pids "$(basename "$ns")" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$(basename "$ns")" 2>/dev/null || true
  done
  testbed_down
  for d in "${FRESH_HOST_DIRS[@]}"; do rm -rf --one-file-system "$d"; done
  return "$rc"
}
trap podman_down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

[[ -x $WEFT_BIN/weft-cni ]] || { echo "FAIL - $WEFT_BIN/weft-cni is not built"; exit 1; }
testbed_up -n 2 || { echo "FAIL - test-bed with two nodes did not come up"; exit 1; }
RD=$TESTBED_RUN_DIR

# --- podman per node, everything under the run dir -------------------------------
# The plugin directory holds weft-cni and the standard plugins podman may
# ask for (loopback is not needed: the runtime brings lo up itself).
plugins=$RD/cni-bin
mkdir -p "$plugins"
ln -s "$WEFT_BIN/weft-cni" "$plugins/weft-cni"

podman_dir() { printf '%s/podman%s' "$RD" "$1"; }
setup_podman() {
  local i=$1 dir
  dir=$(podman_dir "$i")
  mkdir -p "$dir/net.d" "$dir/tmp" "$dir/runc"
  # containers.conf: CNI backend, our plugin dir, cgroupfs, runc, no journald.
  cat >"$dir/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
runtime = "runc"
tmp_dir = "$dir/tmp"
[network]
network_backend = "cni"
cni_plugin_dirs = ["$plugins"]
network_config_dir = "$dir/net.d"
EOF
  # The example conflist with this node's agent socket.
  python3 - "$WEFT_SRC/scripts/weft-cni.conflist" "$dir/net.d/weft-podnet.conflist" "$(tb_sock "$i")" <<'EOF'
import json, sys
conf = json.load(open(sys.argv[1]))
conf["name"] = "podnet"
for plugin in conf["plugins"]:
    if plugin["type"] == "weft-cni":
        plugin["network"] = "podnet"
        plugin["socket"] = sys.argv[3]
json.dump(conf, open(sys.argv[2], "w"), indent=2)
EOF
  PODMAN_NODES+=("$i")
}
# pm I ARGS...: podman of node I, in node I's network namespace.
pm() {
  local i=$1 dir; shift
  dir=$(podman_dir "$i")
  CONTAINERS_CONF=$dir/containers.conf TMPDIR=$dir/tmp \
    timeout 120 nsenter --net="/run/netns/$(tb_ns "$i")" -- \
    podman --root "$dir/root" --runroot "$dir/run" --storage-driver vfs \
    --network-backend cni --network-config-dir "$dir/net.d" --cgroup-manager=cgroupfs \
    --runtime runc --runtime-flag "root=$dir/runc" \
    --tmpdir "$dir/tmp" --events-backend file "$@"
}

# A busybox image from a tar: /bin/busybox and the applets the test uses.
image_tar=$RD/busybox.tar
rootfs=$RD/rootfs
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp"
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for applet in sh ping sleep ip cat nslookup hostname; do ln -s busybox "$rootfs/bin/$applet"; done
tar -C "$rootfs" -cf "$image_tar" .

# --- swarm and network --------------------------------------------------------------
init_out=$(tb_weft 1 swarm init)
token=$(grep -o 'WEFT-1-[A-Za-z0-9_-]*' <<<"$init_out" | head -1)
require "node 2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "network create podnet" tb_weft 1 network create -d overlay podnet
has_network() { tb_weft 2 network ls --format json | tb_json '[n["Name"] for n in d]' | grep -q podnet; }
require "podnet appears on node 2" wait_for 15 has_network

for i in 1 2; do
  setup_podman "$i"
  require "podman import on node $i" pm "$i" import "$image_tar" localhost/weft-busybox:latest
done

run_container() {  # I NAME
  pm "$1" run -d --name "$2" --network podnet --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    localhost/weft-busybox:latest sleep 600
}
require "podman run on node 1 (weft-cni ADD)" run_container 1 pc1
require "podman run on node 2 (weft-cni ADD)" run_container 2 pc2

endpoint_of() {  # NODE NAME -> "IP NETNS"
  tb_weft "$1" endpoint ls --format json |
    tb_json "' '.join(e['IPv4Address'].split('/')[0] + ' ' + e['Netns'] for e in d if e['Name'] == '$2' and e['Node'] == 'node$1')"
}
read -r ip1 ns1 <<<"$(endpoint_of 1 pc1)"
read -r ip2 ns2 <<<"$(endpoint_of 2 pc2)"
PODMAN_NETNS+=("$ns1" "$ns2")
echo "pc1: $ip1 ($ns1) on node1; pc2: $ip2 ($ns2) on node2"
check_match "pc1 is a weft endpoint named after the container, in podman's namespace" "$ip1 $ns1" '^10\.0\.0\.[0-9]+ /'
check_match "pc2 likewise on node 2" "$ip2 $ns2" '^10\.0\.0\.[0-9]+ /'
check_match "podman shows the address weft gave" \
  "$(pm 1 inspect pc1 --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')" "^$ip1\$"
check_match "inside pc1, eth0 holds it" "$(pm 1 exec pc1 ip -o -4 addr show eth0)" " $ip1/24 "

ping_from() { pm "$1" exec "$2" ping -c 1 -W 1 "$3"; }
check "pc1 (node 1) pings pc2 (node 2) across the overlay" wait_for 20 ping_from 1 pc1 "$ip2"
check "pc2 pings pc1" wait_for 10 ping_from 2 pc2 "$ip1"

# --- DNS -----------------------------------------------------------------------------
check_match "pc1's resolv.conf names weft's resolver (the result's dns)" \
  "$(pm 1 exec pc1 cat /etc/resolv.conf)" '^nameserver 127\.0\.0\.11$'
if nsenter --net="$ns1" -- dig +time=1 +tries=2 @127.0.0.11 pc2 >/dev/null 2>&1; then
  require "service create web on podnet" tb_weft 1 service create --name web --network podnet --endpoint-mode dnsrr
  # Node 2 attaches the backend: it must have heard of the service first.
  knows_web() { tb_weft 2 service ls | grep -qw web; }
  require "node 2 lists the service web" wait_for 15 knows_web
  c_web=$(tb_netns_add web1)
  web_ip=$(tb_weft 2 endpoint attach podnet --netns "$c_web" --service web)
  lookup() { pm 1 exec pc1 nslookup web 127.0.0.11 2>&1 | grep -qE "^Address.*[ :]$web_ip( |$)"; }
  check "pc1 resolves the weft service web (a backend on node 2) to $web_ip" wait_for 15 lookup
  lookup_pc2() { pm 1 exec pc1 nslookup pc2 127.0.0.11 2>&1 | grep -qE "^Address.*[ :]$ip2( |$)"; }
  check "pc1 resolves the other container by name" wait_for 15 lookup_pc2
else
  echo "SKIP - nothing answers DNS on 127.0.0.11 in pc1 (weft's DNS wiring is not in this tree): no name checks"
fi

# --- removal ------------------------------------------------------------------------
require "podman rm -f pc1 (weft-cni DEL)" pm 1 rm -f -t 0 pc1
require "podman rm -f pc2" pm 2 rm -f -t 0 pc2
left() { tb_weft 1 endpoint ls --format json | tb_json "len([e for e in d if e['Name'] in ('pc1', 'pc2')])"; }
check_eq "no container endpoint left" "$(left)" 0
check "podman's namespaces are gone" bash -c "[[ ! -e '$ns1' && ! -e '$ns2' ]]"
# The addresses came back: a new container on node 1 gets pc1's again.
require "podman run pc3 on node 1" run_container 1 pc3
read -r ip3 ns3 <<<"$(endpoint_of 1 pc3)"
PODMAN_NETNS+=("$ns3")
check_eq "no address leaked: pc3 gets pc1's address again" "$ip3" "$ip1"
require "podman rm -f pc3" pm 1 rm -f -t 0 pc3

tb_summary
