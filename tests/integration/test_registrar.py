"""sip-registrard against a real redis-server over loopback UDP (DESIGN §5, §6, §8; RFC 3261 §10.3).

Each case asserts the answer (status, reason where DESIGN names one, headers) and the state left in
Redis (the packed bindings of sipr:loc:{aor}, see include/sipr/location/binding.h) or shown by
sip-locctl. One redis-server serves the run (FLUSHALL before each case); a registrar is started per
group of cases sharing its flags.

    /usr/bin/python3 -m pytest tests/integration/test_registrar.py [-k name-substring]
"""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import pytest

from sipr_test.base import free_tcp_port, free_udp_port, scaled, wait_until
from sipr_test.bindings import StoredBinding, location_key, pack_binding, unpack_binding
from sipr_test.metrics import metric_value
from sipr_test.processes import ServiceDaemon, run_program
from sipr_test.redis_servers import RedisServer, time_ms
from sipr_test.sip import Response, SipUdp, transact_many, unique
from sipr_test.sipp import run_sipp

DOMAIN = "example.com"
MIN_EXPIRES = 60
MAX_EXPIRES = 3600


def aor(user: str = "alice") -> str:
    return f"sip:{user}@{DOMAIN}"


class Registrar(ServiceDaemon):
    """sip-registrard on free ports against `redis`."""

    def __init__(self, redis: RedisServer, flags: list[str], name: str = "sip-registrard"):
        super().__init__("sip-registrard", redis.url, flags, name=name)


# ------------------------------------------------------------------------------------------------
# Fixtures

def registrar_fixture(name: str, flags: list[str]):
    """A module-scoped fixture: sip-registrard with `flags`."""
    @pytest.fixture(scope="module")
    def fixture(redis_server):
        with Registrar(redis_server, flags, name=f"sip-registrard[{name}]") as d:
            yield d
    return fixture


BASE_FLAGS = ["--domain", DOMAIN, "--min-expires", str(MIN_EXPIRES),
              "--max-expires", str(MAX_EXPIRES), "--default-expires", "3600"]
registrar = registrar_fixture("registrar", BASE_FLAGS)
registrar_reject = registrar_fixture("registrar_reject", BASE_FLAGS + [
    "--max-contacts", "2", "--max-contacts-policy", "reject"])
registrar_evict = registrar_fixture("registrar_evict", BASE_FLAGS + [
    "--max-contacts", "2", "--max-contacts-policy", "evict"])


@pytest.fixture(scope="module")
def registrar_pair(redis_server):
    # Each REGISTER's script reads and returns every binding of the AOR (up to 2,000 here), so on
    # a loaded machine (other builds, sanitizers) a reply can take longer than the default 1 s
    # command timeout and the answer would be a correct but unwanted 503.
    flags = BASE_FLAGS + ["--max-contacts", "5000", "--redis-timeout", str(int(scaled(5000)))]
    with Registrar(redis_server, flags, name="sip-registrard[a]") as a, \
            Registrar(redis_server, flags, name="sip-registrard[b]") as b:
        yield a, b


# ------------------------------------------------------------------------------------------------
# Helpers

def stored(redis: RedisServer, user: str = "alice") -> dict[str, str]:
    """field -> packed value of the AOR's hash."""
    return redis.client.hgetall(location_key(aor(user)))


def expect(resp: Response, status: int, reason: str | None = None) -> Response:
    if resp.status != status or (reason is not None and resp.reason != reason):
        want = f"{status} {reason}" if reason else str(status)
        raise AssertionError(f"want {want}, got {resp.status} {resp.reason}\n{resp}")
    return resp


def expires_near(got: int | None, want: int, what: str, slack: int = 2) -> None:
    """A remaining-seconds value: at most `want`, and not more than `slack` (scaled) below it."""
    assert got is not None, f"{what}: no ;expires="
    lo = want - max(slack, int(scaled(slack)))
    assert lo <= got <= want, f"{what}: expires={got}, want {lo}..{want}"


def contact_uris(resp: Response) -> list[str]:
    return [c.uri for c in resp.contacts]


def register(ua: SipUdp, contacts=(), user: str = "alice", **kw) -> Response:
    return ua.send(ua.register(aor(user), contacts, **kw))


def locctl(redis: RedisServer, *args: str) -> str:
    r = run_program("sip-locctl", ["--redis", redis.url, *args])
    assert r.returncode == 0, f"sip-locctl {' '.join(args)} exited {r.returncode}: {r.stderr}"
    return r.stdout


# ------------------------------------------------------------------------------------------------
# Registration basics (default registrar)

def test_one_contact_via_sipp(redis, registrar):
    """A real UA (SIPp register.xml) registers its own contact; the 200 lists it (checked by the
    scenario); Redis holds exactly that binding with the UA's source as received."""
    port = free_udp_port()
    res = run_sipp("register.xml", registrar.port, service="alice", local_port=port)
    assert res.returncode == 0, f"sipp failed: {res.summary()}"
    b = stored(redis)
    want = f"sip:alice@127.0.0.1:{port}"
    assert sorted(b) == [want], "binding keys"
    s = unpack_binding(b[want])
    assert s.contact == want, "stored contact"
    assert s.cseq == 1, "stored CSeq"
    assert s.received == f"127.0.0.1:{port}", "stored received"
    assert s.user_agent == "SIPp register.xml", "stored user agent"
    assert s.q == 1000, "stored q"
    now = time_ms(redis.client)
    assert 300_000 - scaled(3_000) <= s.expires_at_ms - now <= 300_000, (
        f"stored expiry {s.expires_at_ms - now} ms from now, want about 300 s")
    pttl = redis.client.pttl(location_key(aor()))
    assert 0 < pttl <= 300_000 and pttl >= 300_000 - scaled(3_000), (
        f"key PTTL {pttl}, want the binding's expiry (about 300 s)")


def test_two_contacts_with_q(redis, registrar):
    with registrar.ua() as ua:
        r = expect(register(ua, ["<sip:alice@192.0.2.1:5060>;q=0.7",
                                 "<sip:alice@192.0.2.2:5062;transport=udp>;q=0.3"],
                            contact_line=True, expires=600,
                            headers=["User-Agent: integ/1.0"]), 200, "OK")
        cs = r.contact_map()
        assert sorted(cs) == ["sip:alice@192.0.2.1:5060", "sip:alice@192.0.2.2:5062;transport=udp"], (
            "200 Contacts")
        assert cs["sip:alice@192.0.2.1:5060"].q == "0.7", "q of the first contact"
        assert cs["sip:alice@192.0.2.2:5062;transport=udp"].q == "0.3", "q of the second contact"
        for c in cs.values():
            expires_near(c.expires, 600, f"{c.uri}")
        assert (r.header("date") is not None and re.match(
            r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$", r.header("date"))), (
            f"200 needs an RFC 1123 Date, got {r.header('date')!r}")
        b = stored(redis)
        assert sorted(b) == ["sip:alice@192.0.2.1:5060", "sip:alice@192.0.2.2:5062;transport=udp"], (
            "binding keys")
        one, two = unpack_binding(b["sip:alice@192.0.2.1:5060"]), \
            unpack_binding(b["sip:alice@192.0.2.2:5062;transport=udp"])
        assert ((one.q, two.q)) == ((700, 300)), "stored q"
        assert one.received == ua.local, "stored received"
        assert one.user_agent == "integ/1.0", "stored user agent"
        assert one.call_id == two.call_id, "both bindings carry the REGISTER's Call-ID"


def test_refresh_renews_expiry(redis, registrar):
    """Same Call-ID, higher CSeq: still one binding, expiry pushed forward, CSeq stored."""
    with registrar.ua() as ua:
        cid = unique("refresh")
        contact = "<sip:alice@192.0.2.5:5060>"
        expect(register(ua, [contact], call_id=cid, cseq=1, expires=120), 200)
        first = unpack_binding(stored(redis)["sip:alice@192.0.2.5:5060"])
        time.sleep(1.1)
        r = expect(register(ua, [contact], call_id=cid, cseq=2, expires=120), 200)
        assert contact_uris(r) == ["sip:alice@192.0.2.5:5060"], "200 Contacts"
        expires_near(r.contacts[0].expires, 120, "refreshed expires")
        b = stored(redis)
        assert len(b) == 1, "bindings after refresh"
        second = unpack_binding(b["sip:alice@192.0.2.5:5060"])
        assert second.expires_at_ms >= first.expires_at_ms + 1000, (
            f"expiry not renewed: {first.expires_at_ms} -> {second.expires_at_ms}")
        assert second.cseq == 2, "stored CSeq after refresh"
        assert second.updated_at_ms > first.updated_at_ms, "updated-at not advanced"
        # A longer refresh moves it further.
        r = expect(register(ua, [contact], call_id=cid, cseq=3, expires=3000), 200)
        expires_near(r.contacts[0].expires, 3000, "refreshed expires")
        assert len(stored(redis)) == 1, "bindings after second refresh"


def test_expires_param_beats_header(redis, registrar):
    with registrar.ua() as ua:
        r = expect(register(ua, ["<sip:alice@192.0.2.1>;expires=200", "<sip:alice@192.0.2.2>"],
                            expires=900), 200)
        cs = r.contact_map()
        expires_near(cs["sip:alice@192.0.2.1"].expires, 200, "contact with ;expires=200")
        expires_near(cs["sip:alice@192.0.2.2"].expires, 900, "contact under Expires: 900")
        b = stored(redis)
        now = time_ms(redis.client)
        left1 = unpack_binding(b["sip:alice@192.0.2.1"]).expires_at_ms - now
        left2 = unpack_binding(b["sip:alice@192.0.2.2"]).expires_at_ms - now
        assert 190_000 < left1 <= 200_000, f"stored expiry of ;expires=200: {left1} ms"
        assert 890_000 < left2 <= 900_000, f"stored expiry under Expires: 900: {left2} ms"
        # Without either, --default-expires applies.
        r = expect(register(ua, ["<sip:alice@192.0.2.3>"]), 200)
        expires_near(r.contact_map()["sip:alice@192.0.2.3"].expires, 3600, "default expiry")


def test_expires_zero_removes_one(redis, registrar):
    with registrar.ua() as ua:
        cid = unique("rm")
        expect(register(ua, ["<sip:alice@192.0.2.1>", "<sip:alice@192.0.2.2>"], call_id=cid,
                        cseq=1, expires=600), 200)
        before = stored(redis)["sip:alice@192.0.2.2"]
        r = expect(register(ua, ["<sip:alice@192.0.2.1>;expires=0"], call_id=cid, cseq=2,
                            expires=600), 200)
        assert contact_uris(r) == ["sip:alice@192.0.2.2"], "200 Contacts after removal"
        b = stored(redis)
        assert sorted(b) == ["sip:alice@192.0.2.2"], "binding keys after removal"
        assert b["sip:alice@192.0.2.2"] == before, "the other binding is untouched"
        # Expires: 0 header, from another Call-ID, removes the last one; the key goes away.
        r = expect(register(ua, ["<sip:alice@192.0.2.2>"], expires=0), 200)
        assert r.contacts == [], "200 Contacts after removing the last binding"
        assert redis.client.exists(location_key(aor())) == 0, "key exists after last removal"


def test_star_removes_all(redis, registrar):
    with registrar.ua() as ua:
        cid = unique("star")
        expect(register(ua, ["<sip:alice@192.0.2.1>"], call_id=cid, cseq=1, expires=600), 200)
        expect(register(ua, ["<sip:alice@192.0.2.2>"], expires=600), 200)
        assert len(stored(redis)) == 2, "bindings before *"
        r = expect(register(ua, ["*"], call_id=cid, cseq=2, expires=0), 200)
        assert r.contacts == [], "200 Contacts after *"
        assert redis.client.exists(location_key(aor())) == 0, "key exists after *"


def test_star_with_other_contact_is_400(redis, registrar):
    with registrar.ua() as ua:
        expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600), 200)
        before = stored(redis)
        expect(register(ua, ["*", "<sip:alice@192.0.2.9>"], expires=0), 400)
        expect(register(ua, ["*, <sip:alice@192.0.2.9>"], expires=0), 400)
        assert stored(redis) == before, "bindings after a refused *"


def test_star_without_expires_zero_is_400(redis, registrar):
    with registrar.ua() as ua:
        expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600), 200)
        before = stored(redis)
        expect(register(ua, ["*"]), 400)
        expect(register(ua, ["*"], expires=60), 400)
        assert stored(redis) == before, "bindings after a refused *"


def test_too_brief_is_423(redis, registrar):
    with registrar.ua() as ua:
        r = expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=MIN_EXPIRES - 1), 423,
                   "Interval Too Brief")
        assert r.values("min-expires") == [str(MIN_EXPIRES)], "Min-Expires"
        r = expect(register(ua, [f"<sip:alice@192.0.2.1>;expires=30"], expires=600), 423)
        assert r.values("min-expires") == [str(MIN_EXPIRES)], "Min-Expires"
        # One acceptable and one too brief: nothing of the REGISTER is applied.
        expect(register(ua, ["<sip:alice@192.0.2.2>;expires=600", "<sip:alice@192.0.2.3>;expires=1"]),
               423)
        assert sorted(redis.client.keys("sipr:loc:*")) == [], "keys after 423"
        # Exactly --min-expires is accepted.
        r = expect(register(ua, ["<sip:alice@192.0.2.4>"], expires=MIN_EXPIRES), 200)
        expires_near(r.contacts[0].expires, MIN_EXPIRES, "expiry at --min-expires")


def test_too_long_is_clamped(redis, registrar):
    with registrar.ua() as ua:
        r = expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=100_000), 200)
        assert [c.expires for c in r.contacts] == [MAX_EXPIRES], "200 expires of a clamped contact"
        s = unpack_binding(stored(redis)["sip:alice@192.0.2.1"])
        assert s.expires_at_ms - s.updated_at_ms == MAX_EXPIRES * 1000, "stored lifetime (ms)"
        r = expect(register(ua, ["<sip:alice@192.0.2.3>"], expires=99_999_999_999), 200)
        expires_near(r.contact_map()["sip:alice@192.0.2.3"].expires, MAX_EXPIRES,
                     "Expires beyond 2^32-1 (RFC 3261 §20.19) clamped")
        r = expect(register(ua, ["<sip:alice@192.0.2.2>;expires=4294967295"]), 200)
        expires_near(r.contact_map()["sip:alice@192.0.2.2"].expires, MAX_EXPIRES,
                     "a huge ;expires= clamped")


def test_stale_cseq_is_500_and_changes_nothing(redis, registrar):
    with registrar.ua() as ua:
        cid = unique("stale")
        expect(register(ua, ["<sip:alice@192.0.2.1>"], call_id=cid, cseq=5, expires=600), 200)
        before = stored(redis)
        r = expect(register(ua, ["<sip:alice@192.0.2.1>"], call_id=cid, cseq=4, expires=1200), 500)
        ra = r.header("retry-after")
        assert ra is not None and re.fullmatch(r"\d+", ra.split(";")[0].strip()), (
            f"500 needs Retry-After with seconds, got {ra!r}")
        assert stored(redis) == before, "stored binding after stale CSeq (packed, byte for byte)"
        # A removal with a stale CSeq is refused too, and so is * with a stale CSeq.
        expect(register(ua, ["<sip:alice@192.0.2.1>"], call_id=cid, cseq=3, expires=0), 500)
        expect(register(ua, ["*"], call_id=cid, cseq=3, expires=0), 500)
        assert stored(redis) == before, "stored binding after stale removals"


def test_retransmission_answered_again_unchanged(redis, registrar):
    with registrar.ua() as ua:
        req = ua.register(aor(), ["<sip:alice@192.0.2.1>"], cseq=7, expires=600)
        first = expect(ua.send(req), 200)
        before = stored(redis)
        time.sleep(1.1)
        again = expect(ua.send(req), 200)  # the same bytes: same branch, Call-ID and CSeq
        assert contact_uris(again) == contact_uris(first), "Contacts of the repeated 200"
        assert again.contacts[0].expires <= first.contacts[0].expires, (
            "a retransmission must not renew the binding")
        assert stored(redis) == before, "stored binding after the retransmission"
        assert again.to_tag == first.to_tag, "To tag of the repeated 200"
        # Same Call-ID and CSeq in a new transaction (new branch): also just answered.
        other = ua.register(aor(), ["<sip:alice@192.0.2.1>"], call_id=req.call_id, cseq=7,
                            expires=600)
        expect(ua.send(other), 200)
        assert stored(redis) == before, "stored binding after a same-CSeq repeat"


def test_foreign_domains_refused(redis, registrar):
    with registrar.ua() as ua:
        r = ua.send(ua.register("sip:alice@other.org", ["<sip:alice@192.0.2.1>"], expires=600))
        expect(r, 404)
        r = ua.send(ua.register(aor(), ["<sip:alice@192.0.2.1>"], expires=600,
                                registrar="sip:other.org"))
        expect(r, 404)
        r = ua.send(ua.register("sip:alice@other.org", ["<sip:alice@192.0.2.1>"], expires=600,
                                registrar=f"sip:{DOMAIN}"))
        expect(r, 403)
        assert sorted(redis.client.keys("sipr:loc:*")) == [], "keys after the refusals"
        # Domains compare case-insensitively: EXAMPLE.COM is served.
        r = ua.send(ua.register("sip:alice@EXAMPLE.COM", ["<sip:alice@192.0.2.1>"], expires=600,
                                registrar="sip:EXAMPLE.COM"))
        expect(r, 200)
        assert sorted(redis.client.keys("sipr:loc:*")) == [location_key(aor())], (
            "keys after the 200")


def test_aor_is_normalised(redis, registrar):
    """DESIGN §4 AOR rules: host lower-cased, port and URI parameters dropped, user un-escaped."""
    with registrar.ua() as ua:
        expect(ua.send(ua.register("sip:alice@EXAMPLE.com:5060;transport=udp",
                                   ["<sip:alice@192.0.2.1>"], expires=600,
                                   registrar=f"sip:{DOMAIN}")), 200)
        expect(ua.send(ua.register("sip:%61lice@example.com", ["<sip:alice@192.0.2.2>"],
                                   expires=600)), 200)
        assert sorted(redis.client.keys("sipr:loc:*")) == [location_key(aor())], "keys"
        assert sorted(stored(redis)) == ["sip:alice@192.0.2.1", "sip:alice@192.0.2.2"], "bindings"


def test_contact_host_compares_case_insensitively(redis, registrar):
    """RFC 3261 §10.3 step 7 compares contacts by §19.1.4 URI equality: the host is
    case-insensitive, so a differently-cased host refreshes the same binding."""
    with registrar.ua() as ua:
        expect(register(ua, ["<sip:alice@Host.Example.NET:5060>"], expires=600), 200)
        r = expect(register(ua, ["<SIP:alice@host.example.net:5060>"], expires=900), 200)
        assert len(r.contacts) == 1, f"200 Contacts {contact_uris(r)}"
        assert len(stored(redis)) == 1, "bindings"
        # The user part is case-sensitive: another binding.
        r = expect(register(ua, ["<sip:ALICE@host.example.net:5060>"], expires=900), 200)
        assert len(stored(redis)) == 2, "bindings after a different user part"


def test_malformed_requests_answered_or_dropped(redis, registrar):
    """The intake checks of DESIGN §4, as the registrar meets them."""
    with registrar.ua() as ua:
        def raw(req, drop: str = "", add: str = "") -> bytes:
            text = req.data.decode()
            if drop:
                text = re.sub(rf"\r\n{drop}:[^\r]*", "", text, count=1)
            if add:
                text = text.replace("\r\nContent-Length", f"\r\n{add}\r\nContent-Length", 1)
            return text.encode()


        base = lambda **kw: ua.register(aor(), ["<sip:alice@192.0.2.1>"], expires=600, **kw)
        problems = []
        # (what, request, bytes to send or None, a word the 400's reason must contain)
        for what, req, data, word in (
                ("no Call-ID", (q := base()), raw(q, drop="Call-ID"), "Call-ID"),
                ("no From", (q := base()), raw(q, drop="From"), "From"),
                ("malformed From", (q := base(from_="sip:alice@example.com>")), None, "From"),
                ("no To", (q := base()), raw(q, drop="To"), "To"),
                ("no CSeq", (q := base()), raw(q, drop="CSeq"), "CSeq"),
                ("CSeq method differs", (q := base(cseq_method="INVITE")), None, "CSeq"),
                ("malformed Expires", (q := ua.register(aor(), ["<sip:alice@192.0.2.1>"],
                                                        expires="soon")), None, "Expires"),
                ("malformed Contact", (q := ua.register(aor(), ["<sip:alice@192.0.2.1"],
                                                        expires=600)), None, "Contact"),
                ("q above 1", (q := ua.register(aor(), ["<sip:alice@192.0.2.1>;q=2"],
                                                expires=600)), None, "Contact"),
                ("Content-Length beyond the datagram", (q := base()),
                 q.data.replace(b"Content-Length: 0", b"Content-Length: 50"), "Content-Length")):
            sent = data if data is not None else req.data
            r = ua.answer_raw(sent, req.branch)
            if r.status != 400 or word not in r.reason:
                problems.append(f"{what}: want 400 naming {word}, got {r.status} {r.reason}")
                continue
            # §8.2.6.2 / DESIGN §4: whatever is wrong, Via, From, Call-ID and CSeq present in the
            # request are copied exactly.
            for name in ("Call-ID", "From", "CSeq"):
                m = re.search(rf"\r\n{name}: ([^\r]*)".encode(), sent)
                if m and r.header(name) != m.group(1).decode():
                    problems.append(f"{what}: {name} of the 400 is {r.header(name)!r}, "
                                    f"want {m.group(1).decode()!r}")
        assert not problems, "; ".join(problems)
        q = base()
        r = ua.answer_raw(q.data.replace(b"Content-Length: 0", b"X-Pad: " + b"x" * 9000 +
                                  b"\r\nContent-Length: 0"), q.branch)
        assert r.status == 513, "status of a 9 kB REGISTER"
        q = ua.build("REGISTER", f"http://{DOMAIN}/", to=f"<{aor()}>", contacts=["<sip:a@192.0.2.1>"])
        assert ua.answer_raw(q.data, q.branch).status == 416, "status of an http: Request-URI"
        q = ua.build("REGISTER", "tel:+15551234567", to=f"<{aor()}>",
                     contacts=["<sip:a@192.0.2.1>"])
        assert ua.answer_raw(q.data, q.branch).status == 404, "status of a tel: Request-URI"
        # No Via: nowhere to answer; dropped and counted.
        before = registrar.metric("sipr_dropped_total", reason="no_via")
        ua.send_raw(raw(base(), drop="Via"))
        ua.expect_silence(0.3)
        expect(ua.send(ua.options()), 200)
        assert registrar.metric("sipr_dropped_total", reason="no_via") - before == 1, (
            'sipr_dropped_total{reason="no_via"} increase')
        assert sorted(redis.client.keys("sipr:loc:*")) == [], "keys after malformed requests"


def test_response_goes_where_via_says(redis, registrar):
    """RFC 3261 §18.2.2 / RFC 3581: without rport the response goes to the Via sent-by port; with
    rport to the source port."""
    with registrar.ua() as ua, SipUdp(registrar.port) as other:
        req = ua.register(aor(), ["<sip:alice@192.0.2.1>"], expires=600, rport=False)
        req.data = req.data.replace(f"Via: SIP/2.0/UDP {ua.local};".encode(),
                                    f"Via: SIP/2.0/UDP {other.local};".encode())
        ua.send_raw(req.data)
        r = other.recv(scaled(3))
        assert r is not None and r.status == 200, "no 200 at the Via sent-by port"
        assert ua.recv(0.2) is None, "a response went to the source port despite no rport"
        req = ua.register(aor(), ["<sip:alice@192.0.2.1>"], expires=600, rport=True)
        req.data = req.data.replace(f"Via: SIP/2.0/UDP {ua.local};".encode(),
                                    f"Via: SIP/2.0/UDP {other.local};".encode())
        r = ua.send(req)
        expect(r, 200)
        assert r.top_via.get("rport") == str(ua.local_port), "rport filled with the source port"


def test_contact_forms_accepted(redis, registrar):
    """Contact values as RFC 3261 §20.10 allows them: a display name, an addr-spec whose ';'
    parameters are header parameters (§20), IPv6, sips:."""
    with registrar.ua() as ua:
        r = expect(register(ua, ['"Alice\'s desk" <sip:alice@192.0.2.1:5060>;q=0.5',
                                 "sip:alice@192.0.2.4;expires=150",
                                 "<sip:alice@[2001:db8::1]:5060>",
                                 "<sips:alice@192.0.2.5>"], expires=600), 200)
        cs = r.contact_map()
        want = ["sip:alice@192.0.2.1:5060", "sip:alice@192.0.2.4", "sip:alice@[2001:db8::1]:5060",
                "sips:alice@192.0.2.5"]
        assert sorted(cs) == sorted(want), "200 Contacts"
        expires_near(cs["sip:alice@192.0.2.4"].expires, 150, "addr-spec ;expires=150")
        assert cs["sip:alice@192.0.2.1:5060"].q == "0.5", "q after a display name"
        b = stored(redis)
        assert sorted(b) == sorted(want), "binding keys"
        for k in want:
            assert unpack_binding(b[k]).contact == k, f"stored contact {k}"


def test_path_stored_and_echoed(redis, registrar):
    with registrar.ua() as ua:
        path = "<sip:edge1.example.net;lr>"
        r = expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600,
                            headers=["Supported: path", f"Path: {path}"]), 200)
        assert r.values("path") == [path], "Path echoed in the 200 (RFC 3327 §5.3)"
        assert "path" in [v.lower() for v in r.values("supported")], "200 needs Supported: path"
        s = unpack_binding(stored(redis)["sip:alice@192.0.2.1"])
        assert s.path == path, "stored Path"
        # Two Path values are stored in order.
        r = expect(register(ua, ["<sip:alice@192.0.2.2>"], expires=600,
                            headers=["Supported: path", "Path: <sip:p1.example.net;lr>",
                                     "Path: <sip:p2.example.net;lr>"]), 200)
        assert r.values("path") == ["<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>"], (
            "two Path values echoed")
        s = unpack_binding(stored(redis)["sip:alice@192.0.2.2"])
        assert s.path == "<sip:p1.example.net;lr>, <sip:p2.example.net;lr>", "stored Path list"
        # Without Supported: path the Path is neither stored nor echoed.
        r = expect(register(ua, ["<sip:alice@192.0.2.3>"], expires=600, headers=[f"Path: {path}"]),
                   200)
        assert r.values("path") == [], "Path echoed without Supported: path"
        assert unpack_binding(stored(redis)["sip:alice@192.0.2.3"]).path == "", (
            "Path stored without Supported: path")


def test_instance_is_the_binding_key(redis, registrar):
    with registrar.ua() as ua:
        inst = "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"
        r = expect(register(ua, [f'<sip:alice@192.0.2.1:5060>;+sip.instance="{inst}";reg-id=1'],
                            expires=600, headers=["Supported: outbound, path"]), 200)
        c = r.contacts
        assert len(c) == 1, "200 Contacts"
        assert c[0].params.get("+sip.instance") == inst, "+sip.instance echoed"
        assert c[0].params.get("reg-id") == "1", "reg-id echoed"
        b = stored(redis)
        assert sorted(b) == [inst], "binding key is the instance"
        s = unpack_binding(b[inst])
        assert ((s.contact, s.instance, s.reg_id)) == (("sip:alice@192.0.2.1:5060", inst, 1)), (
            "stored contact, instance, reg-id")
        # The same instance from a new address (new Call-ID): replaced, not added.
        r = expect(register(ua, [f'<sip:alice@198.51.100.7:5070>;+sip.instance="{inst}";reg-id=1'],
                            expires=600), 200)
        assert contact_uris(r) == ["sip:alice@198.51.100.7:5070"], "200 Contacts after move"
        b = stored(redis)
        assert sorted(b) == [inst], "binding keys after move"
        assert unpack_binding(b[inst]).contact == "sip:alice@198.51.100.7:5070", "moved contact"


def test_ok_lists_every_binding(redis, registrar):
    with registrar.ua() as ua:
        for i, e in ((1, 1000), (2, 2000)):
            expect(register(ua, [f"<sip:alice@192.0.2.{i}>"], expires=e), 200)
        r = expect(register(ua, ["<sip:alice@192.0.2.3>"], expires=3000), 200)
        cs = r.contact_map()
        assert sorted(cs) == ["sip:alice@192.0.2.1", "sip:alice@192.0.2.2", "sip:alice@192.0.2.3"], (
            "third 200 lists all three bindings")
        assert contact_uris(r)[0] == "sip:alice@192.0.2.3", "the REGISTER's own contact first"
        for i, e in ((1, 1000), (2, 2000), (3, 3000)):
            expires_near(cs[f"sip:alice@192.0.2.{i}"].expires, e, f"remaining of binding {i}")


def test_register_without_contact_fetches(redis, registrar):
    with registrar.ua() as ua:
        expect(register(ua, ["<sip:alice@192.0.2.1>;q=0.5", "<sip:alice@192.0.2.2>"], expires=900),
               200)
        before = stored(redis)
        before_fetch = registrar.metric("sipr_registrations_total", result="fetch")
        r = expect(register(ua, []), 200)
        cs = r.contact_map()
        assert sorted(cs) == ["sip:alice@192.0.2.1", "sip:alice@192.0.2.2"], "fetched Contacts"
        assert cs["sip:alice@192.0.2.1"].q == "0.5", "fetched q"
        for c in cs.values():
            expires_near(c.expires, 900, f"fetched {c.uri}", slack=3)
        assert stored(redis) == before, "a fetch changes nothing"
        assert registrar.metric("sipr_registrations_total", result="fetch") - before_fetch == 1, (
            'sipr_registrations_total{result="fetch"} increase')
        # Fetching an AOR without bindings: 200 without Contact.
        r = expect(register(ua, [], user="nobody"), 200)
        assert r.contacts == [], "fetch of an empty AOR"
        assert redis.client.exists(location_key(aor("nobody"))) == 0, "fetch created a key"


def test_expired_bindings_pruned_and_never_listed(redis, registrar):
    """DESIGN §5-6: an expired binding is never listed, and the script prunes it on a write."""
    now = time_ms(redis.client)
    old = StoredBinding(expires_at_ms=now - 1000, updated_at_ms=now - 61_000, cseq=1,
                        call_id="old-call", contact="sip:alice@192.0.2.99", q=1000, path="",
                        received="192.0.2.99:5060", user_agent="", instance="", reg_id=None)
    key = location_key(aor())
    redis.client.hset(key, "sip:alice@192.0.2.99", pack_binding(old))
    with registrar.ua() as ua:
        r = expect(register(ua, []), 200)
        assert r.contacts == [], "a fetch lists an expired binding"
        redis.client.hset(key, "sip:alice@192.0.2.99", pack_binding(old))
        r = expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600), 200)
        assert contact_uris(r) == ["sip:alice@192.0.2.1"], "200 Contacts with an expired binding"
        assert sorted(stored(redis)) == ["sip:alice@192.0.2.1"], (
            "the expired binding was not pruned")


def test_script_cache_flush_is_survived(redis, registrar):
    """After SCRIPT FLUSH (as after a Redis restart or failover) EVALSHA says NOSCRIPT; the
    registrar sends the script again and the REGISTER still succeeds."""
    with registrar.ua() as ua:
        expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600), 200)
        redis.client.script_flush()
        for i in range(4):  # both workers meet the empty cache
            expect(register(ua, [f"<sip:alice@192.0.2.{i + 2}>"], expires=600), 200)
        assert len(stored(redis)) == 5, "bindings after SCRIPT FLUSH"


def test_unknown_require_is_420(redis, registrar):
    with registrar.ua() as ua:
        r = expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600, headers=["Require: foo"]),
                   420, "Bad Extension")
        assert r.values("unsupported") == ["foo"], "Unsupported"
        assert sorted(redis.client.keys("sipr:loc:*")) == [], "keys after 420"
        r = expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600,
                            headers=["Require: path, foo", "Require: bar"]), 420)
        assert sorted(r.values("unsupported")) == ["bar", "foo"], "Unsupported of two unknown tags"
        expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600,
                        headers=["Supported: path", "Require: path"]), 200)


def test_options_is_200_with_allow(redis, registrar):
    with registrar.ua() as ua:
        req = ua.options()
        r = expect(ua.send(req), 200, "OK")
        allow = {v.upper() for v in r.values("allow")}
        assert {"REGISTER", "OPTIONS"} <= allow, f"Allow of the 200: {r.values('allow')}"


def test_responses_copy_headers_and_fill_rport(redis, registrar):
    """RFC 3261 §8.2.6.2 and RFC 3581 §4: Via (with received and rport filled), From, Call-ID and
    CSeq copied; To gets a tag."""
    with registrar.ua() as ua:
        req = ua.register(aor(), ["<sip:alice@192.0.2.1>"], expires=600, cseq=42)
        # Add a second Via below ours: it must come back too, after ours.
        text = req.data.decode().replace(
            "\r\nMax-Forwards", "\r\nVia: SIP/2.0/UDP 192.0.2.200:5080;branch=z9hG4bKlower\r\n"
            "Max-Forwards", 1)
        req.data = text.encode()
        r = expect(ua.send(req), 200)
        vias = r.values("via")
        assert len(vias) == 2, "Via count"
        assert vias[1] == "SIP/2.0/UDP 192.0.2.200:5080;branch=z9hG4bKlower", (
            f"second Via copied: {vias[1]!r}")
        top = r.top_via
        assert top.get("branch") == req.branch, "top Via branch"
        assert top.get("rport") == str(ua.local_port), "top Via rport (RFC 3581 §4)"
        assert top.get("received") == "127.0.0.1", "top Via received"
        sent_from = re.search(r"\r\nFrom: ([^\r]*)", text).group(1)
        assert r.header("from") == sent_from, "From copied"
        assert r.header("call-id") == req.call_id, "Call-ID copied"
        assert r.header("cseq") == "42 REGISTER", "CSeq copied"
        assert r.to_tag, "To needs a tag"


def test_invite_is_405_and_ack_absorbed(redis, registrar):
    with registrar.ua() as ua:
        req = ua.build("INVITE", aor(), cseq=1, contacts=[f"<sip:caller@{ua.local}>"],
                       headers=["Content-Type: application/sdp"], body=b"v=0\r\n")
        r = expect(ua.send(req), 405, "Method Not Allowed")
        assert r.header("allow") == "REGISTER, OPTIONS", "Allow of the 405"
        # ua.send() sent the ACK (§17.1.1.3); the registrar must absorb it: no answer at all.
        ua.expect_silence(0.5)
        r = expect(ua.send(ua.build("BYE", aor())), 405)
        assert r.header("allow") == "REGISTER, OPTIONS", "Allow of the 405 to BYE"
        r = expect(ua.send(ua.build("FOOBAR", aor())), 405)
        assert r.header("allow") == "REGISTER, OPTIONS", "Allow of the 405 to an unknown method"


def test_garbage_is_dropped_and_counted(redis, registrar):
    before = registrar.metric("sipr_dropped_total", reason="not_sip")
    with registrar.ua() as ua:
        for junk in (b"hello, registrar", b"\x00\x01\x02\xff" * 20, b"\r\n\r\n",
                     b"REGISTER\r\n\r\n"):
            ua.send_raw(junk)
        ua.expect_silence(0.3)
        # The junk may be on any worker (--spread random): its drops are awaited below.
        expect(ua.send(ua.options()), 200)
        expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600), 200)
    after = wait_until(lambda: (v := registrar.metric("sipr_dropped_total", reason="not_sip"))
                       >= before + 4 and v, 5, what="not_sip drops counted")
    assert after - before == 4, 'sipr_dropped_total{reason="not_sip"} increase'


def test_registrations_metric_rises(redis, registrar):
    ok0 = registrar.metric("sipr_registrations_total", result="ok")
    req0 = registrar.metric("sipr_requests_total", method="REGISTER")
    refused0 = registrar.metric("sipr_registrations_total", result="refused")
    with registrar.ua() as ua:
        for i in range(3):
            expect(register(ua, [f"<sip:alice@192.0.2.{i + 1}>"], expires=600), 200)
        expect(register(ua, ["<sip:alice@192.0.2.9>"], expires=1), 423)
    m = registrar.metrics()
    assert metric_value(m, "sipr_registrations_total", {"result": "ok"}) - ok0 == 3, (
        'sipr_registrations_total{result="ok"} increase')
    assert metric_value(m, "sipr_registrations_total", {"result": "refused"}) - refused0 == 1, (
        'sipr_registrations_total{result="refused"} increase')
    assert metric_value(m, "sipr_requests_total", {"method": "REGISTER"}) - req0 == 4, (
        'sipr_requests_total{method="REGISTER"} increase')
    assert metric_value(m, "sipr_redis_up") == 1, "sipr_redis_up"


def test_locctl_show_lists_what_sipp_registered(redis, registrar):
    ports = {}
    for user in ("bob", "carol"):
        ports[user] = free_udp_port()
        res = run_sipp("register.xml", registrar.port, service=user, local_port=ports[user])
        assert res.returncode == 0, f"sipp ({user}) failed: {res.summary()}"
    for user, port in ports.items():
        doc = json.loads(locctl(redis, "show", "--json", aor(user)))
        assert doc.get("aor") == aor(user), "show --json aor"
        bs = doc.get("bindings")
        assert isinstance(bs, list) and len(bs) == 1, f"show --json bindings of {user}: {bs}"
        b = bs[0]
        packed = unpack_binding(stored(redis, user)[f"sip:{user}@127.0.0.1:{port}"])
        assert b.get("contact") == f"sip:{user}@127.0.0.1:{port}", "contact"
        assert b.get("q") == 1, "q"
        assert b.get("received") == f"127.0.0.1:{port}", "received"
        assert b.get("user_agent") == "SIPp register.xml", "user_agent"
        assert ((b.get("instance"), b.get("path"))) == (("", "")), "instance, path"
        assert ((b.get("call_id"), b.get("cseq"))) == ((packed.call_id, 1)), "call_id, cseq"
        assert isinstance(b.get("expires_in"), int) and 300 - scaled(5) <= b["expires_in"] <= 300, (
            f"expires_in {b.get('expires_in')}")
        text = locctl(redis, "show", aor(user))
        assert text.startswith(f"{aor(user)}: 1 binding\n") and f"sip:{user}@127.0.0.1:{port}" in text, (
            f"sip-locctl show text: {text!r}")
    doc = json.loads(locctl(redis, "show", "--json", aor("nobody")))
    assert doc == {"aor": aor("nobody"), "bindings": []}, "show --json of an AOR without bindings"


# ------------------------------------------------------------------------------------------------
# --max-contacts

def test_max_contacts_reject_is_403(redis, registrar_reject):
    reg = registrar_reject
    with reg.ua() as ua:
        cid = unique("max")
        expect(register(ua, ["<sip:alice@192.0.2.1>"], call_id=cid, cseq=1, expires=600), 200)
        expect(register(ua, ["<sip:alice@192.0.2.2>"], expires=600), 200)
        before = stored(redis)
        expect(register(ua, ["<sip:alice@192.0.2.3>"], expires=600), 403)
        assert stored(redis) == before, "bindings after the refused third contact"
        # Refreshing one of the two stays allowed at the limit.
        r = expect(register(ua, ["<sip:alice@192.0.2.1>"], call_id=cid, cseq=2, expires=900), 200)
        assert sorted(contact_uris(r)) == ["sip:alice@192.0.2.1", "sip:alice@192.0.2.2"], (
            "200 Contacts of a refresh at the limit")
        # Three new contacts in one REGISTER exceed the limit even for an empty AOR.
        expect(register(ua, [f"<sip:bob@192.0.2.{i}>" for i in (1, 2, 3)], user="bob",
                        expires=600), 403)
        assert redis.client.exists(location_key(aor("bob"))) == 0, "bob's key after 403"


def test_max_contacts_evict_oldest(redis, registrar_evict):
    reg = registrar_evict
    with reg.ua() as ua:
        expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600), 200)
        time.sleep(0.02)
        expect(register(ua, ["<sip:alice@192.0.2.2>"], expires=600), 200)
        time.sleep(0.02)
        kept = stored(redis)["sip:alice@192.0.2.2"]
        r = expect(register(ua, ["<sip:alice@192.0.2.3>"], expires=600), 200)
        assert sorted(contact_uris(r)) == ["sip:alice@192.0.2.2", "sip:alice@192.0.2.3"], (
            "200 Contacts after eviction")
        b = stored(redis)
        assert sorted(b) == ["sip:alice@192.0.2.2", "sip:alice@192.0.2.3"], (
            "bindings after eviction")
        assert b["sip:alice@192.0.2.2"] == kept, "the newer binding is untouched"


# ------------------------------------------------------------------------------------------------
# Redis outage, concurrency, process behaviour

def test_redis_outage_503_then_recovers():
    with RedisServer() as rs, Registrar(rs, BASE_FLAGS + ["--redis-timeout", "500"],
                                        name="sip-registrard[outage]") as reg, reg.ua() as ua:
        expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600), 200)
        pid = reg.pid
        rs.stop()
        # The loss is noticed at once (the connection closes); allow a moment for it.
        r = wait_until(lambda: (x := register(ua, ["<sip:alice@192.0.2.2>"], expires=600)).status
                       != 200 and x, 3, interval=0.1, what="a non-200 answer while Redis is down")
        expect(r, 503, "Service Unavailable")
        assert r.header("retry-after") is not None and r.header("retry-after").strip().isdigit(), (
            f"503 needs Retry-After, got {r.header('retry-after')!r}")
        r = expect(ua.send(ua.options()), 503)
        assert r.header("retry-after") is not None, "503 to OPTIONS needs Retry-After"
        assert reg.metric("sipr_redis_up") == 0, "sipr_redis_up while Redis is down"
        rs.start()
        t0 = time.monotonic()
        wait_until(lambda: register(ua, ["<sip:alice@192.0.2.2>"], expires=600).status == 200,
                   10, interval=0.1, what="200 after Redis came back")
        recovered = time.monotonic() - t0
        assert recovered < scaled(5), f"took {recovered:.1f}s to recover (back-off is at most 2 s)"
        assert reg.running() and reg.pid == pid, "the registrar was restarted"
        expect(ua.send(ua.options()), 200)
        assert sorted(stored(rs)) == ["sip:alice@192.0.2.2"], "bindings after recovery"
        assert reg.metric("sipr_redis_up") == 1, "sipr_redis_up after recovery"


def test_redis_stalled_503_within_timeout():
    """A Redis that stops answering (SIGSTOP) must not leave REGISTERs unanswered: 503 with
    Retry-After within about --redis-timeout, and 200 again once it answers."""
    timeout_ms = 500
    with RedisServer() as rs, Registrar(rs, BASE_FLAGS + ["--redis-timeout", str(timeout_ms)],
                                        name="sip-registrard[stall]") as reg, reg.ua() as ua:
        expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600), 200)
        rs.proc.send_signal(signal.SIGSTOP)
        try:
            for i in range(3):
                req = ua.register(aor(), [f"<sip:alice@192.0.2.{i + 2}>"], expires=600)
                t0 = time.monotonic()
                r = ua.send(req, timeout=4)
                took = time.monotonic() - t0
                expect(r, 503, "Service Unavailable")
                assert r.header("retry-after") is not None, "503 needs Retry-After"
                assert took < scaled(timeout_ms / 1000 + 1.0), (
                    f"503 after {took:.2f}s with --redis-timeout {timeout_ms} ms")
            # The health probe follows once the client gives the stuck connection up (a reply
            # owed for four command timeouts, src/location/redis_client.cpp).
            wait_until(lambda: ua.send(ua.options()).status == 503, 5, interval=0.1,
                       what="OPTIONS 503 while Redis is stuck")
        finally:
            rs.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: register(ua, ["<sip:alice@192.0.2.9>"], expires=600).status == 200,
                   10, interval=0.1, what="200 after Redis answers again")
        assert reg.running(), "the registrar died"


def test_two_instances_concurrent_no_lost_binding(redis, registrar_pair):
    """Two registrars, one Redis, 1,000 REGISTERs each for one AOR, concurrently: every REGISTER
    gets 200 and Redis ends with all 2,000 bindings (DESIGN §5: never lose a binding)."""
    a, b = registrar_pair
    n = 1000
    results: dict[str, list] = {}
    contacts: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def drive(reg: Registrar, tag: str) -> None:
        try:
            ua = SipUdp(reg.port)  # only to build the requests
            uris = [f"sip:alice-{tag}{i}@10.{1 if tag == 'a' else 2}.{i // 250}.{i % 250 + 1}:5060"
                    for i in range(n)]
            reqs = [ua.register(aor(), [f"<{u}>"], expires=3600, call_id=unique(f"c{tag}"))
                    for u in uris]
            ua.close()
            contacts[tag] = uris
            results[tag] = transact_many(reg.port, reqs, window=8, timeout=60,
                                         keep_response=True)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=drive, args=(r, t)) for r, t in ((a, "a"), (b, "b"))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(90))
    assert not any(t.is_alive() for t in threads), "load threads did not finish"
    if errors:
        raise errors[0]
    took = time.monotonic() - t0
    for tag in ("a", "b"):
        statuses = [r.status for r in results[tag]]
        bad = [(i, s) for i, s in enumerate(statuses) if s != 200]
        assert not bad, f"instance {tag}: {len(bad)} REGISTERs without 200, first {bad[:5]}"
        # Each 200 lists the REGISTER's own contact (own bindings first, so a cut keeps them).
        missing = [i for i, r in enumerate(results[tag])
                   if f"<{contacts[tag][i]}>".encode() not in r.response]
        assert not missing, f"instance {tag}: {len(missing)} 200s do not list their own contact"
    key = location_key(aor())
    assert redis.client.hlen(key) == 2 * n, (
        f"bindings in Redis after 2 x {n} REGISTERs ({took:.1f}s)")
    assert set(redis.client.hgetall(key)) == set(contacts["a"]) | set(contacts["b"]), "binding keys"


WITH_SECRET = {**os.environ, "SIPR_SECRET": "integration-test-secret"}
WITHOUT_SECRET = {k: v for k, v in os.environ.items() if k != "SIPR_SECRET"}


def one_line_startup_error(args: list[str], mention: str, env: dict[str, str]) -> None:
    r = run_program("sip-registrard", args, timeout=15, env=env)
    lines = r.stderr.splitlines()
    assert r.returncode != 0, f"{args}: exit status 0"
    assert len(lines) == 1 and lines[0].strip(), (
        f"{args}: want one line on stderr (DESIGN §8), got {len(lines)}: {r.stderr!r}")
    assert mention in lines[0], f"{args}: stderr does not mention {mention!r}: {lines[0]!r}"


def test_bad_flag_exits_nonzero_with_one_line():
    for args, mention in ((["--no-such-flag"], "--no-such-flag"),
                          (["--max-contacts-policy", "sometimes"], "--max-contacts-policy"),
                          (["--max-contacts", "0"], "--max-contacts"),
                          (["--min-expires", "100", "--max-expires", "50"], "--min-expires"),
                          (["--listen", "not-an-endpoint", "--redis", "redis://127.0.0.1:1"],
                           "--listen")):
        one_line_startup_error(args, mention, WITH_SECRET)


def test_redis_unreachable_at_start_exits_nonzero():
    dead = free_tcp_port()  # nothing listens there
    one_line_startup_error(["--listen", f"127.0.0.1:{free_udp_port()}",
                            "--metrics", f"127.0.0.1:{free_tcp_port()}",
                            "--redis", f"redis://127.0.0.1:{dead}"],
                           f"Redis at redis://127.0.0.1:{dead}", WITH_SECRET)


def test_startup_error_is_one_line_without_secret():
    """The one-line contract holds in the default configuration too (no --secret): the To-tag
    key warning must not come before the error."""
    one_line_startup_error(["--listen", "not-an-endpoint"], "--listen", WITHOUT_SECRET)
    dead = free_tcp_port()
    one_line_startup_error(["--listen", f"127.0.0.1:{free_udp_port()}",
                            "--metrics", f"127.0.0.1:{free_tcp_port()}",
                            "--redis", f"redis://127.0.0.1:{dead}"], "Redis", WITHOUT_SECRET)


def test_sigterm_exits_zero(redis):
    reg = Registrar(redis, BASE_FLAGS, name="sip-registrard[sigterm]")
    with reg:
        with reg.ua() as ua:
            expect(register(ua, ["<sip:alice@192.0.2.1>"], expires=600), 200)
        pid = reg.pid
        t0 = time.monotonic()
        rc = reg.stop()  # SIGTERM by PID; fails unless exit status 0 without sanitizer reports
        assert rc == 0, "exit status after SIGTERM"
        assert time.monotonic() - t0 < scaled(5), "SIGTERM took more than 5 s"
        assert "stopped" in reg.stderr_text(), f"no 'stopped' in the log of pid {pid}"
        # The port is closed: nothing answers any more.
        with SipUdp(reg.port) as ua:
            ua.send_raw(ua.options().data)
            ua.expect_silence(0.5)


def test_python_binding_codec_matches_the_cpp_one(redis):
    """sipr_test.bindings repeats the packed binding of include/sipr/location/binding.h for tests
    that seed Redis directly; this keeps the two from drifting. C++ to Python: what sip-locctl bind
    writes (through register.lua) unpacks field by field. Python to C++: what pack_binding writes
    is what sip-locctl show reads back."""
    who = aor("codec")
    contact = "sip:codec@192.0.2.7:5062;transport=udp"
    t0 = time_ms(redis.client)
    locctl(redis, "bind", who, f"<{contact}>", "--expires", "600", "--q", "0.7")
    fields = redis.client.hgetall(location_key(who))
    assert len(fields) == 1, f"one binding after sip-locctl bind: {fields}"
    b = unpack_binding(next(iter(fields.values())))
    assert (b.contact, b.q, b.call_id, b.user_agent, b.instance, b.reg_id) == (
        contact, 700, "sip-locctl", "sip-locctl", "", None), f"unpacked: {b}"
    assert t0 <= b.updated_at_ms <= t0 + 5000, f"updated_at {b.updated_at_ms}, Redis TIME {t0}"
    assert b.expires_at_ms == b.updated_at_ms + 600_000, f"expiry: {b}"
    other = aor("codec2")
    mine = StoredBinding(expires_at_ms=t0 + 300_000, updated_at_ms=t0, cseq=42, call_id="cid-py",
                         contact="sip:py@192.0.2.8:5070", q=250, path="<sip:edge.example.com;lr>",
                         received="198.51.100.9:5090", user_agent="py-ua", instance="", reg_id=None)
    redis.client.hset(location_key(other), mine.contact, pack_binding(mine))
    shown = json.loads(locctl(redis, "show", other, "--json"))["bindings"]
    assert len(shown) == 1, f"sip-locctl show of a Python-packed binding: {shown}"
    s = shown[0]
    assert (s["contact"], s["q"], s["call_id"], s["cseq"], s["received"], s["user_agent"],
            s["path"]) == (mine.contact, 0.25, "cid-py", 42, "198.51.100.9:5090", "py-ua",
                           "<sip:edge.example.com;lr>"), f"shown: {s}"
    assert 295 <= s["expires_in"] <= 300, f"expires_in {s['expires_in']}"
