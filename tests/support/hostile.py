#!/usr/bin/env python3
"""Hostile clients for tests/integration/hostile.sh: each sub-command plays
one kind of abuse against an agent and stops by itself (bounded in count and
time). Targets are the test-bed's own addresses or a unix socket.

  gossip-streams HOST PORT CONNS MIB SECONDS
      CONNS TCP connections to the gossip port, each sending memberlist's
      encrypted-message type byte, a length of MIB MiB and then garbage, all
      at once; the agent should drop each one at the header.
  udp-flood HOST PORT COUNT
      COUNT random datagrams (1..1400 bytes) to the gossip port.
  idle-api SOCKET CONNS SECONDS
      CONNS unix-socket connections to the API that send nothing, held for
      SECONDS (the agent should shed the oldest idle ones).
"""
import os
import random
import select
import socket
import struct
import sys
import time

ENCRYPT_MSG = 10  # memberlist's encryptMsg type byte


def gossip_streams(host, port, conns, mib, seconds):
    deadline = time.monotonic() + seconds
    length = mib << 20
    header = bytes([ENCRYPT_MSG]) + struct.pack(">I", length)
    chunk = os.urandom(64 << 10)
    socks, sent, refused = [], {}, 0
    for _ in range(conns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        except OSError:
            refused += 1
            s.close()
            continue
        socks.append(s)
        sent[s] = -len(header)
    pending = list(socks)
    while pending and time.monotonic() < deadline:
        _, writable, _ = select.select([], pending, [], 0.5)
        for s in writable:
            try:
                if sent[s] < 0:
                    n = s.send(header[len(header) + sent[s]:])
                else:
                    n = s.send(chunk[: min(len(chunk), length - sent[s])])
                sent[s] += n
                if sent[s] >= length:
                    pending.remove(s)
            except OSError:
                pending.remove(s)  # the agent closed it: what we want
    closed_by_agent = sum(1 for s in socks if sent[s] < length)
    for s in socks:
        s.close()
    print(f"gossip-streams: {len(socks)} connected, {refused} refused, "
          f"{closed_by_agent} cut short by the agent, "
          f"{sum(max(v, 0) for v in sent.values()) >> 20} MiB sent in all")


def udp_flood(host, port, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rnd = random.Random(7)
    blob = os.urandom(1 << 16)
    for i in range(count):
        n = rnd.randint(1, 1400)
        off = rnd.randint(0, len(blob) - n)
        try:
            s.sendto(blob[off:off + n], (host, port))
        except OSError:
            time.sleep(0.001)
        if i % 2000 == 1999:
            time.sleep(0.01)  # keep the socket buffers from only dropping
    print(f"udp-flood: {count} datagrams sent")


def idle_api(path, conns, seconds):
    socks, failed = [], 0
    for _ in range(conns):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    time.sleep(seconds)
    alive = 0
    for s in socks:
        # A connection the agent shed reads EOF at once.
        s.setblocking(False)
        try:
            alive += 1 if s.recv(1) else 0
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        s.close()
    print(f"idle-api: {len(socks)} connected, {failed} failed, {alive} still open after {seconds}s")


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "gossip-streams":
        gossip_streams(args[0], int(args[1]), int(args[2]), int(args[3]), float(args[4]))
    elif cmd == "udp-flood":
        udp_flood(args[0], int(args[1]), int(args[2]))
    elif cmd == "idle-api":
        idle_api(args[0], int(args[1]), float(args[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
