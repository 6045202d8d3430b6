#!/usr/bin/python3
"""What the near-cache's invalidation costs Redis (issue 14, defect 2). Loopback only; starts and
stops its own redis-server (and sip-redirectd) on free ports.

  lookups: sip-redirectd with the near-cache on, N INVITEs for N distinct unknown AORs (404), then
           Redis's INFO: used_memory and tracking_total_keys (the tracking table). Run it against
           the build before and after the fix (SIPR_BUILD_DIR) to compare.
  bcast:   the other design, CLIENT TRACKING ... BCAST PREFIX sipr:loc: on K tracked connections
           (K = instances x workers, each worker has its own): W writes of location keys, then
           what the K invalidation connections received (messages, keys, bytes) and the Redis CPU
           time per write, measured at several K.

    SIPR_BUILD_DIR=build/release /usr/bin/python3 bench/tracking_cost.py lookups --count 1000000
    SIPR_BUILD_DIR=build/release /usr/bin/python3 bench/tracking_cost.py lookups --count 1000000 \
        --flag=--cache-tracking-max-keys=100000
    /usr/bin/python3 bench/tracking_cost.py bcast --writes 20000 --connections 1,16,64,256
"""
from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "lib"))

from sipr_test.base import LOCALHOST  # noqa: E402
from sipr_test.processes import ServiceDaemon  # noqa: E402
from sipr_test.redis_servers import RedisServer  # noqa: E402


def info(r: RedisServer) -> dict[str, str]:
    return {k: str(v) for k, v in r.client.info().items()}


def invite(port: int, user: str, n: int) -> bytes:
    branch = f"z9hG4bKtc{n}"
    return (f"INVITE sip:{user}@example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOCALHOST}:{port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:bench@example.com>;tag=tc{n}\r\n"
            f"To: <sip:{user}@example.com>\r\n"
            f"Call-ID: tc{n}@127.0.0.1\r\n"
            "CSeq: 1 INVITE\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def drive_lookups(target: int, count: int, window: int = 256) -> tuple[int, float]:
    """INVITEs for `count` distinct AORs, `window` at a time from 4 sockets; a window not all
    answered within 200 ms is given up (UDP). Returns (answers, seconds)."""
    socks = []
    for _ in range(4):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((LOCALHOST, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setblocking(False)
        socks.append(s)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    answered = 0
    t0 = time.monotonic()
    n = 0
    while n < count:
        batch = min(window, count - n)
        for i in range(batch):
            s = socks[(n + i) % len(socks)]
            s.sendto(invite(s.getsockname()[1], f"rnd{n + i}x{os.getpid()}", n + i),
                     (LOCALHOST, target))
        n += batch
        got = 0
        deadline = time.monotonic() + 0.2
        while got < batch and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.05):
                while True:
                    try:
                        key.fileobj.recv(65536)
                        got += 1
                    except BlockingIOError:
                        break
        answered += got
    for s in socks:
        s.close()
    return answered, time.monotonic() - t0


def cmd_lookups(a: argparse.Namespace) -> None:
    with RedisServer() as r:
        base = info(r)
        flags = ["--cache-ttl", "60000", "--cache-negative-ttl", "60000",
                 "--cache-max-entries", "100000", *a.flag]
        with ServiceDaemon("sip-redirectd", r.url, flags, name="sip-redirectd",
                           workers=a.workers, env={**os.environ, "SIPR_SECRET": "tc"}) as d:
            deadline = time.monotonic() + 10
            while d.stderr_text().count("near-cache on") < a.workers and time.monotonic() < deadline:
                time.sleep(0.05)
            answered, secs = drive_lookups(d.port, a.count)
            during = info(r)
        after = info(r)
        limit = r.client.config_get("tracking-table-max-keys")["tracking-table-max-keys"]
        print(f"flags: {' '.join(a.flag) or '(none)'}; tracking-table-max-keys after: {limit}")
        print(f"{a.count} distinct look-ups, {answered} answered in {secs:.1f} s")
        print(f"used_memory: empty {int(base['used_memory']):,} B; after the look-ups "
              f"{int(during['used_memory']):,} B (+{int(during['used_memory']) - int(base['used_memory']):,}); "
              f"after sip-redirectd stopped {int(after['used_memory']):,} B")
        print(f"tracking_total_keys: after the look-ups {during['tracking_total_keys']}, "
              f"after sip-redirectd stopped {after['tracking_total_keys']}; "
              f"tracking_total_items {during['tracking_total_items']}")


def read_all(sock: socket.socket, stats: dict[str, int], tails: dict[str, bytes]) -> None:
    """Counts bytes, messages and location keys received on one invalidation connection. Each
    token keeps its own tail (its length - 1), so one split over two reads is counted once."""
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return
        if not data:
            return
        stats["bytes"] += len(data)
        for what, token in (("messages", b"__redis__:invalidate"), ("keys", b"sipr:loc:")):
            buf = tails.get(what, b"") + data
            stats[what] += buf.count(token)
            tails[what] = buf[-(len(token) - 1):]


def resp(*args: str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for x in args:
        b = x.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def bcast_run(r: RedisServer, k: int, writes: int, rate: int) -> dict[str, float]:
    inval, data = [], []
    for i in range(k):
        s = socket.create_connection((LOCALHOST, r.port))
        s.sendall(resp("CLIENT", "ID"))
        cid = s.recv(100).split(b"\r\n")[0][1:].decode()
        s.sendall(resp("SUBSCRIBE", "__redis__:invalidate"))
        s.recv(1000)
        d = socket.create_connection((LOCALHOST, r.port))
        d.sendall(resp("CLIENT", "TRACKING", "ON", "REDIRECT", cid, "BCAST", "PREFIX", "sipr:loc:"))
        reply = d.recv(100)
        assert reply.startswith(b"+OK"), reply
        s.setblocking(False)
        inval.append(s)
        data.append(d)
    stats = {"bytes": 0, "messages": 0, "keys": 0}
    tails: list[dict[str, bytes]] = [{} for _ in inval]
    sel = selectors.DefaultSelector()
    for i, s in enumerate(inval):
        sel.register(s, selectors.EVENT_READ, i)
    w = socket.create_connection((LOCALHOST, r.port))
    wf = w.makefile("rb")
    cpu0 = info(r)
    c0 = float(cpu0["used_cpu_user"]) + float(cpu0["used_cpu_sys"])
    t0 = time.monotonic()
    batch = max(1, rate // 100)  # 10 ms of writes at a time, as REGISTERs arrive spread out
    done = 0
    while done < writes:
        n = min(batch, writes - done)
        w.sendall(b"".join(resp("HSET", f"sipr:loc:{{sip:u{done + j}@example.com}}", "b", "x")
                           for j in range(n)))
        for _ in range(n):
            wf.readline()
        done += n
        next_at = t0 + done / rate
        while time.monotonic() < next_at:
            for key, _ in sel.select(timeout=max(0.0, next_at - time.monotonic())):
                read_all(key.fileobj, stats, tails[key.data])
    # Drain what is still on its way.
    quiet = time.monotonic() + 0.5
    while time.monotonic() < quiet:
        for key, _ in sel.select(timeout=0.1):
            read_all(key.fileobj, stats, tails[key.data])
            quiet = time.monotonic() + 0.5
    cpu1 = info(r)
    c1 = float(cpu1["used_cpu_user"]) + float(cpu1["used_cpu_sys"])
    for s in inval + data + [w]:
        s.close()
    r.client.flushall()
    return {"k": k, "cpu_s": c1 - c0, **stats}


def cmd_bcast(a: argparse.Namespace) -> None:
    ks = [int(x) for x in a.connections.split(",")]
    with RedisServer(extra_args=["--maxclients", "10000"]) as r:
        base = bcast_run(r, 0, a.writes, a.rate)
        print(f"{a.writes} writes at {a.rate}/s; Redis CPU with no tracked connection: "
              f"{base['cpu_s'] * 1e6 / a.writes:.1f} us/write")
        print("| tracked connections | messages per connection per write | bytes per connection "
              "per write | Redis CPU us/write | extra CPU per write per connection, us |")
        print("|---|---|---|---|---|")
        for k in ks:
            m = bcast_run(r, k, a.writes, a.rate)
            extra = (m["cpu_s"] - base["cpu_s"]) * 1e6 / a.writes / k
            print(f"| {k} | {m['messages'] / k / a.writes:.3f} (keys {m['keys'] / k / a.writes:.3f}) "
                  f"| {m['bytes'] / k / a.writes:.1f} | {m['cpu_s'] * 1e6 / a.writes:.1f} | {extra:.2f} |")


def cmd_readers(a: argparse.Namespace) -> None:
    """Redis memory per tracked key as the number of tracked connections that read it grows (each
    worker of each instance is one): K connections in default mode each read the same keys."""
    print("| readers per key | used_memory per key, bytes | tracking_total_items |")
    print("|---|---|---|")
    for k in [int(x) for x in a.connections.split(",")]:
        with RedisServer(extra_args=["--tracking-table-max-keys", "0"]) as r:
            conns, data = [], []
            for _ in range(k):
                inv = socket.create_connection((LOCALHOST, r.port))
                inv.sendall(resp("CLIENT", "ID"))
                cid = inv.recv(100).split(b"\r\n")[0][1:].decode()
                d = socket.create_connection((LOCALHOST, r.port))
                d.sendall(resp("CLIENT", "TRACKING", "ON", "REDIRECT", cid))
                assert d.recv(100).startswith(b"+OK")
                conns += [inv, d]
                data.append(d)
            base = int(info(r)["used_memory"])  # the connections' own memory left out
            for d in data:
                df = d.makefile("rb")
                for start in range(0, a.keys, 1000):
                    end = min(a.keys, start + 1000)
                    d.sendall(b"".join(resp("HGETALL", f"sipr:loc:{{sip:rnd{n}@example.com}}")
                                       for n in range(start, end)))
                    for _ in range(start, end):
                        df.readline()
            m = info(r)
            print(f"| {k} | {(int(m['used_memory']) - base) / a.keys:.0f} | {m['tracking_total_items']} |")
            for c in conns:
                c.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lk = sub.add_parser("lookups")
    lk.add_argument("--count", type=int, default=1_000_000)
    lk.add_argument("--workers", type=int, default=2)
    lk.add_argument("--flag", action="append", default=[],
                    help="an extra sip-redirectd flag (repeatable), e.g. --flag=--cache-tracking-max-keys=1000")
    bc = sub.add_parser("bcast")
    bc.add_argument("--writes", type=int, default=20000)
    bc.add_argument("--rate", type=int, default=3000, help="writes per second")
    bc.add_argument("--connections", default="1,16,64,256")
    rd = sub.add_parser("readers")
    rd.add_argument("--keys", type=int, default=100000)
    rd.add_argument("--connections", default="1,2,8,32")
    a = p.parse_args()
    {"lookups": cmd_lookups, "bcast": cmd_bcast, "readers": cmd_readers}[a.cmd](a)


if __name__ == "__main__":
    main()
