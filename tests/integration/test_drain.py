"""sip-redirectd's graceful drain (issue 7): on SIGTERM the health probe (OPTIONS to the server)
is answered 503 for --drain-seconds while every other request is answered as before, then the
process stops (exit 0); a second SIGTERM, or SIGINT, stops it at once; --drain-seconds 0 and a
first SIGINT stop at once. Real redis-server, the real binaries, loopback UDP.

Each check talks from several sockets: SO_REUSEPORT spreads sources over the daemon's workers, and
every worker must drain.

    /usr/bin/python3 -m pytest tests/integration/test_drain.py [-k name-substring]
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time


from sipr_test.base import scaled, wait_until
from sipr_test.processes import ServiceDaemon, run_program
from sipr_test.redis_servers import RedisServer
from sipr_test.sip import SipUdp

DOMAIN = "example.com"
ENV = {**os.environ, "SIPR_SECRET": "drain-integration-secret"}
ALICE = f"sip:alice@{DOMAIN}"
CONTACT = "sip:alice@192.0.2.1:5060"
SOCKETS = 8  # sources per check: with 2 workers, all but certainly both get some


class Redirect(ServiceDaemon):
    def __init__(self, redis: RedisServer, flags: list[str], name: str,
                 env: dict[str, str] | None = None):
        super().__init__("sip-redirectd", redis.url, ["--domain", DOMAIN, *flags], name=name,
                         workers=2, env=ENV if env is None else env)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, within: float, what: str) -> float:
        """Waits up to `within` seconds (not scaled) for the process to exit by itself; requires
        exit status 0. Returns the seconds waited."""
        assert self.proc is not None
        t0 = time.monotonic()
        try:
            rc = self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running {within:.1f}s {what}; stderr:\n"
                                 f"{self.stderr_tail()}")
        assert rc == 0, f"{self.name} exit status {what}"
        self.returncode = rc
        return time.monotonic() - t0


def bind_alice(redis: RedisServer) -> None:
    r = run_program("sip-locctl", ["--redis", redis.url, "bind", ALICE, CONTACT,
                                   "--expires", "600"])
    assert r.returncode == 0, f"sip-locctl bind exited {r.returncode}: {r.stderr}"


def statuses(port: int, method: str) -> list[int]:
    """One transaction per socket, SOCKETS sockets: the final status of each. OPTIONS goes to the
    server (the health probe), INVITE to alice."""
    out = []
    for _ in range(SOCKETS):
        with SipUdp(port) as ua:
            req = ua.options() if method == "OPTIONS" else ua.build("INVITE", ALICE)
            out.append(ua.send(req, timeout=4).status)
    return out


def probe_says(port: int, status: int) -> bool:
    return statuses(port, "OPTIONS") == [status] * SOCKETS


def check_invites_redirected(port: int, when: str) -> None:
    got = statuses(port, "INVITE")
    assert got == [302] * SOCKETS, f"INVITE statuses {when}"


def start_draining(rd: Redirect) -> float:
    """Checks the instance is healthy, sends SIGTERM and waits until every worker answers the
    probe 503. Returns the monotonic time of the SIGTERM."""
    assert probe_says(rd.port, 200), "health probe before SIGTERM is not 200 on every worker"
    assert rd.metric("sipr_draining") == 0.0, "sipr_draining before SIGTERM"
    t0 = time.monotonic()
    rd.signal(signal.SIGTERM)
    # The signal reaches the workers through their loops: give them a moment.
    wait_until(lambda: probe_says(rd.port, 503), 2, interval=0.02,
               what="the health probe to answer 503 on every worker after SIGTERM")
    return t0


# ------------------------------------------------------------------------------------------------

def test_sigterm_drains_then_exits_zero(redis):
    """--drain-seconds 3: after SIGTERM the probe says 503 (sipr_draining 1) while INVITEs still
    get their 302; then the process exits 0 by itself, and nothing answers on its port."""
    bind_alice(redis)
    drain = 3
    rd = Redirect(redis, ["--drain-seconds", str(drain)], name="sip-redirectd[drain 3]")
    with rd:
        check_invites_redirected(rd.port, "before SIGTERM")
        t0 = start_draining(rd)
        check_invites_redirected(rd.port, "while draining")
        assert rd.metric("sipr_draining") == 1.0, "sipr_draining while draining"
        assert probe_says(rd.port, 503), "health probe not 503 after the INVITEs"
        assert rd.running(), f"exited before the end of the {drain} s drain window"
        rd.wait_exit(drain + scaled(3) - (time.monotonic() - t0), "after the drain window")
        log = rd.stderr_text()
        assert "draining for 3 s" in log, "no 'draining for 3 s' in the log"
        assert "stopped" in log, "no 'stopped' in the log"
    with SipUdp(rd.port) as ua:
        ua.send_raw(ua.options().data)
        ua.expect_silence(0.5)


def test_drain_seconds_from_environment(redis):
    """SIPR_DRAIN_SECONDS is --drain-seconds' environment equivalent."""
    bind_alice(redis)
    rd = Redirect(redis, [], name="sip-redirectd[SIPR_DRAIN_SECONDS=2]",
                  env={**ENV, "SIPR_DRAIN_SECONDS": "2"})
    with rd:
        t0 = start_draining(rd)
        check_invites_redirected(rd.port, "while draining")
        rd.wait_exit(2 + scaled(3) - (time.monotonic() - t0), "after the drain window")
        assert "draining for 2 s" in rd.stderr_text(), "no 'draining for 2 s' in the log"


def second_signal_stops_at_once(redis, second: int) -> None:
    bind_alice(redis)
    rd = Redirect(redis, ["--drain-seconds", "60"],
                  name=f"sip-redirectd[drain 60, then {signal.Signals(second).name}]")
    with rd:
        start_draining(rd)
        check_invites_redirected(rd.port, "while draining")
        rd.signal(second)
        rd.wait_exit(scaled(5), f"after {signal.Signals(second).name} during a 60 s drain")
        assert "while draining: stopping at once" in rd.stderr_text(), (
            "no 'while draining: stopping at once' in the log")


def test_second_sigterm_during_drain_stops_at_once(redis):
    second_signal_stops_at_once(redis, signal.SIGTERM)


def test_sigint_during_drain_stops_at_once(redis):
    second_signal_stops_at_once(redis, signal.SIGINT)


def test_drain_seconds_zero_stops_at_once(redis):
    """--drain-seconds 0: SIGTERM stops at once, without a drain."""
    rd = Redirect(redis, ["--drain-seconds", "0"], name="sip-redirectd[drain 0]")
    with rd:
        assert probe_says(rd.port, 200), "health probe before SIGTERM is not 200"
        rd.signal(signal.SIGTERM)
        rd.wait_exit(scaled(5), "after SIGTERM with --drain-seconds 0")
        assert "draining" not in rd.stderr_text(), "'draining' in the log of --drain-seconds 0"


def test_first_sigint_stops_at_once(redis):
    """SIGINT (Ctrl-C) is no SIGTERM: it stops at once even with a drain configured."""
    rd = Redirect(redis, ["--drain-seconds", "60"], name="sip-redirectd[drain 60, SIGINT]")
    with rd:
        rd.signal(signal.SIGINT)
        rd.wait_exit(scaled(5), "after SIGINT with --drain-seconds 60")
        assert "draining" not in rd.stderr_text(), "'draining' in the log after a first SIGINT"


def test_help_lists_drain_seconds_default_5():
    r = run_program("sip-redirectd", ["--help"])
    assert r.returncode == 0, "sip-redirectd --help exit status"
    line = next((l for l in r.stdout.splitlines() if "--drain-seconds" in l), "")
    assert line != "", "--help does not list --drain-seconds"
    # CLI11 writes the default as "=5" (or "[5]" in other versions).
    assert re.search(r"(=|\[)5\]?(\s|$)", line) is not None, (
        f"--help does not give 5 as --drain-seconds' default: {line.strip()!r}")
    assert "SIPR_DRAIN_SECONDS" in r.stdout, "--help does not name SIPR_DRAIN_SECONDS"


def test_bad_drain_seconds_one_line():
    for bad in ("-1", "abc", "3601"):
        r = run_program("sip-redirectd", ["--drain-seconds", bad, "--redis",
                                          "redis://127.0.0.1:1"])
        assert r.returncode != 0, f"--drain-seconds {bad}: exit status 0"
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, f"--drain-seconds {bad}: stderr lines ({r.stderr!r})"
        assert "--drain-seconds" in lines[0], (
            f"--drain-seconds {bad}: the line does not name the "
            f"flag: {lines[0]!r}")
