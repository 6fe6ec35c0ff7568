#!/usr/bin/env bash
# The agent with many services (issue 9, "memory": weftd under 150 MB): time
# per `service create` through the API and weftd's memory idle and with
# COUNT services, each with a VIP programmed into the eBPF load balancer, on
# one emulated node.
#
#   bench/services/run.sh [-n COUNT] [-j CLIENTS] [--preload TOTAL]
#                         [--max-services N]
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
#
# Prints weftd's VmRSS / VmHWM (with RssAnon: heap; RssFile: mapped files
# and the mapped part of the BPF Maglev pool), the bytes of the agent's
# pinned BPF maps (bpftool bytes_memlock: kernel memory, in no RSS), and
# VmRSS against the 150 MB target.
#
# Backends are not attached here (10 000 x 10 would be 100 000 veths): each
# service with backends adds its Maglev table (1021 slots x 8 bytes at 10
# backends) to the mapped pool; bench/lb/bench_lb_mem measures the load
# balancer with 10 000 services x 10 backends and 1 000 000 conntrack
# entries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export WEFT_SRC=${WEFT_SRC:-$(cd "$here/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

count=2000
clients=1
preload=0
max_services=16384
while (($#)); do
  case "$1" in
    -n) count=$2; shift 2 ;;
    -j) clients=$2; shift 2 ;;
    --preload) preload=$2; shift 2 ;;
    --max-services) max_services=$2; shift 2 ;;
    -h|--help) sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=scripts/lib/bench_prepare.sh
source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
bench_prepare weftd weft || { echo "run.sh: cannot build weftd/weft" >&2; exit 1; }

export TB_QUIET=1 TB_LOG_LEVEL=${TB_LOG_LEVEL:-warn}
export TB_WEFTD_ARGS="--lb-backend ebpf --lb-max-services $max_services"
testbed_install_traps
testbed_up -n 1

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
