#!/usr/bin/env python3
"""Clients the service/VIP integration tests drive inside a namespace.

hold: opens COUNT TCP connections to a redis-like server (inline protocol:
      "GET whoami"), prints "i backend" per connection to --out, then waits
      for lines on --ctl (a FIFO): "check N" asks every connection again and
      appends "N i backend" or "N i ERR reason" lines; "quit" ends.
send: sends FILE to IP:PORT paced over SECONDS (a long transfer).
udp:  one datagram from --sport to IP:PORT, prints the reply (or ERR).
serve-udp: answers every datagram on PORT with NAME (a UDP backend).
ask:  one connection from --sport (0: any), "GET whoami", prints the reply
      (or "ERR <error> (after N ms)", N counted from the connect).
"""
import argparse
import socket
import sys
import time


def whoami(sock, timeout=2.0):
    sock.settimeout(timeout)
    sock.sendall(b"GET whoami\r\n")
    data = b""
    while data.count(b"\r\n") < 2:
        chunk = sock.recv(256)
        if not chunk:
            raise ConnectionError("closed by peer")
        data += chunk
    # "$2\r\nb1\r\n"
    return data.split(b"\r\n")[1].decode()


def connect(ip, port, sport=0, timeout=2.0):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sport:
        sock.bind(("0.0.0.0", sport))
    sock.settimeout(timeout)
    sock.connect((ip, port))
    return sock


def hold(args):
    conns = []
    with open(args.out, "a", buffering=1) as out:
        for i in range(args.count):
            try:
                s = connect(args.ip, args.port)
                conns.append(s)
                out.write(f"{i} {whoami(s)}\n")
            except OSError as e:
                conns.append(None)
                out.write(f"{i} ERR {e}\n")
        out.write("ready\n")
        with open(args.ctl) as ctl:
            for line in ctl:
                words = line.split()
                if not words:
                    continue
                if words[0] == "quit":
                    break
                if words[0] == "check":
                    n = words[1]
                    for i, s in enumerate(conns):
                        if s is None:
                            out.write(f"{n} {i} ERR not connected\n")
                            continue
                        try:
                            out.write(f"{n} {i} {whoami(s)}\n")
                        except (OSError, ConnectionError) as e:
                            out.write(f"{n} {i} ERR {type(e).__name__} {e}\n")
                    out.write(f"{n} done\n")


def send(args):
    with open(args.file, "rb") as f:
        data = f.read()
    sock = connect(args.ip, args.port, timeout=30)
    chunk = 64 * 1024
    pieces = max(1, (len(data) + chunk - 1) // chunk)
    pause = args.seconds / pieces
    for off in range(0, len(data), chunk):
        sock.sendall(data[off:off + chunk])
        time.sleep(pause)
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(30)
    while sock.recv(4096):
        pass
    sock.close()


def udp(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", args.sport))
    # UDP may lose a datagram: one more try on the same flow (same source
    # port), which must reach the same backend.
    sock.settimeout(1)
    for attempt in range(2):
        sock.sendto(b"who\n", (args.ip, args.port))
        try:
            print(sock.recv(256).decode().strip())
            return 0
        except OSError as e:
            if attempt == 1:
                print(f"ERR {e}")
    return 1


def serve_udp(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.port))
    reply = (args.name + "\n").encode()
    while True:
        _, peer = sock.recvfrom(256)
        sock.sendto(reply, peer)


def ask(args):
    # The time is the socket's own, so a caller judging "refused at once"
    # does not count the interpreter's start, which a loaded machine slows.
    start = time.monotonic()
    try:
        s = connect(args.ip, args.port, args.sport)
        print(whoami(s))
        s.close()
    except (OSError, ConnectionError) as e:
        ms = int((time.monotonic() - start) * 1000)
        print(f"ERR {type(e).__name__} {e} (after {ms} ms)")
        return 1
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hold")
    h.add_argument("ip"); h.add_argument("port", type=int)
    h.add_argument("--count", type=int, default=4)
    h.add_argument("--out", required=True); h.add_argument("--ctl", required=True)
    s = sub.add_parser("send")
    s.add_argument("ip"); s.add_argument("port", type=int)
    s.add_argument("--file", required=True); s.add_argument("--seconds", type=float, default=5)
    u = sub.add_parser("udp")
    u.add_argument("ip"); u.add_argument("port", type=int); u.add_argument("--sport", type=int, required=True)
    v = sub.add_parser("serve-udp")
    v.add_argument("port", type=int); v.add_argument("name")
    a = sub.add_parser("ask")
    a.add_argument("ip"); a.add_argument("port", type=int); a.add_argument("--sport", type=int, default=0)
    args = p.parse_args()
    return {"hold": hold, "send": send, "udp": udp, "ask": ask, "serve-udp": serve_udp}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
