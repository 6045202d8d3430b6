"""Registration events and counts (issue 20 parts 3-4; src/location/README.md "Events", "Counts").

register.lua appends one event per change to the stream sipr:events and keeps sipr:stats; a real
Redis client (python3-redis) reads them as a consumer would. Each case asserts the events a change
produced (exactly one, its fields), the gauges sip-registrard exports from the counts, and
`sip-locctl watch`.

    /usr/bin/python3 -m pytest tests/integration/test_events.py [-k name-substring]
"""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest

from sipr_test.base import binary, scaled, wait_until
from sipr_test.bindings import location_key
from sipr_test.metrics import metric_value
from sipr_test.processes import ServiceDaemon, run_program
from sipr_test.redis_servers import RedisServer
from sipr_test.sip import SipUdp, transact_many, unique

DOMAIN = "example.com"
STREAM = "sipr:events"


def aor(user: str = "alice") -> str:
    return f"sip:{user}@{DOMAIN}"


class Registrar(ServiceDaemon):
    def __init__(self, redis: RedisServer, flags: list[str], name: str):
        super().__init__("sip-registrard", redis.url, flags, name=name)


FLAGS = ["--domain", DOMAIN, "--min-expires", "1", "--max-expires", "3600"]


@pytest.fixture(scope="module")
def registrar(redis_server):
    flags = FLAGS + ["--max-contacts", "2", "--max-contacts-policy", "evict"]
    with Registrar(redis_server, flags, name="sip-registrard[evict]") as d:
        yield d


@pytest.fixture(scope="module")
def registrar_pair(redis_server):
    flags = FLAGS + ["--max-contacts", "100", "--redis-timeout", str(int(scaled(5000)))]
    with Registrar(redis_server, flags, name="sip-registrard[a]") as a, \
            Registrar(redis_server, flags, name="sip-registrard[b]") as b:
        yield a, b


class Consumer:
    """Reads sipr:events with XREAD from the last ID it saw, as a consumer service would."""

    def __init__(self, redis: RedisServer):
        self.client = redis.client
        self.last = "0-0"

    def take(self, wait: float = 0.3) -> list[dict]:
        """Every event after the last one seen, waiting up to `wait` s for the first."""
        out = []
        block = int(scaled(wait) * 1000)
        while True:
            got = self.client.xread({STREAM: self.last}, count=10000, block=block)
            if not got:
                return out
            for _, entries in got:
                for eid, fields in entries:
                    self.last = eid
                    ev = dict(fields)
                    ev["id"] = eid
                    ev["changes"] = json.loads(ev["changes"])
                    out.append(ev)
            block = None  # then only what is already there

    def one(self, what: str) -> dict:
        evs = self.take()
        assert len(evs) == 1, f"{what}: {len(evs)} events, want exactly 1: {evs}"
        return evs[0]


def kinds(ev: dict) -> list[tuple[str, str]]:
    return sorted((c["kind"], c["contact"]) for c in ev["changes"])


def register(ua: SipUdp, contacts, user: str = "alice", **kw):
    r = ua.send(ua.register(aor(user), contacts, **kw))
    assert r.status == 200, f"REGISTER: {r.status} {r.reason}"
    return r


def counts(redis: RedisServer) -> tuple[int, int]:
    s = redis.client.hgetall("sipr:stats")
    return int(s.get("aors", 0)), int(s.get("bindings", 0))


def truth(redis: RedisServer, users: list[str]) -> tuple[int, int]:
    """(AORs with a binding, bindings) as the hashes hold them."""
    lens = [redis.client.hlen(location_key(aor(u))) for u in users]
    return sum(1 for n in lens if n), sum(lens)


def gauges(reg: Registrar) -> tuple[float | None, float | None]:
    """(sipr_registered_aors, sipr_registered_bindings) on the registrar's /metrics."""
    text = reg.metrics()
    return metric_value(text, "sipr_registered_aors"), metric_value(text, "sipr_registered_bindings")


def test_each_change_is_one_event(redis, registrar):
    """A REGISTER, a refresh, a removal, an eviction, Contact: * and sip-locctl unbind each append
    exactly one event with the right fields; a retransmission appends none."""
    c = Consumer(redis)
    ua = registrar.ua()
    a, b, x = "sip:a@192.0.2.1:5060", "sip:b@192.0.2.2:5060", "sip:x@192.0.2.3:5060"

    req = ua.register(aor(), [f"<{a}>"], expires=600, call_id="cid-a@h", cseq=1)
    assert ua.send(req).status == 200
    ev = c.one("REGISTER")
    assert ev["v"] == "1" and ev["aor"] == aor() and ev["src"] == "registrar", ev
    assert ev["all"] == "0" and ev["bindings"] == "1", ev
    assert kinds(ev) == [("added", a)], ev
    now_ms = int(redis.client.time()[0]) * 1000
    assert abs(int(ev["at"]) - now_ms) < scaled(5000), "at is Redis TIME"
    assert ev["changes"][0]["expires"] == int(ev["at"]) + 600_000, ev
    assert ev["changes"][0]["key"] == a

    ua.send_raw(req.data)  # a retransmission: the same Call-ID and CSeq change nothing
    register(ua, [f"<{a}>"], expires=900, call_id="cid-a@h", cseq=2)
    ev = c.one("refresh")
    assert kinds(ev) == [("refreshed", a)] and ev["bindings"] == "1", ev
    assert ev["changes"][0]["expires"] == int(ev["at"]) + 900_000, ev

    register(ua, [f"<{b}>"], expires=600)
    assert kinds(c.one("second contact")) == [("added", b)]
    register(ua, [f"<{b}>"], expires=0)
    ev = c.one("removal")
    assert kinds(ev) == [("removed", b)] and ev["bindings"] == "1", ev

    register(ua, [f"<{b}>"], expires=600)
    c.take()
    register(ua, [f"<{x}>"], expires=600)  # a third contact: --max-contacts 2 evicts the oldest
    ev = c.one("eviction")
    assert kinds(ev) == [("added", x), ("evicted", a)] and ev["bindings"] == "2", ev

    register(ua, ["*"], expires=0)
    ev = c.one("Contact: *")
    assert ev["all"] == "1" and ev["bindings"] == "0", ev
    assert kinds(ev) == [("removed", b), ("removed", x)], ev

    register(ua, [f"<{a}>"], expires=600)
    c.take()
    run = run_program("sip-locctl", ["--redis", redis.url, "unbind", aor(), a])
    assert run.returncode == 0, run.stderr
    ev = c.one("sip-locctl unbind")
    assert ev["src"] == "locctl" and kinds(ev) == [("removed", a)], ev
    assert ev["bindings"] == "0" and ev["all"] == "0", ev
    ua.close()
    assert counts(redis) == (0, 0)


def test_expiry_becomes_an_event_and_gauges_follow(redis, registrar):
    """A binding that expires in silence is pruned by the registrar's sweep within about a second:
    one `expired` event, and the gauges on /metrics drop with it."""
    c = Consumer(redis)
    ua = registrar.ua()
    register(ua, ["<sip:a@192.0.2.1>"], expires=3600)
    register(ua, ["<sip:short@192.0.2.9>"], user="bob", expires=1)
    c.take()
    wait_until(lambda: gauges(registrar) == (2, 2), scaled(5), what="gauges 2 AORs, 2 bindings")
    t0 = time.monotonic()
    evs = []
    wait_until(lambda: evs.extend(c.take(0.2)) or evs, scaled(6), what="the expiry event")
    took = time.monotonic() - t0
    assert len(evs) == 1, evs
    ev = evs[0]
    assert ev["aor"] == aor("bob") and ev["src"] == "sweep" and ev["bindings"] == "0", ev
    # The key expired with its only binding: reported as one entry without a key and with its
    # count (or, when the sweep came in the very millisecond, with its key).
    assert [(ch["kind"], ch.get("count", 1)) for ch in ev["changes"]] == [("expired", 1)], ev
    assert ev["changes"][0]["key"] in ("", "sip:short@192.0.2.9"), ev
    assert took < scaled(2.5), f"expiry event after {took:.1f}s (binding of 1 s, sweep every 0.2 s)"
    wait_until(lambda: gauges(registrar) == (1, 1), scaled(5), what="gauges 1 AOR, 1 binding")
    assert redis.client.zcard("sipr:expiry") == 1
    ua.close()


def test_concurrent_registers_one_event_per_change(redis, registrar_pair):
    """2 x 1,000 concurrent REGISTERs on two registrars (1,500 new bindings over 100 AORs, 500
    refreshes racing them): exactly one event per REGISTER, each with its one change, the kinds
    summing to the bindings stored; then a mixed workload (removals, Contact: *, sip-locctl bind
    and unbind, an expiry) and the gauges equal the hashes."""
    ra, rb = registrar_pair
    users = [f"u{i}" for i in range(100)]
    contact = [f"sip:c{i}@10.{i // 250}.{i % 250}.1:5060" for i in range(1500)]
    ua = SipUdp(ra.port)  # only to build the requests
    reqs_a = [ua.register(aor(users[i % 100]), [f"<{contact[i]}>"], expires=3600,
                          call_id=unique("ca")) for i in range(1000)]
    reqs_b = [ua.register(aor(users[i % 100]), [f"<{contact[i]}>"], expires=3600,
                          call_id=unique("cb")) for i in list(range(500)) + list(range(1000, 1500))]
    ua.close()
    results = {}

    def drive(reg, reqs, tag):
        results[tag] = transact_many(reg.port, reqs, window=8, timeout=60)

    threads = [threading.Thread(target=drive, args=(ra, reqs_a, "a")),
               threading.Thread(target=drive, args=(rb, reqs_b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(90))
    for tag in ("a", "b"):
        bad = [r.status for r in results[tag] if r.status != 200]
        assert not bad, f"registrar {tag}: {len(bad)} REGISTERs without 200"
    c = Consumer(redis)
    evs = c.take()
    assert len(evs) == 2000, f"{len(evs)} events for 2,000 REGISTERs, each one change"
    assert all(len(ev["changes"]) == 1 for ev in evs)
    k = [ev["changes"][0]["kind"] for ev in evs]
    assert k.count("added") == 1500 and k.count("refreshed") == 500, (
        k.count("added"), k.count("refreshed"))
    assert truth(redis, users) == (100, 1500)
    assert counts(redis) == (100, 1500)

    # Mixed: removals, Contact: *, an operator's bind and unbind-all, an expiry.
    ua = ra.ua()
    register(ua, [f"<{contact[0]}>"], user=users[0], expires=0)
    register(ua, ["*"], user=users[1], expires=0)
    register(ua, ["<sip:short@192.0.2.9>"], user=users[2], expires=1)
    ua.close()
    for args in (["bind", aor("static"), "sip:static@192.0.2.50"], ["unbind", aor(users[3])]):
        r = run_program("sip-locctl", ["--redis", redis.url, *args])
        assert r.returncode == 0, r.stderr
    users.append("static")
    # AORs: less users[1] and users[3], plus static; bindings: less contact[0], users[1]'s 15 and
    # users[3]'s 15, plus static's (the short one expires).
    want = (99, 1500 - 1 - 15 - 15 + 1)
    # Each registrar reads the counts every second.
    wait_until(lambda: truth(redis, users) == want and gauges(ra) == want == gauges(rb),
               scaled(8), what=f"both registrars' gauges {want} equal to the hashes after the expiry")
    assert counts(redis) == want


def test_locctl_watch_prints_events(redis, registrar):
    """sip-locctl watch --json prints an event as one JSON line, only of its AOR, and ends with 0 on
    SIGINT; an unreachable Redis is one line and a non-zero exit."""
    p = subprocess.Popen([str(binary("sip-locctl")), "--redis", redis.url, "watch", aor("carol"),
                          "--json", "--since", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ua = registrar.ua()
        register(ua, ["<sip:dave@192.0.2.4>"], user="dave", expires=600)
        register(ua, ["<sip:carol@192.0.2.3>"], user="carol", expires=600)
        ua.close()
        line = []
        reader = threading.Thread(target=lambda: line.append(p.stdout.readline()), daemon=True)
        reader.start()
        reader.join(scaled(5))
        assert line and line[0], "no event printed within 5 s"
        ev = json.loads(line[0])
        assert ev["v"] == 1 and ev["aor"] == aor("carol") and ev["src"] == "registrar", ev
        assert ev["bindings"] == 1 and ev["all"] is False, ev
        assert ev["changes"] == [{"kind": "added", "key": "sip:carol@192.0.2.3",
                                  "contact": "sip:carol@192.0.2.3",
                                  "expires": ev["at"] + 600_000}], ev
        assert ev["id"] == redis.client.xrevrange(STREAM, count=1)[0][0]
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=scaled(3)) == 0, p.stderr.read()
        assert p.stdout.read() == "", "only carol's event"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # The text form: one line per event, every AOR.
    p = subprocess.Popen([str(binary("sip-locctl")), "--redis", redis.url, "watch", "--since", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(scaled(0.5))
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=scaled(3))
        assert p.returncode == 0, err
        lines = out.splitlines()
        assert len(lines) == 2, lines
        assert "sip:dave@example.com registrar: bindings=1 added sip:dave@192.0.2.4" in lines[0]
        assert "sip:carol@example.com registrar: bindings=1 added sip:carol@192.0.2.3" in lines[1]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # Resuming after an ID older than what the stream still holds: told to rescan.
    first = redis.client.xrange(STREAM, count=1)[0][0]
    redis.client.xtrim(STREAM, maxlen=0)
    p = subprocess.Popen([str(binary("sip-locctl")), "--redis", redis.url, "watch", "--since",
                          first], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(scaled(0.3))
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=scaled(3))
        assert p.returncode == 0 and out == "", (out, err)
        assert "may have been trimmed from the stream: rescan" in err, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    r = run_program("sip-locctl", ["--redis", "redis://127.0.0.1:1", "watch"])
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "cannot reach Redis" in r.stderr
