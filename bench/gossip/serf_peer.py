#!/usr/bin/env python3
"""The serf peer of bench_gossip: N real `serf agent` processes on 127.0.0.1.

    serf_peer.py --nodes N --key BASE64 [--rest-seconds S] [--settle-seconds S]
                 [--json FILE] [--work-dir DIR] [--serf serf] [--nft-table NAME]

Measures what bench_gossip measures for weft, the same way:
  * membership convergence: agents are started unjoined; from the moment the
    joins are issued (every agent joins agent 0, through its RPC, all at once)
    until the observer agents 0, N/2 and N-1 list N members "alive" (polled
    every 20 ms over serf's RPC, i.e. what `serf members` asks); also until
    every agent does (polled in sweeps over all agents);
  * bytes/s per node at rest: `lo` transmit counters over a quiet window / N
    (meaningful only in a network namespace of its own; run.sh provides one),
    split into UDP and TCP with nft counters run.sh installs there;
  * RSS per agent process (VmRSS from /proc/PID/status).
Uses only the standard library (a minimal msgpack codec for serf's RPC).
Every agent it starts is killed on exit, also on SIGTERM/SIGINT.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

# ---- minimal msgpack (the subset serf's RPC uses) ------------------------------


def mp_encode(v, out):
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        if 0 <= v < 128:
            out.append(v)
        elif 0 <= v < 1 << 16:
            out += b"\xcd" + struct.pack(">H", v)
        elif 0 <= v < 1 << 32:
            out += b"\xce" + struct.pack(">I", v)
        else:
            out += b"\xd3" + struct.pack(">q", v)
    elif isinstance(v, str):
        b = v.encode()
        # Old-spec raw (fixstr / str16 / str32): what serf's codec expects.
        if len(b) < 32:
            out.append(0xA0 | len(b))
        elif len(b) < 1 << 16:
            out += b"\xda" + struct.pack(">H", len(b))
        else:
            out += b"\xdb" + struct.pack(">I", len(b))
        out += b
    elif isinstance(v, (list, tuple)):
        if len(v) < 16:
            out.append(0x90 | len(v))
        else:
            out += b"\xdc" + struct.pack(">H", len(v))
        for x in v:
            mp_encode(x, out)
    elif isinstance(v, dict):
        if len(v) < 16:
            out.append(0x80 | len(v))
        else:
            out += b"\xde" + struct.pack(">H", len(v))
        for k, x in v.items():
            mp_encode(k, out)
            mp_encode(x, out)
    else:
        raise TypeError(type(v))
    return out


class NeedMore(Exception):
    pass


def mp_decode(buf, off):
    def need(n):
        if off + n > len(buf):
            raise NeedMore()

    need(1)
    t = buf[off]
    off += 1

    def raw(n):
        nonlocal off
        need(n)
        b = bytes(buf[off:off + n])
        off += n
        try:
            return b.decode()
        except UnicodeDecodeError:
            return b

    def unpack(fmt, n):
        nonlocal off
        need(n)
        v = struct.unpack(fmt, buf[off:off + n])[0]
        off += n
        return v

    def seq(n):
        nonlocal off
        items = []
        for _ in range(n):
            x, off = mp_decode(buf, off)
            items.append(x)
        return items

    def mapping(n):
        nonlocal off
        d = {}
        for _ in range(n):
            k, off = mp_decode(buf, off)
            v, off = mp_decode(buf, off)
            d[k] = v
        return d

    if t < 0x80:
        return t, off
    if t >= 0xE0:
        return t - 256, off
    if 0x80 <= t <= 0x8F:
        v = mapping(t & 0x0F)
        return v, off
    if 0x90 <= t <= 0x9F:
        v = seq(t & 0x0F)
        return v, off
    if 0xA0 <= t <= 0xBF:
        v = raw(t & 0x1F)
        return v, off
    simple = {0xC0: None, 0xC2: False, 0xC3: True}
    if t in simple:
        return simple[t], off
    fixed = {0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
             0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8),
             0xCA: (">f", 4), 0xCB: (">d", 8)}
    if t in fixed:
        v = unpack(*fixed[t])
        return v, off
    if t in (0xC4, 0xD9):
        v = raw(unpack(">B", 1))
        return v, off
    if t in (0xC5, 0xDA):
        v = raw(unpack(">H", 2))
        return v, off
    if t in (0xC6, 0xDB):
        v = raw(unpack(">I", 4))
        return v, off
    if t == 0xDC:
        v = seq(unpack(">H", 2))
        return v, off
    if t == 0xDD:
        v = seq(unpack(">I", 4))
        return v, off
    if t == 0xDE:
        v = mapping(unpack(">H", 2))
        return v, off
    if t == 0xDF:
        v = mapping(unpack(">I", 4))
        return v, off
    raise ValueError("msgpack type 0x%02x not supported" % t)


class SerfRPC:
    """serf's agent RPC (what the `serf` CLI speaks)."""

    def __init__(self, addr, timeout=5.0):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = bytearray()
        self.seq = 0
        self.call("handshake", {"Version": 1}, body=False)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _read_obj(self):
        while True:
            try:
                v, off = mp_decode(self.buf, 0)
                del self.buf[:off]
                return v
            except NeedMore:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("serf RPC closed the connection")
                self.buf += chunk

    def call(self, command, args=None, body=True):
        seq = self.seq
        self.seq += 1
        out = bytearray()
        mp_encode({"Command": command, "Seq": seq}, out)
        if args is not None:
            mp_encode(args, out)
        self.sock.sendall(out)
        header = self._read_obj()
        if header.get("Error"):
            raise RuntimeError("serf %s: %s" % (command, header["Error"]))
        return self._read_obj() if body else None

    def alive_count(self):
        members = self.call("members")["Members"]
        return sum(1 for m in members if m.get("Status") == "alive")


# ---- helpers ---------------------------------------------------------------------


def snmp_value(proto, field):
    with open("/proc/self/net/snmp") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[0::2], lines[1::2]):
        if names.startswith(proto + ":"):
            d = dict(zip(names.split()[1:], values.split()[1:]))
            return int(d.get(field, 0))
    return 0


def net_counters(nft_table):
    """lo transmit counters, nft per-protocol counters (if run.sh installed
    them), TCP connections opened and UDP receive-buffer drops, all of this
    network namespace."""
    c = {"own": False}
    with open("/proc/self/net/dev") as f:
        lines = f.read().splitlines()
    names = []
    for line in lines:
        if ":" not in line:
            continue
        name, rest = line.split(":", 1)
        names.append(name.strip())
        if name.strip() == "lo":
            v = [int(x) for x in rest.split()]
            c["lo_bytes"], c["lo_packets"] = v[8], v[9]
    c["own"] = names == ["lo"]
    c["tcp_active_opens"] = snmp_value("Tcp", "ActiveOpens")
    c["udp_rcvbuf_errors"] = snmp_value("Udp", "RcvbufErrors")
    if nft_table:
        try:
            out = subprocess.run(["nft", "-j", "list", "counters", "table", "inet", nft_table],
                                 capture_output=True, text=True, timeout=10).stdout
            for item in json.loads(out)["nftables"]:
                k = item.get("counter")
                if k and k.get("name") in ("udp_out", "tcp_out", "tcp_ports"):
                    proto = k["name"].replace("_out", "")
                    c[proto + "_bytes"], c[proto + "_packets"] = k["bytes"], k["packets"]
        except (OSError, ValueError, KeyError, subprocess.SubprocessError):
            pass
    c["nft"] = "udp_bytes" in c and "tcp_bytes" in c
    return c


def push_pull_interval_s(n):
    # memberlist's pushPullScale: 30 s, one more 30 s per doubling past 32 nodes.
    if n <= 32:
        return 30.0
    import math
    return 30.0 * (math.ceil(math.log2(n) - 5) + 1)


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def percentile(v, p):
    v = sorted(v)
    if not v:
        return None
    rank = max(1, min(len(v), -(-len(v) * p // 100)))
    return v[int(rank) - 1]


def fmt(v):
    return "-" if v is None else "%.0f" % v


def log(msg):
    print("[serf_peer] " + msg, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--rest-seconds", type=float, default=10)
    ap.add_argument("--settle-seconds", type=float, default=10)
    ap.add_argument("--json")
    ap.add_argument("--work-dir")
    ap.add_argument("--serf", default=shutil.which("serf") or "serf")
    ap.add_argument("--bind-base", type=int, default=17000)
    ap.add_argument("--rpc-base", type=int, default=27000)
    ap.add_argument("--membership-timeout", type=float, default=120)
    ap.add_argument("--nft-table", default="", help="nft table (inet) with counters udp_out and tcp_out")
    args = ap.parse_args()
    n = args.nodes

    work = args.work_dir or tempfile.mkdtemp(prefix="weft-bench-serf.")
    os.makedirs(work, exist_ok=True)
    procs = []

    def cleanup(*_):
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        procs.clear()

    def on_signal(sig, _frame):
        cleanup()
        sys.exit(128 + sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    result = {"nodes": n}
    rpcs = []
    try:
        result["own_netns"] = net_counters("")["own"]
        bind = ["127.0.0.1:%d" % (args.bind_base + i) for i in range(n)]
        rpc = ["127.0.0.1:%d" % (args.rpc_base + i) for i in range(n)]
        t_spawn = time.monotonic()
        for i in range(n):
            logf = open(os.path.join(work, "serf-%d.log" % i), "wb")
            procs.append(subprocess.Popen(
                [args.serf, "agent", "-node=serf-%d" % i, "-bind=" + bind[i], "-rpc-addr=" + rpc[i],
                 "-encrypt=" + args.key, "-log-level=err"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT))
            logf.close()
        # Wait until every agent's RPC answers.
        deadline = time.monotonic() + 60
        for i in range(n):
            while True:
                if procs[i].poll() is not None:
                    raise RuntimeError("serf agent %d exited (%s); see %s" % (i, procs[i].returncode, work))
                try:
                    rpcs.append(SerfRPC(rpc[i]))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("serf agent %d: RPC not answering after 60 s" % i)
                    time.sleep(0.02)
        result["startup_s"] = time.monotonic() - t_spawn
        log("%d serf agents up in %.1f s" % (n, result["startup_s"]))

        # Joins: every agent joins agent 0, all issued at once over a second
        # RPC connection per agent (send every request, collect the answers
        # later), so polling `members` is not held up by them.
        join_rpcs = [SerfRPC(rpc[i]) for i in range(1, n)]
        rpcs.extend(join_rpcs)
        observers = sorted({0, n // 2, n - 1})
        t0 = time.monotonic()
        for i, c in enumerate(join_rpcs, start=1):
            out = bytearray()
            mp_encode({"Command": "join", "Seq": c.seq}, out)
            mp_encode({"Existing": [bind[0]], "Replay": False}, out)
            c.seq += 1
            c.sock.sendall(out)
        joins_issued_ms = (time.monotonic() - t0) * 1000
        obs_ms = None
        all_ms = None
        query = rpcs[:n]
        deadline = t0 + args.membership_timeout
        while time.monotonic() < deadline:
            if obs_ms is None and all(query[o].alive_count() == n for o in observers):
                obs_ms = (time.monotonic() - t0) * 1000
            if obs_ms is not None:
                # Sweep all agents (coarser: one RPC round trip each).
                if all(c.alive_count() == n for c in query):
                    all_ms = (time.monotonic() - t0) * 1000
                    break
            time.sleep(0.02)
        joins_ok = 0
        for c in join_rpcs:
            try:
                header = c._read_obj()
                body = c._read_obj()
                if not header.get("Error") and body.get("Num", 0) > 0:
                    joins_ok += 1
            except (OSError, ConnectionError):
                pass
        result["joins_issued_ms"] = joins_issued_ms
        result["joins_ok"] = joins_ok
        result["membership_observers_ms"] = obs_ms
        result["membership_all_ms"] = all_ms
        if all_ms is None:
            counts = [c.alive_count() for c in rpcs]
            log("membership did NOT converge in %.0f s (min alive %d)" % (args.membership_timeout, min(counts)))
        else:
            log("membership: observers saw %d alive after %.0f ms, all agents after %.0f ms" % (n, obs_ms, all_ms))

        # Cross-check with the CLI itself on the observers.
        cli = []
        for o in observers:
            r = subprocess.run([args.serf, "members", "-status=alive", "-rpc-addr=" + rpc[o]],
                               capture_output=True, text=True, timeout=30)
            cli.append(len([l for l in r.stdout.splitlines() if l.strip()]))
        result["cli_alive_on_observers"] = cli

        time.sleep(args.settle_seconds)
        # At rest.
        c0 = net_counters(args.nft_table)
        cpu0 = sum(cpu_ticks(p.pid) for p in procs)
        ts = time.monotonic()
        time.sleep(args.rest_seconds)
        c1 = net_counters(args.nft_table)
        cpu1 = sum(cpu_ticks(p.pid) for p in procs)
        dt = time.monotonic() - ts
        interval = push_pull_interval_s(n)
        rest = {"seconds": args.rest_seconds, "push_pull_interval_s": interval,
                "agents_cpu_percent": (cpu1 - cpu0) / os.sysconf("SC_CLK_TCK") / dt * 100,
                "udp_rcvbuf_errors_so_far": c1["udp_rcvbuf_errors"]}
        if c1["own"]:
            rest["bytes_per_s_per_node"] = (c1["lo_bytes"] - c0["lo_bytes"]) / dt / n
            rest["packets_per_s_per_node"] = (c1["lo_packets"] - c0["lo_packets"]) / dt / n
            conns = c1["tcp_active_opens"] - c0["tcp_active_opens"]
            rest["tcp_connections"] = conns
            if c0["nft"] and c1["nft"]:
                rest["udp_bytes_per_s_per_node"] = (c1["udp_bytes"] - c0["udp_bytes"]) / dt / n
                rest["tcp_bytes_per_s_per_node"] = (c1["tcp_bytes"] - c0["tcp_bytes"]) / dt / n
                if conns > 0:
                    per = (c1["tcp_bytes"] - c0["tcp_bytes"]) / conns
                    rest["bytes_per_tcp_connection"] = per
                    rest["steady_bytes_per_s_per_node"] = rest["udp_bytes_per_s_per_node"] + per / interval
        # serf's periodic push/pull (first one 30-60 s after start, then one
        # per node per interval) rarely falls in the window; measure the
        # size of one exchange by making K of them: a `join` of a member
        # is one push/pull with the same content (serf's LocalState ignores
        # the join flag). Counted on the gossip ports only (nft counter
        # tcp_ports, set up by run.sh for --bind-base..+999), so the RPC
        # connection carrying the join requests is left out.
        k = min(5, n - 1)
        p0 = net_counters(args.nft_table)
        for i in range(1, k + 1):
            rpcs[i].call("join", {"Existing": [bind[(i + 1) % n]], "Replay": False})
        time.sleep(0.5)  # FIN/ACK segments
        p1 = net_counters(args.nft_table)
        if "tcp_ports_bytes" in p0 and "tcp_ports_bytes" in p1 and c1["own"] and "udp_bytes_per_s_per_node" in rest:
            per = (p1["tcp_ports_bytes"] - p0["tcp_ports_bytes"]) / k
            rest["bytes_per_push_pull_exchange"] = per
            rest["push_pull_exchanges_measured"] = k
            rest["steady_bytes_per_s_per_node"] = rest["udp_bytes_per_s_per_node"] + per / interval
        result["rest"] = rest
        rss = [rss_kb(p.pid) for p in procs]
        rss = [r for r in rss if r is not None]
        result["rss_per_agent_kb"] = {"mean": sum(rss) / len(rss), "p50": percentile(rss, 50), "max": max(rss),
                                      "min": min(rss)}
        log("at rest: %.0f B/s per node on lo (UDP %s, TCP %s over %s connections); one push/pull exchange %s"
            " bytes; steady state %s B/s per node; RSS per agent %.0f kB mean" % (
                rest.get("bytes_per_s_per_node", -1), fmt(rest.get("udp_bytes_per_s_per_node")),
                fmt(rest.get("tcp_bytes_per_s_per_node")), rest.get("tcp_connections"),
                fmt(rest.get("bytes_per_push_pull_exchange")), fmt(rest.get("steady_bytes_per_s_per_node")),
                result["rss_per_agent_kb"]["mean"]))
        result["alive_on_observers_at_end"] = [rpcs[o].alive_count() for o in observers]
    finally:
        for c in rpcs:
            c.close()
        cleanup()
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    text = json.dumps(result)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0 if result.get("membership_all_ms") is not None else 1


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except OSError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
