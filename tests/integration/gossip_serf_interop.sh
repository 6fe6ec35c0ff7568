#!/usr/bin/env bash
# weft gossip <-> serf interop: 2 weft nodes (weft-gossip-node) and 2 real
# serf agents on loopback with a shared key. Checks that everyone agrees on
# membership, that crashes are detected both ways, that a graceful weft leave
# shows as "left" in serf, that a node with the wrong key and a forged
# plaintext `alive` packet change nothing.
#
# Env: WEFT_BIN (dir with weft-gossip-node), WEFT_SRC. Needs `serf` and
# python3 (stdlib only). Needs no root. KEEP_WORK=1 keeps logs.
set -euo pipefail

WEFT_BIN=${WEFT_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
NODE_BIN="$WEFT_BIN/weft-gossip-node"
DETECT_TIMEOUT=${DETECT_TIMEOUT:-10}   # seconds allowed for crash detection (LAN timings: ~5-7 s)

if ! command -v serf >/dev/null 2>&1; then
  echo "SKIP: serf is not installed"
  exit 0
fi
if [[ ! -x "$NODE_BIN" ]]; then
  echo "FAIL: $NODE_BIN not found (build the weft-gossip-node target)" >&2
  exit 1
fi

WORK=$(mktemp -d /tmp/weft-gossip-interop.XXXXXX)
declare -A PID=()

cleanup() {
  local rc=$?
  for name in "${!PID[@]}"; do
    kill -9 "${PID[$name]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ $rc -ne 0 || -n "${KEEP_WORK:-}" ]]; then
    echo "logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%T)] $*"; }

dump_logs() {
  for f in "$WORK"/*.log; do
    echo "----- $f (last 30 lines)"
    tail -n 30 "$f" || true
  done
}

fail() {
  echo "FAIL: $*" >&2
  dump_logs >&2
  exit 1
}

# Ports free for both TCP and UDP (memberlist uses the same number for both).
read -r -a PORTS <<<"$(python3 - <<'PY'
import socket
ports = []
held = []
while len(ports) < 12:
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        t.close(); u.close(); continue
    held += [t, u]
    ports.append(p)
print(" ".join(map(str, ports)))
PY
)"
S1=${PORTS[0]} S1_RPC=${PORTS[1]} S2=${PORTS[2]} S2_RPC=${PORTS[3]}
W1=${PORTS[4]} W2=${PORTS[5]} W3=${PORTS[6]} S3=${PORTS[7]} S3_RPC=${PORTS[8]}

KEY=$(python3 -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())')
WRONG_KEY=$(python3 -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())')

start_serf() {  # name port rpc [join]
  local name=$1 port=$2 rpc=$3 join=${4:-}
  local args=(agent -node "$name" -bind "127.0.0.1:$port" -rpc-addr "127.0.0.1:$rpc" -encrypt "$KEY" -log-level debug)
  [[ -n "$join" ]] && args+=(-join "$join")
  serf "${args[@]}" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
}

start_weft() {  # name port key [join]
  local name=$1 port=$2 key=$3 join=${4:-}
  local args=(--name "$name" --bind "127.0.0.1:$port" --key "$key" --members-file "$WORK/$name.json")
  [[ -n "$join" ]] && args+=(--join "$join")
  "$NODE_BIN" "${args[@]}" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
}

# Prints the state of `node` as seen by `observer`: alive/failed/left/dead/
# suspect/leaving..., or "absent".
state_seen_by() {  # observer node
  local observer=$1 node=$2
  case $observer in
    s3) serf members -rpc-addr "127.0.0.1:$S3_RPC" -format json 2>/dev/null | python3 -c "$PY_STATE" "$node" serf ;;
    s1) serf members -rpc-addr "127.0.0.1:$S1_RPC" -format json 2>/dev/null | python3 -c "$PY_STATE" "$node" serf ;;
    s2) serf members -rpc-addr "127.0.0.1:$S2_RPC" -format json 2>/dev/null | python3 -c "$PY_STATE" "$node" serf ;;
    *) python3 -c "$PY_STATE" "$node" weft <"$WORK/$observer.json" 2>/dev/null ;;
  esac
}
PY_STATE='
import json, sys
node, kind = sys.argv[1], sys.argv[2]
try:
    data = json.load(sys.stdin)
except Exception:
    print("unknown"); sys.exit(0)
for m in data.get("members", []):
    if m.get("name") == node:
        print(m.get("status") if kind == "serf" else m.get("state")); break
else:
    print("absent")
'

# wait_for SECONDS DESCRIPTION OBSERVER NODE STATE...: polls until the
# observer sees node in one of the states.
wait_for() {
  local timeout=$1 desc=$2 observer=$3 node=$4
  shift 4
  local start=$SECONDS state=""
  while (( SECONDS - start <= timeout )); do
    state=$(state_seen_by "$observer" "$node" || echo unknown)
    for want in "$@"; do
      if [[ "$state" == "$want" ]]; then
        log "ok: $desc ($observer sees $node $state after $((SECONDS - start))s)"
        return 0
      fi
    done
    sleep 0.5
  done
  fail "$desc: $observer sees $node as '$state' after ${timeout}s, wanted: $*"
}

# ---------------------------------------------------------------- cluster up
log "starting serf s1:$S1 s2:$S2, weft w1:$W1 w2:$W2 (work dir $WORK)"
start_serf s1 "$S1" "$S1_RPC"
sleep 1
start_serf s2 "$S2" "$S2_RPC" "127.0.0.1:$S1"
start_weft w1 "$W1" "$KEY" "127.0.0.1:$S1"
start_weft w2 "$W2" "$KEY" "127.0.0.1:$S2"

ALL=(s1 s2 w1 w2)
for observer in "${ALL[@]}"; do
  for node in "${ALL[@]}"; do
    wait_for 20 "convergence" "$observer" "$node" alive
  done
done
serf members -rpc-addr "127.0.0.1:$S1_RPC"

# ------------------------------------------------ forged plaintext alive
log "sending forged unencrypted alive packets for 'intruder'"
python3 - "$W1" "$S1" <<'PY'
import socket, struct, sys
def raw(b):
    b = b.encode() if isinstance(b, str) else b
    assert len(b) < 32
    return bytes([0xa0 | len(b)]) + b
body = bytes([0x86])                       # map of 6, keys sorted like go-msgpack
body += raw("Addr") + raw(bytes([127, 0, 0, 1]))
body += raw("Incarnation") + bytes([0x64])  # 100
body += raw("Meta") + bytes([0xc0])
body += raw("Node") + raw("intruder")
body += raw("Port") + bytes([0xcd]) + struct.pack(">H", 9)
body += raw("Vsn") + raw(bytes([1, 5, 2, 2, 5, 5]))
packet = bytes([4]) + body                # alive message type
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in map(int, sys.argv[1:]):
    for _ in range(3):
        s.sendto(packet, ("127.0.0.1", port))
PY
sleep 3
for observer in "${ALL[@]}"; do
  state=$(state_seen_by "$observer" intruder)
  [[ "$state" == "absent" ]] || fail "forged alive accepted: $observer sees intruder as $state"
done
grep -q "decrypt packet failed" "$WORK/w1.log" || fail "w1 did not report the undecryptable packet"
log "ok: forged plaintext alive ignored by everyone"

# ------------------------------------------------ wrong key stays out
log "starting w3 with the wrong key"
start_weft w3 "$W3" "$WRONG_KEY" "127.0.0.1:$S1"
sleep 5
for observer in "${ALL[@]}"; do
  state=$(state_seen_by "$observer" w3)
  [[ "$state" == "absent" ]] || fail "wrong-key node got in: $observer sees w3 as $state"
done
for node in "${ALL[@]}"; do
  state=$(state_seen_by w3 "$node")
  [[ "$state" == "absent" ]] || fail "wrong-key node learned about $node ($state)"
done
kill -9 "${PID[w3]}" 2>/dev/null || true
unset 'PID[w3]'
log "ok: node with the wrong key stayed out"

# ------------------------------------------------ crash of a weft node
# Crashes are tested while three other members are alive, so suspicion gets
# the confirmations Lifeguard needs to use its short (4 s) timeout.
log "kill -9 weft w2"
kill -9 "${PID[w2]}"
unset 'PID[w2]'
wait_for "$DETECT_TIMEOUT" "serf detects weft crash" s1 w2 failed
wait_for "$DETECT_TIMEOUT" "serf detects weft crash" s2 w2 failed
wait_for "$DETECT_TIMEOUT" "weft detects weft crash" w1 w2 dead

# ------------------------------------------------ crash of a serf agent
log "starting serf s3 so three observers remain when s2 crashes"
start_serf s3 "$S3" "$S3_RPC" "127.0.0.1:$S1"
for observer in s1 w1; do
  wait_for 20 "s3 joined" "$observer" s3 alive
done
log "kill -9 serf s2"
kill -9 "${PID[s2]}"
unset 'PID[s2]'
wait_for "$DETECT_TIMEOUT" "weft detects serf crash" w1 s2 dead
wait_for "$DETECT_TIMEOUT" "serf detects serf crash" s1 s2 failed

# ------------------------------------------------ graceful weft leave
log "SIGTERM weft w1 (graceful leave)"
kill -TERM "${PID[w1]}"
wait_for 15 "serf sees graceful weft leave" s1 w1 left
for _ in $(seq 1 20); do
  kill -0 "${PID[w1]}" 2>/dev/null || break
  sleep 0.5
done
kill -0 "${PID[w1]}" 2>/dev/null && fail "w1 did not exit after leaving"
unset 'PID[w1]'
grep -q "left the cluster (broadcast done)" "$WORK/w1.log" || fail "w1 did not finish its leave broadcast"

serf members -rpc-addr "127.0.0.1:$S1_RPC"
# Expected errors: the forged packets, the wrong-key node, and talking to the
# crashed members. Anything else means serf choked on something weft sent.
EXPECTED='Decrypt packet failed|No installed keys could decrypt|Failed fallback ping|Failed to send (ping|indirect ping|gossip)|Push/Pull with (s2|w2)|connection refused|i/o timeout'
if grep -E "\[ERR\]" "$WORK/s1.log" | grep -v -E "$EXPECTED"; then
  fail "serf s1 logged errors while talking to weft nodes"
fi
log "PASS"
