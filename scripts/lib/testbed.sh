# shellcheck shell=bash
# weft test-bed: an emulated cluster of N nodes, each a network namespace with
# its own weftd, joined by an underlay "switch" (a bridge in its own
# namespace). Nothing is changed in the root network namespace.
#
# Use as a library:
#   source "$WEFT_SRC/scripts/lib/testbed.sh"
#   testbed_up -n 1            # sets TESTBED_* and NODE<i>_* variables
#   trap testbed_down EXIT     # or: testbed_install_traps
#   tb_weft 1 network create -d overlay net-test
#   tb_exec 1 ip -br link
#
# Layout for prefix P and run dir R (default /tmp/weft-testbed-P):
#   namespaces  Psw (switch, bridge br0), Pn1..PnN (nodes, eth0 = 192.0.2.(10+i)/24)
#   R/bpffs            bpffs mount, one pin dir per node (R/bpffs/n<i>)
#   R/n<i>/state       weftd --state-dir
#   R/n<i>/weftd.sock  weftd --api-socket
#   R/n<i>/weftd.log   weftd output
#   R/n<i>/weftd.pid   weftd pid
#   R/env              TESTBED_* and NODE<i>_* assignments (sourceable)
# Namespaces that tests create for containers must start with P too
# (tb_netns_add does that) so that testbed_down removes them.

# Guard against double sourcing.
if [[ -n ${_WEFT_TESTBED_SH:-} ]]; then return 0; fi
_WEFT_TESTBED_SH=1

TESTBED_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEFT_BIN=${WEFT_BIN:-$TESTBED_SRC/build/bin}
TB_READY_TIMEOUT=${TB_READY_TIMEOUT:-30}   # seconds to wait for an agent to answer
TB_CMD_TIMEOUT=${TB_CMD_TIMEOUT:-60}       # bound on one CLI call
TB_LOG_LEVEL=${TB_LOG_LEVEL:-debug}
TB_UNDERLAY_NET=${TB_UNDERLAY_NET:-192.0.2}  # /24, node i gets .(10+i)
TB_QUIET=${TB_QUIET:-0}
# Each agent serves /metrics on its underlay address, port TB_METRICS_PORT
# (weftd --metrics-addr); TB_METRICS=0 leaves it off.
TB_METRICS=${TB_METRICS:-1}
TB_METRICS_PORT=${TB_METRICS_PORT:-9323}

tb_log() { ((TB_QUIET)) || printf '[testbed] %s\n' "$*" >&2; }
tb_die() { printf '[testbed] error: %s\n' "$*" >&2; return 1; }

# wait_for TIMEOUT_SECONDS CMD [ARGS...]
# Runs CMD every 0.1 s (output discarded) until it succeeds; fails after
# TIMEOUT_SECONDS. CMD may be a shell function.
wait_for() {
  local timeout=$1; shift
  local now=${EPOCHREALTIME/./}
  local end=$((now + timeout * 1000000))
  while ! "$@" >/dev/null 2>&1; do
    now=${EPOCHREALTIME/./}
    ((now < end)) || return 1
    sleep 0.1
  done
}

# A short random prefix for namespace names: "wt" + 5 hex digits. Names
# built from it ("<P>sw", "<P>n12", "<P>c1") stay far below 15 characters.
tb_gen_prefix() {
  local hex
  hex=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
  printf 'wt%s' "${hex:0:5}"
}

_tb_require_root() {
  ((EUID == 0)) || tb_die "must run as root"
}

_tb_check_bins() {
  local b
  for b in weftd weft; do
    [[ -x $WEFT_BIN/$b ]] || tb_die "$WEFT_BIN/$b not found (build first: scripts/build, or set WEFT_BIN)" || return 1
  done
}

# --- accessors -------------------------------------------------------------
tb_ns() { printf '%sn%s' "$TESTBED_PREFIX" "$1"; }
tb_node_dir() { printf '%s/n%s' "$TESTBED_RUN_DIR" "$1"; }
tb_state_dir() { printf '%s/n%s/state' "$TESTBED_RUN_DIR" "$1"; }
tb_sock() { printf '%s/n%s/weftd.sock' "$TESTBED_RUN_DIR" "$1"; }
tb_host() { printf 'unix://%s/n%s/weftd.sock' "$TESTBED_RUN_DIR" "$1"; }
tb_log_file() { printf '%s/n%s/weftd.log' "$TESTBED_RUN_DIR" "$1"; }
tb_addr() { printf '%s.%s' "$TB_UNDERLAY_NET" "$((10 + $1))"; }
tb_pin_dir() { printf '%s/bpffs/n%s' "$TESTBED_RUN_DIR" "$1"; }
tb_agent_pid() { cat "$TESTBED_RUN_DIR/n$1/weftd.pid" 2>/dev/null; }

# tb_weft I ARGS...: the CLI against node I's agent (bounded in time).
tb_weft() {
  local i=$1; shift
  timeout "$TB_CMD_TIMEOUT" "$WEFT_BIN/weft" --host "$(tb_host "$i")" "$@"
}

# tb_exec I CMD...: CMD inside node I's network namespace, WEFT_HOST set.
tb_exec() {
  local i=$1; shift
  nsenter --net="/run/netns/$(tb_ns "$i")" -- \
    env WEFT_HOST="$(tb_host "$i")" PATH="$WEFT_BIN:$PATH" "$@"
}

# tb_netns_add NAME: creates namespace "<P>NAME" with lo up; prints its name.
tb_netns_add() {
  local name=$TESTBED_PREFIX$1
  ip netns add "$name" || return 1
  ip -n "$name" link set lo up || return 1
  printf '%s\n' "$name"
}

# tb_nsexec NAME CMD...: CMD in namespace NAME (a full name, e.g. "${P}c1").
tb_nsexec() {
  local ns=$1; shift
  ip netns exec "$ns" "$@"
}

# The per-network namespace files the agent of node I keeps in its state dir.
tb_network_netns_files() {
  local dir
  dir=$(tb_state_dir "$1")/netns
  [[ -d $dir ]] || return 0
  find "$dir" -mindepth 1 -maxdepth 1 ! -type d | sort
}

# --- agent lifecycle ---------------------------------------------------------
_tb_agent_alive() {
  local pid
  pid=$(tb_agent_pid "$1") || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

_tb_agent_answers() {
  timeout 5 "$WEFT_BIN/weft" --host "$(tb_host "$1")" network ls >/dev/null 2>&1
}

_tb_agent_ready() {
  _tb_agent_alive "$1" || return 2
  _tb_agent_answers "$1"
}

# tb_agent_wait_ready I: bounded wait until node I's agent answers.
tb_agent_wait_ready() {
  local i=$1 deadline=$((SECONDS + TB_READY_TIMEOUT)) rc
  while :; do
    _tb_agent_ready "$i" && return 0
    rc=$?
    if ((rc == 2)); then
      tb_die "weftd of node $i exited; last lines of $(tb_log_file "$i"):"
      tail -n 20 "$(tb_log_file "$i")" >&2 2>/dev/null || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      tb_die "weftd of node $i did not answer within ${TB_READY_TIMEOUT}s; last lines of $(tb_log_file "$i"):"
      tail -n 20 "$(tb_log_file "$i")" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.1
  done
}

# tb_metrics_url I: node I's /metrics (inside the test-bed's namespaces).
tb_metrics_url() { printf 'http://%s:%s/metrics' "$(tb_addr "$1")" "$TB_METRICS_PORT"; }

# tb_agent_start I: starts weftd in node I's namespace (not waiting).
# TB_WEFTD_ARGS: more weftd flags for every agent (word-split), e.g.
# "--lb-backend nftables".
# nsenter, not `ip netns exec`: the agent must stay in the root mount
# namespace so the bind mounts it makes under its state dir outlive it.
tb_agent_start() {
  local i=$1 dir metrics=()
  dir=$(tb_node_dir "$i")
  ((TB_METRICS)) && metrics=(--metrics-addr "$(tb_addr "$i"):$TB_METRICS_PORT")
  mkdir -p "$dir/state"
  mkdir -p "$(tb_pin_dir "$i")"
  printf '==== start %s\n' "$(date -u +%FT%T.%3NZ)" >>"$dir/weftd.log"
  setsid nsenter --net="/run/netns/$(tb_ns "$i")" -- \
    "$WEFT_BIN/weftd" \
      --node-name "node$i" \
      --advertise-addr "$(tb_addr "$i")" \
      --api-socket "$dir/weftd.sock" \
      --state-dir "$dir/state" \
      --bpf-pin-dir "$(tb_pin_dir "$i")" \
      --log-level "$TB_LOG_LEVEL" \
      "${metrics[@]}" \
      ${TB_WEFTD_ARGS:-} \
      </dev/null >>"$dir/weftd.log" 2>&1 &
  echo $! >"$dir/weftd.pid"
  # No "Killed" job notice when a test kill -9s it; bash still reaps it.
  disown "$!" 2>/dev/null || true
}

# tb_agent_stop I [--kill]: TERM (bounded, then KILL) or KILL node I's agent.
tb_agent_stop() {
  local i=$1 sig=TERM pid
  [[ ${2:-} == --kill ]] && sig=KILL
  pid=$(tb_agent_pid "$i") || return 0
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -s "$sig" "$pid" 2>/dev/null || true
    if ! wait_for 10 _tb_pid_gone "$pid"; then
      tb_log "weftd of node $i ignored SIG$sig for 10s, killing"
      kill -KILL "$pid" 2>/dev/null || true
      wait_for 5 _tb_pid_gone "$pid" || true
    fi
  fi
  # Reap it if it is our child (silences bash's "Killed" notice).
  wait "$pid" 2>/dev/null || true
  rm -f "$(tb_node_dir "$i")/weftd.pid"
}

_tb_pid_gone() {
  ! kill -0 "$1" 2>/dev/null && return 0
  # A zombie counts as gone once it is the last of its threads: a killed
  # thread group's leader turns Z at once while its other threads are still
  # exiting, and their shared files (the state dir's lock) close with the
  # last one (a restart 37 ms after kill -9 found the lock still held).
  [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]] || return 1
  local threads
  threads=$(find "/proc/$1/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  ((threads <= 1))
}

# tb_restart_agent I [--kill]: stop (TERM, or kill -9 with --kill), start, wait ready.
tb_restart_agent() {
  local i=$1
  tb_agent_stop "$i" "${2:-}"
  tb_agent_start "$i"
  tb_agent_wait_ready "$i"
}

# --- up / down -----------------------------------------------------------------
# testbed_up [-n N] [--prefix P] [--run-dir DIR]
testbed_up() {
  local n=1 prefix="" run_dir=""
  while (($#)); do
    case "$1" in
      -n|--nodes) n=$2; shift 2 ;;
      --prefix) prefix=$2; shift 2 ;;
      --run-dir) run_dir=$2; shift 2 ;;
      *) tb_die "testbed_up: unknown argument $1"; return 2 ;;
    esac
  done
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 200)); then tb_die "bad node count: $n"; return 2; fi
  _tb_require_root || return 1
  _tb_check_bins || return 1
  [[ -n $prefix ]] || prefix=$(tb_gen_prefix)
  [[ $prefix =~ ^[a-z][a-z0-9]{0,8}$ ]] || { tb_die "prefix must be 1-9 chars [a-z0-9], starting with a letter: $prefix"; return 2; }
  if ip netns list | awk '{print $1}' | grep -q "^$prefix"; then
    tb_die "namespaces with prefix $prefix already exist"; return 1
  fi
  [[ -n $run_dir ]] || run_dir=/tmp/weft-testbed-$prefix
  run_dir=$(realpath -m "$run_dir")

  TESTBED_PREFIX=$prefix
  TESTBED_RUN_DIR=$run_dir
  TESTBED_NODES=$n
  export TESTBED_PREFIX TESTBED_RUN_DIR TESTBED_NODES WEFT_BIN

  tb_log "up: prefix $prefix, $n node(s), run dir $run_dir"
  mkdir -p "$run_dir"
  # Written first so that `testbed down --run-dir` finds the prefix even if
  # the rest of `up` fails.
  _tb_write_env

  local sw=${prefix}sw i ns
  ip netns add "$sw" || return 1
  ip -n "$sw" link set lo up
  ip -n "$sw" link add br0 type bridge stp_state 0
  ip -n "$sw" link set br0 up

  mkdir -p "$run_dir/bpffs"
  mount -t bpf bpf "$run_dir/bpffs" || { tb_die "mount bpffs at $run_dir/bpffs failed"; return 1; }

  for ((i = 1; i <= n; i++)); do
    ns=$(tb_ns "$i")
    ip netns add "$ns" || return 1
    ip -n "$ns" link set lo up
    # Created inside the switch namespace, the peer moved straight into the
    # node: nothing ever appears in the root namespace.
    ip -n "$sw" link add "n$i" type veth peer name eth0 netns "$ns" || return 1
    ip -n "$sw" link set "n$i" master br0
    ip -n "$sw" link set "n$i" up
    ip -n "$ns" addr add "$(tb_addr "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    mkdir -p "$(tb_node_dir "$i")/state" "$(tb_pin_dir "$i")"
  done
  for ((i = 1; i <= n; i++)); do
    tb_agent_start "$i"
  done
  for ((i = 1; i <= n; i++)); do
    tb_agent_wait_ready "$i" || return 1
  done
  _tb_write_env
  tb_log "up: ready"
}

_tb_write_env() {
  local i f=$TESTBED_RUN_DIR/env
  {
    printf 'TESTBED_PREFIX=%q\n' "$TESTBED_PREFIX"
    printf 'TESTBED_RUN_DIR=%q\n' "$TESTBED_RUN_DIR"
    printf 'TESTBED_NODES=%q\n' "$TESTBED_NODES"
    printf 'WEFT_BIN=%q\n' "$WEFT_BIN"
    for ((i = 1; i <= TESTBED_NODES; i++)); do
      printf 'NODE%s_NS=%q\n' "$i" "$(tb_ns "$i")"
      printf 'NODE%s_HOST=%q\n' "$i" "$(tb_host "$i")"
      printf 'NODE%s_ADDR=%q\n' "$i" "$(tb_addr "$i")"
    done
  } >"$f.tmp"
  mv "$f.tmp" "$f"
  # Also export into the calling shell.
  for ((i = 1; i <= TESTBED_NODES; i++)); do
    printf -v "NODE${i}_NS" '%s' "$(tb_ns "$i")"
    printf -v "NODE${i}_HOST" '%s' "$(tb_host "$i")"
    printf -v "NODE${i}_ADDR" '%s' "$(tb_addr "$i")"
    export "NODE${i}_NS" "NODE${i}_HOST" "NODE${i}_ADDR"
  done
}

# testbed_load RUN_DIR: sets the TESTBED_* variables from RUN_DIR/env.
testbed_load() {
  local f=$1/env
  [[ -f $f ]] || { tb_die "no test-bed at $1 (missing $f)"; return 1; }
  # shellcheck disable=SC1090
  source "$f"
  export TESTBED_PREFIX TESTBED_RUN_DIR TESTBED_NODES WEFT_BIN
}

# Pids of weftd processes whose command line names RUN_DIR (agents this
# test-bed started, also those a test restarted by hand).
_tb_agent_pids_under() {
  local run_dir=$1 p cmd
  for p in /proc/[0-9]*; do
    [[ $(cat "$p/comm" 2>/dev/null) == weftd ]] || continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    [[ $cmd == *"$run_dir/"* ]] && printf '%s\n' "${p#/proc/}"
  done
}

# Mount points at or under DIR, deepest first.
_tb_mounts_under() {
  local dir=$1
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo |
    awk '{print length($0) " " $0}' | sort -rn | cut -d' ' -f2- | uniq
}

# testbed_down [--run-dir DIR]: removes everything the test-bed made: agents,
# processes in its namespaces, namespaces with its prefix (also those tests
# created), mounts under the run dir, the run dir. Safe to call twice, and
# on a half-built test-bed. Keeps the caller's exit status.
testbed_down() {
  local rc=$? run_dir="" prefix="" pid ns m
  while (($#)); do
    case "$1" in
      --run-dir) run_dir=$2; shift 2 ;;
      *) shift ;;
    esac
  done
  if [[ -n $run_dir ]]; then
    run_dir=$(realpath -m "$run_dir")
    if [[ -f $run_dir/env ]]; then
      prefix=$(
        # shellcheck disable=SC1091
        source "$run_dir/env" && printf '%s' "$TESTBED_PREFIX"
      )
    fi
  else
    run_dir=${TESTBED_RUN_DIR:-}
    prefix=${TESTBED_PREFIX:-}
  fi
  [[ -n $run_dir || -n $prefix ]] || return "$rc"
  tb_log "down: prefix ${prefix:-?}, run dir ${run_dir:-?}"

  # 1. Agents: kill -9 (a test-bed being torn down needs no graceful stop).
  if [[ -n $run_dir ]]; then
    for pid in $(_tb_agent_pids_under "$run_dir") $(cat "$run_dir"/n*/weftd.pid 2>/dev/null); do
      # A pid from a pid file only if that process still names our run dir.
      tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$run_dir/" || continue
      kill -KILL "$pid" 2>/dev/null || true
    done
  fi

  # 1b. Service tasks the agents ran: named by node and service, not by our
  #     prefix, so found through the agents' task state files (written
  #     before a task's namespace is made). Their processes outlive a killed
  #     agent by design; here they go, with their namespaces and the
  #     resolv.conf files the agents wrote for them.
  if [[ -n $run_dir ]]; then
    local task_ns
    for task_ns in $(cat "$run_dir"/n*/state/tasks/state.json 2>/dev/null |
      grep -o '"netns_name": *"weft-[A-Za-z0-9._-]*"' | sed 's/.*"\(weft-[^"]*\)"$/\1/' | sort -u); do
      [[ -e /run/netns/$task_ns ]] || continue
      for pid in $(ip netns pids "$task_ns" 2>/dev/null); do
        kill -KILL "$pid" 2>/dev/null || true
      done
      ip netns del "$task_ns" 2>/dev/null || umount -l "/run/netns/$task_ns" 2>/dev/null || true
      rm -f "/run/netns/$task_ns" 2>/dev/null || true
      rm -rf --one-file-system "/etc/netns/$task_ns" 2>/dev/null || true
    done
  fi

  # 2. Processes left in our namespaces (servers tests started), then the
  #    namespaces themselves.
  if [[ -n $prefix ]]; then
    local nss
    nss=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true)
    for ns in $nss; do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do
        kill -KILL "$pid" 2>/dev/null || true
      done
    done
    for ns in $nss; do
      ip netns del "$ns" 2>/dev/null || umount -l "/run/netns/$ns" 2>/dev/null || true
      rm -f "/run/netns/$ns" 2>/dev/null || true
    done
    # The resolv.conf files the agents (killed above, before they could
    # detach) wrote for our namespaces.
    rm -rf /etc/netns/"$prefix"* 2>/dev/null || true
  fi

  # 3. Mounts under the run dir (the agents' per-network namespace bind
  #    mounts, bpffs), deepest first, lazily; a few passes for stacked mounts.
  if [[ -n $run_dir ]]; then
    for _ in 1 2 3 4 5; do
      m=$(_tb_mounts_under "$run_dir")
      [[ -n $m ]] || break
      while IFS= read -r m; do
        umount -l "$m" 2>/dev/null || true
      done <<<"$m"
    done
    if [[ -n $(_tb_mounts_under "$run_dir") ]]; then
      tb_log "down: warning: mounts left under $run_dir:"
      _tb_mounts_under "$run_dir" >&2
    fi
    # 4. The run dir; never cross into a file system still mounted below it.
    if [[ -d $run_dir ]]; then
      rm -rf --one-file-system "$run_dir" 2>/dev/null || true
    fi
  fi
  if [[ ${TESTBED_RUN_DIR:-} == "$run_dir" ]]; then
    unset TESTBED_PREFIX TESTBED_RUN_DIR
  fi
  return "$rc"
}

# testbed_install_traps: tear down on exit, also on INT/TERM/HUP.
testbed_install_traps() {
  trap testbed_down EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

# --- assertions for tests --------------------------------------------------------
# check DESC CMD...      runs CMD; counts and prints "ok"/"FAIL" (goes on)
# require DESC CMD...    like check, but exits on failure
# check_eq DESC GOT WANT
# tb_summary             prints "NAME: N passed, N failed"; returns 1 on failures
TB_PASSED=0
TB_FAILED=0
ok() { TB_PASSED=$((TB_PASSED + 1)); printf 'ok   - %s\n' "$1"; }
not_ok() {
  TB_FAILED=$((TB_FAILED + 1))
  printf 'FAIL - %s\n' "$1"
  shift
  if (($#)); then printf '%s\n' "$@" | sed 's/^/       /'; fi
}
check() {
  local desc=$1; shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if ((rc == 0)); then ok "$desc"; return 0; fi
  not_ok "$desc" "command: $*" "exit status: $rc" "${out:0:4000}"
  return 1
}
require() {
  check "$@" || { tb_summary; exit 1; }
}
check_eq() {
  if [[ "$2" == "$3" ]]; then ok "$1"; return 0; fi
  not_ok "$1" "got:  $2" "want: $3"
  return 1
}
require_eq() {
  check_eq "$@" || { tb_summary; exit 1; }
}
# check_match DESC TEXT REGEX (extended, case-insensitive)
check_match() {
  if grep -qiE -- "$3" <<<"$2"; then ok "$1"; return 0; fi
  not_ok "$1" "text:  ${2:0:2000}" "regex: $3"
  return 1
}
tb_summary() {
  printf '%s: %d passed, %d failed\n' "$(basename "$0" .sh)" "$TB_PASSED" "$TB_FAILED"
  ((TB_FAILED == 0))
}

# tb_transfer FROM_NS TO_NS TO_IP FILE: sends FILE over TCP from namespace
# FROM_NS to a listener in TO_NS at TO_IP; succeeds when what arrived has the
# same sha256. Prints sizes and digests.
tb_transfer() {
  local from=$1 to=$2 ip=$3 file=$4 port=5001 server rc=0 received want got
  received=$(mktemp "${TESTBED_RUN_DIR:-/tmp}/received.XXXXXX")
  ip netns exec "$to" timeout 90 socat -u "TCP-LISTEN:$port,reuseaddr" "CREATE:$received" &
  server=$!
  if ! wait_for 10 bash -c "ip netns exec '$to' ss -Hltn 'sport = :$port' | grep -q ."; then
    echo "server did not listen"; kill "$server" 2>/dev/null; rm -f "$received"; return 1
  fi
  ip netns exec "$from" timeout 90 socat -u "OPEN:$file" "TCP:$ip:$port" || rc=$?
  wait "$server" || rc=$?
  want=$(sha256sum <"$file" | cut -d' ' -f1)
  got=$(sha256sum <"$received" | cut -d' ' -f1)
  echo "sent $(stat -c %s "$file") bytes sha256 $want; received $(stat -c %s "$received") bytes sha256 $got"
  rm -f "$received"
  ((rc == 0)) || { echo "socat exit status $rc"; return 1; }
  [[ $want == "$got" ]]
}

# tb_json EXPR: evaluates a Python expression over the JSON on stdin (bound
# to `d`); prints the result (strings as is, other values as JSON).
tb_json() {
  python3 -c '
import json, sys
d = json.load(sys.stdin)
r = eval(sys.argv[1])
print(r if isinstance(r, str) else json.dumps(r, sort_keys=True))
' "$1"
}

# tb_links NSFILE|NAME [TYPE]: "name kind" per link in a namespace given by a
# file path (e.g. a per-network namespace under the state dir) or a name.
tb_links() {
  local ns=$1 type=${2:-} path
  if [[ $ns == /* ]]; then path=$ns; else path=/run/netns/$ns; fi
  nsenter --net="$path" -- ip -d -j link show ${type:+type "$type"} | python3 -c '
import json, sys
for l in json.load(sys.stdin):
    print(l["ifname"], l.get("linkinfo", {}).get("info_kind", "-"))
' | sort
}
