#!/usr/bin/env bash
# Unauthenticated gossip peers must cost the agent little (issue 7, items 4
# and 5). On a one-node swarm, from inside the node's namespace:
#   1. 200 TCP connections at a time to the gossip port, each sending the
#      encrypted-message type byte, a 20 MiB length and 20 MiB of garbage,
#      over and over, while 100 000 random UDP datagrams go to the same port;
#   2. 200 connections at a time whose 8 MiB length is within the limit,
#      followed by 8 MiB of garbage each (undecryptable once complete).
# Throughout, the agent lives, its RSS stays under 100 MB, and
# `weft network ls` answers in under 300 ms; afterwards its RSS is still
# under 100 MB and the log grew by less than 1 MB, with the bad datagrams
# summarised instead of logged one by one. Bounded to about a minute.
set -euo pipefail

WEFT_SRC=${WEFT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"

RSS_LIMIT_KB=$((100 * 1024))
# The old agent buffered everything: stop an attack long before the machine suffers.
RSS_ABORT_KB=$((400 * 1024))
LS_LIMIT_MS=300
LOG_LIMIT_BYTES=$((1024 * 1024))
PHASE_SECONDS=${HOSTILE_PHASE_SECONDS:-15}

testbed_install_traps
testbed_up -n 1 || { echo "FAIL - test-bed with one node did not come up"; exit 1; }
require "swarm init starts gossip" tb_weft 1 swarm init
ADDR=$(tb_addr 1)
LOG=$(tb_log_file 1)
PID=$(tb_agent_pid 1)
require_eq "agent pid is weftd" "$(cat /proc/"$PID"/comm 2>/dev/null)" "weftd"
wait_for 10 grep -q "listening on" "$LOG" || true

ATTACK=$TESTBED_RUN_DIR/attack.py
cat >"$ATTACK" <<'EOF'
import os, random, selectors, socket, struct, sys, time

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(7)
block = os.urandom(1 << 16)

if mode == "udp":
    count = int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    for i in range(count):
        size = rnd.randint(1, 1400)
        off = rnd.randint(0, len(block) - size)
        try:
            s.sendto(block[off:off + size], (host, port))
            sent += 1
        except OSError:
            time.sleep(0.001)
        if i % 2000 == 1999:
            time.sleep(0.005)  # a flood, not a CPU hog on a shared machine
    print(f"udp: sent {sent} datagrams", flush=True)
    sys.exit(0)

# tcp: rounds of `conns` connections, each sending the encrypted type byte,
# a big-endian `length` and then `length` bytes of garbage, for `seconds`.
conns, length, seconds = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
header = b"\x0a" + struct.pack(">I", length)
end = time.time() + seconds
rounds = opened = refused = completed = 0
while time.time() < end:
    rounds += 1
    sel = selectors.DefaultSelector()
    sent = {}
    for _ in range(conns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, port))
        sel.register(s, selectors.EVENT_WRITE)
        sent[s] = 0
        opened += 1
    round_end = min(end, time.time() + 10)
    while sent and time.time() < round_end:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            done = sent[s]
            try:
                if done < len(header):
                    n = s.send(header[done:])
                else:
                    n = s.send(block[: min(len(block), len(header) + length - done)])
                sent[s] = done + n
            except OSError:
                refused += 1
                sel.unregister(s)
                s.close()
                del sent[s]
                continue
            if sent[s] >= len(header) + length:
                completed += 1
                sel.unregister(s)
                s.close()
                del sent[s]
    for s in list(sent):
        s.close()
    sel.close()
print(f"tcp: {rounds} rounds, {opened} connections, {refused} cut off by the agent, "
      f"{completed} sent everything", flush=True)
EOF

# attack ARGS...: the attacker in the node's namespace, in the background;
# nsenter and nice exec, so $! is the python process itself.
attack() {
  nsenter --net="/run/netns/$(tb_ns 1)" -- nice -n 5 python3 "$ATTACK" "$@" &
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0; }
ls_ms() {
  local t0 t1
  t0=$(date +%s%N)
  tb_weft 1 network ls >/dev/null 2>&1 || { echo 99999; return; }
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}

# watch DESC PID...: samples the agent every 0.2 s while the attackers run;
# fails (and stops them) when it dies or its RSS passes the abort line. A
# faster watchdog (every 20 ms) stops them too, so an agent that buffers
# everything (as before issue 7) cannot take the machine down first.
MAX_RSS=0 MAX_LS=0 SAMPLES=0 SLOW=0 DIED=0
watch_attack() {
  local desc=$1; shift
  local rss ms dog
  MAX_RSS=0 MAX_LS=0 SAMPLES=0 SLOW=0 DIED=0
  (
    while kill -0 "$@" 2>/dev/null; do
      if (($(rss_kb) > RSS_ABORT_KB)); then
        kill -KILL "$@" 2>/dev/null
        break
      fi
      sleep 0.02
    done
  ) &
  dog=$!
  while kill -0 "$@" 2>/dev/null; do
    if ! kill -0 "$PID" 2>/dev/null; then DIED=1; break; fi
    rss=$(rss_kb)
    ((rss > MAX_RSS)) && MAX_RSS=$rss
    if ((rss > RSS_ABORT_KB)); then
      echo "# $desc: agent RSS ${rss} kB, stopping the attack"
      break
    fi
    ms=$(ls_ms)
    ((ms > MAX_LS)) && MAX_LS=$ms
    ((ms >= LS_LIMIT_MS)) && SLOW=$((SLOW + 1))
    SAMPLES=$((SAMPLES + 1))
    sleep 0.2
  done
  kill "$@" 2>/dev/null || true
  wait "$@" 2>/dev/null || true
  wait "$dog" 2>/dev/null || true
  rss=$(rss_kb)
  ((rss > MAX_RSS)) && MAX_RSS=$rss
  kill -0 "$PID" 2>/dev/null || DIED=1
  echo "# $desc: $SAMPLES samples, max RSS ${MAX_RSS} kB, slowest network ls ${MAX_LS} ms"
  check_eq "$desc: agent alive" "$DIED" 0 || true
  check "$desc: RSS stayed under $((RSS_LIMIT_KB / 1024)) MB (max ${MAX_RSS} kB)" test "$MAX_RSS" -lt "$RSS_LIMIT_KB" || true
  check "$desc: network ls answered in < ${LS_LIMIT_MS} ms every time (slowest ${MAX_LS} ms)" \
    test "$SLOW" -eq 0 -a "$SAMPLES" -gt 5 || true
}

RSS_BEFORE=$(rss_kb)
LOG_BEFORE=$(stat -c %s "$LOG")
echo "# before: RSS ${RSS_BEFORE} kB, log ${LOG_BEFORE} bytes"

# --- 1: oversized frames + random datagrams --------------------------------------
attack tcp "$ADDR" 7946 200 $((20 * 1024 * 1024)) "$PHASE_SECONDS"
tcp_pid=$!
attack udp "$ADDR" 7946 100000
udp_pid=$!
watch_attack "20 MiB frames and 100k datagrams" "$tcp_pid" "$udp_pid"

# --- 2: frames within the limit, garbage all the way ------------------------------
attack tcp "$ADDR" 7946 200 $((8 * 1024 * 1024)) "$PHASE_SECONDS"
tcp_pid=$!
watch_attack "8 MiB frames" "$tcp_pid"

# --- after ----------------------------------------------------------------------
sleep 2
RSS_AFTER=$(rss_kb)
echo "# after: RSS ${RSS_AFTER} kB"
check "agent alive after the attacks" kill -0 "$PID" || true
check "RSS after the attacks under $((RSS_LIMIT_KB / 1024)) MB (${RSS_AFTER} kB)" test "$RSS_AFTER" -lt "$RSS_LIMIT_KB" || true
check "memory returned: RSS after within 16 MB of before (${RSS_BEFORE} -> ${RSS_AFTER} kB)" \
  test "$RSS_AFTER" -lt $((RSS_BEFORE + 16 * 1024)) || true
check "network ls still answers" tb_weft 1 network ls || true
# Floods are summarised once their interval (10 s) is over.
wait_for 15 grep -q "more undecodable packets from" "$LOG" ||
  not_ok "bad datagrams are summarised" "$(grep -c "dropped packet data" "$LOG") single lines, no summary"
grep -q "more undecodable packets from" "$LOG" && ok "bad datagrams are summarised: $(grep "more undecodable packets" "$LOG" | head -1 | cut -c1-160)"
LOG_AFTER=$(stat -c %s "$LOG")
GROWTH=$((LOG_AFTER - LOG_BEFORE))
check "log grew by less than 1 MB ($GROWTH bytes)" test "$GROWTH" -lt "$LOG_LIMIT_BYTES" || true
check "at most a few full lines about bad datagrams ($(grep -c "dropped packet data" "$LOG") )" \
  test "$(grep -c "dropped packet data" "$LOG")" -le 20 || true

tb_summary
