#!/usr/bin/env bash
# The real docker CLI (Debian's docker.io 20.10; no dockerd is started)
# against three test-bed agents, and nothing else to drive them: version
# negotiation, `docker info`, swarm init/join-token/join/leave, node
# ls/inspect/rm, overlay networks (create with --subnet, ls, inspect,
# connect/disconnect of a namespace, rm) seen by `docker network ls` and
# `weft network ls` on every node, `docker events` streaming and with
# --since/--until, and 501s naming the weft command for what weft is not.
# Outputs are checked through --format templates and {{json .}}.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

# Debian's CLI first (the one the issue names), then whatever is on PATH.
DOCKER=${WEFT_DOCKER_CLI:-}
if [[ -z $DOCKER ]]; then
  if [[ -x /usr/bin/docker ]]; then
    DOCKER=/usr/bin/docker
  elif command -v docker >/dev/null; then
    DOCKER=$(command -v docker)
  elif ((EUID == 0)) && command -v apt-get >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io >/dev/null 2>&1 &&
    [[ -x /usr/bin/docker ]]; then
    DOCKER=/usr/bin/docker
  else
    echo "SKIP - the docker CLI is not installed and could not be installed (scripts/setup installs docker.io)"
    exit 0
  fi
fi

testbed_install_traps
set +e
testbed_up -n 3 || { echo "FAIL - test-bed with three nodes did not come up"; exit 1; }
work=$TESTBED_RUN_DIR/work
mkdir -p "$work"
# The CLI's own config (contexts, auth) stays in the run directory.
export DOCKER_CONFIG=$work/docker-config
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_API_VERSION

# d NODE ARGS...: the docker CLI against node NODE's agent.
d() {
  local node=$1; shift
  timeout "$TB_CMD_TIMEOUT" "$DOCKER" -H "$(tb_host "$node")" "$@"
}
echo "docker CLI: $("$DOCKER" --version)"

# --- versions -----------------------------------------------------------------------
check_eq "docker version: server API 1.41, minimum 1.24" \
  "$(d 1 version --format '{{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}')" "1.41 1.24 linux"
check_eq "docker version: the client negotiated 1.41" "$(d 1 version --format '{{.Client.APIVersion}}')" "1.41"
arch=$(d 1 version --format '{{.Server.Arch}}')
check_match "docker version: Go's architecture name" "$arch" '^(amd64|arm64|arm|386|s390x|ppc64le|riscv64)$'
out=$(DOCKER_API_VERSION=1.99 d 1 version --format '{{.Server.APIVersion}}' 2>&1)
check_match "a client asking for 1.99 gets dockerd's message" "$out" "client version 1.99 is too new. Maximum supported API version is 1.41"

# --- info, before the swarm -----------------------------------------------------------
d 1 info >"$work/info.out" 2>"$work/info.err"
rc=$?
check_eq "docker info exits 0" "$rc" 0
check_eq "docker info writes nothing to stderr" "$(cat "$work/info.err")" ""
check_match "docker info shows the server" "$(cat "$work/info.out")" "Server Version: "
check_eq "info before init: inactive, no nodes" "$(d 1 info --format '{{.Swarm.LocalNodeState}} {{.Swarm.Nodes}}')" "inactive 0"
check_eq "info: name, OS type" "$(d 1 info --format '{{.Name}} {{.OSType}}')" "node1 linux"

# --- swarm ------------------------------------------------------------------------------
init_out=$(d 1 swarm init 2>&1)
rc=$?
echo "$init_out"
require_eq "docker swarm init (no --advertise-addr) succeeds" "$rc" 0
join_line=$(grep -o 'docker swarm join --token [^ ]* [0-9.]*:[0-9]*' <<<"$init_out")
check_match "init prints the join command with node 1's gossip address" "$join_line" " $(tb_addr 1):7946\$"
token=$(d 1 swarm join-token -q worker)
check_match "join-token -q prints weft's token" "$token" '^WEFT-1-'
check_match "join-token manager prints the same command" "$(d 1 swarm join-token manager)" "docker swarm join --token $token $(tb_addr 1):7946"
out=$(d 1 swarm join-token --rotate worker 2>&1)
check_match "join-token --rotate is refused: the token is the cluster's key" "$out" "new swarm"

out=$(d 2 swarm init --advertise-addr 198.51.100.7 2>&1)
check_match "init with another advertise address names the agent's flag" "$out" "--advertise-addr $(tb_addr 2)"
require "node 2 joins with the CLI's command" d 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "node 3 joins" d 3 swarm join --token "$token" "$(tb_addr 1):7946"

ready_count() { d "$1" node ls --format '{{.Status}}' | grep -c '^Ready$'; }
all_ready() { [[ $(ready_count "$1") == 3 ]]; }
for i in 1 2 3; do check "node $i: docker node ls shows 3 Ready nodes" wait_for 15 all_ready "$i"; done
node_ls=$(d 2 node ls)
echo "$node_ls"
check_match "docker node ls marks the local node with * and shows managers Reachable" "$node_ls" \
  "\* +node2 +Ready +Active +Reachable"
check_eq "info in the swarm: active, 3 nodes" "$(d 3 info --format '{{.Swarm.LocalNodeState}} {{.Swarm.Nodes}}')" "active 3"
cluster1=$(d 1 info --format '{{.Swarm.Cluster.ID}}')
check_eq "every node reports the same cluster id" "$(d 3 info --format '{{.Swarm.Cluster.ID}}')" "$cluster1"
self2=$(d 2 info --format '{{.Swarm.NodeID}}')
check_eq "node inspect self: hostname, role, state, address" \
  "$(d 2 node inspect self --format '{{.ID}} {{.Description.Hostname}} {{.Spec.Role}} {{.Status.State}} {{.Status.Addr}} {{.ManagerStatus.Addr}}')" \
  "$self2 node2 manager ready $(tb_addr 2) $(tb_addr 2):7946"
check_eq "node inspect {{json .Status}}" "$(d 1 node inspect node3 --format '{{json .Status}}')" \
  "{\"State\":\"ready\",\"Addr\":\"$(tb_addr 3)\"}"
out=$(d 1 node update --role worker node3 2>&1)
check_match "node update --role is refused, saying why" "$out" "no role to change"

# --- events, streaming from node 3 --------------------------------------------------------
d 3 events --format '{{json .}}' >"$work/events.jsonl" 2>"$work/events.err" &
events_pid=$!
# Only events after the subscription are streamed: wait until node 3 serves it.
stream_open() { grep -q "/events.* -> event stream" "$(tb_log_file 3)"; }
require "docker events on node 3 is subscribed" wait_for 10 stream_open

# --- networks -------------------------------------------------------------------------------
net_id=$(d 1 network create -d overlay --subnet 10.77.0.0/24 net-docker)
check_match "docker network create prints the id" "$net_id" '^[0-9a-f]{64}$'
fmt='{{.Name}} {{.Driver}} {{range .IPAM.Config}}{{.Subnet}}{{end}} {{.Scope}}'
docker_has() { d "$1" network ls --format '{{.Name}} {{.Driver}} {{.Scope}}' | grep -qx 'net-docker overlay swarm'; }
weft_has() { tb_weft "$1" network ls --format json | tb_json '"\n".join(n["Name"] for n in d)' | grep -qx net-docker; }
for i in 1 2 3; do
  check "node $i: docker network ls shows net-docker" wait_for 10 docker_has "$i"
  check "node $i: weft network ls shows net-docker" wait_for 10 weft_has "$i"
  check_eq "node $i: network inspect --format" "$(d "$i" network inspect --format "$fmt" net-docker)" \
    "net-docker overlay 10.77.0.0/24 swarm"
done
check_eq "network ls --filter name= lists only matching networks" \
  "$(d 3 network ls --filter name=docker --filter driver=overlay --format '{{.Name}}')" "net-docker"
check_eq "network ls --filter name= with no match lists none" "$(d 3 network ls --filter name=nomatch --format '{{.Name}}')" ""
check_eq "network ls --format {{json .}} names the driver" \
  "$(d 2 network ls --filter name=net-docker --format '{{json .}}' | tb_json 'd["Driver"]')" "overlay"

ns=$(tb_netns_add dc1)
check "docker network connect attaches a namespace" d 2 network connect net-docker "$ns"
ip=$(d 2 network inspect net-docker --format '{{range .Containers}}{{.IPv4Address}}{{end}}')
check_match "the namespace got an address of the subnet" "$ip" '^10\.77\.0\.[0-9]+/24$'
check "docker network disconnect detaches it" d 2 network disconnect net-docker "$ns"
out=$(d 1 network rm net-docker)
check_eq "docker network rm" "$out" "net-docker"
docker_gone() { ! d "$1" network ls --format '{{.Name}}' | grep -qx net-docker; }
for i in 1 2 3; do check "node $i: net-docker is gone" wait_for 10 docker_gone "$i"; done

# --- events ---------------------------------------------------------------------------------
event_seen() { grep -q "\"Action\":\"$1\"" "$work/events.jsonl"; }
for action in create connect disconnect destroy; do
  check "docker events on node 3 streamed network $action" wait_for 10 event_seen "$action"
done
kill "$events_pid" 2>/dev/null
wait "$events_pid" 2>/dev/null
# The first network event (node events may stream too: one CI run saw node
# 3 report node2's create after the subscription).
grep -v '"Type":"network"' "$work/events.jsonl" | cut -c1-160
check_eq "streamed events are Docker's shape" \
  "$(grep '"Type":"network"' "$work/events.jsonl" | head -1 | tb_json '"%s %s %s %s" % (d["Type"], d["Action"], d["Actor"]["Attributes"]["name"], d["scope"])')" \
  "network create net-docker swarm"
# The CLI sends whole seconds: an event of the current second is after
# `--until 0s`, as with dockerd.
sleep 1.1
past=$(d 1 events --since 10m --until 0s --filter type=network --filter event=destroy --format '{{.Type}} {{.Action}} {{.Actor.Attributes.name}}')
check_eq "docker events --since/--until/--filter from node 1's history, and ends" "$past" "network destroy net-docker"
nodes_past=$(d 1 events --since 10m --until 0s --filter type=node --format '{{.Action}} {{.Actor.Attributes.name}}')
check_match "node events: node 3 joined" "$nodes_past" "create node3"

# --- what weft is not -------------------------------------------------------------------------
out=$(d 1 ps 2>&1)
check_match "docker ps is a 501 naming weft run" "$out" "weft run --network NET -- CMD"
out=$(d 1 run --rm busybox true 2>&1)
check_match "docker run is refused the same way" "$out" "not a container engine"
out=$(d 1 images 2>&1)
check_match "docker images: 501 naming weft service create" "$out" "weft service create"
out=$(d 1 volume ls 2>&1)
check_match "docker volume ls: 501" "$out" "volumes are not available"

# --- node rm and leave -------------------------------------------------------------------------
check "node 3 leaves with docker swarm leave" d 3 swarm leave
node3_down() { d 1 node inspect node3 --format '{{.Status.State}}' | grep -qx down; }
check "node 1 sees node 3 down" wait_for 20 node3_down
check "docker node rm node3" d 1 node rm node3
node3_gone() { ! d 1 node ls --format '{{.Hostname}}' | grep -qx node3; }
check "node 3 is gone from docker node ls" wait_for 10 node3_gone
check "node 2 leaves with --force" d 2 swarm leave --force
check_eq "info after leave: inactive" "$(d 2 info --format '{{.Swarm.LocalNodeState}}')" "inactive"

tb_summary
