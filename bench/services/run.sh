#!/usr/bin/env bash
# The agent with many services (issue 9, "memory": weftd under 150 MB): time
# per `service create` through the API and weftd's memory idle and with
# COUNT services, each with a VIP programmed into the eBPF load balancer, on
# one emulated node.
#
#   bench/services/run.sh [-n COUNT] [-j CLIENTS] [--preload TOTAL]
#                         [--max-services N]
#   bench/services/run.sh --remote-backends M [--remote-services N]
#                         [--conntrack N] [--rate N]
#
#   -n COUNT          services to create through the API (default 2000)
#   -j CLIENTS        API clients creating in parallel, each on its own
#                     connection (default 1)
#   --preload TOTAL   then stop the agent, add services up to TOTAL to its
#                     state files (services/<id>.json, and the VIP
#                     reservations in state.json) and start it
#                     again: it loads them and programs the load balancer
#                     with its own code, as after a restart, in seconds
#                     where TOTAL creates through the API take many
#                     minutes
#   --max-services N  weftd --lb-max-services (default 16384, the largest)
#   --remote-backends M  instead of the creates: weftd at SERVICES services
#                     x M backends on other nodes + CONNTRACK conntrack
#                     entries, end to end (see below)
#   --remote-services N  services for --remote-backends (default 10000)
#   --conntrack N     conntrack entries for --remote-backends (default
#                     1000000; the map has 1048576)
#   --rate N          table entries the remote node publishes a second
#                     (default 300: each is one UDP push, and an agent
#                     that falls behind drops some; anti-entropy repairs
#                     them, in messages of at most 4 MiB)
#
# --remote-backends: a second emulated node runs bench_remote_node (the
# agent's own cluster layer with a stand-in network manager) instead of
# weftd; it joins node 1's swarm over the underlay and publishes, as its
# own table entries, N vip services on node 1's network bench-net
# (10.96.0.0/15) and M endpoints of it per service, as task endpoints of
# another node reach an agent. Node 1's weftd programs them (neighbour and
# FDB entries on the VXLAN device, the load balancer's maps), then
# bench_ct_fill writes CONNTRACK established flows into its pinned
# conntrack map. Prints weftd's memory after each step, checks what it
# programmed (service inspect of three services, the maps' fill from
# /metrics, neighbour/FDB entries and the namespace's gc_thresh), and its
# memory again after those reads.
#
# Prints weftd's VmRSS / VmHWM (with RssAnon: heap; RssFile: mapped files
# and the mapped part of the BPF Maglev pool), the bytes of the agent's
# pinned BPF maps (bpftool bytes_memlock: kernel memory, in no RSS), and
# VmRSS against the 150 MB target.
#
# Without --remote-backends no backends are attached (10 000 x 10 would be
# 100 000 veths): each service with backends adds its Maglev table (1021
# slots x 8 bytes at 10 backends) to the mapped pool.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export WEFT_SRC=${WEFT_SRC:-$(cd "$here/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

count=2000
clients=1
preload=0
max_services=16384
remote_backends=0
remote_services=10000
conntrack=1000000
rate=300
while (($#)); do
  case "$1" in
    -n) count=$2; shift 2 ;;
    -j) clients=$2; shift 2 ;;
    --preload) preload=$2; shift 2 ;;
    --max-services) max_services=$2; shift 2 ;;
    --remote-backends) remote_backends=$2; shift 2 ;;
    --remote-services) remote_services=$2; shift 2 ;;
    --conntrack) conntrack=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    -h|--help) sed -n '2,54p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=scripts/lib/bench_prepare.sh
source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
if ((remote_backends > 0)); then
  bench_prepare weftd weft bench_remote_node bench_ct_fill ||
    { echo "run.sh: cannot build weftd/weft/bench_remote_node/bench_ct_fill" >&2; exit 1; }
else
  bench_prepare weftd weft || { echo "run.sh: cannot build weftd/weft" >&2; exit 1; }
fi

export TB_QUIET=1 TB_LOG_LEVEL=${TB_LOG_LEVEL:-warn}
export TB_WEFTD_ARGS="--lb-backend ebpf --lb-max-services $max_services"
if ((remote_backends > 0)); then
  # Room for every backend and flow (anti-entropy goes in messages of at
  # most 4 MiB, so the default --max-stream-size does).
  # Slow failure detection (probes every 5 s, 3 s to answer, suspicion x60):
  # with two members a suspect is declared dead after 4 s without peers to
  # confirm it (Lifeguard's minimum), and while ~100 000 entries arrive the
  # agent's gossip thread stalls for longer than that; a dead remote node's
  # endpoints are withdrawn, and when it is back it republishes them all
  # at once. Memory is not what these change.
  TB_WEFTD_ARGS+=" --lb-max-backends 131072 --lb-conntrack-entries 1048576"
  TB_WEFTD_ARGS+=" --probe-interval 5s --probe-timeout 3s --suspicion-mult 60"
fi
fake_pid=
stop_fake() {
  if [[ -n $fake_pid ]]; then
    kill "$fake_pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$fake_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$fake_pid" 2>/dev/null || true
    wait "$fake_pid" 2>/dev/null || true
    fake_pid=
  fi
}
testbed_install_traps
trap 'stop_fake; testbed_down' EXIT
if ((remote_backends > 0)); then
  testbed_up -n 2
  tb_agent_stop 2  # node 2 is bench_remote_node's
else
  testbed_up -n 1
fi

rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$(tb_agent_pid 1)/status"; }
# The agent's own maps: those pinned in its pin dir (other agents' maps on
# the machine are not its memory).
bpf_map_bytes() {
  local total=0 pin bytes
  while IFS= read -r pin; do
    bytes=$(bpftool -j map show pinned "$pin" 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin).get("bytes_memlock", 0))' 2>/dev/null) || bytes=0
    total=$((total + ${bytes:-0}))
  done < <(find "$(tb_pin_dir 1)" -type f 2>/dev/null)
  echo "$total"
}
memline() {
  local vmrss
  vmrss=$(rss VmRSS)
  echo "VmRSS $vmrss kB (anon $(rss RssAnon), file $(rss RssFile)), VmHWM $(rss VmHWM) kB;" \
    "BPF maps $(($(bpf_map_bytes) / 1024)) kB;" \
    "VmRSS / 150 MB target: $(awk -v r="$vmrss" 'BEGIN { printf "%.2f", r / 1024 / 150 }')"
}
echo "weftd idle: $(memline)"

if ((remote_backends > 0)); then
  total=$((remote_services * remote_backends))
  state=$(tb_state_dir 1)
  tb_weft 1 swarm init >/dev/null
  token=$(tb_weft 1 swarm join-token | grep -o 'WEFT-[^ ]*')
  tb_weft 1 network create -d overlay --subnet 10.96.0.0/15 bench-net >/dev/null
  net_id=$(tb_weft 1 network inspect bench-net | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Id"])')
  netns_file=$state/netns/${net_id:0:12}
  echo "weftd in a swarm, network bench-net (10.96.0.0/15): $(memline)"
  fake_dir=$(tb_node_dir 2)/fake
  mkdir -p "$fake_dir"
  start=$(date +%s.%N)
  nsenter --net="/run/netns/$(tb_ns 2)" -- "$WEFT_BIN/bench_remote_node" \
    --node-name fake2 --advertise "$(tb_addr 2)" --join "$(tb_addr 1):7946" --token "$token" \
    --network-id "$net_id" --subnet 10.96.0.0/15 --state-dir "$fake_dir/state" \
    --services "$remote_services" --backends "$remote_backends" --rate "$rate" --done-file "$fake_dir/done" \
    >"$fake_dir/out.log" 2>&1 &
  fake_pid=$!
  # Everything programmed: every backend has a load-balancer id (written
  # before the maps use them) and a neighbour entry on the VXLAN device.
  lb_backends() {
    python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["backends"]))' "$state/lb/ids.json" 2>/dev/null || echo 0
  }
  neighbours() { nsenter --net="$netns_file" ip -4 neigh show nud permanent 2>/dev/null | grep -c ' dev wvx' || true; }
  n=0 neigh=0
  for _ in $(seq 1200); do
    kill -0 "$fake_pid" 2>/dev/null || { echo "bench_remote_node died:" >&2; cat "$fake_dir/out.log" >&2; exit 1; }
    if [[ -f $fake_dir/done ]]; then
      n=$(lb_backends)
      neigh=$(neighbours)
      ((n >= total && neigh >= total)) && break
    fi
    sleep 1
  done
  sed 's/^/  /' "$fake_dir/out.log"
  echo "programmed: $n load-balancer backend ids, $neigh permanent neighbour entries on the VXLAN device, in" \
    "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s from the remote node's start"
  sleep 6  # the last apply's map writes, and the heap trim 2 s after
  echo "weftd with $remote_services services x $remote_backends remote backends: $(memline)"
  nsenter --net="/run/netns/$(tb_ns 1)" -- "$WEFT_BIN/bench_ct_fill" --pin-dir "$(tb_pin_dir 1)" \
    --subnet 10.96.0.0/15 --entries "$conntrack" --services "$remote_services" --backends "$remote_backends"
  sleep 12  # a conntrack collection (every 10 s) walks the map
  echo "weftd with $remote_services x $remote_backends + $conntrack conntrack entries (steady): $(memline)"
  # What the agent programmed, read after the measurement (these reads
  # cost the agent memory of their own: see the last line).
  for s in svc0 "svc$((remote_services / 2))" "svc$((remote_services - 1))"; do
    tb_weft 1 service inspect "$s" |
      python3 -c 'import json,sys
d = json.load(sys.stdin)[0]; b = d.get("Backends", [])
print("  service inspect %s: VIP %s, %d backends (%d active, on %s)" % (d["Spec"]["Name"],
      d["Endpoint"]["VirtualIPs"][0]["Addr"], len(b), sum(1 for x in b if x.get("State") == "active"),
      ", ".join(sorted({x.get("Node", "?") for x in b}))))'
  done
  tb_exec 1 curl -s "$(tb_metrics_url 1)" | grep '^weft_bpf_map_pressure\|^weft_table_entries\|^weft_services ' | sed 's/^/  \/metrics: /'
  echo "  kernel, in the network's namespace: $(neighbours) permanent neighbour entries," \
    "$(nsenter --net="$netns_file" bridge fdb show 2>/dev/null | grep -c 'dst ') FDB entries with a remote VTEP;" \
    "(kernel $(uname -r); the ARP table's gc_thresh1/2/3, global to all namespaces: $(cat /proc/sys/net/ipv4/neigh/default/gc_thresh{1,2,3} | tr '\n' ' ' | sed 's/ $//');" \
    "permanent entries are not counted against them)"
  echo "weftd after those reads: $(memline)"
  echo "state files: state.json $(stat -c %s "$state/state.json") B, lb/ids.json $(stat -c %s "$state/lb/ids.json") B," \
    "cluster/ $(du -sb "$state/cluster" | cut -f1) B"
  exit 0
fi

tb_weft 1 network create -d overlay --subnet 10.96.0.0/16 bench-net >/dev/null

python3 - "$(tb_sock 1)" "$count" "$clients" <<'PY'
import http.client, json, socket, sys, threading, time

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("weft")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

path, count, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times = [0.0] * count  # by service index: creation order, near enough
errors = []

def client(k):
    conn = UnixConnection(path)
    for i in range(k, count, clients):
        body = json.dumps({"Name": f"svc{i}", "TaskTemplate": {"Networks": [{"Target": "bench-net"}]}})
        t = time.perf_counter()
        conn.request("POST", "/services/create", body, {"Content-Type": "application/json"})
        r = conn.getresponse(); r.read()
        if r.status != 201:
            errors.append(f"create {i}: HTTP {r.status}")
            return
        times[i] = time.perf_counter() - t

start = time.perf_counter()
threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
total = time.perf_counter() - start
if errors:
    sys.exit(errors[0])
last = times[-100:]
s = sorted(times)
print(f"{count} service creates, {clients} client(s): {total:.1f} s ({count / total:.0f}/s), "
      f"latency mean {1000 * sum(times) / count:.2f} ms, p50 {1000 * s[len(s) // 2]:.2f} ms, "
      f"p99 {1000 * s[int(len(s) * 0.99)]:.2f} ms, last 100 mean {1000 * sum(last) / len(last):.2f} ms")
PY
sleep 4  # the driver applies the last changes, then (2 s quiet) trims the heap
echo "weftd with $count services: $(memline)"
state=$(tb_state_dir 1)
if ((preload > count)); then
  tb_agent_stop 1
  python3 - "$state" "$preload" <<'PY'
import glob, hashlib, ipaddress, json, os, sys
state, total = sys.argv[1], int(sys.argv[2])
def load(name):
    with open(os.path.join(state, name)) as f: return json.load(f)
def store(path, doc):
    tmp = path + ".preload"
    with open(tmp, "w") as f: json.dump(doc, f, separators=(",", ":"))
    os.replace(tmp, path)
# One file a service (services/<id>.json); the VIP reservations are in
# state.json and in the journal of its generation (reservations.journal).
services = [load(p) for p in glob.glob(os.path.join(state, "services", "*.json"))]
net_state = load("state.json")
reserved = {(r["network_id"], r["ip"]) for r in net_state.get("reservations", [])}
try:
    with open(os.path.join(state, "reservations.journal")) as f:
        lines = [json.loads(l) for l in f.read().splitlines()]
    if lines and lines[0].get("generation") == net_state.get("reservation_journal", 0):
        for op in lines[1:]:
            key = (op["network_id"], op["ip"])
            if op["op"] == "+": reserved.add(key)
            else: reserved.discard(key)
except FileNotFoundError:
    pass
template = services[0]
network_id = template["networks"][0]
subnet = ipaddress.ip_network(next(n["subnet"] for n in net_state["networks"] if n["id"] == network_id))
gateway = next(n["gateway"] for n in net_state["networks"] if n["id"] == network_id)
taken = {ip for (_, ip) in reserved} | {gateway}
free = (str(a) for a in subnet.hosts() if str(a) not in taken)
names = {s["name"] for s in services}
net_state.setdefault("reservations", [])
i, count = 0, len(services)
added = []
while count < total:
    name = f"svc{i}"
    i += 1
    if name in names: continue
    sid = hashlib.sha256(f"bench-preload-{name}".encode()).hexdigest()
    addr = next(free)
    added.append(dict(template, id=sid, name=name,
                      vips=[dict(template["vips"][0], addr=addr, network_id=network_id)]))
    net_state["reservations"].append({"ip": addr, "network_id": network_id, "owner": f"service:{sid}"})
    count += 1
# Reservations before the services that name them, as a create writes them.
store(os.path.join(state, "state.json"), net_state)
for s in added:
    store(os.path.join(state, "services", s["id"] + ".json"), s)
PY
  start=$(date +%s.%N)
  tb_agent_start 1
  tb_agent_wait_ready 1
  # Ids are written before the maps use them: all there, then programmed.
  for _ in $(seq 600); do
    n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["services"]))' "$state/lb/ids.json" 2>/dev/null || echo 0)
    ((n >= preload)) && break
    sleep 0.5
  done
  sleep 4  # the last apply's map writes, and the heap trim 2 s after
  echo "preloaded to $preload services: agent ready and load balancer ids for $n in" \
    "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s - 4 }') s"
  echo "weftd with $preload services (after a restart): $(memline)"
  tb_weft 1 service ls | awk 'NR > 1' | wc -l | sed 's/^/services listed: /'
fi
echo "state files: services/ $(du -sb "$state/services" 2>/dev/null | cut -f1 || echo '?') B," \
  "reservations.journal $(stat -c %s "$state/reservations.journal" 2>/dev/null || echo '?') B," \
  "state.json $(stat -c %s "$state/state.json" 2>/dev/null || echo '?') B," \
  "lb/ids.json $(stat -c %s "$state/lb/ids.json" 2>/dev/null || echo '?') B"
