#!/usr/bin/env bash
# The agent with many services: time per `service create` through the API
# and weftd's RSS (VmRSS, VmHWM) idle and with COUNT services, each with a
# VIP programmed into the eBPF load balancer, on one emulated node.
#
#   bench/services/run.sh [-n COUNT]     (default 2000)
#
# Backends are not attached here (10 000 x 10 would be 100 000 veths):
# bench/lb/bench_lb_mem measures the load balancer's memory with 10 000
# services x 10 backends and 1 000 000 conntrack entries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export WEFT_SRC=${WEFT_SRC:-$(cd "$here/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

count=2000
while (($#)); do
  case "$1" in
    -n) count=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=scripts/lib/bench_prepare.sh
source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
bench_prepare weftd weft || { echo "run.sh: cannot build weftd/weft" >&2; exit 1; }

export TB_QUIET=1 TB_LOG_LEVEL=${TB_LOG_LEVEL:-warn}
export TB_WEFTD_ARGS="--lb-backend ebpf --lb-max-services 16384"
testbed_install_traps
testbed_up -n 1

rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$(tb_agent_pid 1)/status"; }
echo "weftd idle: VmRSS $(rss VmRSS) kB, VmHWM $(rss VmHWM) kB"
tb_weft 1 network create -d overlay --subnet 10.96.0.0/16 bench-net >/dev/null

python3 - "$(tb_sock 1)" "$count" <<'PY'
import http.client, json, socket, sys, time

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("weft")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

conn = UnixConnection(sys.argv[1])
count = int(sys.argv[2])
times = []
start = time.perf_counter()
for i in range(count):
    body = json.dumps({"Name": f"svc{i}", "TaskTemplate": {"Networks": [{"Target": "bench-net"}]}})
    t = time.perf_counter()
    conn.request("POST", "/services/create", body, {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    if r.status != 201:
        sys.exit(f"create {i}: HTTP {r.status}")
    times.append(time.perf_counter() - t)
total = time.perf_counter() - start
times.sort()
print(f"{count} service creates: {total:.1f} s, mean {1000 * total / count:.2f} ms, "
      f"p50 {1000 * times[len(times) // 2]:.2f} ms, p99 {1000 * times[int(len(times) * 0.99)]:.2f} ms, "
      f"last 100 mean {1000 * sum(times[-100:]) / 100:.2f} ms")
PY
sleep 2  # the load balancer driver applies the last changes
echo "weftd with $count services: VmRSS $(rss VmRSS) kB, VmHWM $(rss VmHWM) kB"
echo "services.json: $(stat -c %s "$(tb_state_dir 1)/services.json" 2>/dev/null || echo '?') bytes"
