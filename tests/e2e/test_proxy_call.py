"""A whole call through a real proxy (issue 9): Kamailio, configured by deploy/kamailio-proxy/,
asks sip-redirectd where the callee is, follows the 302 itself and forks to the contacts by q.

Real processes on 127.0.0.1, free ports, every one stopped by its PID: redis-server, sip-registrard,
sip-redirectd (one or two), the Kamailio proxy (deploy/kamailio-proxy/run.sh), SIPp user agents
that REGISTER through sip-registrard (scenarios/register.xml) and then answer calls
(deploy/local/answer.xml: 180, 200, ACK, BYE, 200), and a SIPp caller (deploy/local/call.xml)
aimed at the proxy. The shipped scenarios of deploy/local are the ones up.sh --with-proxy prints.

    /usr/bin/python3 -m pytest tests/e2e/test_proxy_call.py [-k name-substring]
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from sipr_test.base import free_udp_port, wait_until
from sipr_test.processes import Kamailio, ServiceDaemon
from sipr_test.redis_servers import RedisServer
from sipr_test.sip import SipUdp
from sipr_test.sipp import SippProcess, SippResult, run_sipp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

DOMAIN = "example.com"
ENV = {**os.environ, "SIPR_SECRET": "e2e-proxy-secret"}
PROXY_RUN = ROOT / "deploy" / "kamailio-proxy" / "run.sh"
CALL = ROOT / "deploy" / "local" / "call.xml"
ANSWER = ROOT / "deploy" / "local" / "answer.xml"
REGISTER = HERE / "scenarios" / "register.xml"
TAG_RE = re.compile(r";tag=([0-9a-f]{16})$")  # sip-redirectd's keyed To-tag

# Test timers (milliseconds): a silent redirect instance or an unanswering contact is given up on
# quickly so the suite stays short. The dispatcher probes once a minute, so a failover is the
# failure_route's own doing, not a probe's, except in the case that asks for a probe every second.
REDIRECT_TIMEOUT = 500
BRANCH_TIMEOUT = 1000
PING_INTERVAL = 60


class Proxy(Kamailio):
    """The Kamailio proxy of deploy/kamailio-proxy on a free 127.0.0.1 port, asking the redirect
    instances on `redirect_ports` in that order (dispatcher algorithm 8), its runtime directory in
    the daemon's temporary directory. Ready when it answers OPTIONS with 200."""

    def __init__(self, redirect_ports: list[int], name: str = "kamailio proxy",
                 ping_interval: int = PING_INTERVAL):
        self.port = free_udp_port()
        args = ["--listen", f"127.0.0.1:{self.port}", "--domain", DOMAIN, "--algorithm", "8",
                "--redirect-timeout", str(REDIRECT_TIMEOUT),
                "--branch-timeout", str(BRANCH_TIMEOUT),
                "--ping-interval", str(ping_interval)]
        for p in redirect_ports:
            args += ["--redirect", f"127.0.0.1:{p}"]
        super().__init__(PROXY_RUN, args, sip_port=self.port, name=name)


def redirectd(redis: RedisServer, name: str = "sip-redirectd") -> ServiceDaemon:
    return ServiceDaemon("sip-redirectd", redis.url, ["--domain", DOMAIN], name=name, env=ENV)


# ------------------------------------------------------------------------------------------------
# Fixtures: one Redis, registrar, redirect server and proxy for the cases that need one of each

@pytest.fixture(scope="module")
def registrar(redis_server):
    with ServiceDaemon("sip-registrard", redis_server.url, ["--domain", DOMAIN], env=ENV) as d:
        yield d


@pytest.fixture(scope="module")
def redirect(redis_server):
    with redirectd(redis_server) as d:
        yield d


@pytest.fixture(scope="module")
def proxy(redirect):
    with Proxy([redirect.port]) as p:
        yield p


# ------------------------------------------------------------------------------------------------
# Helpers

class UserAgent:
    """A SIPp user agent for sip:`user`@example.com: registered through sip-registrard with q `q`
    at 127.0.0.1:PORT, then answering calls there with deploy/local/answer.xml until stopped."""

    def __init__(self, registrar: ServiceDaemon, user: str, q: str = "1.0"):
        self.port = free_udp_port()
        reg = run_sipp(REGISTER, registrar.port, ["-key", "q", q], service=user,
                       local_port=self.port)
        assert reg.returncode == 0, f"REGISTER of {user} q={q} failed: {reg.summary()}"
        self.sipp = SippProcess(ANSWER, service=user, local_port=self.port,
                                name=f"sipp answer {user}@{self.port}").start()

    def invites(self) -> list[str]:
        """The log lines of the INVITEs it received (answer.xml logs each one)."""
        return [l for l in self.sipp.logs().splitlines() if l.startswith("INVITE ")]

    def stop(self) -> SippResult:
        return self.sipp.stop()

    def __enter__(self) -> "UserAgent":
        return self

    def __exit__(self, *exc) -> None:
        self.sipp.stop()
        self.sipp.cleanup()


def place_calls(proxy: Proxy, user: str, calls: int) -> SippResult:
    """`calls` calls from deploy/local/call.xml to sip:`user`@example.com through the proxy (100 ms
    of talk each); every one must complete: INVITE, 180, 200, ACK, BYE, 200."""
    res = run_sipp(CALL, proxy.port, ["-d", "100"], calls=calls, service=user, timeout=30)
    ok, failed = res.counts()
    assert res.returncode == 0 and (ok, failed) == (calls, 0), (
        f"{calls} calls to {user}: sipp exit {res.returncode}, {ok} successful, {failed} failed"
        f"\n{res.summary()}")
    return res


def messages(trace: str, direction: str) -> list[str]:
    """The SIP messages of a SIPp -trace_msg log, "received" or "sent"."""
    pattern = (r"UDP message received \[\d+\] bytes :\s*\n\n(.*?)\n\n" if direction == "received"
               else r"UDP message sent \(\d+ bytes\):\s*\n\n(.*?)\n\n")
    return re.findall(pattern, trace, re.S)


def header(msg: str, name: str) -> str:
    m = re.search(rf"^{name}: *(.*)$", msg, re.M | re.I)
    return m.group(1) if m else ""


def check_via_proxy(ua: UserAgent, proxy: Proxy, calls: int) -> None:
    """Every INVITE `ua` got came through the proxy: its Record-Route and top Via are the proxy's;
    so did the ACK and BYE of each call (top Via the proxy's)."""
    got = ua.invites()
    assert len(got) == calls, f"INVITEs received by the user agent on port {ua.port}"
    rr = f"record-route=<sip:127.0.0.1:{proxy.port};lr>"
    via = f"via=SIP/2.0/UDP 127.0.0.1:{proxy.port}"
    for line in got:
        assert rr in line and via in line, f"INVITE not from the proxy on {proxy.port}: {line}"
    received = messages(ua.sipp.read("messages.log"), "received")
    for method in ("ACK", "BYE"):
        reqs = [m for m in received if m.startswith(method + " ")]
        assert len(reqs) >= calls, f"{len(reqs)} {method}s reached the user agent, want {calls}"
        for m in reqs:
            assert header(m, "Via").startswith(f"SIP/2.0/UDP 127.0.0.1:{proxy.port};"), (
                f"{method} not through the proxy:\n{m}")


def check_rang(res: SippResult, calls: int) -> None:
    """Each call's caller saw 180 Ringing."""
    rang = {header(m, "Call-ID") for m in messages(res.messages, "received")
            if m.startswith("SIP/2.0 180 ")}
    assert len(rang) == calls, "calls whose caller saw 180 Ringing"


def responses(d: ServiceDaemon, code: int) -> float:
    return d.metric("sipr_responses_total", code=str(code))


# ------------------------------------------------------------------------------------------------
# Cases

def test_call_completes_through_proxy(redis, registrar, redirect, proxy):
    """A UA registers through sip-registrard and answers; 5 calls to it through the proxy each
    complete (INVITE, 180, 200, ACK, BYE, 200); the UA got every INVITE, ACK and BYE from the
    proxy (its Record-Route and Via), and sip-redirectd answered exactly one 302 per call."""
    before = responses(redirect, 302)
    with UserAgent(registrar, "alice") as alice:
        res = place_calls(proxy, "alice", 5)
        check_rang(res, 5)
        check_via_proxy(alice, proxy, 5)
        end = alice.stop()
        assert end.counts() == ((5, 0)), "(successful, failed) calls at the user agent"
        assert end.returncode == 0, "exit status of the answering SIPp"
    assert responses(redirect, 302) - before == 5, 'sipr_responses_total{code="302"} rise'


def test_higher_q_answers_then_lower_q_when_it_is_gone(redis, registrar, redirect, proxy):
    """Two contacts for bob: q=1.0 registered first, q=0.5 registered last (so recency alone would
    pick it). Calls go to the q=1.0 UA only. With it stopped (its binding still there) the proxy
    tries it, gives up after the branch timeout and the q=0.5 UA gets the call. One 302 per
    call."""
    before = responses(redirect, 302)
    with UserAgent(registrar, "bob", "1.0") as high, UserAgent(registrar, "bob", "0.5") as low:
        place_calls(proxy, "bob", 3)
        assert len(low.invites()) == 0, "INVITEs at the q=0.5 UA while q=1.0 answers"
        check_via_proxy(high, proxy, 3)
        end = high.stop()
        assert end.counts() == ((3, 0)), "(successful, failed) calls at the q=1.0 UA"
        place_calls(proxy, "bob", 1)
        check_via_proxy(low, proxy, 1)
    assert responses(redirect, 302) - before == 4, 'sipr_responses_total{code="302"} rise'


def test_unknown_user_gets_404_relayed(redis, registrar, redirect, proxy):
    """INVITE for a user nobody registered: sip-redirectd's own 404 (its keyed To-tag) comes back
    to the caller through the proxy; no 302 is sent."""
    before = {c: responses(redirect, c) for c in (302, 404)}
    with SipUdp(proxy.port) as ua:
        r = ua.send(ua.build("INVITE", f"sip:nobody@{DOMAIN}"), timeout=5)
    assert r.status == 404, f"final answer through the proxy:\n{r}"
    to = r.header("to") or ""
    assert TAG_RE.search(to), f"404 To-tag is not sip-redirectd's: {to}"
    assert responses(redirect, 404) - before[404] == 1, 'sipr_responses_total{code="404"} rise'
    assert responses(redirect, 302) - before[302] == 0, 'sipr_responses_total{code="302"} rise'


def test_other_domain_is_refused_by_the_proxy(redis, registrar, redirect, proxy):
    """The proxy is no open relay: a domain it does not serve gets 403, sip-redirectd is not
    asked."""
    before = redirect.metric("sipr_requests_total", method="INVITE")
    with SipUdp(proxy.port) as ua:
        r = ua.send(ua.build("INVITE", "sip:alice@elsewhere.example.net"), timeout=5)
    assert r.status == 403, f"final answer through the proxy:\n{r}"
    assert redirect.metric("sipr_requests_total", method="INVITE") - before == 0, (
        "INVITEs that reached sip-redirectd")


def test_redirect_503_fails_over_to_second_instance(redis, registrar, redirect):
    """The first redirect instance's Redis is down, so it answers 503: each call is asked there
    first (the probe, once a minute here, has not drained it yet, and a 503 alone drains nothing),
    then at the second instance, and completes. One 503 and one 302 per call."""
    with RedisServer() as lost, redirectd(lost, "sip-redirectd[redis down]") as first:
        lost.stop()
        with SipUdp(first.port) as ua:
            wait_until(lambda: ua.send(ua.options()).status == 503, 5,
                       what="the first instance's health probe to answer 503")
        before = (responses(first, 503), responses(redirect, 302))
        with Proxy([first.port, redirect.port]) as proxy, UserAgent(registrar, "carol") as carol:
            place_calls(proxy, "carol", 3)
            check_via_proxy(carol, proxy, 3)
        assert responses(first, 503) - before[0] == 3, "503s of the first instance"
        assert responses(redirect, 302) - before[1] == 3, "302s of the second instance"
        lost.start()  # so the first instance can be stopped cleanly


def test_silent_instance_drained_then_back_when_probe_answers(redis, registrar, redirect):
    """The first redirect instance does not answer at all (its port is a socket that swallows
    everything): a call that reaches it completes through the second instance after the redirect
    timeout. The dispatcher's probe (every second here) gets no answer either, so the instance is
    left out: then no INVITE reaches it. Once a real sip-redirectd listens there and answers the
    probe with 200, it redirects calls again."""
    first = redirectd(redis, "sip-redirectd[late]")  # not started yet: its port is silent
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", first.port))
    try:
        with Proxy([first.port, redirect.port], ping_interval=1) as proxy, \
                UserAgent(registrar, "frank") as frank:
            before = responses(redirect, 302)
            place_calls(proxy, "frank", 1)
            assert swallowed_invites(silent) == 1, "calls whose INVITE reached the silent instance"
            # Drained once two probes in a row went unanswered: a call then skips it.
            wait_until(lambda: place_calls(proxy, "frank", 1) and swallowed_invites(silent) == 0,
                       15, interval=0.5, what="a call that skips the silent instance")
            place_calls(proxy, "frank", 3)
            assert swallowed_invites(silent) == 0, "INVITEs at the silent instance once drained"
            calls = len(frank.invites())
            assert responses(redirect, 302) - before == calls, "302s of the second instance"
            silent.close()
            first.start()
            wait_until(lambda: place_calls(proxy, "frank", 1) and responses(first, 302) >= 1, 15,
                       interval=0.5, what="a call redirected by the first instance")
            check_via_proxy(frank, proxy, len(frank.invites()))
    finally:
        silent.close()
        first.stop()
        first.cleanup()


def swallowed_invites(sock: socket.socket) -> int:
    """The distinct Call-IDs of the INVITEs waiting on `sock` (retransmissions count once)."""
    calls = set()
    sock.setblocking(False)
    while True:
        try:
            data = sock.recv(65536).decode(errors="replace")
        except BlockingIOError:
            return len(calls)
        if data.startswith("INVITE "):
            calls.add(header(data.replace("\r\n", "\n"), "Call-ID"))


def test_no_redirect_instance_answers_500():
    """The only redirect instance answers 503: the proxy does not relay a 503 (RFC 3261 §16.7 step
    6) but answers 500 itself."""
    with RedisServer() as lost, redirectd(lost, "sip-redirectd[redis down]") as only:
        lost.stop()
        with Proxy([only.port]) as proxy, SipUdp(proxy.port) as ua:
            r = ua.send(ua.build("INVITE", f"sip:erin@{DOMAIN}"), timeout=5)
            assert r.status == 500, f"final answer through the proxy:\n{r}"
        assert responses(only, 503) >= 1, "the instance was asked and answered 503"
        lost.start()
