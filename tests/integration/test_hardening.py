"""Small hardening fixes of issue 14, end to end over loopback:

- a CR that ends no line in a request's head is never echoed: sip-registrard answers 400 where the
  420 used to carry it, sip-redirectd drops a request whose From holds one (its 404 carried it);
- `sip-locctl show` and `show --json` escape every non-printable byte a REGISTER stored;
- --rate-limit counts an IPv6 source by its /64 (--rate-limit-v6-prefix), checked from 100
  addresses of one /64 inside a private network namespace (unshare -n: it vanishes with the
  process, nothing to clean up; skipped with a note where unshare is not permitted).

    /usr/bin/python3 -m pytest tests/integration/test_hardening.py [-k name-substring]
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sipr_test.base import binary, free_tcp_port, free_udp_port, scaled
from sipr_test.bindings import location_key, unpack_binding
from sipr_test.metrics import metric_value, scrape_metrics
from sipr_test.processes import Daemon, ServiceDaemon, startup_refused
from sipr_test.redis_servers import RedisServer
from sipr_test.sip import unique

DOMAIN = "example.com"
ENV = {**os.environ, "SIPR_SECRET": "hardening-integration-secret"}


def aor(user: str) -> str:
    return f"sip:{user}@{DOMAIN}"


class Redirect(ServiceDaemon):
    def __init__(self, redis: RedisServer, flags: list[str] = (), name: str = "sip-redirectd"):
        super().__init__("sip-redirectd", redis.url, ["--domain", DOMAIN, *flags], name=name,
                         workers=1, env=ENV)


class Registrar(ServiceDaemon):
    def __init__(self, redis: RedisServer, flags: list[str] = (), name: str = "sip-registrard"):
        super().__init__("sip-registrard", redis.url, ["--domain", DOMAIN, *flags], name=name,
                         workers=1, env=ENV)


@pytest.fixture(scope="module")
def registrar(redis_server):
    with Registrar(redis_server) as d:
        yield d


@pytest.fixture(scope="module")
def redirect(redis_server):
    with Redirect(redis_server) as d:
        yield d


def metric(daemon: ServiceDaemon, name: str, **labels: str) -> float:
    return metric_value(daemon.metrics(), name, labels) or 0.0


def settled(daemon: ServiceDaemon, name: str, **labels: str) -> float:
    """The counter once two scrapes 0.2 s apart agree (the daemon has handled what it got)."""
    last = None
    deadline = time.monotonic() + scaled(3.0)
    while True:
        v = metric(daemon, name, **labels)
        if v == last or time.monotonic() > deadline:
            return v
        last = v
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------------
# A bare CR in the head (header injection)

INJECTED = b"X-Injected"


def test_registrar_bare_cr_in_require_is_400_not_420(redis, registrar):
    """`Require: foo\\rX-Injected: registrar` used to come back inside the 420's Unsupported: now
    a 400 naming the fault, with no trace of the injected line, and nothing stored. A plain
    unknown Require still gets its 420."""
    with registrar.ua() as ua:
        req = ua.register(aor("alice"), ["<sip:alice@192.0.2.1>"], expires=600,
                          headers=["Require: foo\rX-Injected: registrar"])
        r = ua.answer_raw(req.data, req.branch)
        assert ((r.status, r.reason)) == ((400, "Bare CR in Header")), "answer"
        assert INJECTED not in r.raw and b"\r" not in r.raw.replace(b"\r\n", b""), (
            f"the answer echoes the injected bytes: {r.raw!r}")
        assert sorted(redis.client.keys("sipr:loc:*")) == [], "keys after the 400"
        r = ua.send(ua.register(aor("alice"), ["<sip:alice@192.0.2.1>"], expires=600,
                                headers=["Require: foo"]))
        assert ((r.status, r.values("unsupported"))) == ((420, ["foo"])), "plain unknown Require"


def test_folded_require_never_echoed(redis, registrar, redirect):
    """A Require element that is not one option tag (here a fold: `foo` CRLF SP `X-Injected`) was
    echoed into the 420's Unsupported by both daemons (a line break of ours in the answer): now a
    400 naming the header, with nothing of it echoed."""
    with registrar.ua() as ua:
        req = ua.register(aor("alice"), ["<sip:alice@192.0.2.1>"], expires=600,
                          headers=["Require: foo\r\n X-Injected"])
        r = ua.answer_raw(req.data, req.branch)
        assert ((r.status, r.reason)) == ((400, "Malformed Require Header")), "registrar"
        assert INJECTED not in r.raw, f"the registrar's answer echoes the fold: {r.raw!r}"
    with redirect.ua() as ua:
        req = ua.options(headers=["Require: foo\r\n X-Injected"])
        r = ua.answer_raw(req.data, req.branch)
        assert ((r.status, r.reason)) == ((400, "Malformed Require Header")), "sip-redirectd"
        assert INJECTED not in r.raw, f"sip-redirectd's answer echoes the fold: {r.raw!r}"


def test_registrar_bare_cr_in_from_is_dropped(redis, registrar):
    """A bare CR in a header every answer copies (From): no answer can be formed without echoing
    it, so the REGISTER is dropped and counted (not_sip), and the registrar still serves."""
    with registrar.ua() as ua:
        before = metric(registrar, "sipr_dropped_total", reason="not_sip")
        req = ua.register(aor("alice"), ["<sip:alice@192.0.2.1>"], expires=600,
                          from_='"Alice\rX-Injected: registrar" <sip:alice@example.com>')
        ua.send_raw(req.data)
        ua.expect_silence(scaled(0.5))
        assert settled(registrar, "sipr_dropped_total", reason="not_sip") - before == 1.0, (
            'sipr_dropped_total{reason="not_sip"} rise')
        r = ua.send(ua.register(aor("alice"), ["<sip:alice@192.0.2.1>"], expires=600))
        assert r.status == 200, "a clean REGISTER afterwards"


def test_redirect_bare_cr_in_from_display_name_never_echoed(redis, redirect):
    """sip-redirectd's 404 used to copy a From display name holding `\\r`: now the INVITE is
    dropped and counted, and a bare CR elsewhere (Subject) gets a 400 that copies none of it."""
    with redirect.ua() as ua:
        before = metric(redirect, "sipr_dropped_total", reason="not_sip")
        req = ua.build("INVITE", aor("nobody"),
                       from_='"Mallory\rX-Injected: redirect" <sip:m@example.com>')
        ua.send_raw(req.data)
        ua.expect_silence(scaled(0.5))
        assert settled(redirect, "sipr_dropped_total", reason="not_sip") - before == 1.0, (
            'sipr_dropped_total{reason="not_sip"} rise')
        req = ua.build("INVITE", aor("nobody"), headers=["Subject: hi\rX-Injected: redirect"])
        r = ua.answer_raw(req.data, req.branch)
        assert ((r.status, r.reason)) == ((400, "Bare CR in Header")), (
            "answer to a bare CR in Subject")
        assert INJECTED not in r.raw, f"the 400 echoes the injected bytes: {r.raw!r}"
        # Bare LF ends a line: the "injected" line is a header of its own, never inside another.
        req = ua.build("INVITE", aor("nobody"), headers=["Subject: hi\nX-Injected: redirect"])
        r = ua.answer_raw(req.data, req.branch)
        assert r.status == 404, "answer with a bare LF (a line end)"
        assert INJECTED not in r.raw, f"the 404 echoes the LF-separated line: {r.raw!r}"


# ------------------------------------------------------------------------------------------------
# sip-locctl show: network-supplied bytes escaped

# An OSC title change, BEL, clear screen, DEL, a C1 CSI both as UTF-8 (U+009B) and as a raw byte
# (0x9b, not UTF-8), a right-to-left override, then printable UTF-8 that must stay readable.
HOSTILE_UA = (b"evil\x1b]2;owned\x07\x1b[2J\x7f\xc2\x9b31m\x9b\xe2\x80\xaeabc"
              b" Tr\xc3\xa8s bien \xe5\xa5\xbd \xe2\x82\xac")
READABLE = "Tr\u00e8s bien \u597d \u20ac"


def locctl_raw(redis: RedisServer, *args: str) -> bytes:
    p = subprocess.run([str(binary("sip-locctl")), "--redis", redis.url, *args],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=scaled(15), env=ENV)
    assert p.returncode == 0, f"sip-locctl {' '.join(args)} exited {p.returncode}: {p.stderr!r}"
    return p.stdout


def terminal_safe(out: bytes, what: str) -> str:
    """Fails unless `out` is UTF-8 holding no control character but newline: no C0, no DEL, no
    C1 (as a code point or as a raw byte), no bidi override. Returns the text."""
    bad = [hex(b) for b in out if (b < 0x20 and b != 0x0A) or b == 0x7F]
    assert not bad, f"{what}: control bytes {bad} in {out!r}"
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AssertionError(f"{what}: not UTF-8 ({e}): {out!r}")
    c1 = [hex(ord(c)) for c in text if 0x80 <= ord(c) <= 0x9F or c in "\u202a\u202b\u202c\u202d\u202e"]
    assert not c1, f"{what}: C1 or bidi control code points {c1} in {text!r}"
    return text


def test_locctl_show_escapes_a_hostile_user_agent(redis, registrar):
    """A REGISTER with the User-Agent above, from an unauthenticated UA; `sip-locctl show` and
    `show --json` print it without one raw control byte, the JSON parses, and the printable UTF-8
    part is shown as it is."""
    with registrar.ua() as ua:
        req = ua.register(aor("alice"), ["<sip:alice@192.0.2.1>"], expires=600)
        data = req.data.replace(b"Content-Length:", b"User-Agent: " + HOSTILE_UA +
                                b"\r\nContent-Length:")
        r = ua.answer_raw(data, req.branch)
        assert r.status == 200, "REGISTER with the hostile User-Agent"
    stored = [unpack_binding(v) for v in redis.client.hgetall(location_key(aor("alice"))).values()]
    assert len(stored) == 1 and "owned" in stored[0].user_agent, (
        f"the User-Agent was not stored as sent: {stored}")

    text = terminal_safe(locctl_raw(redis, "show", aor("alice")), "show")
    assert READABLE in text, f"show: the printable UTF-8 is not readable: {text!r}"
    assert "\\x1b]2;owned\\x07\\x1b[2J\\x7f\\xc2\\x9b31m\\x9b\\xe2\\x80\\xaeabc" in text, (
        f"show: the escapes are not the documented \\xHH form: {text!r}")

    out = locctl_raw(redis, "show", aor("alice"), "--json")
    text = terminal_safe(out, "show --json")
    doc = json.loads(text)
    assert len(doc["bindings"]) == 1, "bindings in the JSON"
    got = doc["bindings"][0]["user_agent"]
    want = ("evil\x1b]2;owned\x07\x1b[2J\x7f\x9b31m\ufffd\u202eabc " + READABLE)
    assert got == want, "user_agent decoded from the JSON"
    assert READABLE in text, f"show --json: the printable UTF-8 is escaped: {text!r}"


# ------------------------------------------------------------------------------------------------
# --rate-limit-v6-prefix

def test_bad_v6_prefix_refused_at_start():
    """--rate-limit-v6-prefix outside 1..128 (flag or SIPR_RATE_LIMIT_V6_PREFIX): one line naming
    it, non-zero exit, on both daemons; a valid one passes the flag checks (and then fails on the
    Redis that is not there, naming Redis)."""
    problems = []
    for program in ("sip-redirectd", "sip-registrard"):
        for value in ("0", "129", "-1", "x", "64.5"):
            problems.append(startup_refused(program, ["--rate-limit", "10",
                                                      "--rate-limit-v6-prefix", value],
                                            "--rate-limit-v6-prefix", env=ENV))
        problems.append(startup_refused(program, [], "--rate-limit-v6-prefix",
                                        env={**ENV, "SIPR_RATE_LIMIT_V6_PREFIX": "200"}))
        for value in ("1", "48", "128"):
            problems.append(startup_refused(program, ["--rate-limit-v6-prefix", value], "Redis",
                                            env=ENV))
        problems.append(startup_refused(program, [], "Redis",
                                        env={**ENV, "SIPR_RATE_LIMIT_V6_PREFIX": "56"}))
    problems = [p for p in problems if p]
    assert not problems, f"{len(problems)} start-up check(s) wrong: " + " | ".join(problems)


NETNS_NET = "fd00:5::"   # a /48 made local inside the private namespace (AnyIP route on lo)
IPV6_FREEBIND = 78


def _options(src: tuple[str, int], dst_port: int) -> bytes:
    branch = unique("z9hG4bK")
    return (f"OPTIONS sip:[::1]:{dst_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP [{src[0]}]:{src[1]};branch={branch};rport\r\n"
            f"From: <sip:probe@example.com>;tag={unique('t')}\r\nTo: <sip:[::1]:{dst_port}>\r\n"
            f"Call-ID: {unique('c')}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def _v6_socket(addr: str) -> socket.socket:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    s.bind((addr, 0))
    return s


def netns_child(flags: list[str]) -> int:
    """Runs inside `unshare --net`: lo up, fd00:5::/48 local, a redis-server and one sip-redirectd
    (one worker, listening on [::1], --rate-limit 10 --rate-burst 10 plus `flags`); sends one
    OPTIONS from each of 100 addresses of fd00:5::/64, then one from each of 100 other /64s of
    fd00:5::/48, and prints {"same64": rate_limited, "other64": rate_limited, "seconds": ...}."""
    # Never touch the machine's own namespace (a route added there would outlive the run).
    parent = os.environ.get("SIPR_PARENT_NETNS")
    if not parent or parent == os.readlink("/proc/self/ns/net"):
        print("--netns-child must run inside `unshare --net`", file=sys.stderr)
        return 2
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["ip", "-6", "route", "add", "local", NETNS_NET + "/48", "dev", "lo"]):
        subprocess.run(cmd, check=True, capture_output=True)
    with RedisServer() as r:
        port, metrics_port = free_udp_port(), free_tcp_port()
        d = Daemon("sip-redirectd",
                   ["--listen", f"[::1]:{port}", "--redis", r.url,
                    "--metrics", f"127.0.0.1:{metrics_port}", "--workers", "1",
                    "--rate-limit", "10", "--rate-burst", "10", *flags],
                   name="sip-redirectd[v6]", env=ENV)
        with d:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            probe.bind(("::1", 0))
            probe.settimeout(0.2)
            deadline = time.monotonic() + scaled(10)
            while True:  # ready: Redis connected, OPTIONS answered 200
                probe.sendto(_options(probe.getsockname()[:2], port), ("::1", port))
                try:
                    if probe.recv(65536).startswith(b"SIP/2.0 200"):
                        break
                except socket.timeout:
                    pass
                assert time.monotonic() < deadline, "sip-redirectd on [::1] never answered 200"
            probe.close()

            def limited() -> float:
                last = None
                end = time.monotonic() + scaled(3)
                while True:
                    v = metric_value(scrape_metrics(metrics_port), "sipr_dropped_total",
                                     {"reason": "rate_limited"}) or 0.0
                    if v == last or time.monotonic() > end:
                        return v
                    last = v
                    time.sleep(0.2)

            result = {}
            for name, addrs in (("same64", [f"{NETNS_NET}{i:x}" for i in range(1, 101)]),
                                ("other64", [f"fd00:5:0:{i:x}::1" for i in range(1, 101)])):
                socks = [_v6_socket(a) for a in addrs]
                before = limited()
                t0 = time.monotonic()
                for s in socks:
                    s.sendto(_options(s.getsockname()[:2], port), ("::1", port))
                result[name + "_seconds"] = time.monotonic() - t0
                result[name] = limited() - before
                for s in socks:
                    s.close()
    print(json.dumps(result))
    return 0


def run_in_netns(flags: list[str]) -> dict | None:
    """The counts of netns_child, or None where a network namespace cannot be made."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    try:
        subprocess.run(["unshare", "--net", "true"], check=True, capture_output=True, timeout=10)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    env = {**ENV, "SIPR_PARENT_NETNS": os.readlink("/proc/self/ns/net"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib")}
    p = subprocess.run(["unshare", "--net", sys.executable, __file__, "--netns-child", *flags],
                       capture_output=True, timeout=scaled(60), env=env)
    assert p.returncode == 0, (
        f"the namespace run failed ({p.returncode}): "
        f"{p.stdout.decode(errors='replace')[-1500:]}"
        f"{p.stderr.decode(errors='replace')[-1500:]}")
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def test_ipv6_sources_of_one_64_share_a_bucket():
    """100 datagrams from 100 addresses of one /64 with --rate-limit 10 --rate-burst 10: at most
    the burst plus what the rate refilled while they were sent passes, the rest is rate_limited
    (it used to be 0: each address had its own bucket); 100 sources in 100 different /64s all
    pass. With --rate-limit-v6-prefix 128 every address is its own source again. Runs in a
    private network namespace; skipped (with a note) where none can be made."""
    got = run_in_netns([])
    if got is None:
        print("    (skipped: no network namespace can be made here: unshare -n refused)")
        return
    refill = 10 * got["same64_seconds"] + 1
    assert got["same64"] >= 100 - 10 - refill, (
        f"rate_limited from one /64: {got['same64']:.0f} of 100, want >= {100 - 10 - refill:.0f}")
    assert got["other64"] == 0.0, "rate_limited from 100 different /64s"
    got = run_in_netns(["--rate-limit-v6-prefix", "128"])
    assert got["same64"] == 0.0, "rate_limited from one /64 with --rate-limit-v6-prefix 128"


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--netns-child":
    sys.exit(netns_child(sys.argv[2:]))  # run_in_netns() runs this file as a script
