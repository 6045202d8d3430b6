"""Abuse resistance of sip-redirectd and sip-registrard over loopback UDP (DESIGN §8 --allow,
--rate-limit; the reflection guard --max-amplification; DESIGN §9 sipr_dropped_total{reason}).

Other sources than 127.0.0.1 are sockets bound to 127.0.0.2 and 127.0.0.3: on Linux all of
127.0.0.0/8 is loopback, so no configuration is needed and nothing leaves the machine. Bounded:
the whole file takes well under a minute, also under ASan.

    /usr/bin/python3 -m pytest tests/integration/test_flood.py [-k name-substring]
"""
from __future__ import annotations

import os
import random
import select
import socket
import time


from sipr_test.base import scaled, wait_until
from sipr_test.bindings import location_key
from sipr_test.metrics import metric_value
from sipr_test.processes import ServiceDaemon, run_program, startup_refused
from sipr_test.redis_servers import RedisServer
from sipr_test.sip import Response, SipUdp, parse_response

DOMAIN = "example.com"
ENV = {**os.environ, "SIPR_SECRET": "flood-integration-secret"}


def aor(user: str) -> str:
    return f"sip:{user}@{DOMAIN}"


class Redirect(ServiceDaemon):
    def __init__(self, redis: RedisServer, flags: list[str], name: str = "sip-redirectd",
                 env: dict[str, str] | None = None, workers: int = 2):
        super().__init__("sip-redirectd", redis.url, ["--domain", DOMAIN, *flags], name=name,
                         workers=workers, env=env or ENV)


class Registrar(ServiceDaemon):
    def __init__(self, redis: RedisServer, flags: list[str], name: str = "sip-registrard",
                 env: dict[str, str] | None = None):
        super().__init__("sip-registrard", redis.url, ["--domain", DOMAIN, *flags], name=name,
                         workers=2, env=env or ENV)


class UaFrom(SipUdp):
    """A SipUdp whose socket is bound to another loopback address. Its Via names that address,
    with rport, so answers come back to it (RFC 3581)."""

    def __init__(self, port: int, ip: str):
        super().__init__(port)
        self.sock.close()
        self.ip = ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
        self.sock.bind((ip, 0))
        self.local_port = self.sock.getsockname()[1]

    @property
    def local(self) -> str:
        return f"{self.ip}:{self.local_port}"


def seed(redis: RedisServer, aor_: str, contact: str, q: int = 1000) -> None:
    """One binding of `aor_`, expiring in 600 s, written by the product's own tool (sip-locctl
    bind); `q` in thousandths. The contact goes in angle brackets: its URI parameters are the
    URI's, not the Contact header's."""
    args = ["--redis", redis.url, "bind", aor_, f"<{contact}>", "--expires", "600",
            "--q", f"{q / 1000:g}"]
    r = run_program("sip-locctl", args)
    assert r.returncode == 0, f"sip-locctl {' '.join(args)}: {r.stderr}"


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(None, 1)[1])
    return total


def delta(before: str, after: str, name: str, **labels: str) -> float:
    return (metric_value(after, name, labels) or 0) - (metric_value(before, name, labels) or 0)


def settled_metrics(daemon: ServiceDaemon, names: list[str], timeout: float = 3.0) -> str:
    """GET /metrics once the counters in `names` have stopped moving (two equal scrapes 0.2 s
    apart): the daemon has handled everything that reached its sockets."""
    last = None
    deadline = time.monotonic() + scaled(timeout)
    while True:
        m = daemon.metrics()
        now = tuple(metric_sum(m, n) for n in names)
        if now == last or time.monotonic() > deadline:
            return m
        last = now
        time.sleep(0.2)


def tiny_invite(ua: SipUdp, ruri: str) -> tuple[str, bytes]:
    """The smallest INVITE that is still valid (no Max-Forwards, Contact or body): a spoofer's
    best lever. Returns (branch, bytes)."""
    branch = f"z9hG4bK{random.getrandbits(32):08x}"
    data = (f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {ua.local};branch={branch};rport\r\n"
            f"From: <sip:x@y>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: {random.getrandbits(32):08x}"
            f"\r\nCSeq: 1 INVITE\r\n\r\n").encode()
    return branch, data


# ------------------------------------------------------------------------------------------------
# --rate-limit: a flood from one source does not starve another

FLOOD = 50_000
RATE, BURST = 200, 400  # --rate-limit 200, the default burst of twice the rate
NORMAL = 400            # INVITEs from the well-behaved source, one per 10 ms tick


def test_flood_from_one_source_leaves_another_served(redis):
    """50,000 datagrams from one socket on 127.0.0.2 (half random garbage, half valid INVITEs,
    about 12,500 a second) while a socket on 127.0.0.1 sends 400 INVITEs at 100 a second, each
    once: the well-behaved source gets >= 99% of its 302s; the flood is dropped as rate_limited
    beyond its burst plus the rate, and everything it sent is accounted for (rate_limited, a drop
    of the garbage that passed, or a 302 for an INVITE that passed). One worker, so that both
    sources meet the same limiter (with two, SO_REUSEPORT may put them on different workers)."""
    seed(redis, aor("alice"), "sip:alice@192.0.2.1")
    with Redirect(redis, ["--rate-limit", str(RATE)], name="sip-redirectd[rate]",
                  workers=1) as rd, \
            rd.ua() as good, UaFrom(rd.port, "127.0.0.2") as bad:
        expect_302(good, aor("alice"))
        rng = random.Random(99)
        junk = []
        for i in range(500):
            if i % 2:
                junk.append(rng.randbytes(rng.randint(1, 1400)))
            else:
                junk.append(bad.build("INVITE", aor("alice")).data)
        good_reqs = [good.build("INVITE", aor("alice")) for _ in range(NORMAL)]
        by_branch = {r.branch: i for i, r in enumerate(good_reqs)}
        statuses: dict[int, int] = {}
        to_flooder: dict[int, int] = {}
        bad.sock.setblocking(False)
        good.sock.setblocking(False)

        def drain() -> None:
            for ua, sink in ((good, None), (bad, to_flooder)):
                while True:
                    try:
                        data = ua.sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    r = parse_response(data)
                    if sink is not None:
                        sink[r.status] = sink.get(r.status, 0) + 1
                        continue
                    i = by_branch.get(r.top_via.get("branch"))
                    if i is not None and i not in statuses:
                        statuses[i] = r.status

        before = rd.metrics()
        per_tick = FLOOD // NORMAL
        sent = 0
        t0 = time.monotonic()
        for tick in range(NORMAL):
            for _ in range(per_tick):
                try:
                    bad.sock.sendto(junk[sent % len(junk)], bad.server)
                except (BlockingIOError, InterruptedError):
                    time.sleep(0.0005)  # the local send buffer is full: wait, then go on
                    bad.sock.sendto(junk[sent % len(junk)], bad.server)
                sent += 1
            good.sock.sendto(good_reqs[tick].data, good.server)
            drain()
            # Pace to one tick per 10 ms, reading answers meanwhile.
            while (pause := t0 + (tick + 1) * 0.01 - time.monotonic()) > 0:
                select.select([good.sock, bad.sock], [], [], pause)
                drain()
        elapsed = time.monotonic() - t0
        deadline = time.monotonic() + scaled(2)
        while len(statuses) < NORMAL and time.monotonic() < deadline:
            select.select([good.sock, bad.sock], [], [], 0.05)
            drain()
        after = settled_metrics(rd, ["sipr_dropped_total", "sipr_responses_total"])
        drain()

        assert sent == FLOOD, "flood datagrams sent"
        got_302 = sum(1 for s in statuses.values() if s == 302)
        print(f"#   flood: {FLOOD} datagrams in {elapsed:.1f}s; well-behaved source: {got_302} "
              f"of {NORMAL} 302s; flooder got {to_flooder}", flush=True)
        assert got_302 >= NORMAL * 0.99, (
            f"the well-behaved source got {got_302} of {NORMAL} 302s during the flood (want "
            f">= 99%); other answers {sorted(set(statuses.values()))}")
        limited = delta(before, after, "sipr_dropped_total", reason="rate_limited")
        passed_max = BURST + RATE * (elapsed + scaled(2) + 1)  # the most one bucket lets through
        assert limited >= FLOOD - passed_max, (
            f'sipr_dropped_total{{reason="rate_limited"}} rose {limited:.0f}, want >= '
            f"{FLOOD - passed_max:.0f} (the flood beyond burst {BURST} + {RATE}/s)")
        assert limited <= FLOOD, f"rate_limited rose {limited:.0f}, more than the flood"
        not_sip = delta(before, after, "sipr_dropped_total", reason="not_sip")
        assert not_sip >= 1, "no garbage within the flood's burst was counted not_sip"
        flooder_302 = to_flooder.get(302, 0)
        assert 1 <= flooder_302 <= passed_max, (
            f"the flooder got {flooder_302} 302s, want 1..{passed_max:.0f}")
        # Every flood datagram is counted once: dropped (rate_limited, or not_sip and the like
        # for garbage that passed) or answered (a 302 for an INVITE that passed).
        drops = metric_sum(after, "sipr_dropped_total") - metric_sum(before, "sipr_dropped_total")
        answers = (metric_sum(after, "sipr_responses_total") -
                   metric_sum(before, "sipr_responses_total") - len(statuses))
        accounted = drops + answers
        assert FLOOD * 0.99 <= accounted <= FLOOD, (
            f"{accounted:.0f} flood datagrams accounted for in the metrics ({drops:.0f} drops, "
            f"{answers:.0f} answers), want {FLOOD} (>= 99%: the kernel may lose a few)")
        assert rd.running(), "the daemon died under the flood"


def expect_302(ua: SipUdp, ruri: str) -> Response:
    r = ua.send(ua.build("INVITE", ruri))
    assert r.status == 302, f"INVITE {ruri}: want 302, got {r.status} {r.reason}"
    return r


def test_registrar_rate_limited_per_source(redis):
    """sip-registrard has the same limit: 30 REGISTERs at once from 127.0.0.2 with --rate-limit 1
    --rate-burst 5: 6 answered (--spread random gives each of the 2 workers half the burst,
    rounded up: 3), 24 dropped as rate_limited; 127.0.0.1 is still served."""
    with Registrar(redis, ["--rate-limit", "1", "--rate-burst", "5"],
                   name="sip-registrard[rate]") as rg, \
            UaFrom(rg.port, "127.0.0.2") as bad, rg.ua() as good:
        before = rg.metrics()
        reqs = [bad.register(aor(f"u{i}"), [f"<sip:u{i}@192.0.2.1>"], expires=600)
                for i in range(30)]
        for q in reqs:
            bad.send_raw(q.data)
        answered = 0
        while bad.recv(scaled(1.0)) is not None:
            answered += 1
        after = settled_metrics(rg, ["sipr_dropped_total"])
        limited = delta(before, after, "sipr_dropped_total", reason="rate_limited")
        # 30 datagrams leave within well under a second: at most one token refills meanwhile.
        assert 6 <= answered <= 7, f"{answered} of 30 REGISTERs answered, want 6 (7 with a refill)"
        assert limited == 30 - answered, 'sipr_dropped_total{reason="rate_limited"} rise'
        r = good.send(good.register(aor("alice"), ["<sip:alice@192.0.2.9>"], expires=600))
        assert r.status == 200, "REGISTER from another source"


# ------------------------------------------------------------------------------------------------
# --allow

def test_allow_refuses_other_sources_before_parsing(redis):
    """--allow 127.0.0.1, ::ffff:127.0.0.3/128 (a v4-mapped rule for an IPv4 source) and
    2001:db8::/32: 127.0.0.1 and 127.0.0.3 are redirected; 127.0.0.2 gets no answer to anything,
    each datagram counted denied and none parsed (not_sip and requests_total do not move)."""
    seed(redis, aor("alice"), "sip:alice@192.0.2.1")
    flags = ["--allow", "127.0.0.1", "--allow", "::ffff:127.0.0.3/128", "--allow", "2001:db8::/32"]
    with Redirect(redis, flags, name="sip-redirectd[allow]") as rd, rd.ua() as ok1, \
            UaFrom(rd.port, "127.0.0.3") as ok3, UaFrom(rd.port, "127.0.0.2") as out:
        expect_302(ok1, aor("alice"))
        expect_302(ok3, aor("alice"))
        before = rd.metrics()
        out.send_raw(out.build("INVITE", aor("alice")).data)
        out.send_raw(out.options().data)
        out.send_raw(b"\x00\x01garbage")
        out.expect_silence(scaled(0.5))
        expect_302(ok1, aor("alice"))  # the daemon is alive and has handled what came before
        after = settled_metrics(rd, ["sipr_dropped_total"])
        assert delta(before, after, "sipr_dropped_total", reason="denied") == 3, (
            'sipr_dropped_total{reason="denied"} rise')
        assert delta(before, after, "sipr_dropped_total", reason="not_sip") == 0, (
            "not_sip rise: a denied datagram was parsed")
        assert delta(before, after, "sipr_requests_total", method="OPTIONS") == 0, (
            "OPTIONS counted from a denied source")
        assert delta(before, after, "sipr_requests_total", method="INVITE") == 1, (
            "INVITEs counted (only the allowed one)")


def test_allow_from_environment_on_registrar(redis):
    """SIPR_ALLOW="10.0.0.0/8, 127.0.0.1/32" on sip-registrard: 127.0.0.1 registers, 127.0.0.2
    is denied and counted."""
    env = {**ENV, "SIPR_ALLOW": "10.0.0.0/8, 127.0.0.1/32"}
    with Registrar(redis, [], name="sip-registrard[allow]", env=env) as rg, rg.ua() as ok, \
            UaFrom(rg.port, "127.0.0.2") as out:
        before = rg.metrics()
        r = ok.send(ok.register(aor("alice"), ["<sip:alice@192.0.2.9>"], expires=600))
        assert r.status == 200, "REGISTER from 127.0.0.1"
        out.send_raw(out.register(aor("mallory"), ["<sip:m@192.0.2.66>"], expires=600).data)
        out.expect_silence(scaled(0.5))
        after = settled_metrics(rg, ["sipr_dropped_total"])
        assert delta(before, after, "sipr_dropped_total", reason="denied") == 1, "denied rise"
        assert sorted(redis.client.keys("sipr:loc:*")) == [f"sipr:loc:{{{aor('alice')}}}"], (
            "bindings stored (none for the denied REGISTER)")


def test_bad_allow_or_limits_refused_at_start():
    """A bad CIDR (either daemon, flag or SIPR_ALLOW), a bad rate or amplification: one line on
    stderr naming it, non-zero exit, before Redis is even asked (none runs here)."""
    problems = []
    for program in ("sip-redirectd", "sip-registrard"):
        for args, mention in ((["--allow", "10.1.0.0/8"], "10.0.0.0/8"),
                              (["--allow", "300.1.1.1"], "300.1.1.1"),
                              (["--allow", "::/129"], "::/129"),
                              (["--allow", "10.0.0.0/33"], "10.0.0.0/33"),
                              (["--allow", "127.0.0.1", "--allow", "localhost"], "localhost"),
                              (["--rate-limit", "-5"], "--rate-limit"),
                              (["--rate-burst", "x"], "--rate-burst")):
            problems.append(startup_refused(program, args, mention, env=ENV))
        problems.append(startup_refused(program, [], "'bogus'",
                                        env={**ENV, "SIPR_ALLOW": "127.0.0.1,bogus"}))
    for program in ("sip-redirectd", "sip-registrard"):
        for args, mention in ((["--max-amplification", "0.5"], "--max-amplification"),
                              (["--max-amplification", "lots"], "--max-amplification"),
                              (["--max-response", "100"], "--max-response")):
            problems.append(startup_refused(program, args, mention, env=ENV))
    problems = [p for p in problems if p]
    assert not problems, f"{len(problems)} start-up refusal(s) wrong: " + " | ".join(problems)


# ------------------------------------------------------------------------------------------------
# The reflection guard

LONG = 20  # bindings of sip:many@example.com, q 1.0, 0.99, ...


def seed_many(redis: RedisServer) -> list[tuple[str, int]]:
    contacts = [(f"sip:a-rather-long-user-name-{i:02d}@gateway-{i:02d}.carrier.example.net"
                 f";transport=udp", 1000 - 10 * i) for i in range(LONG)]
    for uri, q in random.Random(5).sample(contacts, LONG):
        seed(redis, aor("many"), uri, q)
    return contacts


def q_text(q: int) -> str:
    return "1" if q == 1000 else f"0.{q:03d}".rstrip("0")


def test_amplification_guard_cuts_302_to_3x(redis):
    """Default --max-amplification 3: a tiny INVITE (~170 bytes) to an AOR with 20 long contacts
    gets a 302 of at most 3x its size, the highest-q contacts in order, nothing left out that
    would fit, the cut counted in sipr_contacts_cut_total; an AOR whose one contact cannot fit
    gets 480 (what write_redirect answers when nothing fits), also within 3x. A source in
    --allow is exempt: the same INVITE gets the 1300-byte 302."""
    contacts = seed_many(redis)
    seed(redis, aor("huge"), "sip:" + "h" * 600 + "@192.0.2.1")
    with Redirect(redis, [], name="sip-redirectd[amp]") as rd, rd.ua() as ua:
        cut0 = rd.metric("sipr_contacts_cut_total")
        branch, data = tiny_invite(ua, aor("many"))
        assert len(data) < 200, f"tiny INVITE of {len(data)} bytes"
        r = ua.answer_raw(data, branch)
        assert r.status == 302, "status"
        k = len(r.contacts)
        assert len(r.raw) <= 3 * len(data), (
            f"302 of {len(r.raw)} bytes to an INVITE of {len(data)}: more than 3x")
        assert 0 < k < LONG, f"{k} contacts in the 302"
        assert [c.uri for c in r.contacts] == [u for u, _ in contacts[:k]], (
            "the highest-q contacts, in order")
        exp = r.contacts[0].expires
        line = f"Contact: <{contacts[k][0]}>;q={q_text(contacts[k][1])};expires={exp}\r\n"
        assert len(r.raw) + len(line) > 3 * len(data), (
            f"a {len(line)}-byte contact that fits 3x was left out ({len(r.raw)} bytes)")
        wait_until(lambda: rd.metric("sipr_contacts_cut_total") >= cut0 + LONG - k, 3,
                   what="the cut counted")
        assert rd.metric("sipr_contacts_cut_total") == cut0 + LONG - k, "sipr_contacts_cut_total"

        branch, data = tiny_invite(ua, aor("huge"))
        r = ua.answer_raw(data, branch)
        assert ((r.status, r.reason)) == ((480, "Temporarily Unavailable")), "nothing fits"
        assert len(r.raw) <= 3 * len(data), f"480 of {len(r.raw)} bytes: more than 3x"

    with Redirect(redis, ["--allow", "127.0.0.0/8"], name="sip-redirectd[amp-allowed]") as rd, \
            rd.ua() as ua:
        branch, data = tiny_invite(ua, aor("many"))
        r = ua.answer_raw(data, branch)
        assert r.status == 302, "status for a trusted source"
        assert 3 * len(data) < len(r.raw) <= 1300, (
            f"302 of {len(r.raw)} bytes to a trusted source: want the 1300-byte cap only")
        branch, data = tiny_invite(ua, aor("huge"))
        assert ua.answer_raw(data, branch).status == 302, "a 600-byte contact for a trusted source"


def tiny_fetch(ua: SipUdp, aor_: str) -> tuple[str, bytes]:
    """The smallest REGISTER that is still valid and changes nothing (no Contact: a fetch of the
    AOR's bindings, RFC 3261 §10.2.3), which --auth none answers without credentials. Returns
    (branch, bytes)."""
    branch = f"z9hG4bK{random.getrandbits(32):08x}"
    data = (f"REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {ua.local};branch={branch}\r\n"
            f"From: <{aor_}>;tag=1\r\nTo: <{aor_}>\r\nCall-ID: {random.getrandbits(32):08x}"
            f"\r\nCSeq: 1 REGISTER\r\n\r\n").encode()
    return branch, data


def test_registrar_amplification_guard(redis):
    """sip-registrard had no reflection guard: a ~150-byte fetch for an AOR holding nine 600-byte
    bindings got a ~6.5 KB 200 (the worst case reached 65,000 bytes). Now, by default, no answer
    to a source outside --allow exceeds 3x its request nor --max-response (1300); the bindings
    left out are counted in sipr_contacts_cut_total. A REGISTER's own bindings are listed first,
    so they are the last to be cut; a trusted source gets up to --max-response, and
    --max-response 65000 --max-amplification 0 lists everything."""
    big = [f"sip:{'u' * 560}-{i}@192.0.2.{i + 1}:5060" for i in range(9)]
    for i, c in enumerate(big):
        seed(redis, aor("fat"), c, 1000 - i)
    with Registrar(redis, [], name="sip-registrard[amp]") as rg, SipUdp(rg.port) as ua:
        cut0 = rg.metric("sipr_contacts_cut_total")
        branch, data = tiny_fetch(ua, aor("fat"))
        assert len(data) < 200, f"tiny fetch of {len(data)} bytes"
        r = ua.answer_raw(data, branch)
        assert r.status == 200, "status of the fetch"
        assert len(r.raw) <= 3 * len(data), (
            f"200 of {len(r.raw)} bytes to a REGISTER of {len(data)}: more than 3x")
        assert len(r.contacts) < len(big), f"{len(r.contacts)} contacts listed"
        wait_until(lambda: rg.metric("sipr_contacts_cut_total") >= cut0 + len(big) - len(r.contacts),
                   3, what="the cut counted")

        # A REGISTER of its own small contact: that binding is listed, the others cut to fit.
        mine = "sip:me@127.0.0.1:5099"
        req = ua.register(aor("fat"), [mine], expires=600)
        r = ua.send(req)
        assert r.status == 200, "status of the REGISTER"
        assert len(r.raw) <= min(1300, 3 * len(req.data)), f"200 of {len(r.raw)} bytes"
        assert [c.uri for c in r.contacts][:1] == [mine], "the REGISTER's own binding first"

    with Registrar(redis, ["--allow", "127.0.0.0/8"], name="sip-registrard[amp-allowed]") as rg, \
            SipUdp(rg.port) as ua:
        branch, data = tiny_fetch(ua, aor("fat"))
        r = ua.answer_raw(data, branch)
        assert r.status == 200, "status for a trusted source"
        assert 3 * len(data) < len(r.raw) <= 1300, (
            f"200 of {len(r.raw)} bytes to a trusted source: want the 1300-byte cap only")

        # Not even the REGISTER's own bindings fit: they are stored all the same, and the 200
        # lists those that fit (README: "sip-registrard --max-response").
        own = [f"sip:{'o' * 560}-{i}@127.0.0.1:{5100 + i}" for i in range(3)]
        req = ua.register(aor("own"), own, expires=600)
        r = ua.send(req)
        assert r.status == 200, "status of a REGISTER whose contacts exceed --max-response"
        assert len(r.raw) <= 1300, f"200 of {len(r.raw)} bytes"
        assert 0 < len(r.contacts) < len(own), f"{len(r.contacts)} of its 3 contacts listed"
        assert redis.client.hlen(location_key(aor("own"))) == len(own), (
            "every contact stored")

    with Registrar(redis, ["--max-response", "65000", "--max-amplification", "0"],
                   name="sip-registrard[amp-off]") as rg, SipUdp(rg.port) as ua:
        branch, data = tiny_fetch(ua, aor("fat"))
        r = ua.answer_raw(data, branch)
        assert len(r.contacts) == len(big) + 1, "every binding with the guard off"
