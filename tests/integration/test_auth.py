"""sip-registrard --auth digest against a real redis-server over loopback UDP (DESIGN §5, §6, §8;
RFC 3261 §22, RFC 7616, RFC 8760).

Subscribers are added with the real `sip-locctl user add`. SIPp registers with -au/-ap (its
[authentication] keyword); the other cases answer the challenges with digests computed here with
hashlib, independently of the daemon. Each case asserts the answer and what Redis holds
(sipr:loc:{aor}, sipr:authfail:{aor}:<source>, sipr:nc:{aor}:<nonce>). One redis-server serves
the run (FLUSHALL before each case); daemons are started per group of cases sharing their flags.

    /usr/bin/python3 -m pytest tests/integration/test_auth.py [-k name-substring]
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from pathlib import Path

import pytest

from sipr_test.base import free_tcp_port, free_udp_port, wait_until
from sipr_test.bindings import location_key, unpack_binding
from sipr_test.processes import ServiceDaemon, run_program
from sipr_test.redis_servers import RedisServer
from sipr_test.sip import Response, SipUdp, unique
from sipr_test.sipp import run_sipp

DOMAIN = "example.com"
SECRET = "auth-integration-secret"
WITH_SECRET = {**os.environ, "SIPR_SECRET": SECRET}
WITHOUT_SECRET = {k: v for k, v in os.environ.items()
                  if k not in ("SIPR_SECRET", "SIPR_NONCE_SECRET")}
PASSWORDS = {"alice": "Circle Of Life", "bob": "bob's password"}
# sip-locctl user add --algorithms: alice allows SHA-256 (preferred) and MD5; bob has no list of his
# own, so the registrar's --auth-algorithms apply (MD5 as shipped).
ALGORITHMS = {"alice": "SHA-256,MD5"}
FAIL_LIMIT = 3
# SIPp computes its digest over uri="sip:<remote ip:port>" unless told the Request-URI: the
# registrar requires the two to match (RFC 7616 §3.4.6), as every UA that copies its Request-URI.
SIPP_AUTH_URI = ["-auth_uri", DOMAIN]
COOLDOWN = 4  # seconds


def aor(user: str = "alice") -> str:
    return f"sip:{user}@{DOMAIN}"


def authfail_key(user: str = "alice", source: str = "127.0.0.1") -> str:
    """The failures of `user`'s AOR from one source (an IPv4 address or an IPv6 /64)."""
    return f"sipr:authfail:{{{aor(user)}}}:{source}"


class Registrar(ServiceDaemon):
    """sip-registrard --auth digest on free ports against `redis` (SIPR_SECRET set unless `env`
    says otherwise)."""

    def __init__(self, redis: RedisServer, flags: list[str], name: str = "sip-registrard",
                 env: dict[str, str] | None = None):
        super().__init__("sip-registrard", redis.url,
                         ["--domain", DOMAIN, "--auth", "digest", *flags], name=name,
                         env=WITH_SECRET if env is None else env)


class Redirect(ServiceDaemon):
    def __init__(self, redis: RedisServer, name: str = "sip-redirectd"):
        super().__init__("sip-redirectd", redis.url, ["--domain", DOMAIN], name=name,
                         env=WITH_SECRET)


class UaFrom(SipUdp):
    """A SipUdp bound to another loopback address (on Linux all of 127/8 is local), as in
    test_flood.py. Its Via names that address, with rport, so answers come back to it."""

    def __init__(self, port: int, ip: str):
        super().__init__(port)
        self.sock.close()
        self.ip = ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.local_port = self.sock.getsockname()[1]

    @property
    def local(self) -> str:
        return f"{self.ip}:{self.local_port}"


# ------------------------------------------------------------------------------------------------
# Fixtures

def add_users(r: RedisServer) -> None:
    r.client.flushall()
    for user, password in PASSWORDS.items():
        extra = ["--algorithms", ALGORITHMS[user]] if user in ALGORITHMS else []
        locctl(r, "user", "add", aor(user), "--password", password, *extra)


@pytest.fixture(scope="module")
def redis_reset():
    return add_users


def registrar_fixture(name: str, flags: list[str]):
    """A module-scoped fixture: sip-registrard --auth digest with `flags`."""
    @pytest.fixture(scope="module")
    def fixture(redis_server):
        with Registrar(redis_server, flags, name=f"sip-registrard[{name}]") as d:
            yield d
    return fixture


# As shipped: MD5 unless the subscriber's record says otherwise, 300 s nonces, 5 failures a minute,
# 60 s cool-down.
registrar = registrar_fixture("registrar", [])
registrar_short_nonce = registrar_fixture("registrar_short_nonce", ["--nonce-lifetime", "2"])


@pytest.fixture(scope="module")
def redirect(redis_server):
    with Redirect(redis_server) as d:
        yield d


@pytest.fixture(scope="module")
def registrar_pair(redis_server):
    """Two registrars on one Redis with one secret and a short cool-down."""
    flags = ["--auth-fail-limit", str(FAIL_LIMIT), "--auth-cooldown", str(COOLDOWN)]
    with Registrar(redis_server, flags, name="sip-registrard[a]") as a, \
            Registrar(redis_server, flags, name="sip-registrard[b]") as b:
        yield a, b


# ------------------------------------------------------------------------------------------------
# Helpers

def locctl(redis: RedisServer, *args: str) -> str:
    r = run_program("sip-locctl", ["--redis", redis.url, *args])
    assert r.returncode == 0, f"sip-locctl {' '.join(args)} exited {r.returncode}: {r.stderr}"
    return r.stdout


def expect(resp: Response, status: int) -> Response:
    if resp.status != status:
        raise AssertionError(f"want {status}, got {resp.status} {resp.reason}\n{resp}")
    return resp


_PARAM_RE = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)')


def challenges(resp: Response) -> list[dict[str, str]]:
    """Every WWW-Authenticate of a 401, in order: its parameters (quotes removed), "scheme" too."""
    out = []
    for value in resp.values("www-authenticate"):
        scheme, _, rest = value.partition(" ")
        params = {k.lower(): v[1:-1] if v.startswith('"') else v
                  for k, v in _PARAM_RE.findall(rest)}
        params["scheme"] = scheme
        out.append(params)
    return out


def authorization(ch: dict[str, str], user: str, password: str, *, nc: int = 1,
                  uri: str = f"sip:{DOMAIN}", cnonce: str | None = None,
                  method: str = "REGISTER") -> str:
    """The Authorization line answering challenge `ch` (RFC 7616 §3.4.1, qop=auth)."""
    alg = ch.get("algorithm", "MD5")
    h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[alg]
    hx = lambda s: h(s.encode()).hexdigest()  # noqa: E731
    cnonce = cnonce or unique("cn")
    ha1 = hx(f"{user}:{ch['realm']}:{password}")
    ha2 = hx(f"{method}:{uri}")
    ncv = f"{nc:08x}"
    response = hx(f"{ha1}:{ch['nonce']}:{ncv}:{cnonce}:auth:{ha2}")
    return (f'Authorization: Digest username="{user}", realm="{ch["realm"]}", '
            f'nonce="{ch["nonce"]}", uri="{uri}", response="{response}", algorithm={alg}, '
            f'cnonce="{cnonce}", qop=auth, nc={ncv}')


def contact_of(ua: SipUdp) -> str:
    return f"sip:alice@{ua.local}"


def register(ua: SipUdp, user: str = "alice", headers=(), cseq: int = 1,
             call_id: str | None = None, to_user: str | None = None) -> Response:
    """A REGISTER of `to_user`'s AOR (default `user`) with `ua`'s own contact."""
    return ua.send(ua.register(aor(to_user or user), [f"<sip:{user}@{ua.local}>"], expires=600,
                               headers=list(headers), cseq=cseq, call_id=call_id))


def challenge(ua: SipUdp, user: str = "alice", algorithm: str | None = None,
              call_id: str | None = None) -> dict[str, str]:
    """The challenge for `algorithm` (default: the first, the most preferred) of a 401 to a
    REGISTER without credentials."""
    r = expect(register(ua, user, call_id=call_id), 401)
    for ch in challenges(r):
        if algorithm is None or ch.get("algorithm") == algorithm:
            return ch
    raise AssertionError(f"no {algorithm} challenge in\n{r}")


def login(ua: SipUdp, user: str = "alice", password: str | None = None,
          algorithm: str | None = None, to_user: str | None = None) -> Response:
    """Challenge then answer, as a UA does: returns the answer to the second REGISTER."""
    cid = unique("cid") + "@127.0.0.1"
    ch = challenge(ua, to_user or user, algorithm, call_id=cid)
    return register(ua, user, [authorization(ch, user, password or PASSWORDS[user])], cseq=2,
                    call_id=cid, to_user=to_user)


def bindings(redis: RedisServer, user: str = "alice") -> dict[str, str]:
    return redis.client.hgetall(location_key(aor(user)))


class Failures:
    """sipr_auth_failures_total of daemons (which may live across cases) from now on."""

    def __init__(self, *daemons: ServiceDaemon):
        self.daemons = daemons
        self.before = self._total()

    def _total(self) -> float:
        return sum(d.metric("sipr_auth_failures_total") for d in self.daemons)

    def check(self, want: int, what: str = "sipr_auth_failures_total rise") -> None:
        assert self._total() - self.before == want, what


def commandstats(redis: RedisServer) -> dict[str, int]:
    """calls per command since the server started (INFO commandstats)."""
    return {name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in redis.client.info("commandstats").items()
            if name.startswith("cmdstat_")}


# ------------------------------------------------------------------------------------------------
# SIPp: a real UA

def md5_only(redis: RedisServer, user: str = "alice") -> None:
    """SIPp 3.6 computes MD5 only, from the first challenge it is given: `user` again without an
    algorithm list of its own, so the registrar's default (MD5 as shipped) applies."""
    locctl(redis, "user", "add", aor(user), "--password", PASSWORDS[user])


def test_sipp_digest_register_then_invite_302(redis, registrar, redirect):
    """SIPp (-au alice -ap PASSWORD, [authentication]) registers through sip-registrard --auth
    digest as shipped: 401, then 200 listing its contact. Redis holds the binding, and an INVITE to
    sip-redirectd on the same Redis is redirected to exactly that contact (SIPp invite_302.xml)."""
    md5_only(redis)
    failures = Failures(registrar)
    port = free_udp_port()
    res = run_sipp("register_digest.xml", registrar.port, service="alice", local_port=port,
                   args=["-au", "alice", "-ap", PASSWORDS["alice"], *SIPP_AUTH_URI])
    assert res.returncode == 0, f"sipp register_digest.xml failed: {res.summary()}"
    want = f"sip:alice@127.0.0.1:{port}"
    b = bindings(redis)
    assert sorted(b) == [want], "binding keys"
    assert unpack_binding(b[want]).user_agent == "SIPp register_digest.xml", "stored user agent"
    # The nonce-count SIPp used is recorded, to expire with the nonce.
    nc_keys = sorted(redis.client.keys(f"sipr:nc:{{{aor()}}}:*"))
    assert len(nc_keys) == 1, f"nonce-count keys {nc_keys}"
    assert redis.client.get(nc_keys[0]) == "1", "recorded nc"
    ttl = redis.client.ttl(nc_keys[0])
    assert 0 < ttl <= 330, f"nonce-count TTL {ttl}"

    work = Path(tempfile.mkdtemp(prefix="sipr-inf-"))
    inf = work / "contact.csv"
    try:
        inf.write_text(f"SEQUENTIAL\n{want};\n")
        res = run_sipp("invite_302.xml", redirect.port, service="alice", args=["-inf", str(inf)])
    finally:
        inf.unlink(missing_ok=True)
        work.rmdir()
    assert res.returncode == 0, f"sipp invite_302.xml failed: {res.summary()}"
    failures.check(0)


def test_sipp_wrong_password_gets_no_binding(redis, registrar):
    """SIPp with the wrong password gets 401 twice (register_digest_refused.xml); Redis holds no
    binding, one failure counted for the lock-out, and the failure is in the metric."""
    md5_only(redis)
    failures = Failures(registrar)
    res = run_sipp("register_digest_refused.xml", registrar.port, service="alice",
                   args=["-au", "alice", "-ap", "not the password", *SIPP_AUTH_URI])
    assert res.returncode == 0, f"sipp register_digest_refused.xml failed: {res.summary()}"
    assert redis.client.exists(location_key(aor())) == 0, "sipr:loc key of alice"
    assert redis.client.get(authfail_key()) == "1", "failures counted"
    ttl = redis.client.ttl(authfail_key())
    assert 0 < ttl <= 60, f"failure window TTL {ttl}"
    failures.check(1)


# ------------------------------------------------------------------------------------------------
# The challenge and the answers (as shipped: MD5, or the subscriber's own list)

def test_challenge_follows_the_subscribers_algorithms(redis, registrar):
    """A REGISTER without credentials: 401 with one WWW-Authenticate per algorithm of the
    subscriber's list (alice: SHA-256 first, RFC 8760, then MD5), realm the AOR's domain,
    qop="auth", one nonce. A subscriber without a list (bob, as every record written before
    --algorithms) and an unknown user get MD5 alone. Redis is read once per challenge (one script
    call), never written."""
    failures = Failures(registrar)
    before = commandstats(redis)
    with registrar.ua() as ua:
        r = expect(register(ua), 401)
        mid = commandstats(redis)
        for user in ("bob", "nobody"):
            other = challenges(expect(register(ua, user), 401))
            assert [c.get("algorithm") for c in other] == ["MD5"], f"{user}'s algorithms"
    after = commandstats(redis)
    assert sum(mid.get(c, 0) - before.get(c, 0) for c in ("evalsha", "eval")) == 1, (
        "script calls for one challenge")
    for cmd in ("set", "incr", "hset", "del", "expire"):
        assert after.get(cmd, 0) == before.get(cmd, 0), f"Redis {cmd} calls for challenges"
    chs = challenges(r)
    assert [c.get("algorithm") for c in chs] == ["SHA-256", "MD5"], "algorithms, in order"
    for c in chs:
        assert c["scheme"] == "Digest", "scheme"
        assert c.get("realm") == DOMAIN, "realm"
        assert c.get("qop") == "auth", "qop"
        assert "stale" not in c, f"stale in a first challenge: {c}"
    assert chs[0]["nonce"] == chs[1]["nonce"], "one nonce for both"
    assert 'qop="auth"' in r.header("www-authenticate"), "qop quoted (RFC 7616 §3.3)"
    assert bindings(redis) == {}, "bindings"
    failures.check(0, "a challenge is not a failure")


def test_locctl_algorithms_are_checked_and_stored(redis):
    """sip-locctl user add --algorithms: known names only, each once, stored in the canonical
    spelling as the field `algorithms`; adding the user again without it removes the field."""
    key = f"sipr:sub:{{{aor('bob')}}}"
    locctl(redis, "user", "add", aor("bob"), "--password", "x", "--algorithms", "sha-256, md5")
    assert redis.client.hget(key, "algorithms") == "SHA-256,MD5", "stored list"
    for bad, mention in (("SHA-1", "SHA-1"), ("MD5,md5", "twice")):
        r = run_program("sip-locctl", ["--redis", redis.url, "user", "add", aor("bob"),
                                       "--password", "x", "--algorithms", bad])
        assert r.returncode != 0 and mention in r.stderr, (
            f"--algorithms {bad}: exit {r.returncode}, stderr {r.stderr!r}")
    assert redis.client.hget(key, "algorithms") == "SHA-256,MD5", "list after refused changes"
    locctl(redis, "user", "add", aor("bob"), "--password", "x")
    assert redis.client.hget(key, "algorithms") == None, "list after user add without it"


def test_sha256_and_md5_answers_register(redis, registrar):
    """The right SHA-256 answer registers alice; the right MD5 answer registers bob."""
    failures = Failures(registrar)
    with registrar.ua() as ua:
        r = expect(login(ua, "alice", algorithm="SHA-256"), 200)
        assert [c.uri for c in r.contacts] == [contact_of(ua)], "200 contacts"
        assert list(bindings(redis, "alice")) == [contact_of(ua)], "alice's bindings"
        expect(login(ua, "bob", algorithm="MD5"), 200)
        assert list(bindings(redis, "bob")) == [f"sip:bob@{ua.local}"], "bob's bindings"
    failures.check(0)


def test_wrong_user_for_the_to_aor_is_403(redis, registrar):
    """bob's own, right credentials on a REGISTER of alice's AOR: 403, no binding."""
    failures = Failures(registrar)
    with registrar.ua() as ua:
        r = expect(login(ua, "bob", to_user="alice"), 403)
        assert r.header("www-authenticate") is None, "a 403 carries no challenge"
    assert bindings(redis, "alice") == {}, "alice's bindings"
    assert bindings(redis, "bob") == {}, "bob's bindings"
    assert redis.client.exists(authfail_key("alice")) == 0, "no password was tried"
    failures.check(1)


def test_disabled_subscriber_is_403(redis, registrar):
    """A subscriber whose record says enabled=0 is refused even with the right password."""
    redis.client.hset(f"sipr:sub:{{{aor()}}}", "enabled", "0")
    with registrar.ua() as ua:
        expect(login(ua), 403)
    assert bindings(redis) == {}, "bindings"


def test_replayed_nonce_count_is_refused(redis, registrar):
    """The same credentials (nonce and nc) on a second REGISTER are a replay: 401, nothing
    changes; the next nc on that nonce is accepted."""
    failures = Failures(registrar)
    with registrar.ua() as ua:
        cid = unique("cid") + "@127.0.0.1"
        ch = challenge(ua, call_id=cid)
        creds = authorization(ch, "alice", PASSWORDS["alice"], nc=1, cnonce="c0ffee")
        expect(register(ua, headers=[creds], cseq=2, call_id=cid), 200)
        before = bindings(redis)
        r = expect(register(ua, headers=[creds], cseq=3, call_id=cid), 401)
        assert "stale" not in challenges(r)[0], "a replay is not stale"
        assert bindings(redis) == before, "bindings after the replay"
        nc2 = authorization(ch, "alice", PASSWORDS["alice"], nc=2, cnonce="c0ffee")
        expect(register(ua, headers=[nc2], cseq=4, call_id=cid), 200)
    assert redis.client.get(f"sipr:nc:{{{aor()}}}:{ch['nonce']}") == "2", (
        "stored nc")
    failures.check(1)


def accepted_register(ua: SipUdp, contact: str | None = None):
    """Challenge, then a REGISTER (CSeq 2) answering it, sent as a client transaction and
    answered 200. Returns (the request as sent, the challenge, its Call-ID)."""
    cid = unique("cid") + "@127.0.0.1"
    ch = challenge(ua, call_id=cid)
    req = ua.register(aor(), [contact or f"<{contact_of(ua)}>"], expires=600, cseq=2, call_id=cid,
                      headers=[authorization(ch, "alice", PASSWORDS["alice"], cnonce="c0ffee")])
    expect(ua.send(req), 200)
    return req, ch, cid


def test_retransmitted_register_gets_200_again(redis, registrar):
    """An authenticated REGISTER sent again byte for byte (same nonce, nc, Call-ID, CSeq, branch:
    a UDP retransmission after a lost 200) gets 200 listing the binding, as the first time; no
    auth failure is counted and the binding is not re-written."""
    failures = Failures(registrar)
    with registrar.ua() as ua:
        req, _, _ = accepted_register(ua)
        before = bindings(redis)
        for _ in range(2):
            r = expect(ua.answer_raw(req.data, req.branch), 200)
            assert [c.uri for c in r.contacts] == [contact_of(ua)], "200 contacts"
        assert bindings(redis) == before, "bindings (not re-written: same updated-at)"
    failures.check(0, "a retransmission is not an auth failure")


def test_same_authorization_on_another_request_is_refused(redis, registrar):
    """The Authorization of an accepted REGISTER on a request that differs (another Contact, all
    else equal: Call-ID, CSeq, branch): a replay, 401; the other contact is not bound."""
    failures = Failures(registrar)
    with registrar.ua() as ua:
        req, _, _ = accepted_register(ua)
        other = req.data.replace(f"<{contact_of(ua)}>".encode(), b"<sip:mallory@127.0.0.1:9>")
        assert other != req.data, "the Contact was replaced"
        r = expect(ua.answer_raw(other, req.branch), 401)
        assert "stale" not in challenges(r)[0], "a replay is not stale"
        assert list(bindings(redis)) == [contact_of(ua)], "bindings"
    failures.check(1)


def test_retransmission_does_not_bring_back_a_removed_binding(redis, registrar):
    """A copy of an accepted REGISTER arriving after its binding was removed (within 32 s) does
    not bring it back: not after sip-locctl unbind, nor after the UA's own REGISTER with
    Expires: 0 on a fresh nonce (both copies: 500, the request is out of date), nor after one on
    the next nc of the same nonce (the copy's nc is then a replay: 401)."""
    failures = Failures(registrar)
    with registrar.ua() as ua:
        req, _, _ = accepted_register(ua)
        locctl(redis, "unbind", aor(), contact_of(ua))
        assert bindings(redis) == {}, "bindings after the unbind"
        r = ua.answer_raw(req.data, req.branch)
        assert r.status == 500, f"answer to the copy after the unbind: {r.status} {r.reason}"
        assert bindings(redis) == {}, "bindings after the copy"

        for same_nonce in (False, True):
            req, ch, cid = accepted_register(ua)
            if not same_nonce:
                ch = challenge(ua, call_id=cid)
            creds = authorization(ch, "alice", PASSWORDS["alice"], nc=2 if same_nonce else 1)
            unreg = ua.register(aor(), [f"<{contact_of(ua)}>"], expires=0, cseq=3, call_id=cid,
                                headers=[creds])
            expect(ua.send(unreg), 200)
            assert bindings(redis) == {}, "bindings after Expires: 0"
            r = ua.answer_raw(req.data, req.branch)
            want = 401 if same_nonce else 500
            assert r.status == want, (f"answer to the copy after Expires: 0 (same nonce: "
                                     f"{same_nonce}): {r.status} {r.reason}")
            assert bindings(redis) == {}, "bindings after the copy"
    failures.check(1, "sipr_auth_failures_total rise (the replayed nc)")


def test_digest_uri_other_than_request_uri_is_400(redis, registrar):
    """A right response computed over uri="sip:unrelated.invalid;x=1" for REGISTER
    sip:example.com: 400 (RFC 7616 §3.4.6), no binding, not an auth failure; the same answer over
    an equivalent URI (RFC 3261 §19.1.4) registers."""
    failures = Failures(registrar)
    with registrar.ua() as ua:
        cid = unique("cid") + "@127.0.0.1"
        ch = challenge(ua, call_id=cid)
        creds = authorization(ch, "alice", PASSWORDS["alice"], uri="sip:unrelated.invalid;x=1")
        r = expect(register(ua, headers=[creds], cseq=2, call_id=cid), 400)
        assert r.header("www-authenticate") is None, "a 400 carries no challenge"
        assert bindings(redis) == {}, "bindings after the 400"
        assert redis.client.exists(authfail_key()) == 0, "a failure counted"
        failures.check(0, "a uri mismatch is not an auth failure")
        creds = authorization(ch, "alice", PASSWORDS["alice"], nc=2, uri=f"SIP:{DOMAIN.upper()}")
        expect(register(ua, headers=[creds], cseq=3, call_id=cid), 200)
        assert list(bindings(redis)) == [contact_of(ua)], "bindings"


def test_expired_nonce_gets_stale_true(redis, registrar_short_nonce):
    """--nonce-lifetime 2: a nonce answered after 3 s with the right password gets 401 with
    stale=true on every challenge (and the fresh nonce then registers); with a wrong password, a
    plain 401 that counts as a failure."""
    reg = registrar_short_nonce
    failures = Failures(reg)
    with reg.ua() as ua:
        cid = unique("cid") + "@127.0.0.1"
        ch = challenge(ua, call_id=cid)
        wrong_ch = challenge(ua)
        time.sleep(3.2)
        r = expect(register(ua, headers=[authorization(ch, "alice", PASSWORDS["alice"])],
                            cseq=2, call_id=cid), 401)
        chs = challenges(r)
        assert [c.get("stale") for c in chs] == ["true", "true"], "stale on every challenge"
        assert chs[0]["nonce"] != ch["nonce"], "a new nonce"
        failures.check(0, "a stale nonce is not a failure")
        expect(register(ua, headers=[authorization(chs[0], "alice", PASSWORDS["alice"])],
                        cseq=3, call_id=cid), 200)
        r = expect(register(ua, headers=[authorization(wrong_ch, "alice", "guess")], cseq=4), 401)
        assert "stale" not in challenges(r)[0], f"stale=true for a wrong password:\n{r}"
    failures.check(1)
    assert redis.client.get(authfail_key()) == "1", "failures counted"


# ------------------------------------------------------------------------------------------------
# Several instances

def test_lockout_holds_across_two_instances(redis, registrar_pair):
    """--auth-fail-limit 3 --auth-cooldown 4 on two registrars sharing Redis: three wrong passwords
    spread over both lock alice out, so the right password gets 403 from either for the cool-down
    (sipr:authfail:{aor} in Redis); bob is not affected; after the cool-down alice registers."""
    a, b = registrar_pair
    failures = Failures(a, b)
    with a.ua() as ua_a, b.ua() as ua_b:
        for i, ua in enumerate([ua_a, ua_b, ua_a]):
            expect(login(ua, password=f"guess {i}"), 401)
        assert redis.client.get(authfail_key()) == str(FAIL_LIMIT), (
            "failures in Redis")
        ttl = redis.client.ttl(authfail_key())
        assert 0 < ttl <= COOLDOWN, f"cool-down TTL {ttl}, want 1..{COOLDOWN}"
        expect(login(ua_a), 403)
        expect(login(ua_b), 403)
        assert bindings(redis) == {}, "alice's bindings during the cool-down"
        expect(login(ua_b, "bob"), 200)
        wait_until(lambda: not redis.client.exists(authfail_key()), COOLDOWN + 2,
                   what="the cool-down to end")
        expect(login(ua_b), 200)
        assert list(bindings(redis)) == [contact_of(ua_b)], "alice's bindings after it"
    failures.check(FAIL_LIMIT + 2, "sipr_auth_failures_total of both (3 wrong, 2 locked out)")


def test_guesser_from_another_source_does_not_lock_out_the_user(redis, registrar_pair):
    """--auth-fail-limit 3: a guesser at 127.0.0.2 failing again and again locks out only itself
    (401 three times, then 403 even to the right password); alice at 127.0.0.1 registers all the
    while, and nothing is counted against her source."""
    a, _ = registrar_pair
    failures = Failures(a)
    with UaFrom(a.port, "127.0.0.2") as guesser, a.ua() as ua:
        for i in range(FAIL_LIMIT + 3):
            expect(login(guesser, password=f"guess {i}"), 401 if i < FAIL_LIMIT else 403)
        assert redis.client.get(authfail_key(source="127.0.0.2")) == str(FAIL_LIMIT), (
            "the guesser's failures")
        expect(login(guesser), 403)
        r = expect(login(ua), 200)
        assert [c.uri for c in r.contacts] == [contact_of(ua)], "200 contacts"
        assert redis.client.exists(authfail_key()) == 0, "failures counted for 127.0.0.1"
    assert list(bindings(redis)) == [contact_of(ua)], "alice's bindings"
    failures.check(FAIL_LIMIT + 4, "sipr_auth_failures_total (3 wrong, 4 locked out)")


def test_wrong_answers_for_an_unknown_aor_leave_no_key(redis, registrar):
    """Wrong answers for sip:nobody@example.com (no subscriber): 401 each time, counted in the
    metric, but no sipr:authfail: key (nor any other) is created in Redis."""
    failures = Failures(registrar)
    before = sorted(redis.client.keys("*"))
    with registrar.ua() as ua:
        for i in range(3):
            expect(login(ua, "nobody", password=f"guess {i}"), 401)
    assert sorted(redis.client.keys("sipr:authfail:*")) == [], "sipr:authfail: keys"
    assert sorted(redis.client.keys("*")) == before, "Redis keys"
    failures.check(3)


def test_nonce_of_one_instance_verified_by_another(redis):
    """Two registrars with one secret accept each other's nonces; one with another secret refuses
    them (401, not stale)."""
    other = {**os.environ, "SIPR_SECRET": SECRET, "SIPR_NONCE_SECRET": "another secret"}
    with Registrar(redis, [], name="sip-registrard[a]") as a, \
            Registrar(redis, [], name="sip-registrard[b]") as b, \
            Registrar(redis, [], name="sip-registrard[c]", env=other) as c:
        with a.ua() as ua_a, b.ua() as ua_b, c.ua() as ua_c:
            cid = unique("cid") + "@127.0.0.1"
            ch = challenge(ua_a, call_id=cid)
            creds = authorization(ch, "alice", PASSWORDS["alice"])
            r = expect(register(ua_c, headers=[creds], cseq=2, call_id=cid), 401)
            assert "stale" not in challenges(r)[0], "a foreign nonce is not stale"
            expect(register(ua_b, headers=[creds], cseq=3, call_id=cid), 200)
        assert c.metric("sipr_auth_failures_total") == 1, "failures on the other-secret instance"


# ------------------------------------------------------------------------------------------------
# Start-up

def startup_fails(args: list[str], mention: str, env: dict[str, str]) -> None:
    r = run_program("sip-registrard", ["--listen", f"127.0.0.1:{free_udp_port()}",
                                       "--metrics", f"127.0.0.1:{free_tcp_port()}",
                                       "--redis", "redis://127.0.0.1:1", *args], env=env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, f"{args}: exit status 0"
    assert len(lines) == 1 and mention in lines[0], (
        f"{args}: stderr {r.stderr!r}, want one line "
        f"mentioning {mention!r}")


def test_auth_flags_startup_errors_are_one_line():
    """--auth digest without any secret, an unknown algorithm, a realm with a quote: one line on
    stderr, non-zero exit (before Redis is even tried)."""
    startup_fails(["--auth", "digest"], "secret", WITHOUT_SECRET)
    startup_fails(["--auth", "digest", "--auth-algorithms", "SHA-1"], "--auth-algorithms",
                  WITH_SECRET)
    startup_fails(["--auth", "digest", "--auth-algorithms", "MD5,md5"], "twice", WITH_SECRET)
    startup_fails(["--auth", "digest", "--realm", 'a"b'], "--realm", WITH_SECRET)
    startup_fails(["--auth", "digest", "--nonce-lifetime", "0"], "--nonce-lifetime", WITH_SECRET)
