#!/usr/bin/env python3
"""Results table of bench/gossip/run.sh from the JSON files bench_gossip and
serf_peer.py wrote (weft-N.json, serf-N.json in --work)."""
import argparse
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt(v, spec="{:.0f}", none="-"):
    return none if v is None else spec.format(v)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--sizes", required=True)
    ap.add_argument("--serf-sizes", default="")
    ap.add_argument("--serf-version", default="")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--quick", default="0")
    ap.add_argument("--json")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split()]
    serf_sizes = [int(x) for x in a.serf_sizes.split()]
    weft = {n: load(os.path.join(a.work, "weft-%d.json" % n)) for n in sizes}
    serf = {n: load(os.path.join(a.work, "serf-%d.json" % n)) for n in serf_sizes}
    all_n = sorted(set(sizes) | set(serf_sizes))
    largest = max(sizes)
    failures = []

    some = next((w for w in weft.values() if w), {})
    print()
    print("Gossip on 127.0.0.1, AES-256-GCM key, memberlist LAN timings%s" % (" (--quick)" if a.quick == "1" else ""))
    print("weft: N instances in one process (Memberlist + SerfCompat + ReplicatedTables as the agent wires them),"
          " %s io thread(s)" % some.get("threads", a.threads))
    print("serf: N `serf agent` processes (%s), -log-level=err" % a.serf_version)
    print("Each run in a network namespace of its own; bytes = `lo` tx counters (IP/UDP/TCP headers included).")

    print("\nMembership convergence: all joins issued at once (everyone joins node 0) until nodes 0, N/2, N-1")
    print("list N alive (polled every 20 ms); 'all' = until every node does.")
    print("%6s %12s %12s %10s %12s %12s" % ("N", "weft (ms)", "serf (ms)", "weft/serf", "weft all", "serf all"))
    for n in all_n:
        w, s = weft.get(n) or {}, serf.get(n) or {}
        wo, so = w.get("membership_observers_ms"), s.get("membership_observers_ms")
        print("%6d %12s %12s %10s %12s %12s" % (n, fmt(wo), fmt(so), fmt(ratio(wo, so), "{:.2f}"),
                                             fmt(w.get("membership_all_ms")), fmt(s.get("membership_all_ms"))))
        if n in weft and w.get("membership_all_ms") is None:
            failures.append("weft membership did not converge at N=%d" % n)
        if n in serf and s.get("membership_all_ms") is None:
            failures.append("serf membership did not converge at N=%d" % n)

    print("\nEndpoint-change convergence (weft): one put into \"endpoints\" on a random instance until every")
    print("instance has applied it, with 1000 entries in every copy; trials after the at-rest window.")
    print("%6s %7s %9s %9s %9s %12s %12s %14s" % ("N", "trials", "p50 (ms)", "p99 (ms)", "max (ms)", "50% of nodes",
                                                 "90% of nodes", "right after join"))
    for n in sizes:
        w = weft.get(n) or {}
        ep = w.get("endpoint_convergence") or {}
        tr = "%d/%d" % (ep.get("converged", 0), ep.get("trials", 0)) if ep else "-"
        over = ">%ds" % ep.get("timeout_s", 0) if ep.get("timeouts") else "-"
        print("%6d %7s %9s %9s %9s %12s %12s %14s" % (
            n, tr, fmt(ep.get("p50_ms"), none=over), fmt(ep.get("p99_ms"), none=over),
            over if ep.get("timeouts") else fmt(ep.get("max_ms")),
            fmt(ep.get("half_of_nodes_p50_ms")), fmt(ep.get("ninety_pct_of_nodes_p50_ms")),
            fmt(w.get("endpoint_change_right_after_join_ms"))))
        if ep and ep.get("timeouts"):
            failures.append("%d endpoint change(s) did not converge at N=%d" % (ep["timeouts"], n))
    print("('50%/90% of nodes': median over trials of when half / 90% of instances had the entry;")
    print(" 'right after join': one change made the moment membership converged, queues still full of join news;")
    print(" a change gossip fails to bring to some node waits for anti-entropy: trials wait up to one push/pull")
    print(" interval + 15 s, and one that times out counts as slower than all others)")
    print("Traffic while the trials ran (~2 changes/s), bytes/s per node: a push/pull that meets a change in flight")
    print("sees different digests and sends the entries of the owners whose digests differ (a 'sync').")
    print("%6s %10s %10s %10s %12s %14s" % ("N", "UDP", "TCP", "all (lo)", "syncs", "TCP connections"))
    for n in sizes:
        ep = (weft.get(n) or {}).get("endpoint_convergence") or {}
        print("%6d %10s %10s %10s %12s %14s" % (n, fmt(ep.get("udp_bytes_per_s_per_node")),
                                                fmt(ep.get("tcp_bytes_per_s_per_node")),
                                                fmt(ep.get("bytes_per_s_per_node")), fmt(ep.get("full_syncs")),
                                                fmt(ep.get("tcp_connections"))))

    print("\nTraffic at rest, bytes/s per node (%ss window, %ss after membership settled; weft with 1000 entries"
          " in every copy; IP-level bytes):" % (fmt(some.get("rest", {}).get("seconds"), "{:g}"),
                                              fmt(some.get("settle_seconds"), "{:g}")))
    print("  UDP = probes, acks, gossip (measured). p/p = bytes of one push/pull exchange / push/pull interval")
    print("  (one exchange per node per 30 s, 60 s past 32 nodes, 90 s past 64); weft: TCP bytes per connection")
    print("  in the window; serf (whose first push/pull comes 30-60 s after start): 5 `join`s of members, each")
    print("  one push/pull with the same content, counted on the gossip ports. total = UDP + p/p.")
    print("%6s %10s %10s %10s %12s %12s %10s %10s %10s" % ("N", "weft UDP", "serf UDP", "weft/serf", "weft p/p",
                                                         "serf p/p", "weft tot", "serf tot", "weft/serf"))
    for n in all_n:
        wr = (weft.get(n) or {}).get("rest") or {}
        sr = (serf.get(n) or {}).get("rest") or {}
        wu, su = wr.get("udp_bytes_per_s_per_node"), sr.get("udp_bytes_per_s_per_node")
        wt, st = wr.get("steady_bytes_per_s_per_node"), sr.get("steady_bytes_per_s_per_node")
        wp = None if wt is None or wu is None else wt - wu
        sp = None if st is None or su is None else st - su
        print("%6d %10s %10s %10s %12s %12s %10s %10s %10s" % (
            n, fmt(wu), fmt(su), fmt(ratio(wu, su), "{:.2f}"), fmt(wp), fmt(sp), fmt(wt), fmt(st),
            fmt(ratio(wt, st), "{:.2f}")))
    print("  (all of lo in the window, link-level, push/pull as it happened to fall:",
          "; ".join("N=%d weft %s / serf %s" % (
              n, fmt(((weft.get(n) or {}).get("rest") or {}).get("bytes_per_s_per_node")),
              fmt(((serf.get(n) or {}).get("rest") or {}).get("bytes_per_s_per_node"))) for n in all_n) + ")")
    drops = [(k, n, ((d or {}).get("rest") or {}).get("udp_rcvbuf_errors_so_far")) for k, m in
             (("weft", weft), ("serf", serf)) for n, d in m.items()]
    drops = [x for x in drops if x[2]]
    if drops:
        print("  UDP receive-buffer drops: " + ", ".join("%s N=%d: %d" % x for x in drops))

    print("\nMemory")
    print("%6s %22s %26s %26s" % ("N", "weft, members only", "weft, + 1000 entries each", "serf RSS per agent"))
    for n in all_n:
        w = weft.get(n) or {}
        s = serf.get(n) or {}
        mem = w.get("memory_with_entries") or {}
        print("%6d %19s kB %23s kB %23s kB" % (n, fmt(w.get("rss_per_instance_members_kb")),
                                             fmt(mem.get("rss_per_instance_kb")),
                                             fmt((s.get("rss_per_agent_kb") or {}).get("mean"))))
    print("(weft: process VmRSS growth / N, after malloc_trim, with N members and then with 1000 endpoint entries")
    print(" installed in every copy; serf: mean VmRSS of each agent process, Go runtime included. A weftd also")
    print(" carries its own process baseline, ~8 MB here before any instance exists.)")
    w = weft.get(largest) or {}
    mem = w.get("memory_with_entries")
    burst = w.get("burst")
    if burst:
        print("weft burst at N=%d: %d endpoint puts at once (one per instance): every instance had all after %s ms"
              " (half of them after %s ms); table queues empty after %s ms; %s syncs meanwhile" % (
                  largest, burst["entries"], fmt(burst.get("all_instances_ms")),
                  fmt(burst.get("half_of_instances_ms")), fmt(burst.get("queues_drained_ms")),
                  fmt(burst.get("full_syncs"))))

    print("\nTargets")
    ep = (weft.get(largest) or {}).get("endpoint_convergence") or {}
    p99 = ep.get("p99_ms")
    if largest >= 100:
        ok = p99 is not None and p99 < 1000
        print("  endpoint-change p99 at %d nodes < 1 s: %s ms  %s" % (
            largest, fmt(p99, none=">%ds" % ep.get("timeout_s", 0)), "ok" if ok else "MISSED"))
    else:
        print("  endpoint-change p99 target is defined at 100 nodes (not run)")
    if mem:
        per = mem.get("rss_per_instance_kb")
        print("  memory per instance, %d members + %d entries < 5 MB: %s kB  %s" % (
            largest, mem.get("entries", 0), fmt(per), "ok" if per is not None and per < 5120 else "MISSED"))
    other = []
    for n in sizes:
        w = weft.get(n) or {}
        if w.get("false_failures"):
            other.append("N=%d: %d node(s) declared dead during the run" % (n, w["false_failures"]))
        if (w.get("max_loop_lag_ms") or 0) > 100:
            other.append("N=%d: io loop fell behind by up to %.0f ms" % (n, w["max_loop_lag_ms"]))
    lags = ", ".join("N=%d %s ms" % (n, fmt((weft.get(n) or {}).get("max_loop_lag_ms"), "{:.1f}")) for n in sizes)
    print("  weft io loop lag (timers firing late, at rest + trials): %s" % lags)
    for o in other:
        print("  warning: " + o)
    for f in failures:
        print("  FAIL: " + f)

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"weft": {str(k): v for k, v in weft.items()}, "serf": {str(k): v for k, v in serf.items()},
                       "failures": failures}, f, indent=2)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
