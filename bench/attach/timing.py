#!/usr/bin/env python3
"""Timing loop for bench/attach/run.sh.

Enters a node's network namespace once (setns), then times, per namespace,
each call of either the weft CLI (`weft endpoint attach/detach`) or the CNI
reference `bridge` plugin (ADD/DEL with host-local IPAM). Prints one JSON
object: per-call wall times in milliseconds and the agent's memory.
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000


def setns(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def proc_status(pid):
    """VmHWM and VmRSS of pid, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


def timed(argv, **kwargs):
    start = time.perf_counter_ns()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)
    elapsed_ms = (time.perf_counter_ns() - start) / 1e6
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return elapsed_ms, proc.stdout


def bench_weft(args, namespaces):
    weft = [args.weft, "--host", args.host]
    result = {"attach_ms": [], "detach_ms": [], "ips": [], "noop_ms": []}
    # Baseline: a CLI call that changes nothing (process start + one request).
    for _ in range(20):
        ms, _ = timed(weft + ["network", "ls", "-q"])
        result["noop_ms"].append(ms)
    if args.agent_pid:
        result["mem_before_kib"] = proc_status(args.agent_pid)
    for ns in namespaces:
        ms, out = timed(weft + ["endpoint", "attach", args.network, "--netns", ns])
        result["attach_ms"].append(ms)
        result["ips"].append(out.strip())
    if args.agent_pid:
        result["mem_attached_kib"] = proc_status(args.agent_pid)
    _, out = timed(weft + ["endpoint", "ls", "--format", "json"])
    result["endpoints_listed"] = len(json.loads(out))
    for ns in namespaces:
        ms, _ = timed(weft + ["endpoint", "detach", args.network, "--netns", ns])
        result["detach_ms"].append(ms)
    if args.agent_pid:
        result["mem_after_kib"] = proc_status(args.agent_pid)
    return result


def bench_cni(args, namespaces):
    with open(args.cni_config) as f:
        config = f.read()
    plugin = os.path.join(args.cni_path, "bridge")
    result = {"attach_ms": [], "detach_ms": [], "ips": []}
    for command, key in (("ADD", "attach_ms"), ("DEL", "detach_ms")):
        for ns in namespaces:
            env = dict(os.environ,
                       CNI_COMMAND=command,
                       CNI_CONTAINERID="bench-" + ns,
                       CNI_NETNS="/run/netns/" + ns,
                       CNI_IFNAME="eth0",
                       CNI_PATH=args.cni_path)
            ms, out = timed([plugin], input=config, env=env)
            result[key].append(ms)
            if command == "ADD":
                ips = json.loads(out).get("ips", [])
                result["ips"].append(ips[0]["address"] if ips else "")
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["weft", "cni"])
    p.add_argument("--node-netns", required=True, help="path of the node's netns file")
    p.add_argument("--weft")
    p.add_argument("--host")
    p.add_argument("--network")
    p.add_argument("--agent-pid", type=int)
    p.add_argument("--cni-config")
    p.add_argument("--cni-path", default="/usr/lib/cni")
    p.add_argument("namespaces", nargs="+")
    args = p.parse_args()
    setns(args.node_netns)
    try:
        result = bench_weft(args, args.namespaces) if args.mode == "weft" else bench_cni(args, args.namespaces)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"timing.py: {e}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
