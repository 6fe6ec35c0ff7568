#!/usr/bin/env bash
# The live page (/ui) in a real browser (issue 12): three emulated nodes run
# the demo's redis service (4 redis-server tasks); Debian's chromium, headless
# inside node 1's namespace, opens /ui on node 1's observability listener (the
# test-bed runs every agent with --metrics-addr on its underlay address, port
# TB_METRICS_PORT). Through the DevTools protocol
# (tests/integration/ui_cdp.py) the test reads the DOM: the three nodes, the
# four redis tasks and the VIP; then a node's agent is killed (and its
# underlay taken down, as service_tasks.sh does) and, without a reload (a
# marker set in the page survives), the page shows that node Down and the
# four tasks running on the survivors, pushed over server-sent events.
# A screenshot goes to ${WEFT_ARTIFACTS:-build/artifacts}/ui_browser.png.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [[ -z $CHROMIUM ]]; then
  echo "SKIP - chromium is not installed (apt-get install chromium)"
  exit 0
fi
if ! /usr/bin/python3 -c 'import websocket' 2>/dev/null; then
  echo "SKIP - python3-websocket is not installed (apt-get install python3-websocket)"
  exit 0
fi
WEFT_BIN=${WEFT_BIN:-$WEFT_SRC/build/bin}
if ! "$WEFT_BIN/weftd" --help 2>&1 | grep -q -- --metrics-addr; then
  echo "SKIP - this weftd has no --metrics-addr (the observability listener is not in this tree)"
  exit 0
fi
ARTIFACTS=${WEFT_ARTIFACTS:-$WEFT_SRC/build/artifacts}
mkdir -p "$ARTIFACTS"
CDP=(/usr/bin/python3 "$WEFT_SRC/tests/integration/ui_cdp.py" 9222)

export TB_METRICS=1
browser_pid=""
cleanup() {
  local rc=$?
  # chromium runs in a session of its own (setsid): its whole group goes.
  [[ -n $browser_pid ]] && kill -KILL -- "-$browser_pid" 2>/dev/null || true
  testbed_down
  return "$rc"
}
testbed_install_traps
trap cleanup EXIT
set +e
testbed_up -n 3 || { echo "FAIL - test-bed with three nodes did not come up"; exit 1; }
ns1=/run/netns/$(tb_ns 1)
UI=http://$(tb_addr 1):$TB_METRICS_PORT
in_node1() { nsenter --net="$ns1" -- "$@"; }

init_out=$(tb_weft 1 swarm init)
token=$(grep -o 'WEFT-1-[A-Za-z0-9_-]*' <<<"$init_out" | head -1)
require "node 2 joins" tb_weft 2 swarm join --token "$token" "$(tb_addr 1):7946"
require "node 3 joins" tb_weft 3 swarm join --token "$token" "$(tb_addr 1):7946"
require "network create" tb_weft 1 network create -d overlay demo
require "service create redis -- redis-server" tb_weft 1 service create --name redis --network demo -- \
  redis-server --protected-mode no --port 6379 --save '' --appendonly no
require "service update --replicas 4" tb_weft 1 service update --replicas 4 redis
replicas_are() { [[ $(tb_weft 1 service ls | awk '$2 == "redis" {print $NF}') == "$1" ]]; }
require "4 tasks run (REPLICAS 4/4)" wait_for 60 replicas_are 4/4
VIP=$(tb_weft 1 service inspect redis | tb_json 'd[0]["Endpoint"]["VirtualIPs"][0]["Addr"].split("/")[0]')
echo "VIP $VIP"

# --- the feeds, without a browser ---------------------------------------------------
state() { in_node1 curl -s --max-time 5 $UI/api/v1/state; }
three_ready() { [[ $(state | tb_json 'len([n for n in d["nodes"] if n["state"] == "Ready"])') == 3 ]]; }
check "/api/v1/state shows the three nodes Ready" wait_for 30 three_ready
four_running() { [[ $(state | tb_json 'len([t for t in d["tasks"] if t["state"] == "running"])') == 4 ]]; }
check "/api/v1/state shows four running tasks" wait_for 30 four_running
events=$(in_node1 curl -s -N --max-time 3 $UI/api/v1/events)
check_match "/api/v1/events streams the state at once" "$events" '^event: state'
top=$(tb_weft 1 top --once)
echo "$top"
check_match "weft top --once shows the VIP" "$top" "redis +vip +$VIP"
check_match "weft top --once shows 3/3 nodes and 4/4 tasks" "$top" '3/3 nodes ready, 4/4 tasks running'

# --- the page in chromium --------------------------------------------------------------
profile=$(mktemp -d "$TESTBED_RUN_DIR/chromium.XXXXXX")
setsid nsenter --net="$ns1" -- "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --no-first-run \
  --disable-extensions --disable-background-networking --user-data-dir="$profile" \
  --remote-debugging-port=9222 --remote-allow-origins='*' --window-size=1400,900 \
  "$UI/ui" >"$TESTBED_RUN_DIR/chromium.log" 2>&1 </dev/null &
browser_pid=$!

js_nodes='(() => { const n = [...document.querySelectorAll("[data-node]")].map(e => e.dataset.node + ":" + e.dataset.state); return n.length == 3 && n.every(x => x.endsWith(":ready")) ? n.sort().join(" ") : false; })()'
check "the page shows the three nodes Ready" in_node1 "${CDP[@]}" wait 45 "$js_nodes"
js_tasks='(() => { const t = [...document.querySelectorAll("[data-task^=\"redis.\"][data-state=running]")].map(e => e.dataset.task); return new Set(t).size == 4 ? t.sort().join(" ") : false; })()'
check "the page shows the four redis tasks" in_node1 "${CDP[@]}" wait 30 "$js_tasks"
check "the page shows the VIP $VIP" in_node1 "${CDP[@]}" wait 10 "document.querySelector('[data-vip=\"$VIP\"]') !== null"
check "the page is fed by server-sent events" in_node1 "${CDP[@]}" wait 10 \
  'document.getElementById("live").dataset.source == "sse" && Number(document.body.dataset.sseUpdates) >= 1'
# A reload would lose this.
in_node1 "${CDP[@]}" eval 'window.__weftNoReload = 42' >/dev/null
sse_before=$(in_node1 "${CDP[@]}" eval 'Number(document.body.dataset.sseUpdates)')

# --- a node dies -------------------------------------------------------------------------
victim=$(state | tb_json '[t["node"] for t in d["tasks"] if t["node"] != "node1"][0]')
vi=${victim#node}
echo "killing $victim: agent kill -9, underlay down"
tb_agent_stop "$vi" --kill
ip -n "$(tb_ns "$vi")" link set eth0 down

js_down="(() => { const e = document.querySelector('[data-node=\"$victim\"]'); return e !== null && e.dataset.state == 'down' && e.textContent.includes('Down'); })()"
check "the page shows $victim Down without a reload" in_node1 "${CDP[@]}" wait 90 "$js_down"
js_moved="(() => { const all = [...document.querySelectorAll('[data-task^=\"redis.\"][data-state=running]')]; if (all.some(e => e.dataset.taskNode == '$victim')) return false; const t = all.filter(e => e.closest('[data-node]').dataset.state == 'ready').map(e => e.dataset.task); return new Set(t).size == 4 ? t.sort().join(' ') : false; })()"
check "the page shows the four tasks running on the survivors, none on $victim" in_node1 "${CDP[@]}" wait 90 "$js_moved"
check_eq "the page was not reloaded" "$(in_node1 "${CDP[@]}" eval 'window.__weftNoReload')" 42
sse_after=$(in_node1 "${CDP[@]}" eval 'Number(document.body.dataset.sseUpdates)')
check "the changes came over server-sent events ($sse_before -> $sse_after updates)" test "$sse_after" -gt "$sse_before"
js_event="document.querySelector('#events li[data-event-kind=\"node-down\"]') !== null"
check "the events list has the node-down" in_node1 "${CDP[@]}" wait 10 "$js_event"

check "screenshot written to $ARTIFACTS/ui_browser.png" in_node1 "${CDP[@]}" screenshot "$ARTIFACTS/ui_browser.png"
test -s "$ARTIFACTS/ui_browser.png" || not_ok "screenshot is empty"

tb_summary
