#!/usr/bin/env bash
# Bad requests: each must fail with a message on stderr and a non-zero exit
# status, and leave nothing behind: no new links in the node, container or
# per-network namespaces, no new per-network namespace files or mounts, state
# file(s) and `ls` output unchanged.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

testbed_install_traps
testbed_up -n 1 || { echo "FAIL - test-bed with one node did not come up"; exit 1; }
P=$TESTBED_PREFIX
NODE_NS=$(tb_ns 1)
STATE=$(tb_state_dir 1)
SOCK=$(tb_sock 1)

# Everything a failed request could leave behind, as text.
snapshot() {
  local f ns
  echo "## namespaces"
  ip netns list | awk '{print $1}' | grep "^$P" | sort
  echo "## node links"
  tb_links "$NODE_NS"
  for ns in $(ip netns list | awk '{print $1}' | grep "^${P}c" | sort); do
    echo "## links of $ns"
    tb_links "$ns"
    ip -n "$ns" -o -4 addr show | awk '{print $2, $4}'
  done
  echo "## per-network namespaces"
  for f in $(tb_network_netns_files 1); do
    echo "# $(basename "$f")"
    tb_links "$f"
  done
  echo "## mounts under the state dir"
  awk -v d="$STATE/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort
  echo "## state files"
  (cd "$STATE" && find . -path ./netns -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum)
  echo "## network ls"
  tb_weft 1 network ls --format json | tb_json 'sorted(d, key=lambda x: x["Id"])'
  echo "## endpoint ls"
  tb_weft 1 endpoint ls --format json | tb_json 'sorted(d, key=lambda x: x["Id"])'
}

BEFORE=""
resnap() { BEFORE=$(snapshot); }

# expect_fail DESC REGEX CMD...: CMD exits non-zero, says something matching
# REGEX (case-insensitive) on stderr, and the snapshot is unchanged.
expect_fail() {
  local desc=$1 regex=$2; shift 2
  local out err rc=0 after
  out=$(mktemp) err=$(mktemp)
  "$@" >"$out" 2>"$err" || rc=$?
  if ((rc == 0)); then
    not_ok "$desc: exits non-zero" "command: $*" "exit status 0, stdout: $(head -c 500 "$out")"
  else
    ok "$desc: exits non-zero ($rc)"
  fi
  if [[ ! -s $err ]]; then
    not_ok "$desc: message on stderr" "command: $*" "stderr empty; stdout: $(head -c 500 "$out")"
  else
    check_match "$desc: clear message on stderr ($(head -c 200 "$err" | tr '\n' ' '))" "$(cat "$err")" "$regex" || true
  fi
  after=$(snapshot)
  if [[ $after == "$BEFORE" ]]; then
    ok "$desc: nothing left behind"
  else
    not_ok "$desc: nothing left behind" "$(diff <(echo "$BEFORE") <(echo "$after") || true)"
    BEFORE=$after
  fi
  rm -f "$out" "$err"
}

W() { tb_weft 1 "$@"; }

# --- fixtures: one network with one endpoint, one container not attached ---------
id=$(W network create -d overlay net-a) || true
require "fixture: network net-a created" grep -qE '^[0-9a-f]{12,64}$' <<<"$id"
c1=$(tb_netns_add c1)
c2=$(tb_netns_add c2)
ip1=$(W endpoint attach net-a --netns "$c1") || true
require_eq "fixture: c1 attached to net-a" "$ip1" 10.0.0.2
resnap

# --- network create ----------------------------------------------------------------
expect_fail "subnet /33" 'subnet|cidr|prefix|/33' W network create -d overlay --subnet 10.0.0.0/33 bad1
expect_fail "subnet 'foo'" 'subnet|cidr|foo' W network create -d overlay --subnet foo bad2
expect_fail "subnet with host bits set" 'host|subnet|cidr|10\.0\.0\.1/24' W network create -d overlay --subnet 10.0.0.1/24 bad3
expect_fail "subnet overlapping net-a" 'overlap' W network create -d overlay --subnet 10.0.0.0/16 bad4

check "create net-o1 10.5.0.0/16" W network create -d overlay --subnet 10.5.0.0/16 net-o1
resnap
expect_fail "subnet 10.5.3.0/24 overlapping 10.5.0.0/16" 'overlap' W network create -d overlay --subnet 10.5.3.0/24 net-o2
expect_fail "gateway outside the subnet" 'gateway' W network create -d overlay --subnet 10.6.0.0/24 --gateway 10.7.0.1 bad5
expect_fail "gateway that is not an address" 'gateway|address|invalid' W network create -d overlay --subnet 10.6.0.0/24 --gateway nope bad6
expect_fail "duplicate network name" 'exist|duplicate|already|conflict|in use' W network create -d overlay net-a
expect_fail "unknown driver" 'driver' W network create -d nosuchdriver bad7

# --- endpoints -------------------------------------------------------------------------
expect_fail "attach: unknown namespace name" 'netns|namespace|no such|not found|not exist|does not' \
  W endpoint attach net-a --netns "${P}nosuch"
expect_fail "attach: unknown namespace path" 'netns|namespace|no such|not found|not exist|does not' \
  W endpoint attach net-a --netns /proc/2147483000/ns/net
expect_fail "attach: unknown network" 'network|not found|no such' \
  W endpoint attach no-such-net --netns "$c2"
expect_fail "attach: --ip outside the subnet" 'subnet|range|outside|not in' \
  W endpoint attach net-a --netns "$c2" --ip 10.9.9.9
expect_fail "attach: --ip already in use" 'in use|already|allocated|taken|conflict' \
  W endpoint attach net-a --netns "$c2" --ip 10.0.0.2
expect_fail "attach: --ip that is not an address" 'ip|address|invalid' \
  W endpoint attach net-a --netns "$c2" --ip 10.0.0.300
expect_fail "attach: namespace already attached to the network" 'already|attached|connected|exist|conflict' \
  W endpoint attach net-a --netns "$c1"
expect_fail "detach: namespace not attached" 'not (found|attached|connected)|no (such )?endpoint|unknown' \
  W endpoint detach net-a --netns "$c2"
expect_fail "detach: unknown network" 'network|not found|no such' \
  W endpoint detach no-such-net --netns "$c1"

# --- network rm ----------------------------------------------------------------------
expect_fail "network rm with an endpoint attached" 'endpoint|active|in use|attached|connected' \
  W network rm net-a
expect_fail "network rm of an unknown network" 'not found|no such|unknown' \
  W network rm no-such-net

# --- transport ------------------------------------------------------------------------
expect_fail "agent not running" 'connect|no such file|not running|refused|nonexistent' \
  timeout 20 "$WEFT_BIN/weft" --host unix:///nonexistent.sock network ls

# Raw HTTP with bodies that are not (valid) JSON: 400 with {"message": ...}.
http_post() {  # PATH BODY -> prints "STATUS BODY"
  python3 - "$SOCK" "$1" "$2" <<'EOF'
import socket, sys
sock, path, body = sys.argv[1], sys.argv[2], sys.argv[3].encode()
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sock)
s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: weftd\r\nContent-Type: application/json\r\n"
          b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, _, payload = data.partition(b"\r\n\r\n")
print(head.split(b" ")[1].decode(), payload.decode(errors="replace"))
EOF
}
expect_400_json() {
  local desc=$1 path=$2 body=$3 reply status payload
  reply=$(http_post "$path" "$body" 2>&1) || true
  status=${reply%% *}
  payload=${reply#* }
  check_eq "$desc: HTTP 400" "$status" 400 || true
  if python3 -c 'import json,sys; m=json.loads(sys.argv[1])["message"]; assert isinstance(m,str) and m' "$payload" 2>/dev/null; then
    ok "$desc: JSON body with a message ($payload)"
  else
    not_ok "$desc: JSON body with a message" "body: ${payload:0:500}"
  fi
  local after
  after=$(snapshot)
  if [[ $after == "$BEFORE" ]]; then ok "$desc: nothing left behind"; else
    not_ok "$desc: nothing left behind" "$(diff <(echo "$BEFORE") <(echo "$after") || true)"
    BEFORE=$after
  fi
}
expect_400_json "create with a body that is not JSON" /networks/create 'this is not json'
expect_400_json "create with truncated JSON" /networks/create '{"Name": "x", "Driver": '
expect_400_json "create with Name of the wrong type" /networks/create '{"Name": 5}'
expect_400_json "connect with a body that is not JSON" /networks/net-a/connect '<xml/>'
if command -v curl >/dev/null 2>&1; then
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --unix-socket "$SOCK" \
    -X POST -H 'Content-Type: application/json' --data 'not json' http://weftd/networks/create || true)
  check_eq "curl: create with a body that is not JSON: HTTP 400" "$code" 400
fi

# --- the failed attempts leaked nothing: the next address is still 10.0.0.3 --------
check_eq "next attach gets 10.0.0.3 (no address leaked by the failures)" \
  "$(W endpoint attach net-a --netns "$c2" 2>&1)" 10.0.0.3
check "the agent is still alive" _tb_agent_answers 1

tb_summary
