#!/usr/bin/env bash
# Memory of the embedded DNS in the real agent: weftd on a one-node test-bed,
# COUNT (default 1000) namespaces attached to one overlay network, each of
# which gets UDP and TCP sockets on 127.0.0.11:53 and a resolv.conf. Prints
# the agent's RSS (and descriptors) before and after, the growth per
# endpoint, and checks that the last namespace resolves the first one's name.
# Target (issue 10): RSS growth < 20 MB for 1000 namespaces. The growth
# includes everything an attach keeps (endpoint state, tables, the load
# balancer's view), not only the DNS. Namespaces have the test-bed's unique
# prefix and are removed on exit, even on failure.
#   bench/dns/mem.sh [-n COUNT]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export WEFT_SRC=${WEFT_SRC:-$(cd "$here/../.." && pwd)}
count=1000
while (($#)); do
  case "$1" in
    -n) count=$2; shift 2 ;;
    *) echo "mem.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=scripts/lib/bench_prepare.sh
source "$WEFT_SRC/scripts/lib/bench_prepare.sh"
bench_prepare weftd weft || { echo "mem.sh: cannot build weftd/weft" >&2; exit 1; }
# shellcheck source=scripts/lib/testbed.sh
source "$WEFT_SRC/scripts/lib/testbed.sh"
export TB_QUIET=1 TB_LOG_LEVEL=${TB_LOG_LEVEL:-warn}
# The agent writes /etc/netns/<namespace>/resolv.conf; testbed_down removes
# those of its namespaces, and /etc/netns too when this run made it.
etc_netns_existed=0
[[ -d /etc/netns ]] && etc_netns_existed=1
trap 'testbed_down; ((etc_netns_existed)) || rmdir /etc/netns 2>/dev/null || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
testbed_up -n 1
pid=$(tb_agent_pid 1)
kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
fds() { find "/proc/$pid/fd" -mindepth 1 | wc -l; }
echo "mem: prefix $TESTBED_PREFIX, $count namespaces, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# /20: room for 1000 endpoints (a default /24 holds 253).
tb_weft 1 network create -d overlay --subnet 10.77.0.0/20 dns-mem >/dev/null
names=()
for ((i = 1; i <= count; i++)); do names+=("$(tb_netns_add "m$i")"); done
sleep 1
rss0=$(kib VmRSS) hwm0=$(kib VmHWM) fd0=$(fds)
start=$EPOCHREALTIME
for ((i = 0; i < count; i++)); do
  tb_weft 1 endpoint attach dns-mem --netns "${names[i]}" >/dev/null
  ((i % 100 == 99)) && echo "mem: $((i + 1)) attached, RSS $(kib VmRSS) KiB" >&2
done
attach_s=$(python3 -c "print(f'{$EPOCHREALTIME - $start:.1f}')")
sleep 2  # let the DNS view settle
rss1=$(kib VmRSS) hwm1=$(kib VmHWM) fd1=$(fds)
first=${names[0]} last=${names[count - 1]}
answer=$(ip netns exec "$last" dig +time=2 +tries=2 +short "$first" 2>&1 || true)
resolv=$(head -1 "/etc/netns/$last/resolv.conf" 2>/dev/null || true)

python3 - "$count" "$rss0" "$rss1" "$hwm0" "$hwm1" "$fd0" "$fd1" "$attach_s" <<EOF
import sys
n, rss0, rss1, hwm0, hwm1, fd0, fd1 = map(int, sys.argv[1:8])
grow = (rss1 - rss0) / 1024
print(f"\nweftd with {n} attached namespaces (127.0.0.11 UDP+TCP in each), {sys.argv[8]} s of attaches")
print(f"  RSS   {rss0 / 1024:7.1f} MB -> {rss1 / 1024:7.1f} MB: growth {grow:.1f} MB, {(rss1 - rss0) / n:.1f} KiB per namespace"
      f"   (target < 20 MB: {'met' if grow < 20 else 'MISSED'})")
print(f"  VmHWM {hwm0 / 1024:7.1f} MB -> {hwm1 / 1024:7.1f} MB")
print(f"  descriptors {fd0} -> {fd1} ({(fd1 - fd0) / n:.2f} per namespace)")
EOF
echo "  resolv.conf in $last: ${resolv:-missing}"
echo "  dig $first from $last via 127.0.0.11: ${answer:-no answer}"
[[ $answer =~ ^10\.77\. ]]
