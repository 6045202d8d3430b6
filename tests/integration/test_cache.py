"""sip-redirectd's near-cache (--cache-ttl) against a real redis-server (DESIGN §7, §9; issue 8).

The cache answers hot AORs from memory and stays correct through Redis client-side caching
(CLIENT TRACKING ... REDIRECT to a connection subscribed to __redis__:invalidate). Each case
asserts what a caller sees: a change made through sip-registrard shows in the next answers within
milliseconds and never flips back; a removed contact is never offered once its invalidation has
arrived; losing the invalidation connection, the data connection or Redis itself flushes the cache
(counted) and no stale answer follows; a cached binding past its own expiry is never served; and
the counters sipr_cache_{hits,misses,invalidations,flushes}_total and sipr_cache_entries. And
Redis's own memory for it stays bounded (issue 14): the tracking table is held to
--cache-tracking-max-keys on the node the cached reads go to, at start and on every reconnect.

Probes go out from several sockets at once so that SO_REUSEPORT spreads them over both workers:
each worker has its own cache and its own tracked connection.

    /usr/bin/python3 -m pytest tests/integration/test_cache.py [-k name-substring]
"""
from __future__ import annotations

import os
import time

import pytest

from sipr_test.base import LOCALHOST, free_tcp_port, free_udp_port, scaled, wait_until
from sipr_test.bindings import StoredBinding, location_key, pack_binding
from sipr_test.metrics import metric_value
from sipr_test.processes import ServiceDaemon, run_program
from sipr_test.redis_servers import (
    RedisServer, connect, primary_server, replica_server, time_ms, wait_replica_synced,
)
from sipr_test.sip import Request, Response, SipUdp, unique

DOMAIN = "example.com"
ENV = {**os.environ, "SIPR_SECRET": "cache-integration-secret"}
TTL_MS = 10_000  # long enough that a change seen before it can only come from an invalidation
WORKERS = 2
SOCKETS = 6  # probing sockets; SO_REUSEPORT hashes them over the workers

REGISTRAR_FLAGS = ["--domain", DOMAIN, "--min-expires", "1", "--max-expires", "3600",
                   "--default-expires", "3600", "--redis-timeout", str(int(scaled(2000)))]
CACHE_FLAGS = ["--domain", DOMAIN, "--cache-ttl", str(TTL_MS), "--cache-negative-ttl", str(TTL_MS),
               "--cache-max-entries", "1000", "--redis-timeout", str(int(scaled(1000)))]


def aor(user: str) -> str:
    return f"sip:{user}@{DOMAIN}"


class Redirect(ServiceDaemon):
    def __init__(self, redis: RedisServer, flags: list[str], name: str):
        super().__init__("sip-redirectd", redis.url, flags, name=name, workers=WORKERS, env=ENV)

    def cache_on_count(self) -> int:
        """How often a worker logged that its cache is on (tracking confirmed)."""
        return self.stderr_text().count("near-cache on")

    def wait_cache_on(self, at_least: int) -> None:
        wait_until(lambda: self.cache_on_count() >= at_least, 10,
                   what=f"{at_least} 'near-cache on' lines in the log of {self.name}")

    def counters(self) -> dict[str, float]:
        text = self.metrics()
        out = {}
        for name in ("hits", "misses", "invalidations", "flushes"):
            out[name] = _metric(text, f"sipr_cache_{name}_total")
        out["entries"] = _metric(text, "sipr_cache_entries")
        return out


def _metric(text: str, name: str) -> float:
    v = metric_value(text, name)
    assert v is not None, f"no metric {name} in GET /metrics"
    return v


# ------------------------------------------------------------------------------------------------
# Fixtures

@pytest.fixture(scope="module")
def registrar(redis_server):
    with ServiceDaemon("sip-registrard", redis_server.url, REGISTRAR_FLAGS, env=ENV) as d:
        yield d


@pytest.fixture(scope="module")
def cached(redis_server):
    with Redirect(redis_server, CACHE_FLAGS, "sip-redirectd[cache]") as d:
        d.wait_cache_on(WORKERS)
        yield d


# ------------------------------------------------------------------------------------------------
# Probing

class Prober:
    """INVITEs to one AOR from SOCKETS sockets at once; returns each socket's answer."""

    def __init__(self, port: int):
        self.uas = [SipUdp(port) for _ in range(SOCKETS)]

    def close(self) -> None:
        for ua in self.uas:
            ua.close()

    def __enter__(self) -> "Prober":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def round(self, ruri: str) -> tuple[float, list[Response]]:
        """(send time, one final response per socket). Lost datagrams are sent again."""
        reqs = [ua.build("INVITE", ruri) for ua in self.uas]
        t = time.monotonic()
        for ua, q in zip(self.uas, reqs):
            ua.send_raw(q.data)
        out = []
        for ua, q in zip(self.uas, reqs):
            out.append(self._answer(ua, q))
        return t, out

    @staticmethod
    def _answer(ua: SipUdp, q: Request) -> Response:
        deadline = time.monotonic() + scaled(5)
        resend = time.monotonic() + scaled(0.5)
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise AssertionError(f"no answer to INVITE {q.ruri} within {scaled(5):.0f}s")
            r = ua.recv(min(deadline, resend) - now)
            if r is None:
                if time.monotonic() >= resend:
                    ua.send_raw(q.data)
                    resend = time.monotonic() + scaled(0.5)
                continue
            if ua.matches(q, r) and r.status >= 200:
                return r


def uris(r: Response) -> list[str]:
    return [c.uri for c in r.contacts] if r.status == 302 else []


def expect_all(rs: list[Response], status: int, contacts: list[str] | None, what: str) -> None:
    for r in rs:
        assert r.status == status and (contacts is None or uris(r) == contacts), (
            f"{what}: want {status} {contacts or ''}, got {r.status} {uris(r)}")


def register(ua: SipUdp, user: str, contacts: list[str]) -> float:
    """REGISTER through sip-registrard (200 required); returns when the 200 arrived."""
    r = ua.send(ua.register(aor(user), contacts, expires=600))
    assert r.status == 200, f"REGISTER {user} {contacts}: {r.status} {r.reason}"
    return time.monotonic()


def probe_until(p: Prober, ruri: str, since: float, fresh, stale, what: str) -> float:
    """Probes until every socket's answer is fresh; returns the staleness in seconds (send time of
    the first all-fresh round minus `since`). Fails if an answer is neither fresh nor stale, if a
    socket that saw a fresh answer sees a stale one again, or after the cache TTL."""
    seen = [False] * len(p.uas)
    deadline = since + TTL_MS / 1000
    while True:
        t, rs = p.round(ruri)
        for i, r in enumerate(rs):
            if fresh(r):
                seen[i] = True
            elif stale(r):
                assert not seen[i], (f"{what}: a stale answer after a fresh one on socket {i}: "
                                   f"{r.status} {uris(r)}")
            else:
                raise AssertionError(f"{what}: unexpected answer {r.status} {uris(r)}")
        if all(seen):
            return max(0.0, t - since)
        assert time.monotonic() < deadline, (
            f"{what}: still stale {TTL_MS} ms (the cache TTL) after the change: the "
            f"invalidation never arrived")


def percentiles(xs: list[float]) -> str:
    ms = sorted(x * 1000 for x in xs)
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return f"p50 {p(0.50):.2f} ms, p99 {p(0.99):.2f} ms, max {ms[-1]:.2f} ms over {len(ms)}"


def client_list(redis: RedisServer) -> list[dict[str, str]]:
    return redis.client.client_list()


def kill_clients(redis: RedisServer, prefix: str) -> int:
    """CLIENT KILL every connection whose name starts with `prefix`; returns how many."""
    victims = [c for c in client_list(redis) if c.get("name", "").startswith(prefix)]
    for c in victims:
        redis.client.execute_command("CLIENT", "KILL", "ID", c["id"])
    return len(victims)


def seed(redis: RedisServer, user: str, contact: str, expires_at_ms: int) -> None:
    """One packed binding straight into the AOR's hash, without a key expiry (so that only the
    reader's filter can hide it once expired)."""
    now = time_ms(redis.client)
    b = StoredBinding(expires_at_ms=expires_at_ms, updated_at_ms=now, cseq=1, call_id=unique("s"),
                      contact=contact, q=1000, path="", received="192.0.2.250:5060",
                      user_agent="seed", instance="", reg_id=None)
    redis.client.hset(location_key(aor(user)), contact, pack_binding(b))


# ------------------------------------------------------------------------------------------------
# Cases

def test_thousand_registrations_seen_within_milliseconds(redis, registrar, cached):
    """1,000 changes through sip-registrard, each replacing an AOR's contact while every worker
    holds the old one in its cache: each is probed until all sockets see it. Staleness (REGISTER's
    200 to the first round that is fresh everywhere) stays below the TTL, nothing flips back, and
    the cache did serve (hits)."""
    users = [f"hot{i}" for i in range(10)]
    current: dict[str, str] = {}
    staleness = []
    before = cached.counters()
    probes = 0
    with registrar.ua() as ua, Prober(cached.port) as p:
        for u in users:
            c = f"sip:{u}@192.0.2.1:5000"
            register(ua, u, [f"<{c}>"])
            current[u] = c
            probe_until(p, aor(u), time.monotonic(), lambda r, c=c: uris(r) == [c],
                        lambda r: r.status == 404, f"first registration of {u}")
        for i in range(1000):
            u = users[i % len(users)]
            old, new = current[u], f"sip:{u}@192.0.2.{1 + i % 250}:{6000 + i}"
            # Every worker answers the old contact from its cache right before the change.
            _, rs = p.round(aor(u))
            expect_all(rs, 302, [old], f"change {i}: before")
            probes += 1
            t0 = register(ua, u, [f"<{new}>", f"<{old}>;expires=0"])
            staleness.append(probe_until(p, aor(u), t0, lambda r, n=new: uris(r) == [n],
                                         lambda r, o=old: uris(r) == [o], f"change {i}"))
            current[u] = new
    after = cached.counters()
    print(f"# staleness after a REGISTER (1,000 changes, {SOCKETS} sockets, {WORKERS} workers): "
          f"{percentiles(staleness)}", flush=True)
    hits = after["hits"] - before["hits"]
    print(f"# cache: {hits:.0f} hits, {after['misses'] - before['misses']:.0f} misses, "
          f"{after['invalidations'] - before['invalidations']:.0f} invalidations", flush=True)
    assert max(staleness) < TTL_MS / 1000, f"max staleness {max(staleness):.3f}s >= TTL"
    # The "before" rounds alone are 1,000 x SOCKETS look-ups of a cached AOR.
    assert hits >= probes * SOCKETS * 0.9, (
        f"only {hits:.0f} cache hits for {probes * SOCKETS} look-ups of cached AORs")
    assert after["invalidations"] - before["invalidations"] >= 1000, (
        "fewer invalidations than changes")


def test_unregister_never_offers_the_removed_contact(redis, registrar, cached):
    """Register, then remove (expires=0), 200 times: once the removal is seen (404, from a cached
    negative entry afterwards) the removed contact is never offered again; the next registration
    is seen through the negative entry's invalidation (Redis tracks a key read while absent)."""
    removal, arrival = [], []
    with registrar.ua() as ua, Prober(cached.port) as p:
        _, rs = p.round(aor("flip"))
        expect_all(rs, 404, None, "before any registration")
        for i in range(200):
            c = f"sip:flip@192.0.2.7:{7000 + i}"
            _, rs = p.round(aor("flip"))
            expect_all(rs, 404, None, f"cycle {i}: cached 404")
            t0 = register(ua, "flip", [f"<{c}>"])
            arrival.append(probe_until(p, aor("flip"), t0, lambda r, c=c: uris(r) == [c],
                                       lambda r: r.status == 404, f"cycle {i}: registration"))
            _, rs = p.round(aor("flip"))
            expect_all(rs, 302, [c], f"cycle {i}: cached 302")
            t0 = register(ua, "flip", [f"<{c}>;expires=0"])
            removal.append(probe_until(p, aor("flip"), t0, lambda r: r.status == 404,
                                       lambda r, c=c: uris(r) == [c], f"cycle {i}: removal"))
    print(f"# staleness of a removal: {percentiles(removal)}", flush=True)
    print(f"# staleness of a registration after a cached 404: {percentiles(arrival)}", flush=True)
    assert max(removal + arrival) < TTL_MS / 1000, "a change took longer than the TTL"


def test_flushall_flushes(redis, registrar, cached):
    """FLUSHALL: Redis sends a null invalidation; every worker flushes (counted), 404 follows."""
    with registrar.ua() as ua, Prober(cached.port) as p:
        register(ua, "gone", ["<sip:gone@192.0.2.3>"])
        probe_until(p, aor("gone"), time.monotonic(), lambda r: uris(r) == ["sip:gone@192.0.2.3"],
                    lambda r: r.status == 404, "registration")
        _, rs = p.round(aor("gone"))
        expect_all(rs, 302, ["sip:gone@192.0.2.3"], "cached")
        assert cached.counters()["entries"] >= 1, "sipr_cache_entries is 0 with a cached AOR"
        flushes = cached.counters()["flushes"]
        redis.client.flushall()
        wait_until(lambda: cached.counters()["flushes"] >= flushes + WORKERS, 5,
                   what="a flush on every worker")
        assert cached.counters()["entries"] == 0, "sipr_cache_entries after FLUSHALL"
        _, rs = p.round(aor("gone"))
        expect_all(rs, 404, None, "after FLUSHALL")


def test_killed_connections_flush_and_nothing_stale(redis, registrar, cached):
    """CLIENT KILL of the invalidation connections (found by name in CLIENT LIST): each worker
    flushes and caches nothing until tracking is confirmed again on a new connection; a change
    made meanwhile (its invalidation has nowhere to go) is answered at once. The same for the
    data connections. Afterwards invalidations work again."""
    names = {c.get("name") for c in client_list(redis)}
    for i in range(WORKERS):
        assert f"sipr-inval-{i}" in names and f"sipr-data-{i}" in names, (
            f"connections of worker {i} not named in CLIENT LIST: {sorted(n for n in names if n)}")
    with registrar.ua() as ua, Prober(cached.port) as p:
        contact = "sip:k@192.0.2.1"
        register(ua, "k", [f"<{contact}>"])
        probe_until(p, aor("k"), time.monotonic(), lambda r: uris(r) == [contact],
                    lambda r: r.status == 404, "registration")
        for n, prefix in enumerate(["sipr-inval-", "sipr-data-"]):
            _, rs = p.round(aor("k"))
            expect_all(rs, 302, [contact], f"{prefix}: cached before")
            before = cached.counters()
            on = cached.cache_on_count()
            assert kill_clients(redis, prefix) == WORKERS, f"{prefix}* connections killed"
            wait_until(lambda: cached.counters()["flushes"] >= before["flushes"] + WORKERS, 5,
                       what=f"a flush on every worker after killing {prefix}*")
            new = f"sip:k@192.0.2.{10 + n}"
            register(ua, "k", [f"<{new}>", f"<{contact}>;expires=0"])
            # (A killed data connection answers 503 until it is back: wait for that.)
            wait_until(lambda: cached.metrics() and metric_value(cached.metrics(), "sipr_redis_up") == 1,
                       5, what="the data connections back")
            _, rs = p.round(aor("k"))  # the very first answer after the change
            expect_all(rs, 302, [new], f"{prefix}: first answer after the change")
            contact = new
            cached.wait_cache_on(on + WORKERS)
            # Tracking is back on new connections: the AOR is cached again, and a change is seen
            # through an invalidation.
            _, rs = p.round(aor("k"))
            hits = cached.counters()["hits"]
            _, rs = p.round(aor("k"))
            expect_all(rs, 302, [contact], f"{prefix}: cached again")
            assert cached.counters()["hits"] >= hits + SOCKETS, (
                "no cache hits once tracking was back")
            new = f"sip:k@192.0.2.{20 + n}"
            t0 = register(ua, "k", [f"<{new}>", f"<{contact}>;expires=0"])
            s = probe_until(p, aor("k"), t0, lambda r, x=new: uris(r) == [x],
                            lambda r, o=contact: uris(r) == [o], f"{prefix}: change after")
            print(f"# after killing {prefix}*: change seen in {s * 1000:.2f} ms", flush=True)
            contact = new


def test_redis_restart_flushes():
    """Redis restarted (empty, same port): the workers flush, answer 503 while it is down (never a
    cached 302), then 404 until the AOR registers again with another contact, which is answered,
    never the contact from before the restart."""
    with RedisServer() as rs, Redirect(rs, CACHE_FLAGS, "sip-redirectd[restart]") as rd, \
            Prober(rd.port) as p:
        rd.wait_cache_on(WORKERS)
        seed(rs, "r", "sip:r@192.0.2.1", time_ms(rs.client) + 600_000)
        _, answers = p.round(aor("r"))
        _, answers = p.round(aor("r"))
        expect_all(answers, 302, ["sip:r@192.0.2.1"], "cached before the restart")
        flushes = rd.counters()["flushes"]
        on = rd.cache_on_count()
        rs.stop()
        wait_until(lambda: rd.counters()["flushes"] >= flushes + WORKERS, 5,
                   what="a flush on every worker")
        _, answers = p.round(aor("r"))
        expect_all(answers, 503, None, "while Redis is down")
        rs.start()
        rd.wait_cache_on(on + WORKERS)
        _, answers = p.round(aor("r"))
        expect_all(answers, 404, None, "after the restart (no persistence)")
        seed(rs, "r", "sip:r@192.0.2.2", time_ms(rs.client) + 600_000)
        t0 = time.monotonic()
        probe_until(p, aor("r"), t0, lambda r: uris(r) == ["sip:r@192.0.2.2"],
                    lambda r: r.status == 404, "registration after the restart")


def test_expiry_honoured_from_cache(redis, cached):
    """A cached binding whose own expiry passes is not served any more, although the cache TTL
    (10 s) is far away and Redis still holds it (no key expiry): the other binding stays, from the
    cache; an AOR whose only binding expired is 404."""
    now = time_ms(redis.client)
    seed(redis, "exp", "sip:exp@192.0.2.1", now + int(scaled(1500)))
    seed(redis, "exp", "sip:exp@192.0.2.2", now + 600_000)
    seed(redis, "lone", "sip:lone@192.0.2.1", now + int(scaled(1500)))
    with Prober(cached.port) as p:
        # Each worker caches on its own, and --spread random may send a whole round to one of
        # them (1 in 32 for 6 sockets over 2 workers): three rounds warm both but for 1 in 2^17.
        for _ in range(3):
            _, rs = p.round(aor("exp"))
            _, rs = p.round(aor("lone"))
        hits = cached.counters()["hits"]
        _, rs = p.round(aor("exp"))
        assert all(sorted(uris(r)) == ["sip:exp@192.0.2.1", "sip:exp@192.0.2.2"] for r in rs), (
            f"before expiry: {[uris(r) for r in rs]}")
        _, rs = p.round(aor("lone"))
        expect_all(rs, 302, ["sip:lone@192.0.2.1"], "lone before expiry")
        assert cached.counters()["hits"] >= hits + 2 * SOCKETS, "the AORs were not cached"
        while time_ms(redis.client) < now + int(scaled(1500)) + 5:
            time.sleep(0.05)
        misses = cached.counters()["misses"]
        for _ in range(3):
            _, rs = p.round(aor("exp"))
            expect_all(rs, 302, ["sip:exp@192.0.2.2"], "after the first binding expired")
            _, rs = p.round(aor("lone"))
            expect_all(rs, 404, None, "after the only binding expired")
        assert cached.counters()["misses"] == misses, "cache misses after expiry (want hits only)"


# Redis's tracking table (issue 14): one entry per distinct key a tracked connection read, until
# the key changes. The bound sip-redirectd keeps on it in these cases:
TRACKING_MAX = 1000
BOUND_FLAGS = [*CACHE_FLAGS, "--cache-tracking-max-keys", str(TRACKING_MAX)]
# An operator's redis.conf that lets the table grow without limit.
UNBOUNDED = ["--tracking-table-max-keys", "0"]


def tracking_max_keys(redis: RedisServer) -> int:
    return int(redis.client.config_get("tracking-table-max-keys")["tracking-table-max-keys"])


def tracking_keys(redis: RedisServer) -> int:
    stats = redis.client.info("stats")
    assert "tracking_total_keys" in stats, "no tracking_total_keys in INFO stats"
    return int(stats["tracking_total_keys"])


def flood(port: int, count: int, prefix: str) -> int:
    """INVITEs for `count` distinct unknown AORs, 100 at a time from one socket (an attacker's
    random AORs); returns how many were answered (each 404)."""
    answered = 0
    with SipUdp(port) as ua:
        for start in range(0, count, 100):
            reqs = [ua.build("INVITE", aor(f"{prefix}{n}"))
                    for n in range(start, min(count, start + 100))]
            for q in reqs:
                ua.send_raw(q.data)
            deadline = time.monotonic() + scaled(1)
            got = 0
            while got < len(reqs) and time.monotonic() < deadline:
                r = ua.recv(deadline - time.monotonic())
                if r is not None and r.status >= 200:
                    assert r.status == 404, f"flood: want 404, got {r.status}"
                    got += 1
            answered += got
    return answered


def test_tracking_table_bounded_under_random_aors():
    """5 x TRACKING_MAX INVITEs for distinct unknown AORs (each read adds a tracking entry) against
    a Redis configured unbounded (tracking-table-max-keys 0): sip-redirectd set the bound at start,
    and Redis's table stays within it. A cached 404 whose tracking entry Redis dropped to stay in
    bounds was invalidated with it: the AOR registering afterwards is answered within the TTL."""
    with RedisServer(extra_args=UNBOUNDED) as rs, \
            Redirect(rs, BOUND_FLAGS, "sip-redirectd[bound]") as rd, Prober(rd.port) as p:
        rd.wait_cache_on(WORKERS)
        assert tracking_max_keys(rs) == TRACKING_MAX, "tracking-table-max-keys after start"
        _, answers = p.round(aor("victim"))
        _, answers = p.round(aor("victim"))
        expect_all(answers, 404, None, "victim before the flood (cached)")
        answered = flood(rd.port, 5 * TRACKING_MAX, unique("rnd"))
        assert answered >= 4 * TRACKING_MAX, f"only {answered} of {5 * TRACKING_MAX} answered"
        keys = tracking_keys(rs)
        print(f"# tracking_total_keys after {answered} distinct look-ups: {keys} "
              f"(bound {TRACKING_MAX})", flush=True)
        # Redis trims before each command, so the last read may add one over the bound.
        assert keys <= TRACKING_MAX + 1, (
            f"tracking_total_keys {keys} above the bound {TRACKING_MAX}")
        seed(rs, "victim", "sip:victim@192.0.2.9", time_ms(rs.client) + 600_000)
        probe_until(p, aor("victim"), time.monotonic(),
                    lambda r: uris(r) == ["sip:victim@192.0.2.9"], lambda r: r.status == 404,
                    "registration after the flood")


def test_tracking_bound_set_again_after_redis_restart():
    """CONFIG SET lives in Redis's memory only: a restarted Redis (like a promoted replica) is back
    to its configured 0. Each worker checks again before it turns tracking back on."""
    with RedisServer(extra_args=UNBOUNDED) as rs, \
            Redirect(rs, BOUND_FLAGS, "sip-redirectd[rebound]") as rd:
        rd.wait_cache_on(WORKERS)
        assert tracking_max_keys(rs) == TRACKING_MAX, "tracking-table-max-keys after start"
        on = rd.cache_on_count()
        rs.stop()
        rs.start()
        rd.wait_cache_on(on + WORKERS)
        assert tracking_max_keys(rs) == TRACKING_MAX, "tracking-table-max-keys after the restart"


def test_tracking_bound_on_the_read_replica():
    """With --redis-read the tracked reads, and so the tracking table, are on the replica: its
    bound is set (the primary's setting is left alone) and holds under a flood; a write on the
    primary still reaches a cached 404 through the replica's invalidation."""
    primary = primary_server()
    replica = replica_server(primary)
    primary.extra_args += UNBOUNDED
    replica.extra_args += UNBOUNDED
    with primary, replica:
        wait_replica_synced(primary, replica)
        flags = [*BOUND_FLAGS, "--redis-read", replica.url]
        with Redirect(primary, flags, "sip-redirectd[read]") as rd, Prober(rd.port) as p:
            rd.wait_cache_on(WORKERS)
            assert tracking_max_keys(replica) == TRACKING_MAX, (
                "the replica's tracking-table-max-keys")
            assert tracking_max_keys(primary) == 0, "the primary's tracking-table-max-keys"
            _, answers = p.round(aor("victim"))
            expect_all(answers, 404, None, "victim before the flood")
            answered = flood(rd.port, 3 * TRACKING_MAX, unique("rnd"))
            assert answered >= 2 * TRACKING_MAX, f"only {answered} of {3 * TRACKING_MAX} answered"
            keys = tracking_keys(replica)
            assert keys <= TRACKING_MAX + 1, f"the replica tracks {keys} keys, above {TRACKING_MAX}"
            seed(primary, "victim", "sip:victim@192.0.2.9", time_ms(primary.client) + 600_000)
            probe_until(p, aor("victim"), time.monotonic(),
                        lambda r: uris(r) == ["sip:victim@192.0.2.9"], lambda r: r.status == 404,
                        "registration after the flood")


def test_tracking_bound_refused_exits_with_one_line():
    """A Redis user allowed CONFIG GET but not CONFIG SET: with an unbounded table sip-redirectd
    refuses to start with the near-cache (one line naming the setting); with a table already
    within the bound it starts, leaves the setting alone and turns the cache on."""
    acl = ["--user", "default", "on", "nopass", "~*", "&*", "+@all", "-config", "+config|get"]
    with RedisServer(extra_args=[*UNBOUNDED, *acl]) as rs:
        args = ["--listen", f"{LOCALHOST}:{free_udp_port()}", "--redis", rs.url,
                "--metrics", f"{LOCALHOST}:{free_tcp_port()}", "--workers", "1", *BOUND_FLAGS]
        r = run_program("sip-redirectd", args, env=ENV)
        assert r.returncode != 0, "started with an unbounded tracking table it could not bound"
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "tracking-table-max-keys" in lines[0], (
            f"want one line naming tracking-table-max-keys, got {r.stderr!r}")
        print(f"# {lines[0]}", flush=True)
        # Without the near-cache nothing is tracked: it starts.
        with Redirect(rs, ["--domain", DOMAIN, "--cache-ttl", "0"], "sip-redirectd[no cache]"):
            pass
    with RedisServer(extra_args=["--tracking-table-max-keys", "500", *acl]) as rs, \
            Redirect(rs, BOUND_FLAGS, "sip-redirectd[within]") as rd:
        rd.wait_cache_on(WORKERS)
        assert tracking_max_keys(rs) == 500, "tracking-table-max-keys (within the bound)"


def test_tracking_bound_refused_later_keeps_the_cache_off():
    """The bound is checked again on every reconnect: a node found unbounded then (an operator's
    CONFIG SET, a promoted replica) that refuses CONFIG SET leaves the worker without its cache
    (answers still right, from Redis; no hits) until the node is bounded again."""
    acl = ["--user", "default", "on", "nopass", "~*", "&*", "+@all", "-config", "+config|get",
           "--user", "admin", "on", ">admin-pw", "~*", "&*", "+@all"]
    with RedisServer(extra_args=["--tracking-table-max-keys", "500", *acl]) as rs, \
            connect(rs.port, ("admin", "admin-pw")) as admin, \
            Redirect(rs, BOUND_FLAGS, "sip-redirectd[refused later]") as rd, Prober(rd.port) as p:
        rd.wait_cache_on(WORKERS)
        on = rd.cache_on_count()
        admin.config_set("tracking-table-max-keys", "0")
        assert kill_clients(rs, "sipr-data-") == WORKERS, "data connections killed"
        wait_until(lambda: rd.stderr_text().count("refused CONFIG SET") >= WORKERS, 10,
                   what="every worker to report the refused CONFIG SET")
        assert rd.cache_on_count() == on, "'near-cache on' lines while the node is unbounded"
        seed(rs, "off", "sip:off@192.0.2.1", time_ms(rs.client) + 600_000)
        hits = rd.counters()["hits"]
        for _ in range(3):
            _, answers = p.round(aor("off"))
            expect_all(answers, 302, ["sip:off@192.0.2.1"], "with the cache off")
        assert rd.counters()["hits"] == hits, "cache hits while the node is unbounded"
        left = admin.config_get("tracking-table-max-keys")["tracking-table-max-keys"]
        assert int(left) == 0, "tracking-table-max-keys (left as the operator set it)"
        admin.config_set("tracking-table-max-keys", "500")
        wait_until(lambda: rd.cache_on_count() >= on + WORKERS, scaled(15),
                   what="the cache back on once the node is bounded (retried every 10 s)")


def test_bad_cache_flags_exit_nonzero():
    for args, mention in ([["--cache-ttl", "-1"], "--cache-ttl"],
                          [["--cache-max-entries", "0"], "--cache-max-entries"],
                          [["--cache-negative-ttl", "x"], "--cache-negative-ttl"],
                          [["--cache-tracking-max-keys", "0"], "--cache-tracking-max-keys"]):
        r = run_program("sip-redirectd", args, env=ENV)
        assert r.returncode != 0, f"{args}: exit status 0"
        assert mention in r.stderr and len(r.stderr.strip().splitlines()) == 1, (
            f"{args}: want one line naming {mention}, got {r.stderr!r}")
