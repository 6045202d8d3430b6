"""One source socket is spread over every worker (DESIGN §7 scale-out; --spread random|flow).

A load balancer sends everything from one address and port. With SO_REUSEPORT alone the kernel
hashes that flow to one worker's socket, so one core does all the work; with --spread random (the
default) each datagram goes to a random worker. The per-worker counter
sipr_worker_datagrams_total{worker} shows where datagrams went. Also: --rate-limit keeps its
meaning per source IP for the whole instance when the workers share a source's datagrams.

    /usr/bin/python3 -m pytest tests/integration/test_spread.py [-k name-substring]
"""
from __future__ import annotations

import os
import select
import socket
import time


from sipr_test.base import free_tcp_port, free_udp_port, scaled
from sipr_test.metrics import metric_value
from sipr_test.processes import ServiceDaemon, run_program
from sipr_test.redis_servers import RedisServer
from sipr_test.sip import SipUdp

ENV = {**os.environ, "SIPR_SECRET": "spread-integration-secret"}
COUNT = 2000   # datagrams from one socket
WINDOW = 100   # sent back to back, then their answers read, so no buffer overflows


def per_worker(text: str, workers: int) -> list[float]:
    out = []
    for i in range(workers):
        v = metric_value(text, "sipr_worker_datagrams_total", {"worker": str(i)})
        assert v is not None, f'no sipr_worker_datagrams_total{{worker="{i}"}} in GET /metrics'
        out.append(v)
    return out


def settled(daemon: ServiceDaemon, workers: int, want_total: float) -> list[float]:
    """The per-worker counts once their sum reaches `want_total` or stops moving."""
    deadline = time.monotonic() + scaled(3)
    last = None
    while True:
        now = per_worker(daemon.metrics(), workers)
        if sum(now) >= want_total or now == last or time.monotonic() > deadline:
            return now
        last = now
        time.sleep(0.2)


def blast_options(ua: SipUdp, count: int) -> int:
    """Sends `count` OPTIONS to the server itself from `ua`'s one socket, WINDOW at a time, and
    returns how many were answered (any final response)."""
    answered = 0
    for start in range(0, count, WINDOW):
        n = min(WINDOW, count - start)
        for _ in range(n):
            ua.send_raw(ua.options().data)
        got = 0
        deadline = time.monotonic() + scaled(2)
        while got < n and time.monotonic() < deadline:
            r, _, _ = select.select([ua.sock], [], [], max(0.0, deadline - time.monotonic()))
            if r:
                ua.sock.recv(65536)
                got += 1
        answered += got
    return answered


def spread_case(redis: RedisServer, program: str, workers: int) -> None:
    with ServiceDaemon(program, redis.url, [], name=f"{program}[{workers} workers]",
                       workers=workers, env=ENV) as d, d.ua() as ua:
        before = per_worker(d.metrics(), workers)
        answered = blast_options(ua, COUNT)
        assert answered >= COUNT * 0.99, f"{answered} of {COUNT} OPTIONS answered"
        after = settled(d, workers, sum(before) + COUNT)
        got = [a - b for a, b in zip(after, before)]
        total = sum(got)
        print(f"#   {program}, {workers} workers, one source socket: {[int(g) for g in got]}",
              flush=True)
        assert COUNT * 0.99 <= total <= COUNT, f"{total:.0f} datagrams counted, want {COUNT}"
        share = total / workers
        for i, g in enumerate(got):
            assert 0.75 * share <= g <= 1.25 * share, (
                f"worker {i} handled {g:.0f} of {total:.0f} datagrams from one socket, want "
                f"{share:.0f} +-25% (per worker: {[int(x) for x in got]})")


def test_redirectd_one_socket_over_2_workers(redis):
    """sip-redirectd, 2 workers: 2,000 OPTIONS from one socket, each worker handles 1,000 +-25%."""
    spread_case(redis, "sip-redirectd", 2)


def test_redirectd_one_socket_over_4_workers(redis):
    """sip-redirectd, 4 workers: each handles 500 +-25% of 2,000 datagrams from one socket."""
    spread_case(redis, "sip-redirectd", 4)


def test_registrard_one_socket_over_2_workers(redis):
    """sip-registrard, 2 workers: the same spreading."""
    spread_case(redis, "sip-registrard", 2)


def test_registrard_one_socket_over_4_workers(redis):
    """sip-registrard, 4 workers: the same spreading."""
    spread_case(redis, "sip-registrard", 4)


def test_flow_keeps_one_socket_on_one_worker(redis):
    """SIPR_SPREAD=flow (and --spread flow) keeps the kernel's flow hash: every datagram of one
    socket lands on the same worker, for operators who want flow affinity."""
    for how, flags, env in (("SIPR_SPREAD=flow", [], {**ENV, "SIPR_SPREAD": "flow"}),
                            ("--spread flow", ["--spread", "flow"], ENV)):
        with ServiceDaemon("sip-redirectd", redis.url, flags, name=f"sip-redirectd[{how}]",
                           workers=4, env=env) as d, d.ua() as ua:
            before = per_worker(d.metrics(), 4)
            assert blast_options(ua, 400) >= 396, f"{how}: OPTIONS unanswered"
            got = [a - b for a, b in zip(settled(d, 4, sum(before) + 400), before)]
            assert sorted(got) == [0, 0, 0, 400], f"{how}: datagrams per worker"


def test_bad_spread_refused_at_start(redis):
    """--spread with another value: one line on stderr naming the flag, non-zero exit."""
    r = run_program("sip-redirectd", ["--listen", f"127.0.0.1:{free_udp_port()}", "--metrics",
                                      f"127.0.0.1:{free_tcp_port()}", "--redis", redis.url,
                                      "--spread", "cpu"], timeout=15, env=ENV)
    assert r.returncode != 0, "exit status 0 with --spread cpu"
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "--spread" in lines[0], f"stderr: {r.stderr!r}"


RATE, BURST = 10, 100


class UaFrom(SipUdp):
    """A SipUdp whose socket is bound to another loopback address (all of 127.0.0.0/8 is
    loopback on Linux); its Via names that address, with rport."""

    def __init__(self, port: int, ip: str):
        super().__init__(port)
        self.sock.close()
        self.ip = ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((ip, 0))
        self.local_port = self.sock.getsockname()[1]

    @property
    def local(self) -> str:
        return f"{self.ip}:{self.local_port}"


def test_rate_limit_holds_per_source_with_spreading(redis):
    """--rate-limit 10 --rate-burst 100 with 4 workers sharing one source's datagrams: each
    worker allows a quarter (25 at once, 3/s, rounded up), so 400 OPTIONS sent at once from one
    socket get 100 answers plus what refills meanwhile (at most 4 x 3/s), not 4 x 100. The source
    is 127.0.0.2, whose buckets the harness's readiness probe (from 127.0.0.1) has not touched."""
    with ServiceDaemon("sip-redirectd", redis.url,
                       ["--rate-limit", str(RATE), "--rate-burst", str(BURST)],
                       name="sip-redirectd[rate]", workers=4, env=ENV) as d, \
            UaFrom(d.port, "127.0.0.2") as ua:
        t0 = time.monotonic()
        for _ in range(400):
            ua.send_raw(ua.options().data)
        answered = 0
        while ua.recv(scaled(1.0)) is not None:
            answered += 1
        elapsed = time.monotonic() - t0
        most = BURST + 4 * 3 * elapsed
        print(f"#   {answered} of 400 answered in {elapsed:.1f}s", flush=True)
        assert BURST <= answered <= most, (
            f"{answered} of 400 OPTIONS from one socket answered, want {BURST}..{most:.0f} "
            f"(burst {BURST} for the instance plus the refill)")
