#!/usr/bin/env bash
# weftd's /metrics (--metrics-addr, on by default in the test-bed) on two
# emulated nodes: a scrape before and after N connections through a
# service's VIP and M DNS queries from a client shows the counters moved by
# exactly what was sent (connections per service, DNS requests by type and
# answers by rcode, API requests by route template); the gauges describe
# the cluster (nodes, services, backends); the text passes `promtool check
# metrics` and Python prometheus_client's parser; only GET and HEAD are
# served; a bad --metrics-addr and a taken port stop weftd with exit 2 and
# a clear message.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

N=20  # connections through the VIP
M=10  # DNS queries

testbed_install_traps
set +e
export TB_METRICS=1
testbed_up -n 2 || { echo "FAIL - test-bed with two nodes did not come up"; exit 1; }
work=$TESTBED_RUN_DIR/work
mkdir -p "$work"

# The parser of Debian's python3-prometheus-client, also when another python3
# (a pyenv shim) comes first in PATH.
PY=python3
python3 -c 'import prometheus_client' 2>/dev/null || PY=/usr/bin/python3

# scrape I FILE: node I's /metrics into FILE, from inside node I's namespace.
scrape() { tb_exec "$1" curl -sS --max-time 5 -o "$2" "$(tb_metrics_url "$1")"; }
# value FILE 'NAME{labels}': the sample's value (labels as written by
# weftd, in its order), 0 when absent.
value() {
  "$PY" - "$1" "$2" <<'EOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
path, want = sys.argv[1], sys.argv[2]
name, _, labels = want.partition("{")
labels = dict(kv.split("=", 1) for kv in labels.rstrip("}").split(",") if kv) if labels else {}
labels = {k: v.strip('"') for k, v in labels.items()}
total = 0
for family in text_string_to_metric_families(open(path).read()):
    for s in family.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()) and \
           set(s.labels) == set(labels):
            total = s.value
print(int(total) if float(total).is_integer() else total)
EOF
}
delta() { echo $(($(value "$2" "$3") - $(value "$1" "$3"))); }

# --- a cluster, a service with two redis backends, a client ---------------------------
init_out=$(tb_weft 1 swarm init)
token=$(grep -o 'WEFT-1-[A-Za-z0-9_-]*' <<<"$init_out" | head -1)
require "node 2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "network create" tb_weft 1 network create -d overlay net-test
require "service create" tb_weft 1 service create --name redis --network net-test
VIP=$(tb_weft 1 service inspect redis | tb_json 'd[0]["Endpoint"]["VirtualIPs"][0]["Addr"]')
VIP=${VIP%/*}
# Node 2 attaches b2: it must have heard of the service first (gossip).
knows_redis() { tb_weft 2 service ls | grep -qw redis; }
require "node 2 lists the service" wait_for 15 knows_redis
declare -A backend_ip
for b in b1 b2; do
  node=1; [[ $b == b2 ]] && node=2
  ns=$(tb_netns_add "$b")
  backend_ip[$b]=$(tb_weft "$node" endpoint attach net-test --netns "$ns" --service redis --name "$b")
  ip netns exec "$ns" setsid redis-server --port 6379 --protected-mode no --save '' --appendonly no \
    --daemonize no --logfile "$work/redis-$b.log" </dev/null >/dev/null 2>&1 &
  disown "$!"
done
client=$(tb_netns_add client)
require "client attach" tb_weft 1 endpoint attach net-test --netns "$client" --name client
ask() { ip netns exec "$client" redis-cli -h "$VIP" get whoami 2>&1; }
redis_up() { ip netns exec "$TESTBED_PREFIX$1" redis-cli -h "${backend_ip[$1]}" set whoami "$1" | grep -q OK; }
for b in b1 b2; do require "redis on $b answers" wait_for 15 redis_up "$b"; done
vip_answers() { [[ $(ask) == b? ]]; }
require "the VIP answers from the client" wait_for 20 vip_answers
dns_answers() { [[ -n $(ip netns exec "$client" dig @127.0.0.11 +short +time=2 +tries=1 redis) ]]; }
require "the embedded DNS answers the client" wait_for 15 dns_answers
backends_seen() { [[ $(value "$1" 'weft_service_backends{service="redis",state="active"}') == 2 ]]; }
scrape_backends() { scrape 1 "$work/probe.txt" && backends_seen "$work/probe.txt"; }
check "node 1 counts the two backends" wait_for 15 scrape_backends

# --- before, traffic, after ----------------------------------------------------------------
require "scrape before" scrape 1 "$work/before.txt"
ok_connections=0
for _ in $(seq "$N"); do [[ $(ask) == b? ]] && ok_connections=$((ok_connections + 1)); done
check_eq "$N connections through the VIP answered" "$ok_connections" "$N"
ok_queries=0
for _ in $(seq "$M"); do
  [[ -n $(ip netns exec "$client" dig @127.0.0.11 +short +time=2 +tries=1 redis A) ]] && ok_queries=$((ok_queries + 1))
done
check_eq "$M DNS queries answered" "$ok_queries" "$M"
require "service inspect" tb_weft 1 service inspect redis
require "scrape after" scrape 1 "$work/after.txt"
sed -n '1,400p' "$work/after.txt" | grep -v '^#' | grep -E 'weft_(lb|dns_req|dns_resp|services|service_b|cluster|api)' | head -40

check_eq "weft_lb_connections_total{service=redis} moved by $N" \
  "$(delta "$work/before.txt" "$work/after.txt" 'weft_lb_connections_total{service="redis"}')" "$N"
check_eq "weft_dns_requests_total{proto=udp,type=A} moved by $M" \
  "$(delta "$work/before.txt" "$work/after.txt" 'weft_dns_requests_total{proto="udp",type="A"}')" "$M"
check_eq "weft_dns_responses_total{rcode=NOERROR} moved by $M" \
  "$(delta "$work/before.txt" "$work/after.txt" 'weft_dns_responses_total{rcode="NOERROR"}')" "$M"
check_eq "weft_dns_request_duration_seconds_count moved by $M" \
  "$(delta "$work/before.txt" "$work/after.txt" 'weft_dns_request_duration_seconds_count')" "$M"
check_eq "weft_api_requests_total{route=/services/{id},code=200} moved by 1" \
  "$(delta "$work/before.txt" "$work/after.txt" 'weft_api_requests_total{route="/services/{id}",code="200"}')" 1
check_eq "weft_services is 1" "$(value "$work/after.txt" weft_services)" 1
check_eq "weft_cluster_nodes{state=ready} is 2" "$(value "$work/after.txt" 'weft_cluster_nodes{state="ready"}')" 2
check_eq "weft_build_info has the version" "$(value "$work/after.txt" 'weft_build_info{version="0.1.0"}')" 1
entries=$(value "$work/after.txt" 'weft_table_entries{table="endpoints"}')
check "weft_table_entries{table=endpoints} counts the 3 endpoints at least ($entries)" test "$entries" -ge 3
# Probes are a second apart and the test may take only a few: a ping is
# waited for, not assumed to have come already.
pings_counted() {
  scrape 1 "$work/pings.txt" && (($(value "$work/pings.txt" 'weft_gossip_messages_total{type="ping"}') > 0))
}
check "weft_gossip_messages_total{type=ping} > 0" wait_for 10 pings_counted
syncs=$(value "$work/after.txt" 'weft_datapath_sync_duration_seconds_count')
check "weft_datapath_sync_duration_seconds counts the applies ($syncs)" test "$syncs" -gt 0
check_match "weft_bpf_map_pressure reports the conntrack map" "$(cat "$work/after.txt")" \
  '^weft_bpf_map_pressure\{map_name="lb_conntrack"\} '
again=$(mktemp "$work/again.XXXX")
scrape 1 "$again"
check "counters keep counting across reads" test \
  "$(value "$again" 'weft_lb_connections_total{service="redis"}')" -ge \
  "$(value "$work/after.txt" 'weft_lb_connections_total{service="redis"}')"
check "no IP address in any label" bash -c "! grep -v '^#' '$work/after.txt' | grep -qE '\"[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+'"

# --- the text parses -------------------------------------------------------------------
check "promtool check metrics accepts the text" bash -c "promtool check metrics <'$work/after.txt'"
check "prometheus_client parses the text" "$PY" -c "
from prometheus_client.parser import text_string_to_metric_families
list(text_string_to_metric_families(open('$work/after.txt').read()))"
check "node 2 serves /metrics too" scrape 2 "$work/node2.txt"
content_type=$(tb_exec 1 curl -sS -o /dev/null -w '%{content_type}' "$(tb_metrics_url 1)")
check_match "Content-Type is the text format 0.0.4" "$content_type" '^text/plain; version=0.0.4'

# --- read-only --------------------------------------------------------------------------
code=$(tb_exec 1 curl -sS -o /dev/null -w '%{http_code}' -X POST "$(tb_metrics_url 1)")
check_eq "POST /metrics is 405" "$code" 405
code=$(tb_exec 1 curl -sS -o /dev/null -w '%{http_code}' -I "$(tb_metrics_url 1)")
check_eq "HEAD /metrics is 200" "$code" 200
code=$(tb_exec 1 curl -sS -o /dev/null -w '%{http_code}' "http://$(tb_addr 1):$TB_METRICS_PORT/nope")
check_eq "an unknown path is 404" "$code" 404

# --- bad input: exit 2 with a clear message ------------------------------------------------
bad_weftd() {  # its own state, socket and gossip port, in node 1's namespace
  timeout 20 nsenter --net="/run/netns/$(tb_ns 1)" "$WEFT_BIN/weftd" --node-name bad --advertise-addr "$(tb_addr 1)" \
    --state-dir "$work/bad" --api-socket "$work/bad.sock" --bpf-pin-dir "$work/bad-pins" --bind "$(tb_addr 1):7999" "$@"
}
refused() {  # refused DESC REGEX CMD...
  local desc=$1 re=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  check_eq "$desc exits 2" "$rc" 2 || echo "$out" | tail -5
  check_match "$desc says why" "$out" "$re"
}
refused "--metrics-addr not an address" 'metrics-addr.*not-an-address' bad_weftd --metrics-addr not-an-address:9323
refused "--metrics-addr without a port" 'metrics-addr.*192\.0\.2\.11' bad_weftd --metrics-addr "$(tb_addr 1)"
refused "--metrics-addr with port 0" 'metrics-addr' bad_weftd --metrics-addr "$(tb_addr 1):0"
refused "--metrics-addr on a taken port" "metrics-addr.*$(tb_addr 1):$TB_METRICS_PORT.*in use" \
  bad_weftd --metrics-addr "$(tb_addr 1):$TB_METRICS_PORT"
check "node 1's agent still serves /metrics" scrape 1 "$work/last.txt"
check "the refused agents left no API socket behind" test ! -e "$work/bad.sock"

tb_summary
