"""sip-redirectd against a real redis-server over loopback UDP (DESIGN §4, §7, §8, §9; RFC 3261
§8.3, §17, §18; RFC 3581).

Bindings are written the way production writes them: through sip-registrard (REGISTER over UDP),
sip-locctl bind, or, where a case needs exact control over times, packed straight into Redis
(include/sipr/location/binding.h). Each case asserts the redirect server's answer (status, reason
where DESIGN names one, Contacts in order with their parameters, copied headers) and, where DESIGN
§9 names one, the metric that counts it. One redis-server serves the run (FLUSHALL before each
case); daemons are started per group of cases sharing their flags.

    /usr/bin/python3 -m pytest tests/integration/test_redirect.py [-k name-substring]
"""
from __future__ import annotations

import os
import random
import re
import select
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from sipr_test.base import free_tcp_port, free_udp_port, scaled, wait_until
from sipr_test.bindings import StoredBinding, location_key, pack_binding
from sipr_test.metrics import metric_value
from sipr_test.processes import Daemon, ServiceDaemon, run_program
from sipr_test.redis_servers import RedisServer, time_ms
from sipr_test.sip import (
    Request, Response, SipUdp, parse_response, transact_bulk, transact_many, unique,
)
from sipr_test.sipp import run_sipp

DOMAIN = "example.com"
SECRET = "redirect-integration-secret"
WITH_SECRET = {**os.environ, "SIPR_SECRET": SECRET}
WITHOUT_SECRET = {k: v for k, v in os.environ.items() if k != "SIPR_SECRET"}
MAX_MESSAGE = 4096
TAG_RE = re.compile(r"^[0-9a-f]{16}$")


def aor(user: str = "alice", domain: str = DOMAIN) -> str:
    return f"sip:{user}@{domain}"


class Redirect(ServiceDaemon):
    """sip-redirectd on free ports against `redis` (SIPR_SECRET set unless `env` says otherwise)."""

    def __init__(self, redis: RedisServer, flags: list[str], name: str = "sip-redirectd",
                 workers: int = 2, env: dict[str, str] | None = None):
        super().__init__("sip-redirectd", redis.url, flags, name=name, workers=workers,
                         env=WITH_SECRET if env is None else env)


class Registrar(ServiceDaemon):
    def __init__(self, redis: RedisServer, flags: list[str], name: str = "sip-registrard"):
        super().__init__("sip-registrard", redis.url, flags, name=name, env=WITH_SECRET)


# ------------------------------------------------------------------------------------------------
# Fixtures

# --min-expires 1: a binding can be made to expire within the case; --max-contacts 100: the
# 1300-byte cap needs an AOR with 40 bindings. The registrar's Redis script can take a while
# under sanitizers, hence the longer Redis timeout.
REGISTRAR_FLAGS = ["--domain", DOMAIN, "--min-expires", "1", "--max-expires", "3600",
                   "--default-expires", "3600", "--max-contacts", "100",
                   "--redis-timeout", str(int(scaled(2000)))]


@pytest.fixture(scope="module")
def registrar(redis_server):
    with Registrar(redis_server, REGISTRAR_FLAGS) as d:
        yield d


def redirect_fixture(name: str, flags: list[str]):
    """A module-scoped fixture: sip-redirectd with `flags`."""
    @pytest.fixture(scope="module")
    def fixture(redis_server):
        with Redirect(redis_server, flags, name=f"sip-redirectd[{name}]") as d:
            yield d
    return fixture


# These cases write through the registrar and read back at once, well inside the millisecond an
# invalidation takes to reach the near-cache (test_cache.py measures that staleness and tests the
# cache): they read Redis on every look-up (--cache-ttl 0).
NO_CACHE = ["--cache-ttl", "0"]
# The default: one served domain (so tel: maps there), a smaller --max-message to test 513 at
# its exact boundary, everything else as shipped but the near-cache.
redirect = redirect_fixture("redirect",
                            ["--domain", DOMAIN, "--max-message", str(MAX_MESSAGE), *NO_CACHE])
# Every domain served, the opt-in flags on.
redirect_open = redirect_fixture("redirect_open",
                                 ["--path-route", "--max-forwards-zero", "redirect", *NO_CACHE])


# ------------------------------------------------------------------------------------------------
# Helpers

def expect(resp: Response, status: int, reason: str | None = None) -> Response:
    if resp.status != status or (reason is not None and resp.reason != reason):
        want = f"{status} {reason}" if reason else str(status)
        raise AssertionError(f"want {want}, got {resp.status} {resp.reason}\n{resp}")
    return resp


def register(ua: SipUdp, user: str, contacts, domain: str = DOMAIN, **kw) -> Response:
    """REGISTER through sip-registrard; requires 200."""
    kw.setdefault("expires", 600)
    return expect(ua.send(ua.register(aor(user, domain), contacts, **kw)), 200)


def locctl(redis: RedisServer, *args: str) -> str:
    r = run_program("sip-locctl", ["--redis", redis.url, *args])
    assert r.returncode == 0, f"sip-locctl {' '.join(args)} exited {r.returncode}: {r.stderr}"
    return r.stdout


def seed(redis: RedisServer, aor_: str, field: str, contact: str, *, q: int = 1000,
         expires_at_ms: int | None = None, updated_at_ms: int | None = None, path: str = "",
         instance: str = "") -> StoredBinding:
    """Writes one packed binding straight into the AOR's hash (times from Redis TIME)."""
    now = time_ms(redis.client)
    b = StoredBinding(expires_at_ms=now + 600_000 if expires_at_ms is None else expires_at_ms,
                      updated_at_ms=now if updated_at_ms is None else updated_at_ms, cseq=1,
                      call_id=unique("seed"), contact=contact, q=q, path=path,
                      received="192.0.2.250:5060", user_agent="seed", instance=instance,
                      reg_id=None)
    redis.client.hset(location_key(aor_), field, pack_binding(b))
    return b


def invite(ua: SipUdp, ruri: str, **kw) -> Response:
    """One INVITE client transaction (ACKed by SipUdp.send when final and non-2xx)."""
    return ua.send(ua.build("INVITE", ruri, **kw))


def contact_uris(resp: Response) -> list[str]:
    return [c.uri for c in resp.contacts]


def check_contact(c, uri: str, q: str, expires: int, what: str, slack: int = 2) -> None:
    """A 302 Contact: exactly <uri>;q=..;expires=.. (DESIGN §4), remaining seconds near `expires`."""
    assert c.uri == uri, f"{what}: URI"
    assert sorted(c.params) == ["expires", "q"], f"{what}: Contact parameters"
    assert c.q == q, f"{what}: q"
    lo = expires - max(slack, int(scaled(slack)))
    assert c.expires is not None and lo <= c.expires <= expires, (
        f"{what}: expires={c.expires}, want {lo}..{expires}")


def collect(uas, branches, timeout: float) -> dict[str, Response]:
    """Responses arriving at any of `uas` within `timeout` seconds (not scaled), by top-Via
    branch, for the branches asked for (the first answer of each)."""
    want = set(branches)
    got: dict[str, Response] = {}
    deadline = time.monotonic() + timeout
    socks = {ua.sock: ua for ua in set(uas)}
    while len(got) < len(want) and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(list(socks), [], [], left)
        for s in ready:
            r = socks[s].recv(0)
            b = r.top_via.get("branch") if r is not None else None
            if b in want and b not in got:
                got[b] = r
    return got


def edit(req: Request, drop: str = "", add: str = "") -> bytes:
    """The request's bytes without its first `drop` header and/or with `add` before
    Content-Length."""
    text = req.data.decode()
    if drop:
        text = re.sub(rf"\r\n{drop}:[^\r]*", "", text, count=1)
    if add:
        text = text.replace("\r\nContent-Length", f"\r\n{add}\r\nContent-Length", 1)
    return text.encode()


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample of `name` (all label values)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(None, 1)[1])
    return total


def wait_metric(daemon: ServiceDaemon, name: str, want: float, timeout: float = 5.0,
                **labels: str) -> float:
    """Waits until the metric reaches `want` (counters are folded at scrape time), then requires
    it to be exactly `want`."""
    v = wait_until(lambda: (x := daemon.metric(name, **labels)) >= want and (x,), timeout,
                   what=f"{name}{labels} >= {want}")[0]
    assert v == want, f"{name}{labels}"
    return v


def startup_error_problem(args: list[str], mention: str, env: dict[str, str]) -> str | None:
    """What is wrong with how sip-redirectd `args` fails to start (DESIGN §8: a non-zero exit
    and one line on stderr that mentions `mention`), or None."""
    r = run_program("sip-redirectd", args, timeout=15, env=env)
    lines = r.stderr.splitlines()
    how = f"{' '.join(args)} ({'with' if 'SIPR_SECRET' in env else 'without'} SIPR_SECRET)"
    if r.returncode == 0:
        return f"{how}: exit status 0"
    if len(lines) != 1 or not lines[0].strip():
        return f"{how}: want one line on stderr, got {len(lines)}: {r.stderr!r}"
    if mention not in lines[0]:
        return f"{how}: stderr does not mention {mention!r}: {lines[0]!r}"
    return None


def check_startup_errors(runs: list[tuple[list[str], str]]) -> None:
    problems = [p for args, mention in runs for env in (WITH_SECRET, WITHOUT_SECRET)
                if (p := startup_error_problem(args, mention, env))]
    assert not problems, (
        f"{len(problems)} start-up error(s) not as DESIGN §8 says: "
        + " | ".join(problems))


# ------------------------------------------------------------------------------------------------
# Answered by the server itself, or refused before any look-up (default redirect)

def test_options_to_server_200_with_allow(redis, redirect):
    with redirect.ua() as ua:
        for ruri in (f"sip:127.0.0.1:{redirect.port}", f"sip:{DOMAIN}", "sip:127.0.0.1"):
            r = expect(ua.send(ua.options(ruri)), 200, "OK")
            allow = {v.strip().upper() for v in r.values("allow")}
            assert {"INVITE", "ACK", "CANCEL", "OPTIONS"} <= allow, f"{ruri}: Allow {allow}"
            assert "REGISTER" not in allow, f"{ruri}: Allow lists REGISTER, which gets 405"
            assert r.contacts == [], f"{ruri}: Contacts of the 200"


def test_options_to_server_with_require_is_420(redis, redirect):
    """RFC 3261 §8.2.2.3 applies to requests the server answers itself: 420 + Unsupported."""
    with redirect.ua() as ua:
        r = expect(ua.send(ua.options(headers=["Require: foo"])), 420, "Bad Extension")
        assert r.values("unsupported") == ["foo"], "Unsupported"
        r = expect(ua.send(ua.options(headers=["Require: foo, bar", "Require: baz"])), 420)
        assert sorted(r.values("unsupported")) == ["bar", "baz", "foo"], "Unsupported of three"


def test_register_is_405_with_allow(redis, redirect):
    with redirect.ua() as ua:
        r = expect(ua.send(ua.register(aor(), ["<sip:alice@192.0.2.1>"], expires=600)), 405,
                   "Method Not Allowed")
        allow = {v.strip().upper() for v in r.values("allow")}
        assert {"INVITE", "ACK", "CANCEL", "OPTIONS"} <= allow and "REGISTER" not in allow, (
            f"Allow of the 405: {r.values('allow')}")
        assert sorted(redis.client.keys("*")) == [], "keys after a REGISTER to the redirect server"


def test_unsupported_scheme_is_416(redis, redirect):
    with redirect.ua() as ua:
        for ruri in (f"http://{DOMAIN}/alice", f"mailto:alice@{DOMAIN}", "urn:service:sos"):
            expect(invite(ua, ruri, to=f"<sip:alice@{DOMAIN}>"), 416, "Unsupported URI Scheme")


def test_other_domain_is_404(redis, redirect):
    """--domain example.com: a binding of another domain is never served."""
    locctl(redis, "bind", aor("alice", "other.org"), "sip:alice@192.0.2.1", "--expires", "600")
    with redirect.ua() as ua:
        r = expect(invite(ua, aor("alice", "other.org")), 404, "Not Found")
        assert r.contacts == [], "Contacts of the 404"


# ------------------------------------------------------------------------------------------------
# SIPp: a real UA registers, a real caller is redirected to it and ACKs

def test_sipp_register_then_invite_302_and_ack(redis, registrar, redirect):
    """register.xml registers sip:alice@127.0.0.1:PORT through sip-registrard; invite_302.xml
    sends INVITE sip:alice@example.com to sip-redirectd, requires a 302 whose only Contact is
    exactly that UA's, ACKs it (§17.1.1.3) and requires no answer to the ACK. The ACK is counted
    in sipr_requests_total{method="ACK"} and nothing is sent for it."""
    port = free_udp_port()
    res = run_sipp("register.xml", registrar.port, service="alice", local_port=port)
    assert res.returncode == 0, f"sipp register.xml failed: {res.summary()}"
    before = redirect.metrics()
    work = Path(tempfile.mkdtemp(prefix="sipr-inf-"))
    try:
        inf = work / "contact.csv"
        inf.write_text(f"SEQUENTIAL\nsip:alice@127.0.0.1:{port};\n")
        res = run_sipp("invite_302.xml", redirect.port, service="alice", args=["-inf", str(inf)])
    finally:
        inf.unlink(missing_ok=True)
        work.rmdir()
    assert res.returncode == 0, f"sipp invite_302.xml failed: {res.summary()}"
    # The scenario's ACK is the RFC's: the INVITE's branch and the 302's To (with its tag).
    sent = re.findall(r"UDP message sent \(\d+ bytes\):\s*\n\n(.*?)\n\n", res.messages, re.S)
    got = re.findall(r"UDP message received \[\d+\] bytes :\s*\n\n(.*?)\n\n", res.messages, re.S)
    inv = next((m for m in sent if m.startswith("INVITE ")), "")
    ack = next((m for m in sent if m.startswith("ACK ")), "")
    assert inv and ack and len(got) == 1, (
        f"sipp trace: {len(sent)} sent, {len(got)} received:\n"
        f"{res.messages[-2000:]}")
    branch = lambda m: re.search(r"^Via:.*;branch=([^;\s]+)", m, re.M).group(1)  # noqa: E731
    header = lambda m, n: re.search(rf"^{n}: *(.*)$", m, re.M).group(1)  # noqa: E731
    assert branch(ack) == branch(inv), "ACK branch (RFC 3261 §17.1.1.3)"
    assert got[0].startswith("SIP/2.0 302 Moved Temporarily"), f"answer: {got[0][:60]!r}"
    assert header(ack, "To") == header(got[0], "To"), "ACK To (the 302's, with its tag)"
    assert TAG_RE.match(header(got[0], "To").split(";tag=")[1]), (
        f"302 To tag: {header(got[0], 'To')}")

    def delta(name: str, **labels: str) -> float:
        return redirect.metric(name, **labels) - (metric_value(before, name, labels) or 0)

    wait_until(lambda: delta("sipr_requests_total", method="ACK") >= 1, 5, what="ACK counted")
    assert delta("sipr_requests_total", method="ACK") == 1, 'sipr_requests_total{method="ACK"} rise'
    assert delta("sipr_requests_total", method="INVITE") == 1, (
        'sipr_requests_total{method="INVITE"} rise')
    now = redirect.metrics()
    assert metric_sum(now, "sipr_responses_total") - metric_sum(before, "sipr_responses_total") == 1, (
        "responses sent for INVITE + ACK (the 302 only)")
    assert (metric_value(now, "sipr_responses_total", {"code": "302"}) -
             (metric_value(before, "sipr_responses_total", {"code": "302"}) or 0)) == 1, (
        'sipr_responses_total{code="302"} rise')


# ------------------------------------------------------------------------------------------------
# DESIGN §4, rule by rule, over raw UDP (default redirect)

def test_invite_302_contacts_by_q_then_recency(redis, registrar, redirect):
    """One Contact per live binding, highest q first, ties most recently registered first, each
    with ;q= and ;expires= its remaining seconds."""
    with registrar.ua() as reg, redirect.ua() as ua:
        cid_a = unique("a")
        register(reg, "alice", ["<sip:alice@192.0.2.1>;q=0.5"], call_id=cid_a, cseq=1, expires=600)
        time.sleep(0.02)
        register(reg, "alice", ["<sip:alice@192.0.2.2:5070>"], expires=900)  # q 1
        time.sleep(0.02)
        register(reg, "alice", ["<sip:alice@192.0.2.3;transport=udp>;q=0.5"], expires=1200)
        time.sleep(0.02)
        register(reg, "alice", ["<sip:alice@192.0.2.4>;q=0.8"], expires=300)
        register(reg, "alice", ["<sip:alice@192.0.2.5>;q=0.125"], expires=60)
        r = expect(invite(ua, aor()), 302, "Moved Temporarily")
        want = [("sip:alice@192.0.2.2:5070", "1", 900), ("sip:alice@192.0.2.4", "0.8", 300),
                ("sip:alice@192.0.2.3;transport=udp", "0.5", 1200),
                ("sip:alice@192.0.2.1", "0.5", 600), ("sip:alice@192.0.2.5", "0.125", 60)]
        assert contact_uris(r) == [w[0] for w in want], "302 Contacts in order"
        assert r.count("contact") == len(want), "one Contact header per binding"
        for c, (uri, q, e) in zip(r.contacts, want):
            check_contact(c, uri, q, e, uri)
        assert ((r.header("content-length"), r.body)) == (("0", b"")), "302 body"
        # A refresh makes the 0.5 binding of 192.0.2.1 the most recent: it moves ahead of .3.
        time.sleep(0.02)
        register(reg, "alice", ["<sip:alice@192.0.2.1>;q=0.5"], call_id=cid_a, cseq=2, expires=700)
        r = expect(invite(ua, aor()), 302)
        assert contact_uris(r)[2:4] == ["sip:alice@192.0.2.1", "sip:alice@192.0.2.3;transport=udp"], (
            "q 0.5 tie after refreshing 192.0.2.1")
        check_contact(r.contacts[2], "sip:alice@192.0.2.1", "0.5", 700, "refreshed binding")


def test_unknown_and_other_methods_redirected(redis, registrar, redirect):
    """RFC 3261 §8.3: every method but ACK, CANCEL, REGISTER and OPTIONS-to-the-server is
    redirected, unknown ones (FOOBAR) included; OPTIONS to a user is redirected too."""
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
        other0 = redirect.metric("sipr_requests_total", method="other")
        for method in ("FOOBAR", "BYE", "MESSAGE", "SUBSCRIBE", "OPTIONS", "INFO"):
            req = ua.build(method, aor(), cseq=3)
            r = expect(ua.send(req), 302, "Moved Temporarily")
            assert contact_uris(r) == ["sip:alice@192.0.2.1"], f"{method}: Contacts"
            assert r.header("cseq") == f"3 {method}", f"{method}: CSeq"
        wait_metric(redirect, "sipr_requests_total", other0 + 1, method="other")


def test_unknown_require_and_headers_ignored(redis, registrar, redirect):
    """DESIGN §4 / RFC 3261 §8.3: a redirect server ignores unknown Require option tags (no 420)
    and unknown headers, and still redirects."""
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
        r = expect(invite(ua, aor(), headers=["Require: foo, 100rel", "Require: bar",
                                              "Proxy-Require: baz"]), 302)
        assert contact_uris(r) == ["sip:alice@192.0.2.1"], "Contacts with unknown Require"
        assert r.values("unsupported") == [], "Unsupported in a 302"
        r = expect(invite(ua, aor(), headers=["X-Unknown: 1", "P-Weird-Header: ;;,,<>",
                                              "Foo:bar", "Subject: hi", "k: timer",
                                              "Accept-Language: en;q=0.5"]), 302)
        assert contact_uris(r) == ["sip:alice@192.0.2.1"], "Contacts with unknown headers"


def test_ack_absorbed_and_counted(redis, registrar, redirect):
    """ACK: never answered (the 302's own ACK, and a stray one), but counted."""
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
        acks0 = redirect.metric("sipr_requests_total", method="ACK")
        resp0 = metric_sum(redirect.metrics(), "sipr_responses_total")
        req = ua.build("INVITE", aor())
        r = expect(ua.send(req), 302)  # send() ACKs it (§17.1.1.3)
        ua.expect_silence(0.5)
        ua.send_raw(ua.ack_for(req, r).data)  # a retransmitted ACK
        ua.send_raw(ua.build("ACK", aor("nobody")).data)  # an ACK of nothing known
        ua.expect_silence(0.5)
        wait_metric(redirect, "sipr_requests_total", acks0 + 3, method="ACK")
        assert metric_sum(redirect.metrics(), "sipr_responses_total") - resp0 == 1, (
            "responses sent (only the 302)")


def test_cancel_is_200(redis, registrar, redirect):
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
        inv = ua.build("INVITE", aor(), cseq=9)
        expect(ua.send(inv), 302)
        # RFC 3261 §9.1: the CANCEL has the INVITE's branch, Call-ID, From, To and CSeq number.
        cancel = ua.build("CANCEL", aor(), branch=inv.branch, call_id=inv.call_id, cseq=9)
        r = expect(ua.send(cancel), 200, "OK")
        assert r.header("cseq") == "9 CANCEL", "CSeq of the 200"
        assert r.contacts == [], "Contacts of the 200 to CANCEL"
        assert TAG_RE.match(r.to_tag or ""), f"To tag of the 200: {r.to_tag!r}"
        # A CANCEL of an AOR without bindings is answered alike.
        expect(ua.send(ua.build("CANCEL", aor("nobody"))), 200, "OK")


def test_over_max_message_is_513(redis, registrar, redirect):
    """A datagram over --max-message (4096 here) gets 513; one of exactly 4096 bytes is served."""
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])

        def padded(size: int) -> Request:
            req = ua.build("INVITE", aor(), headers=["X-Pad: "])
            req.data = req.data.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (size - len(req.data)))
            assert len(req.data) == size, "padded request size"
            return req

        r = expect(ua.send(padded(MAX_MESSAGE + 1)), 513, "Message Too Large")
        assert r.contacts == [], "Contacts of the 513"
        r = expect(ua.send(padded(MAX_MESSAGE)), 302)
        assert contact_uris(r) == ["sip:alice@192.0.2.1"], "Contacts at exactly --max-message"
        r = expect(ua.send(padded(9000)), 513, "Message Too Large")


def test_unparseable_or_no_via_dropped_and_counted(redis, registrar, redirect):
    """Nowhere to answer: no answer at all, and sipr_dropped_total{reason} counts each."""
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
        m = redirect.metrics()
        not_sip0 = metric_value(m, "sipr_dropped_total", {"reason": "not_sip"})
        no_via0 = metric_value(m, "sipr_dropped_total", {"reason": "no_via"})
        good = ua.build("INVITE", aor())
        body = good.data.split(b"\r\n", 1)[1]
        junk = [b"INVITE sip:alice@example.com\r\n" + body,             # no SIP-Version
                b"INVITE sip:alice@example.com SIP/2.0 extra\r\n" + body,  # trailing junk
                b"INVITE  SIP/2.0\r\n" + body,                         # no Request-URI
                b"HELLO\r\n\r\n",
                b"\x00\x01\x02\x03INVITE sip:alice@example.com SIP/2.0\r\n\r\n"]
        for j in junk:
            ua.send_raw(j)
        ua.send_raw(edit(ua.build("INVITE", aor()), drop="Via"))
        ua.expect_silence(0.5)
        # The INVITE after the junk is answered normally (with --spread random the junk may
        # have gone to another worker: its drops are awaited below, not assumed).
        expect(invite(ua, aor()), 302)
        wait_metric(redirect, "sipr_dropped_total", not_sip0 + len(junk), reason="not_sip")
        wait_metric(redirect, "sipr_dropped_total", no_via0 + 1, reason="no_via")


def test_malformed_headers_400_naming_the_fault(redis, registrar, redirect):
    """Missing or malformed From / To / Call-ID / CSeq, CSeq method != request method,
    Content-Length beyond the datagram: 400 with a reason naming the fault; Via, From, Call-ID
    and CSeq present in the request are copied exactly."""
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
        base = lambda **kw: ua.build("INVITE", aor(), **kw)  # noqa: E731
        problems = []
        for what, req, data, word in (
                ("no From", (q := base()), edit(q, drop="From"), "From"),
                ("malformed From", (q := base(from_="sip:bob@example.com>")), None, "From"),
                ("no To", (q := base()), edit(q, drop="To"), "To"),
                ("malformed To", (q := base(to="<sip:alice@example.com", from_="<sip:bob@example.net>")),
                 None, "To"),
                ("no Call-ID", (q := base()), edit(q, drop="Call-ID"), "Call-ID"),
                ("no CSeq", (q := base()), edit(q, drop="CSeq"), "CSeq"),
                ("malformed CSeq", (q := base()),
                 q.data.replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"), "CSeq"),
                ("CSeq method differs", (q := base(cseq_method="BYE")), None, "CSeq"),
                ("Content-Length beyond the datagram", (q := base()),
                 q.data.replace(b"Content-Length: 0", b"Content-Length: 50"), "Content-Length")):
            sent = data if data is not None else req.data
            r = ua.answer_raw(sent, req.branch)
            if r.status != 400 or word not in r.reason:
                problems.append(f"{what}: want 400 naming {word}, got {r.status} {r.reason}")
                continue
            if r.contacts:
                problems.append(f"{what}: the 400 has Contacts")
            for name in ("Call-ID", "From", "CSeq"):
                m = re.search(rf"\r\n{name}: ([^\r]*)".encode(), sent)
                if m and r.header(name) != m.group(1).decode():
                    problems.append(f"{what}: {name} of the 400 is {r.header(name)!r}, "
                                    f"want {m.group(1).decode()!r}")
        assert not problems, "; ".join(problems)


def test_max_forwards_zero_is_483(redis, registrar, redirect):
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
        r = expect(invite(ua, aor(), max_forwards=0), 483, "Too Many Hops")
        assert r.contacts == [], "Contacts of the 483"
        expect(ua.send(ua.build("FOOBAR", aor(), max_forwards=0)), 483)
        r = expect(invite(ua, aor(), max_forwards=1), 302)
        assert contact_uris(r) == ["sip:alice@192.0.2.1"], "Contacts with Max-Forwards: 1"


def test_aor_normalisation(redis, registrar, redirect):
    """DESIGN §4: scheme and host lower-cased, port and URI parameters dropped, the user part
    un-escaped (its case kept), visual separators stripped from telephone numbers, tel: mapped to
    the default domain."""
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "ALICE", ["<sip:upper@192.0.2.1>"])
        register(reg, "alice", ["<sip:lower@192.0.2.2>"])
        register(reg, "+15550100", ["<sip:phone@192.0.2.3>"])
        for ruri, want in (
                ("sip:ALICE@EXAMPLE.COM:5060;transport=udp", "sip:upper@192.0.2.1"),
                ("SIP:ALICE@Example.Com", "sip:upper@192.0.2.1"),
                ("sip:alice@example.com", "sip:lower@192.0.2.2"),
                ("sip:%61lice@example.com", "sip:lower@192.0.2.2"),
                ("sip:%41LICE@example.com;lr", "sip:upper@192.0.2.1"),
                ("sip:+1-555-0100@example.com;user=phone", "sip:phone@192.0.2.3"),
                ("sip:+1.555.0100@EXAMPLE.com", "sip:phone@192.0.2.3"),
                ("tel:+1-555-0100", "sip:phone@192.0.2.3"),
                ("tel:+1(555)010-0", "sip:phone@192.0.2.3")):
            r = invite(ua, ruri)
            if r.status != 302 or contact_uris(r) != [want]:
                raise AssertionError(f"INVITE {ruri}: want 302 to {want}, got {r.status} "
                                     f"{r.reason} {contact_uris(r)}")
        expect(invite(ua, "sip:Alice@example.com"), 404, "Not Found")  # user case is kept
        expect(invite(ua, "tel:+1-555-0199"), 404, "Not Found")


def test_no_binding_is_404(redis, registrar, redirect):
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
        req = ua.build("INVITE", aor("nobody"))
        r = expect(ua.send(req), 404, "Not Found")
        assert r.contacts == [], "Contacts of the 404"
        assert TAG_RE.match(r.to_tag or ""), f"To tag of the 404: {r.to_tag!r}"
        assert ((r.header("content-length"), r.body)) == (("0", b"")), "404 body"
        # All bindings removed through the registrar: 404 too.
        register(reg, "alice", ["*"], expires=0)
        expect(invite(ua, aor()), 404, "Not Found")


def test_expired_binding_never_returned(redis, registrar, redirect):
    """A binding whose expiry has passed is never returned, even while it is still stored (the
    key lives as long as its latest binding; the reader filters)."""
    short = max(1, round(scaled(1)))  # seconds; room for the first look-ups on a slow build
    with registrar.ua() as reg, redirect.ua() as ua:
        t0 = time.monotonic()
        register(reg, "alice", ["<sip:alice@192.0.2.1>"], expires=short)
        register(reg, "alice", ["<sip:alice@192.0.2.2>"], expires=600)
        register(reg, "bob", ["<sip:bob@192.0.2.3>"], expires=short)
        r = expect(invite(ua, aor()), 302)
        assert sorted(contact_uris(r)) == ["sip:alice@192.0.2.1", "sip:alice@192.0.2.2"], (
            "alice's Contacts before the expiry")
        check_contact(r.contact_map()["sip:alice@192.0.2.1"], "sip:alice@192.0.2.1", "1", short,
                      f"the {short} s binding", slack=1)
        expect(invite(ua, aor("bob")), 302)
        time.sleep(max(0.0, short + 0.3 - (time.monotonic() - t0)))
        assert redis.client.hlen(location_key(aor())) == 2, (
            "alice's expired binding is no longer "
            "stored: the case would not test the reader's filter")
        r = expect(invite(ua, aor()), 302)
        assert contact_uris(r) == ["sip:alice@192.0.2.2"], "alice's Contacts after the expiry"
        expect(invite(ua, aor("bob")), 404, "Not Found")
        # One stored long ago, with no key expiry at all.
        now = time_ms(redis.client)
        seed(redis, aor("carol"), "sip:carol@192.0.2.4", "sip:carol@192.0.2.4",
             expires_at_ms=now - 1, updated_at_ms=now - 60_000)
        expect(invite(ua, aor("carol")), 404, "Not Found")


def test_duplicate_contacts_listed_once(redis, registrar, redirect):
    """Two bindings with the same contact (two +sip.instance keys, RFC 5626) give one Contact
    line: the better one (higher q)."""
    with registrar.ua() as reg, redirect.ua() as ua:
        i1 = "<urn:uuid:00000000-0000-1000-8000-000000000001>"
        i2 = "<urn:uuid:00000000-0000-1000-8000-000000000002>"
        register(reg, "alice", [f'<sip:alice@192.0.2.1>;q=0.4;+sip.instance="{i1}";reg-id=1'],
                 headers=["Supported: outbound"])
        register(reg, "alice", [f'<sip:alice@192.0.2.1>;q=0.8;+sip.instance="{i2}";reg-id=1'],
                 headers=["Supported: outbound"])
        register(reg, "alice", ["<sip:alice@192.0.2.2>;q=0.6"])
        assert redis.client.hlen(location_key(aor())) == 3, "stored bindings"
        r = expect(invite(ua, aor()), 302)
        assert contact_uris(r) == ["sip:alice@192.0.2.1", "sip:alice@192.0.2.2"], "302 Contacts"
        assert [c.q for c in r.contacts] == ["0.8", "0.6"], "q of the kept duplicate"
        # Contacts equal under RFC 3261 §19.1.4 (host case-insensitive) are one target, too.
        seed(redis, aor("bob"), "k1", "sip:bob@Host.Example.NET:5060", q=900)
        seed(redis, aor("bob"), "k2", "sip:bob@host.example.net:5060", q=500)
        r = expect(invite(ua, aor("bob")), 302)
        assert r.count("contact") == 1, f"Contacts {contact_uris(r)}"
        assert r.contacts[0].q == "0.9", "q of the kept duplicate"
        # ... but the user part is case-sensitive (§19.1.4; the registrar keeps two bindings):
        # two targets, two Contacts.
        register(reg, "carol", ["<sip:carol@192.0.2.9>;q=0.9", "<sip:CAROL@192.0.2.9>;q=0.5"])
        assert redis.client.hlen(location_key(aor("carol"))) == 2, "carol's stored bindings"
        r = expect(invite(ua, aor("carol")), 302)
        assert contact_uris(r) == ["sip:carol@192.0.2.9", "sip:CAROL@192.0.2.9"], (
            "Contacts differing in the user part's case")


def test_loop_guard_never_returns_request_uri(redis, registrar, redirect):
    """A binding whose contact equals the Request-URI is never returned (it would redirect the
    caller back here): 404 when it is the only one."""
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "bob", ["<sip:bob@example.com>"])
        expect(invite(ua, aor("bob")), 404, "Not Found")
        register(reg, "bob", ["<sip:bob@192.0.2.7>;q=0.1"])
        r = expect(invite(ua, aor("bob")), 302)
        assert contact_uris(r) == ["sip:bob@192.0.2.7"], "302 Contacts"
        # The same URI under RFC 3261 §19.1.4: host case-insensitive, %-escapes of unreserved
        # characters equal to the characters.
        problems = []
        for ruri in ("sip:bob@EXAMPLE.COM", "sip:%62ob@example.com"):
            r = invite(ua, ruri)
            if r.status != 302 or contact_uris(r) != ["sip:bob@192.0.2.7"]:
                problems.append(f"INVITE {ruri}: {r.status} {contact_uris(r)}, want 302 to only "
                                f"sip:bob@192.0.2.7 (sip:bob@example.com is the Request-URI)")
        # A different URI (the user part is case-sensitive) is no loop: it is returned.
        register(reg, "BOB", ["<sip:bob@example.com>"])
        r = invite(ua, aor("BOB"))
        if r.status != 302 or contact_uris(r) != ["sip:bob@example.com"]:
            problems.append(f"INVITE {aor('BOB')}: {r.status} {contact_uris(r)}, want 302 to "
                            f"sip:bob@example.com (a different URI than the Request-URI)")
        assert not problems, "; ".join(problems)


def test_oversized_302_cut_to_1300_bytes(redis, registrar, redirect):
    """40 bindings do not fit one datagram: the 302 stays <= 1300 bytes (RFC 3261 §18.1.1), keeps
    the highest-q contacts in order, and sipr_contacts_cut_total counts the rest. (The INVITE is
    padded to 500 bytes, as one with SDP is, so that the amplification guard, 3 x 500, is not the
    tighter bound: test_flood.py tests that one.)"""
    n = 40
    with registrar.ua() as reg, redirect.ua() as ua:
        # q 0.99, 0.97, ... distinct; shuffled, so storage order is not q order.
        contacts = [(f"sip:alice-{i:02d}@198.51.100.{i + 1}:5060;transport=udp", 990 - 20 * i)
                    for i in range(n)]
        shuffled = random.Random(7).sample(contacts, n)
        register(reg, "alice", [f"<{u}>;q={q / 1000:g}" for u, q in shuffled])
        assert redis.client.hlen(location_key(aor())) == n, "stored bindings"
        cut0 = redirect.metric("sipr_contacts_cut_total")
        req = ua.build("INVITE", aor(), headers=["X-Pad: "])
        req.data = req.data.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (500 - len(req.data)))
        r = expect(ua.send(req), 302)
        assert len(r.raw) <= 1300, f"302 of {len(r.raw)} bytes, want <= 1300"
        k = len(r.contacts)
        assert 0 < k < n, f"{k} Contacts in the 302"
        assert contact_uris(r) == [u for u, _ in contacts[:k]], "the highest-q contacts, in order"
        assert [c.q for c in r.contacts] == [f"{q / 1000:g}" for _, q in contacts[:k]], "q values"
        # Nothing that fits was left out: one more Contact line would pass 1300 bytes.
        line = f"Contact: <{contacts[k][0]}>;q={contacts[k][1] / 1000:g};expires=600\r\n"
        assert len(r.raw) + len(line) > 1300, (
            f"302 of {len(r.raw)} bytes left out a contact that "
            f"fits ({len(line)} bytes)")
        wait_metric(redirect, "sipr_contacts_cut_total", cut0 + n - k)


def test_responses_go_to_rport_or_via_port(redis, registrar, redirect):
    """RFC 3581: with rport the answer goes to the source port (rport filled in); RFC 3261
    §18.2.2: without it, to the Via sent-by port."""
    with registrar.ua() as reg, redirect.ua() as ua, SipUdp(redirect.port) as other:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
        for rport, dest, silent in ((False, other, ua), (True, ua, other)):
            req = ua.build("INVITE", aor(), rport=rport)
            req.data = req.data.replace(f"Via: SIP/2.0/UDP {ua.local};".encode(),
                                        f"Via: SIP/2.0/UDP {other.local};".encode())
            ua.send_raw(req.data)
            r = dest.recv(scaled(3))
            assert r is not None and r.status == 302, (
                f"rport={rport}: no 302 at {'source' if rport else 'Via sent-by'} port")
            assert r.top_via.get("branch") == req.branch, f"rport={rport}: branch"
            if rport:
                assert r.top_via.get("rport") == str(ua.local_port), "rport filled (RFC 3581 §4)"
                assert r.top_via.get("received") == "127.0.0.1", "received (RFC 3581 §4)"
            assert silent.recv(0.3) is None, f"rport={rport}: an answer went to the other port too"


def test_responses_copy_headers_and_tag_to(redis, registrar, redirect):
    """Every Via (in order), From, Call-ID and CSeq copied byte for byte; To gets a 16-hex tag
    (once; a To that has a tag keeps it)."""
    with registrar.ua() as reg, redirect.ua() as ua:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
        branch = unique("z9hG4bK")
        via1 = f"SIP/2.0/UDP {ua.local};branch={branch};rport"
        via2 = "SIP/2.0/UDP 192.0.2.200:5080;branch=z9hG4bKlower;received=192.0.2.201"
        via3 = "SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bK.3rd;ttl=4"
        frm = '"Bob \\"B\\" Smith" <sip:bob@example.net;user=phone>;tag=a.b-c_d!1;x-p=1'
        to = "Alice <sip:alice@example.com>;x-to=1"
        cid = f"{unique('c')}.-!%*_+`'~@[2001:db8::1]"
        lines = [f"INVITE {aor()} SIP/2.0", f"Via: {via1}", f"v: {via2},{via3}",
                 "Max-Forwards: 70", f"f: {frm}", f"t: {to}", f"i: {cid}", "CSeq: 4711   INVITE",
                 "l: 0"]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        r = expect(ua.answer_raw(data, branch), 302)
        assert r.values("via") == [f"{via1}={ua.local_port};received=127.0.0.1", via2, via3], "Vias"
        assert r.header("from") == frm, "From"
        assert r.header("call-id") == cid, "Call-ID"
        assert r.header("cseq") == "4711   INVITE", "CSeq"
        to_value = r.header("to")
        assert to_value.startswith(to + ";tag="), f"To {to_value!r}, want {to!r} + ;tag="
        assert TAG_RE.match(to_value[len(to) + 5:]), (
            f"To tag {to_value[len(to) + 5:]!r}, want 16 hex")
        # A request inside a dialog: its To tag is kept, no second tag.
        tagged = to + ";tag=dialog-1"
        r = expect(invite(ua, aor(), to=tagged, from_=frm, from_tag=""), 302)
        assert r.header("to") == tagged, "To with a tag"


# ------------------------------------------------------------------------------------------------
# Load, garbage (default redirect)

def test_load_10k_aors_100k_invites(redis, registrar, redirect):
    """10,000 AORs registered through sip-registrard (windowed), then 100,000 INVITEs in a window
    of 200 with retransmission: every one answered 302; 1,000 sampled answers name exactly the
    registered contact of their AOR."""
    n_aors, n_invites, sample = 10_000, 100_000, 1_000
    rng = random.Random(20240611)
    with SipUdp(registrar.port) as builder:
        contact = [f"sip:u{i}@10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:5060" for i in range(n_aors)]
        regs = [builder.register(aor(f"u{i}"), [f"<{contact[i]}>"], expires=3600)
                for i in range(n_aors)]
        t0 = time.monotonic()
        res = transact_many(registrar.port, regs, window=64, timeout=120)
        took_reg = time.monotonic() - t0
        bad = [(i, r.status) for i, r in enumerate(res) if r.status != 200]
        assert not bad, f"{len(bad)} REGISTERs without 200, first {bad[:5]}"
        targets = [rng.randrange(n_aors) for _ in range(n_invites)]
        invites = [builder.build("INVITE", aor(f"u{t}")) for t in targets]
    picked = rng.sample(range(n_invites), sample)
    before = redirect.metric("sipr_responses_total", code="302")
    run = transact_bulk(redirect.port, invites, window=200, sockets=4, timeout=200, keep=picked)
    rate = n_invites / run.elapsed if run.elapsed > 0 else 0.0
    print(f"#   load: {n_aors} REGISTERs in {took_reg:.1f}s; {n_invites} INVITEs in "
          f"{run.elapsed:.1f}s = {rate:.0f}/s, {run.retransmissions} retransmissions",
          flush=True)
    unanswered = [i for i, s in enumerate(run.statuses) if s == 0]
    assert not unanswered, f"{len(unanswered)} INVITEs unanswered, first {unanswered[:5]}"
    other = [(i, s) for i, s in enumerate(run.statuses) if s != 302]
    assert not other, f"{len(other)} INVITEs not answered 302, first {other[:5]}"
    wrong = []
    for i in picked:
        r = parse_response(run.kept[i])
        want = contact[targets[i]]
        if contact_uris(r) != [want] or r.header("call-id") != invites[i].call_id:
            wrong.append(f"INVITE {i} to {aor(f'u{targets[i]}')}: {contact_uris(r)}, want {want}")
    assert not wrong, f"{len(wrong)} of {sample} sampled 302s wrong: {wrong[:3]}"
    after = redirect.metric("sipr_responses_total", code="302")
    assert after - before >= n_invites, f"sipr_responses_total{{code=302}} rose {after - before}"


def test_garbage_flood_then_still_answers(redis, registrar, redirect):
    """10,000 random datagrams (random bytes, 1..1500 long): no answer to any, all counted in
    sipr_dropped_total (not_sip for random bytes), and the daemon still redirects correctly."""
    n = 10_000
    rng = random.Random(4242)
    with registrar.ua() as reg:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
    before = redirect.metrics()
    with redirect.ua() as ua:
        for i in range(n):
            ua.send_raw(rng.randbytes(rng.randint(1, 1500)))
            if i % 250 == 249:
                # Pace the flood to what the socket buffers hold: an OPTIONS from the same socket
                # is answered only after the junk before it on its worker was handled (--spread
                # random shares the junk between the workers; the drops are awaited below).
                expect(ua.send(ua.options(), timeout=10), 200)
        assert ua.stray == [], "answers to garbage"
        r = expect(invite(ua, aor()), 302)
        assert contact_uris(r) == ["sip:alice@192.0.2.1"], "Contacts after the flood"
        assert ua.recv(0.2) is None, "an answer to garbage arrived late"
    after = wait_until(lambda: (m := redirect.metrics()) and
                       metric_sum(m, "sipr_dropped_total") - metric_sum(before, "sipr_dropped_total")
                       >= n and m, 5, what="every garbage datagram counted")
    dropped = metric_sum(after, "sipr_dropped_total") - metric_sum(before, "sipr_dropped_total")
    not_sip = (metric_value(after, "sipr_dropped_total", {"reason": "not_sip"}) -
               metric_value(before, "sipr_dropped_total", {"reason": "not_sip"}))
    assert dropped == n, "sipr_dropped_total rise (all reasons)"
    assert not_sip >= n * 0.99, f'sipr_dropped_total{{reason="not_sip"}} rose {not_sip} of {n}'
    with SipUdp(redirect.port) as fresh:
        expect(invite(fresh, aor()), 302)


# ------------------------------------------------------------------------------------------------
# Opt-in flags and no --domain (redirect_open)

def test_path_route_only_with_flag(redis, registrar, redirect, redirect_open):
    """RFC 3327: with --path-route a binding registered with a Path returns it as an escaped
    ?Route= URI header; without the flag the Contact is the bare contact."""
    with registrar.ua() as reg:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"],
                 headers=["Supported: path", "Path: <sip:edge1.example.net;lr>"])
        register(reg, "alice", ["<sip:alice@192.0.2.2>;q=0.5"],
                 headers=["Supported: path", "Path: <sip:p1.example.net;lr>",
                          "Path: <sip:p2.example.net:5070;lr>"])
        register(reg, "alice", ["<sip:alice@192.0.2.3>;q=0.2"])
    with redirect.ua() as ua:
        r = expect(invite(ua, aor()), 302)
        assert contact_uris(r) == (["sip:alice@192.0.2.1", "sip:alice@192.0.2.2",
                                   "sip:alice@192.0.2.3"]), "Contacts without --path-route"
    with redirect_open.ua() as ua:
        r = expect(invite(ua, aor()), 302)
        assert contact_uris(r) == ([
            "sip:alice@192.0.2.1?Route=%3Csip:edge1.example.net%3Blr%3E",
            "sip:alice@192.0.2.2?Route=%3Csip:p1.example.net%3Blr%3E%2C%20"
            "%3Csip:p2.example.net:5070%3Blr%3E",
            "sip:alice@192.0.2.3"]), "Contacts with --path-route"
        assert [c.q for c in r.contacts] == ["1", "0.5", "0.2"], "q with --path-route"


def test_max_forwards_zero_redirect_flag(redis, registrar, redirect_open):
    with registrar.ua() as reg, redirect_open.ua() as ua:
        register(reg, "alice", ["<sip:alice@192.0.2.1>"])
        r = expect(invite(ua, aor(), max_forwards=0), 302)
        assert contact_uris(r) == ["sip:alice@192.0.2.1"], "Contacts with Max-Forwards: 0"


def test_every_domain_served_without_domain_flag(redis, redirect_open):
    """Without --domain every domain is served; tel: has no default domain to map to: 404."""
    locctl(redis, "bind", aor("alice", "other.org"), "sip:alice@192.0.2.1", "--expires", "600")
    locctl(redis, "bind", "sip:+15550100@other.org", "sip:phone@192.0.2.3", "--expires", "600")
    with redirect_open.ua() as ua:
        r = expect(invite(ua, aor("alice", "other.org")), 302)
        assert contact_uris(r) == ["sip:alice@192.0.2.1"], "Contacts for other.org"
        check_contact(r.contacts[0], "sip:alice@192.0.2.1", "1", 600, "bound contact")
        expect(invite(ua, "tel:+1-555-0100"), 404, "Not Found")


# ------------------------------------------------------------------------------------------------
# Scale-out: the To tag (DESIGN §4, §7)

def test_same_request_same_answer_on_two_instances(redis):
    """Two instances with one SIPR_SECRET and one Redis answer the same INVITE byte for byte (so
    a retransmission landing on the other instance matches); another secret, another tag."""
    other_secret = {**os.environ, "SIPR_SECRET": "another-secret"}
    # An expiry at .500 of a second: the remaining seconds are the same from .500 to .499 of
    # the next second, so answers in that window are equal whichever instance computes them.
    now = time_ms(redis.client)
    exp = (now // 1000 + 600) * 1000 + 500
    seed(redis, aor(), "sip:alice@192.0.2.1", "sip:alice@192.0.2.1", expires_at_ms=exp, q=700)
    seed(redis, aor(), "sip:alice@192.0.2.2", "sip:alice@192.0.2.2", expires_at_ms=exp + 1000)
    with Redirect(redis, [], name="sip-redirectd[a]") as a, \
            Redirect(redis, [], name="sip-redirectd[b]") as b, \
            Redirect(redis, [], name="sip-redirectd[c]", env=other_secret) as c, \
            SipUdp(a.port) as ua:
        for attempt in range(3):
            req = ua.build("INVITE", aor())
            miss = ua.build("INVITE", aor("nobody"))
            wait_until(lambda: 0.55 <= time.time() % 1 < 0.65, 2, interval=0.005,
                       what="the start of a stable second")
            t0 = time.time()
            got: dict[str, list[bytes]] = {}
            for name, d in (("a", a), ("b", b), ("a again", a), ("c", c)):
                got[name] = []
                for q in (req, miss):
                    ua.sock.sendto(q.data, ("127.0.0.1", d.port))
                    deadline = time.monotonic() + scaled(2)
                    while True:
                        r = ua.recv(deadline - time.monotonic())
                        assert r is not None, f"no answer from {name}"
                        if r.top_via.get("branch") == q.branch:
                            got[name].append(r.raw)
                            break
            if time.time() - t0 < 0.8:
                break  # all answered within one stable second
        else:
            raise AssertionError("three times the answers took longer than 0.8 s; cannot compare")
        ra = parse_response(got["a"][0])
        expect(ra, 302)
        assert contact_uris(ra) == ["sip:alice@192.0.2.2", "sip:alice@192.0.2.1"], "Contacts"
        assert got["b"][0] == got["a"][0], "302 of instance b vs a (bytes)"
        assert got["a again"][0] == got["a"][0], "302 of a retransmission to a (bytes)"
        assert got["b"][1] == got["a"][1], "404 of instance b vs a (bytes)"
        assert TAG_RE.match(ra.to_tag or ""), f"To tag {ra.to_tag!r}"
        rc = parse_response(got["c"][0])
        assert rc.to_tag != ra.to_tag and TAG_RE.match(rc.to_tag or ""), (
            f"To tag under another secret: {rc.to_tag!r} vs {ra.to_tag!r}")
        assert got["c"][0].replace(rc.to_tag.encode(), ra.to_tag.encode()) == got["a"][0], (
            "302 under another secret, but for the tag")
        # The tag depends on the transaction: another branch, another tag.
        other = ua.build("INVITE", aor(), call_id=req.call_id)
        r = expect(ua.send(other), 302)
        assert r.to_tag != ra.to_tag, "the same To tag for another transaction"


# ------------------------------------------------------------------------------------------------
# Start-up refusals (DESIGN §8)

def test_listen_port_taken_exits_nonzero(redis):
    """--listen on a UDP port another socket holds (without SO_REUSEPORT): one line, non-zero;
    the same for a --metrics port taken."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    try:
        taken, taken_tcp = holder.getsockname()[1], tcp.getsockname()[1]
        check_startup_errors([(["--listen", f"127.0.0.1:{taken}", "--redis", redis.url,
                                "--metrics", f"127.0.0.1:{free_tcp_port()}"], str(taken)),
                              (["--listen", f"127.0.0.1:{free_udp_port()}", "--redis", redis.url,
                                "--metrics", f"127.0.0.1:{taken_tcp}"], "--metrics")])
    finally:
        holder.close()
        tcp.close()


# ------------------------------------------------------------------------------------------------
# Redis lost, stalled; overload

def test_redis_down_503_then_recovers():
    """Redis stopped: INVITE 503 with Retry-After (never 404), the OPTIONS probe 503 (200 with
    --health-ignores-redis), sipr_redis_up 0; Redis back on the same port: 302 again within a
    bounded time, the same daemon processes, sipr_redis_up 1."""
    with RedisServer() as rs, \
            Redirect(rs, ["--redis-timeout", "500"], name="sip-redirectd[outage]") as rd, \
            Redirect(rs, ["--redis-timeout", "500", "--health-ignores-redis"],
                     name="sip-redirectd[ignores]") as ri:
        locctl(rs, "bind", aor(), "sip:alice@192.0.2.1", "--expires", "600")
        uas = [rd.ua() for _ in range(4)] + [ri.ua()]  # several sockets: every worker asked
        try:
            for ua in uas:
                expect(invite(ua, aor()), 302)
            pids = (rd.pid, ri.pid)
            rs.stop()
            for _ in range(3):
                for ua in uas:
                    r = expect(invite(ua, aor()), 503, "Service Unavailable")
                    ra = r.header("retry-after")
                    assert ra is not None and ra.strip().isdigit(), f"503 Retry-After: {ra!r}"
                time.sleep(0.2)
            r = expect(uas[0].send(uas[0].options()), 503, "Service Unavailable")
            assert r.header("retry-after") is not None, "503 to OPTIONS needs Retry-After"
            expect(uas[-1].send(uas[-1].options()), 200, "OK")
            wait_until(lambda: rd.metric("sipr_redis_up") == 0, 3, what="sipr_redis_up 0")
            assert rd.metric("sipr_redis_up") == 0, "sipr_redis_up while Redis is down"
            rs.start()
            locctl(rs, "bind", aor(), "sip:alice@192.0.2.1", "--expires", "600")  # no persistence
            t0 = time.monotonic()
            for ua in uas:
                wait_until(lambda: invite(ua, aor()).status == 302, 10, interval=0.1,
                           what="302 after Redis came back")
            took = time.monotonic() - t0
            assert took < scaled(5), f"took {took:.1f}s to recover (back-off is at most 2 s)"
            assert (rd.pid, ri.pid) == pids and rd.running() and ri.running(), (
                "a daemon was restarted")
            expect(uas[0].send(uas[0].options()), 200, "OK")
            wait_until(lambda: rd.metric("sipr_redis_up") == 1, 3, what="sipr_redis_up 1")
        finally:
            for ua in uas:
                ua.close()


def test_max_inflight_one_with_stalled_redis():
    """--max-inflight 1, one worker, Redis stalled (SIGSTOP): of a burst, the one look-up in
    flight waits for --lookup-timeout and everything beyond the bound gets 503 at once; after
    SIGCONT, 302 again."""
    lookup_ms = int(scaled(1500))
    with RedisServer() as rs, \
            Redirect(rs, ["--max-inflight", "1", "--lookup-timeout", str(lookup_ms),
                          "--cache-ttl", "0"],
                     name="sip-redirectd[inflight]", workers=1) as rd, \
            rd.ua() as ua:
        locctl(rs, "bind", aor(), "sip:alice@192.0.2.1", "--expires", "600")
        expect(invite(ua, aor()), 302)
        over0 = rd.metric("sipr_redis_errors_total", kind="overloaded")
        rs.proc.send_signal(signal.SIGSTOP)
        try:
            burst = [ua.build("INVITE", aor()) for _ in range(20)]
            t0 = time.monotonic()
            for q in burst:
                ua.send_raw(q.data)
            when: dict[str, tuple[float, Response]] = {}
            by_branch = {q.branch: q for q in burst}
            deadline = t0 + lookup_ms / 1000 + scaled(3)
            while len(when) < len(burst) and time.monotonic() < deadline:
                r = ua.recv(deadline - time.monotonic())
                if r is not None and r.top_via.get("branch") in by_branch:
                    when.setdefault(r.top_via["branch"], (time.monotonic() - t0, r))
            assert len(when) == len(burst), "answers to the burst"
            statuses = [r.status for _, r in when.values()]
            assert statuses == [503] * len(burst), "statuses of the burst"
            assert all(r.header("retry-after") for _, r in when.values()), "503 without Retry-After"
            fast = sorted(t for t, _ in when.values())
            assert fast[-2] < scaled(0.5), (
                f"answers beyond the bound took up to {fast[-2]:.2f}s (want at once)")
            assert fast[-1] >= lookup_ms / 1000 * 0.8, (
                f"the look-up in flight was answered after {fast[-1]:.2f}s, before "
                f"--lookup-timeout {lookup_ms} ms")
            assert rd.metric("sipr_redis_errors_total", kind="overloaded") - over0 >= len(burst) - 1, (
                'sipr_redis_errors_total{kind="overloaded"} did not count the refusals')
        finally:
            rs.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: invite(ua, aor()).status == 302, 10, interval=0.1,
                   what="302 after Redis answers again")
        assert rd.running(), "the daemon died"


# ------------------------------------------------------------------------------------------------
# Process behaviour

def test_sigterm_answers_inflight_then_exits_zero():
    """SIGTERM while look-ups are in flight (Redis stalled): they are answered (302 once Redis
    resumes) before the process exits 0."""
    lookup_ms = int(scaled(3000))
    with RedisServer() as rs:
        rd = Redirect(rs, ["--lookup-timeout", str(lookup_ms), "--cache-ttl", "0"],
                      name="sip-redirectd[sigterm]")
        with rd:
            locctl(rs, "bind", aor(), "sip:alice@192.0.2.1", "--expires", "600")
            uas = [rd.ua() for _ in range(3)]
            try:
                for ua in uas:
                    expect(invite(ua, aor()), 302)
                rs.proc.send_signal(signal.SIGSTOP)
                try:
                    reqs = [(ua, ua.build("INVITE", aor())) for ua in uas for _ in range(2)]
                    for ua, q in reqs:
                        ua.send_raw(q.data)
                    wait_until(lambda: rd.metric("sipr_inflight_lookups") == len(reqs), 2,
                               what=f"{len(reqs)} look-ups in flight")
                    rd.proc.send_signal(signal.SIGTERM)
                    time.sleep(0.3)
                    assert rd.running(), "exited with look-ups in flight"
                finally:
                    rs.proc.send_signal(signal.SIGCONT)
                got = collect([ua for ua, _ in reqs], [q.branch for _, q in reqs],
                              lookup_ms / 1000 + scaled(2))
                assert sorted(got) == sorted(q.branch for _, q in reqs), (
                    "in-flight INVITEs answered before exit")
                for r in got.values():
                    expect(r, 302)
                t0 = time.monotonic()
                assert rd.stop() == 0, "exit status after SIGTERM"
                assert time.monotonic() - t0 < scaled(5), "exit took more than 5 s"
                assert "stopped" in rd.stderr_text(), "no 'stopped' in the log"
            finally:
                for ua in uas:
                    ua.close()
        # The port is closed: nothing answers any more.
        with SipUdp(rd.port) as ua:
            ua.send_raw(ua.options().data)
            ua.expect_silence(0.5)


def test_bad_flag_exits_nonzero_with_one_line():
    check_startup_errors([(["--no-such-flag"], "--no-such-flag"),
                          (["--max-forwards-zero", "sometimes"], "--max-forwards-zero"),
                          (["--max-inflight", "0"], "--max-inflight"),
                          (["--max-response", "100"], "--max-response"),
                          (["--lookup-timeout", "abc"], "--lookup-timeout"),
                          (["--listen", "not-an-endpoint", "--redis", "redis://127.0.0.1:1"],
                           "--listen")])


def test_redis_unreachable_at_start_exits_nonzero():
    dead = free_tcp_port()  # nothing listens there
    check_startup_errors([(["--listen", f"127.0.0.1:{free_udp_port()}",
                            "--metrics", f"127.0.0.1:{free_tcp_port()}",
                            "--redis", f"redis://127.0.0.1:{dead}"], "Redis")])


def test_default_workers_leave_a_core_to_local_redis(redis_server):
    """Without --workers: one worker per core, one fewer when Redis is on this machine (a loopback
    --redis), as --help says; --workers N is taken as given."""
    cores = os.cpu_count() or 1
    want = max(1, cores - 1)
    for flags, expected in (([], want), (["--workers", "1"], 1)):
        port = free_udp_port()
        with Daemon("sip-redirectd", ["--listen", f"127.0.0.1:{port}", "--redis", redis_server.url,
                                      "--metrics", f"127.0.0.1:{free_tcp_port()}", *flags],
                    sip_port=port, name="sip-redirectd[workers]") as d:
            m = re.search(r"with (\d+) workers", d.stderr_text())
            assert m, f"no 'with N workers' in the log:\n{d.stderr_text()}"
            assert int(m.group(1)) == expected, (
                f"{flags or 'no --workers'} on {cores} cores with a loopback Redis: "
                f"{m.group(1)} workers, want {expected}")
