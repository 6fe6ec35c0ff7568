#!/usr/bin/env bash
# The docker CLI (Debian's docker.io, 20.10; no dockerd is started) against
# weftd's services and tasks on two emulated nodes: `docker service ls`
# (table and templates), `inspect` (JSON and {{json .Endpoint.VirtualIPs}}),
# `ps`, `scale`, `update --replicas` (and the refusal of a change weft cannot
# make), `logs` (the multiplexed stream, task-labelled lines; --follow
# refused with the weft command), `create IMAGE` refused with the `weft
# service create ... -- COMMAND` form, and `rm`; weft's CLI sees the same.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

DOCKER=${DOCKER:-/usr/bin/docker}
if [[ ! -x $DOCKER ]]; then
  echo "SKIP - $DOCKER is not installed (apt-get install docker.io; only its CLI is used)"
  exit 0
fi

svc_short=""
# Their task namespaces (weft-<node>-<service id, 12>-<slot>, outside the
# test-bed's prefix) go with testbed_down, which finds them in the agents'
# task state files.
testbed_install_traps
set +e
testbed_up -n 2 || { echo "FAIL - test-bed with two nodes did not come up"; exit 1; }

# dk I ARGS...: the docker CLI against node I's agent; its config (which it
# writes) stays in the run dir.
dk() {
  local i=$1
  shift
  DOCKER_CONFIG="$TESTBED_RUN_DIR/docker-config" timeout "$TB_CMD_TIMEOUT" "$DOCKER" -H "$(tb_host "$i")" "$@"
}

init_out=$(tb_weft 1 swarm init)
token=$(grep -o 'WEFT-1-[A-Za-z0-9_-]*' <<<"$init_out" | head -1)
require "node 2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "network create" tb_weft 1 network create -d overlay net-test
has_network() { tb_weft "$1" network ls --format json | tb_json '[n["Name"] for n in d]' | grep -q net-test; }
require "net-test reaches node 2" wait_for 15 has_network 2
require "the docker CLI talks to weftd" dk 1 version

# docker events on node 2 while node 1 creates, scales and removes the
# service: service create, update and remove, whichever node made them.
mkdir -p "$TESTBED_RUN_DIR/docker-config"
events_file="$TESTBED_RUN_DIR/service-events.jsonl"
DOCKER_CONFIG="$TESTBED_RUN_DIR/docker-config" "$DOCKER" -H "$(tb_host 2)" events --filter type=service \
  --format '{{json .}}' >"$events_file" 2>&1 &
events_pid=$!
# Only events after the subscription are streamed: wait until node 2 serves it
# (the agent reports a change at once, so a create could beat the CLI's start).
stream_open() { grep -q "/events.* -> event stream" "$(tb_log_file 2)"; }
require "docker events on node 2 is subscribed" wait_for 10 stream_open

svc_id=$(tb_weft 1 service create --name pinger --network net-test --replicas 2 -- \
  sh -c 'echo "pinger task up"; exec sleep 100000')
require "weft service create with a command prints the id" grep -Eq '^[0-9a-f]{64}$' <<<"$svc_id"
svc_short=${svc_id:0:12}

# --- docker service ls --------------------------------------------------------------
replicas_are() { [[ $(dk "$1" service ls --format '{{.Name}} {{.Replicas}}') == "pinger $2" ]]; }
check "docker service ls: pinger 2/2" wait_for 40 replicas_are 1 2/2
check "node 2 agrees" wait_for 10 replicas_are 2 2/2
ls_out=$(dk 1 service ls 2>&1)
echo "$ls_out"
check_match "docker service ls has Docker's columns" "$(head -1 <<<"$ls_out")" \
  '^ID +NAME +MODE +REPLICAS +IMAGE +PORTS'
check_match "docker service ls row: id, name, replicated, 2/2" "$ls_out" "^$svc_short +pinger +replicated +2/2"
check_eq "docker service ls -q prints the short id" "$(dk 1 service ls -q)" "$svc_short"
check_eq "docker service ls --filter name=ping" "$(dk 1 service ls --filter name=ping --format '{{.Name}}')" pinger
check_eq "docker service ls --filter name=nope lists nothing" \
  "$(dk 1 service ls --filter name=nope --format '{{.Name}}')" ""

# --- docker service inspect ------------------------------------------------------------
weft_vip=$(tb_weft 1 service inspect pinger | tb_json 'd[0]["Endpoint"]["VirtualIPs"][0]["Addr"]')
net_id=$(tb_weft 1 network inspect net-test | tb_json 'd[0]["Id"]')
check_eq "docker service inspect --format '{{json .Endpoint.VirtualIPs}}'" \
  "$(dk 1 service inspect pinger --format '{{json .Endpoint.VirtualIPs}}')" \
  "[{\"NetworkID\":\"$net_id\",\"Addr\":\"$weft_vip\"}]"
inspect_json=$(dk 2 service inspect pinger)
check_eq "docker service inspect (JSON) on node 2: id, name, replicas, args" \
  "$(tb_json '[d[0]["ID"], d[0]["Spec"]["Name"], d[0]["Spec"]["Mode"]["Replicated"]["Replicas"], d[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"][0]]' <<<"$inspect_json")" \
  "[\"$svc_id\", \"pinger\", 2, \"sh\"]"
check_eq "docker service inspect --format of name and endpoint mode" \
  "$(dk 1 service inspect --format '{{.Spec.Name}} {{.Spec.EndpointSpec.Mode}}' pinger)" "pinger vip"
out=$(dk 1 service inspect nope 2>&1)
check_match "docker service inspect of an unknown service says so" "$out" 'no such service: nope'

# --- docker service ps -----------------------------------------------------------------
ps_out=$(dk 1 service ps pinger 2>&1)
echo "$ps_out"
check_match "docker service ps has Docker's columns" "$(head -1 <<<"$ps_out")" \
  '^ID +NAME +IMAGE +NODE +DESIRED STATE +CURRENT STATE +ERROR +PORTS'
ps_rows() { dk 1 service ps pinger --format '{{.Name}}|{{.DesiredState}}|{{.CurrentState}}'; }
rows=$(ps_rows)
check_match "docker service ps: pinger.1 Running, Running ... ago" "$rows" '^pinger\.1\|Running\|Running .* ago$'
check_match "docker service ps: pinger.2 Running, Running ... ago" "$rows" '^pinger\.2\|Running\|Running .* ago$'
node_ids=$(tb_weft 1 node ls --format json | tb_json '" ".join(sorted(n["ID"] for n in d))')
ps_nodes=$(dk 1 service ps pinger --no-resolve --format '{{.Node}}' | sort -u)
known_nodes() {
  local n
  [[ -n $ps_nodes ]] || return 1
  for n in $ps_nodes; do grep -qw -- "$n" <<<"$node_ids" || return 1; done
}
check "docker service ps --no-resolve shows node ids that /nodes lists ($(echo $ps_nodes))" known_nodes
task_ids=$(dk 1 service ps pinger -q | sort -u | wc -l)
check_eq "docker service ps -q: two distinct task ids" "$task_ids" 2
addresses=$(curl -s --max-time 5 --unix-socket "$(tb_sock 1)" "http://weft/v1.41/tasks?filters=%7B%22service%22%3A%5B%22pinger%22%5D%7D" |
  tb_json '" ".join(a for t in d for n in t["NetworksAttachments"] for a in n["Addresses"])')
check_match "GET /tasks: each task has its address on net-test" "$addresses" '^10\.0\.0\.[0-9]+/24 10\.0\.0\.[0-9]+/24$'

# --- docker service logs -----------------------------------------------------------------
slot1_node=$(curl -s --max-time 5 --unix-socket "$(tb_sock 1)" "http://weft/services/$svc_id/tasks" |
  tb_json '[t["NodeID"] for t in d if t["Slot"] == 1][0]')
li=${slot1_node#node}
logged() { dk "$li" service logs pinger 2>&1 | grep -Eq '^pinger\.1\.[0-9a-f]{12}@[^ ]+ +\| pinger task up$'; }
check "docker service logs on $slot1_node: pinger.1.<task>@<node> | pinger task up" wait_for 15 logged
other=$((li == 1 ? 2 : 1))
logged_elsewhere() { dk "$other" service logs pinger 2>&1 | grep -Eq '^pinger\.1\.[0-9a-f]{12}@[^ ]+ +\| pinger task up$'; }
check "docker service logs on node $other shows pinger.1's log from $slot1_node (asked over the cluster)" \
  wait_for 15 logged_elsewhere
dk "$li" service logs pinger
check_match "docker service logs --raw is the output itself" "$(dk "$li" service logs --raw pinger 2>&1)" \
  '^pinger task up$'
task1=$(dk 1 service ps pinger --no-trunc --format '{{.ID}} {{.Name}}' | awk '$2 == "pinger.1" {print $1}')
check_match "docker service logs TASK (pinger.1's id)" "$(dk "$li" service logs "$task1" 2>&1)" \
  "^pinger\.1\.${task1:0:12}@[^ ]+ +\| pinger task up$"
out=$(dk "$li" service logs --follow pinger 2>&1)
check_match "docker service logs --follow is refused with the weft command" "$out" \
  'weft service logs --follow pinger'

# --- docker service scale / update --------------------------------------------------------
out=$(dk 1 service scale pinger=3 --detach 2>&1)
check_match "docker service scale pinger=3" "$out" '^pinger scaled to 3'
check "docker service ls: 3/3" wait_for 40 replicas_are 1 3/3
check_eq "weft service ls agrees: 3/3" "$(tb_weft 1 service ls | awk '$2 == "pinger" {print $NF}')" 3/3
out=$(dk 2 service update --replicas 1 --detach pinger 2>&1)
check_eq "docker service update --replicas 1 prints the service" "$out" pinger
check "docker service ls: 1/1" wait_for 40 replicas_are 1 1/1
# Without --detach the CLI follows the tasks through /tasks and /nodes until
# they run (Docker's "verify: Service converged").
out=$(DOCKER_CONFIG="$TESTBED_RUN_DIR/docker-config" timeout 90 "$DOCKER" -H "$(tb_host 1)" service scale pinger=2 2>&1)
check_match "docker service scale pinger=2 (attached) waits until the service converges" "$out" 'converged'
check_match "docker service ps shows the nodes' hostnames" \
  "$(dk 1 service ps pinger --format '{{.Node}}' | sort -u | tr '\n' ' ')" '^(node[0-9] ?)+$'
out=$(dk 1 service update --replicas 1 --detach pinger 2>&1)
check "docker service ls: 1/1 again" wait_for 40 replicas_are 1 1/1
out=$(dk 1 service update --image alpine --detach pinger 2>&1)
check_match "docker service update --image is refused, naming the field" "$out" \
  'weft can change only .*TaskTemplate\.ContainerSpec\.Image'
check_eq "...and the service kept its replicas" "$(dk 1 service inspect --format '{{.Spec.Mode.Replicated.Replicas}}' pinger)" 1

# --- docker service create: an image is refused ----------------------------------------------
out=$(dk 1 service create --detach --name web --network net-test alpine echo hi 2>&1)
rc=$?
check "docker service create IMAGE fails" test "$rc" -ne 0
check_match "...with the weft service create form" "$out" \
  'weft runs programs, not images.*weft service create --name web --network net-test -- echo hi'
check_eq "...and no service web exists" "$(tb_weft 1 service ls --format json | tb_json '[s["Spec"]["Name"] for s in d]')" \
  '["pinger"]'

# --- docker service rm ---------------------------------------------------------------------------
check_eq "docker service rm prints the name" "$(dk 1 service rm pinger 2>&1)" pinger
check_eq "docker service ls is empty" "$(dk 1 service ls -q)" ""
check_eq "weft service ls -q is empty" "$(tb_weft 2 service ls -q | wc -l)" 0
no_task_netns() { ! ip netns list | awk '{print $1}' | grep -q -- "-$svc_short-"; }
check "no task namespace is left" wait_for 20 no_task_netns

# --- docker events: the service's life, seen on node 2 ------------------------------------------
service_event() { grep -q "\"Action\":\"$1\".*\"ID\":\"$svc_id\"" "$events_file"; }
for action in create update remove; do
  check "docker events on node 2 streamed service $action" wait_for 10 service_event "$action"
done
check "a service event carries the name" grep -q '"Type":"service".*"name":"pinger"' "$events_file"
kill "$events_pid" 2>/dev/null
wait "$events_pid" 2>/dev/null

tb_summary docker_cli_services
