"""Mean and p99 latency from `dnsperf -v` output (one '> RCODE NAME TYPE SECONDS' line per answer).
   dnsperf_stats.py FILE SERVER  -> 'dnsperf SERVER answered=N mean_us=.. p99_us=.. rcodes=..'"""
import sys

lat, rcodes = [], {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 5 and f[0] == ">":
        rcodes[f[1]] = rcodes.get(f[1], 0) + 1
        lat.append(float(f[4]) * 1e6)
lat.sort()
p99 = lat[min(len(lat) - 1, len(lat) * 99 // 100)] if lat else 0
mean = sum(lat) / len(lat) if lat else 0
print(f"dnsperf {sys.argv[2]} answered={len(lat)} mean_us={mean:.1f} p99_us={p99:.1f} "
      f"rcodes={','.join(f'{k}:{v}' for k, v in sorted(rcodes.items()))}")
