"""sip-registrard and sip-redirectd against three Redis topologies (issue 7, part 4). One case each:

1. primary_and_replica: a primary and a replica (--replicaof). The registrar writes to the
   primary; sip-redirectd has --redis on the primary and --redis-read on the replica. 50 users are
   registered and replicated, then every one is INVITEd: 302 with its Contact, and the look-ups
   went to the replica (its INFO commandstats cmdstat_hgetall grew by at least the INVITE count;
   the primary's did not grow at all: register.lua's in-script HGETALL counts there, but no
   REGISTER is sent meanwhile). The replica is stopped by its PID: INVITEs still get their 302,
   now read from the primary (its HGETALL count grows), and sipr_redis_up stays 1. The replica is
   started again: once synced and reconnected, the reads go back to it.
2. sentinel_failover_under_load: a master, a replica and three Sentinels (redis-server <conf>
   --sentinel); both daemons (and sip-locctl) use --redis sentinel://S1,S2,S3/mymaster. Users are
   registered, then INVITEs flow at a steady rate while SENTINEL FAILOVER moves the master to the
   replica. The failover window runs from the command until every Sentinel names the new master,
   the daemons have left the old one (no client of theirs in its CLIENT LIST; it still says
   role:master until a Sentinel demotes it some 10 s later) and both report sipr_redis_up 1.
   Asserted: every INVITE got 302 (with its Contact) or 503, 503s only inside the window (plus
   GRACE), 302s only after it, also across the old master's demotion; every binding is on the new
   master; a REGISTER answered between the window and the demotion is still there after it (not
   written to the old master and lost); a REGISTER after the failover gets 200, lands on the new
   master and is redirected. Printed: the window and its steps, the 503s, the INVITEs in all.
3. cluster_*: a 3-primary Redis Cluster; both daemons (and sip-locctl) use --redis
   cluster://C1,C2,C3, sip-redirectd with its near-cache on (the default): one invalidation
   connection per worker on every primary, cache hits, and a user who moves is seen at once.
   300 users are registered (their keys on all three nodes); while INVITEs and re-REGISTERs flow,
   redis-cli --cluster reshard moves 2000 slots holding some of them from C1 to C2. Asserted: no
   binding lost (each key, with its Contact, on the node that owns its slot now), INVITEs kept
   getting 302 (a few 503s allowed, counted and printed), sipr_redis_redirects_total{kind="moved"}
   grew on sip-redirectd, and after the reshard every user gets 302.

Every process (redis-server, Sentinels, cluster nodes, daemons) runs on 127.0.0.1 on free ports
and is stopped by its PID, also on failure; every wait is bounded. Lines starting "# " are the
measurements.

    /usr/bin/python3 -m pytest -s tests/cluster/test_redis_topologies.py [-k name-substring]
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytest
import redis

from sipr_test.base import LOCALHOST, binary, free_tcp_port, free_udp_port, scaled, wait_until
from sipr_test.bindings import location_key, unpack_binding
from sipr_test.metrics import metric_value
from sipr_test.processes import ServiceDaemon, run_program
from sipr_test.redis_servers import (
    RedisSentinel, RedisServer, cluster_node, cluster_slot_owners, cluster_url, connect,
    create_cluster, primary_server, redis_cli, redis_info, replica_server, sentinel_url,
    wait_replica_synced, wait_sentinels_ready,
)
from sipr_test.sip import SipParseError, SipUdp, T1, T2, parse_response, transact_many

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

DOMAIN = "example.com"
# One To-tag key for all instances; no SIPR_REDIS* of the caller's.
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("SIPR_REDIS")},
       "SIPR_SECRET": "topologies-test-secret"}
RATE = 150           # INVITEs per second while a topology changes
GRACE = 0.5          # s after the window in which a 503 is still excused (metrics lag the kill)
MAX_CLUSTER_503 = 0.01  # share of the INVITEs that may get 503 while slots move


def log(msg: str) -> None:
    print(f"# {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# Daemons and users

class Registrar(ServiceDaemon):
    def __init__(self, redis_url: str, flags: Sequence[str] = ()):
        super().__init__("sip-registrard", redis_url, ["--domain", DOMAIN, *flags],
                         name="sip-registrard", workers=1, env=ENV)


class Redirect(ServiceDaemon):
    def __init__(self, redis_url: str, flags: Sequence[str] = ()):
        super().__init__("sip-redirectd", redis_url, ["--domain", DOMAIN, *flags],
                         name="sip-redirectd", workers=2, env=ENV)


@dataclass(frozen=True)
class User:
    aor: str
    contact: str


def make_users(n: int, prefix: str) -> list[User]:
    return [User(f"sip:{prefix}{i}@{DOMAIN}", f"sip:{prefix}{i}@192.0.2.{1 + i % 250}:{5060 + i}")
            for i in range(n)]


def register_all(registrar: ServiceDaemon, users: Sequence[User]) -> None:
    """One REGISTER per user (its one Contact, 3600 s); every one must get 200."""
    with SipUdp(registrar.port) as ua:
        reqs = [ua.register(u.aor, [f"<{u.contact}>"], expires=3600) for u in users]
    res = transact_many(registrar.port, reqs, window=32, timeout=30)
    bad = [(u.aor, r.status) for u, r in zip(users, res) if r.status != 200]
    assert not bad, f"{len(bad)} of {len(users)} REGISTERs did not get 200: {bad[:5]}"


def register_one(registrar: ServiceDaemon, user: User) -> int:
    with registrar.ua() as ua:
        return ua.send(ua.register(user.aor, [f"<{user.contact}>"], expires=3600)).status


def invite_all(redirect: ServiceDaemon, users: Sequence[User]) -> list[tuple[User, int, bool]]:
    """One INVITE per user: (user, final status, whether it was a 302 listing exactly its
    Contact)."""
    with SipUdp(redirect.port) as ua:
        reqs = [ua.build("INVITE", u.aor) for u in users]
    res = transact_many(redirect.port, reqs, window=32, timeout=30, keep_response=True)
    return [(u, r.status or 0, r.status == 302 and contacts_of(r.response) == [u.contact])
            for u, r in zip(users, res)]


def check_all_redirected(redirect: ServiceDaemon, users: Sequence[User], what: str) -> None:
    bad = [(u.aor, s) for u, s, ok in invite_all(redirect, users) if not ok]
    assert not bad, (
        f"{what}: {len(bad)} of {len(users)} INVITEs did not get a 302 with the "
        f"user's Contact (AOR, status): {bad[:5]}")


def contacts_of(data: bytes) -> list[str]:
    try:
        return [c.uri for c in parse_response(data).contacts]
    except (SipParseError, ValueError):
        return []


def stored_contact(client: redis.Redis, user: User) -> str | None:
    """The Contact of the user's one binding as stored on the node behind `client`, or None."""
    h = client.hgetall(location_key(user.aor))
    contacts = [unpack_binding(v).contact for v in h.values()]
    return contacts[0] if len(contacts) == 1 else None


def hgetall_calls(server: RedisServer) -> int:
    """INFO commandstats: how many HGETALLs the server has run (scripts' included)."""
    stats = redis_info(server.client, "commandstats").get("cmdstat_hgetall", {})
    return int(stats.get("calls", 0))


def redis_up(d: ServiceDaemon) -> bool:
    try:
        return d.metric("sipr_redis_up") == 1
    except (OSError, AssertionError):
        return False


def locctl_show(redis_url: str, user: User) -> None:
    """sip-locctl --redis URL show AOR lists the user's Contact."""
    r = run_program("sip-locctl", ["--redis", redis_url, "show", user.aor], timeout=10, env=ENV)
    assert r.returncode == 0 and user.contact in r.stdout, (
        f"sip-locctl --redis {redis_url} show {user.aor}: exit {r.returncode}, want its "
        f"contact {user.contact}:\n{r.stdout}{r.stderr}")


# ------------------------------------------------------------------------------------------------
# Load: a steady stream of INVITEs (and re-REGISTERs) from a thread

@dataclass
class Outcome:
    method: str
    user: User
    sent: float            # monotonic time of the first send
    status: int = 0        # final status; 0: none within the give-up time
    ok: bool = False       # 302 listing exactly the user's Contact / 200 listing it


class Load:
    """INVITEs to sip-redirectd at `rate` per second, round-robin over `users`, from one socket
    in a thread; with `registrar`, every `register_every`-th request is a re-REGISTER of that
    user (same Contact) to sip-registrard instead. Each is a client transaction (retransmitted
    T1, 2*T1, ... capped at T2 until its final response, given up after `give_up` s; non-2xx
    final responses to INVITE are ACKed). stop() sends no more, waits for the outstanding ones
    (bounded) and returns every Outcome in sending order."""

    def __init__(self, redirect: ServiceDaemon, users: Sequence[User], rate: float = RATE,
                 registrar: ServiceDaemon | None = None, register_every: int = 0,
                 give_up: float = 8.0):
        self.redirect, self.registrar = redirect, registrar
        self.users, self.rate = list(users), rate
        self.register_every = register_every if registrar is not None else 0
        self.give_up = scaled(give_up)
        self.outcomes: list[Outcome] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
            return
        with contextlib.suppress(Exception):  # the test's own failure is the one to report
            self.stop()

    def stop(self) -> list[Outcome]:
        self._stopping.set()
        self._thread.join(timeout=self.give_up + 5)
        assert not self._thread.is_alive(), "the load thread did not end"
        if self._error is not None:
            raise self._error
        return self.outcomes

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - re-raised by stop()
            self._error = e

    def _loop(self) -> None:
        import select
        ua = SipUdp(self.redirect.port, rcvbuf=8 << 20)
        ua.sock.setblocking(False)
        # branch -> (request, outcome, destination, next send, interval)
        pending: dict[str, list] = {}
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        n = 0
        stop_by = None
        try:
            while True:
                now = time.monotonic()
                if self._stopping.is_set():
                    stop_by = stop_by or now + self.give_up
                    if not pending or now >= stop_by:
                        break
                elif now >= next_at:
                    user = self.users[n % len(self.users)]
                    n += 1
                    if self.register_every and n % self.register_every == 0:
                        req = ua.register(user.aor, [f"<{user.contact}>"], expires=3600)
                        dest = (LOCALHOST, self.registrar.port)
                    else:
                        req = ua.build("INVITE", user.aor)
                        dest = (LOCALHOST, self.redirect.port)
                    out = Outcome(req.method, user, now)
                    self.outcomes.append(out)
                    ua.sock.sendto(req.data, dest)
                    pending[req.branch] = [req, out, dest, now + T1, T1]
                    next_at += interval
                    if now - next_at > 1.0:  # fell behind: carry on from now, no burst
                        next_at = now
                for branch, p in list(pending.items()):
                    req, out, dest, when, iv = p
                    if now - out.sent > self.give_up:
                        del pending[branch]
                    elif when <= now:
                        ua.sock.sendto(req.data, dest)
                        iv = iv * 2 if req.method == "INVITE" else min(iv * 2, T2)
                        p[3], p[4] = now + iv, iv
                wake = min([p[3] for p in pending.values()] +
                           ([next_at] if not self._stopping.is_set() else [now + 0.05]))
                select.select([ua.sock], [], [], min(0.05, max(0.0, wake - time.monotonic())))
                while True:
                    try:
                        data, _ = ua.sock.recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    self._take(ua, pending, data)
        finally:
            ua.close()

    def _take(self, ua: SipUdp, pending: dict[str, list], data: bytes) -> None:
        try:
            r = parse_response(data)
        except (SipParseError, ValueError):
            return
        p = pending.get(r.top_via.get("branch") or "")
        if p is None or r.status < 200:
            return
        req, out, dest = p[0], p[1], p[2]
        del pending[req.branch]
        out.status = r.status
        uris = [c.uri for c in r.contacts]
        out.ok = (r.status == 302 and uris == [out.user.contact]) if req.method == "INVITE" \
            else (r.status == 200 and out.user.contact in uris)
        if req.method == "INVITE" and r.status >= 300:
            ua.sock.sendto(ua.ack_for(req, r).data, dest)


def tally(outcomes: Sequence[Outcome]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return dict(sorted(counts.items()))


def metric_or_zero(d: ServiceDaemon, name: str, **labels: str) -> float:
    v = metric_value(d.metrics(), name, labels)
    return 0.0 if v is None else v


# ------------------------------------------------------------------------------------------------
# 1. Primary + replica

def daemon_clients(server: RedisServer) -> int:
    """Normal clients connected to `server`, other than the harness's own connection and the
    Sentinels' (named sentinel-*): the daemons' connections."""
    c = server.client
    me = c.client_id()
    n = 0
    for f in c.client_list():
        if f.get("flags") == "N" and f.get("id") != str(me) and \
                not f.get("name", "").startswith("sentinel-"):
            n += 1
    return n


def test_primary_and_replica():
    # Without the near-cache (--cache-ttl 0): the HGETALL counts below say where each look-up went.
    users = make_users(50, "r")
    with primary_server() as primary, replica_server(primary) as replica:
        wait_replica_synced(primary, replica)
        with Registrar(primary.url) as registrar, \
                Redirect(primary.url, ["--redis-read", replica.url,
                                       "--cache-ttl", "0"]) as redirect:
            register_all(registrar, users)
            wait_replica_synced(primary, replica)
            assert len(replica.client.keys("sipr:loc:*")) == len(users), "keys on the replica"
            # Each worker's read connection must be up, or a look-up falls back to the primary
            # (as it should) and the count below would not say where reads go. An INVITE from a
            # new socket each time (SO_REUSEPORT spreads them over the workers) in case a worker
            # connects only when first asked.
            def readers_connected() -> bool:
                with redirect.ua() as ua:
                    ua.send(ua.build("INVITE", users[0].aor), timeout=2)
                return daemon_clients(replica) >= 2
            wait_until(readers_connected, 10, interval=0.05,
                       what="sip-redirectd's 2 workers to connect to the replica")

            p0, r0 = hgetall_calls(primary), hgetall_calls(replica)
            check_all_redirected(redirect, users, "INVITEs with the replica up")
            dp, dr = hgetall_calls(primary) - p0, hgetall_calls(replica) - r0
            log(f"replica up: {len(users)} INVITEs -> 302; HGETALLs on the replica +{dr}, "
                f"on the primary +{dp}")
            assert dr >= len(users), (
                f"the replica ran {dr} HGETALLs for {len(users)} INVITEs: the "
                f"look-ups did not go to --redis-read")
            assert dp == 0, "HGETALLs on the primary while the replica serves the reads"

            replica.stop()  # by its PID
            t_stop = time.monotonic()
            p1 = hgetall_calls(primary)
            first: list[int] = []

            def first_302() -> bool:
                with redirect.ua() as ua:
                    s = ua.send(ua.build("INVITE", users[0].aor), timeout=2).status
                first.append(s)
                return s == 302
            wait_until(first_302, 5, interval=0.1,
                       what="a 302 once the replica is gone (fallback to --redis)")
            log(f"replica stopped: first 302 after {(time.monotonic() - t_stop) * 1000:.0f} ms "
                f"(answers before it: {first[:-1] or 'none'})")
            check_all_redirected(redirect, users, "INVITEs with the replica stopped")
            dp = hgetall_calls(primary) - p1
            assert dp >= len(users), (
                f"the primary ran {dp} HGETALLs for {len(users) + 1} INVITEs "
                f"after the replica stopped: where did the reads go?")
            assert redis_up(redirect), (
                "sip-redirectd reports sipr_redis_up != 1 while the "
                "primary serves its reads")
            log(f"replica stopped: {len(users)} INVITEs -> 302 read from the primary "
                f"(+{dp} HGETALLs there)")

            # A replica that is up but has not synced (restarted, its primary unreachable) holds
            # no bindings: reading there would answer 404 for every registered user. The read
            # connection's handshake refuses it (ROLE: a replica whose link is not "connected"),
            # so the reads stay on the primary. Its replicaof points at a port nobody serves.
            unsynced = RedisServer(port=replica.port, extra_args=[
                "--replicaof", LOCALHOST, str(free_tcp_port())])
            with unsynced:  # starts it
                def both_tried() -> bool:  # ours, and one per worker
                    stats = redis_info(unsynced.client, "stats")
                    return int(stats.get("total_connections_received", 0)) >= 1 + 2
                wait_until(both_tried, 10, interval=0.05,
                           what="sip-redirectd's workers to try the unsynced replica")
                u0, p3 = hgetall_calls(unsynced), hgetall_calls(primary)
                check_all_redirected(redirect, users, "INVITEs with an unsynced replica up")
                du, dp = hgetall_calls(unsynced) - u0, hgetall_calls(primary) - p3
                assert du == 0 and dp >= len(users), (
                    f"unsynced replica: {len(users)} INVITEs made {du} HGETALLs on it and {dp} on "
                    f"the primary: the reads must stay on the primary")
                assert redis_up(redirect), "sipr_redis_up != 1 with the primary serving reads"
                log(f"unsynced replica up: {len(users)} INVITEs -> 302 from the primary "
                    f"(+{dp} HGETALLs there, +{du} on the unsynced replica)")
                unsynced.stop()

            # The replica comes back (same port, empty until it has synced): once it has its
            # copy and the workers have reconnected, the reads go there again. (No INVITE is sent
            # before it has synced: an unsynced replica answers HGETALL with nothing.)
            t_back = time.monotonic()
            replica.start()
            wait_replica_synced(primary, replica)
            # Connected is not enough: a connection made while the replica was still syncing is
            # refused by the ROLE check and retried after a back-off. Wait until look-ups from
            # several sockets (spread over both workers) all run on the replica.
            def reads_on_replica() -> bool:
                p, r = hgetall_calls(primary), hgetall_calls(replica)
                for u in users[:8]:
                    with redirect.ua() as ua:
                        ua.send(ua.build("INVITE", u.aor), timeout=2)
                return hgetall_calls(replica) - r >= 8 and hgetall_calls(primary) == p
            wait_until(reads_on_replica, 10, interval=0.05,
                       what="sip-redirectd's 2 workers to read from the restarted replica")
            t_ready = time.monotonic()
            p2, r2 = hgetall_calls(primary), hgetall_calls(replica)
            check_all_redirected(redirect, users, "INVITEs with the replica back")
            dp, dr = hgetall_calls(primary) - p2, hgetall_calls(replica) - r2
            assert dr >= len(users) and dp == 0, (
                f"replica back: {len(users)} INVITEs made {dr} HGETALLs on the replica and {dp} "
                f"on the primary: the reads did not return to --redis-read")
            log(f"replica restarted: reads back on it after {(t_ready - t_back) * 1000:.0f} ms "
                f"(+{dr} HGETALLs there, +{dp} on the primary)")

            # The replica loses its primary while our connections to it stay up (REPLICAOF a
            # port nobody serves): it keeps a copy that no longer changes, so a user registered
            # now would get 404 there for as long as the reads stayed. The read connections check
            # ROLE every second and leave it.
            replica.client.execute_command("REPLICAOF", LOCALHOST, str(free_tcp_port()))
            t_cut = time.monotonic()
            late = make_users(1, "late")
            register_all(registrar, late)

            def late_redirected() -> bool:
                return invite_all(redirect, late)[0][2]
            wait_until(late_redirected, scaled(5), interval=0.05,
                       what="a user registered after the replica lost its primary to be "
                            "redirected (the reads must leave the stale replica)")
            log(f"replica cut off from its primary: a user registered after that redirected "
                f"{(time.monotonic() - t_cut) * 1000:.0f} ms later (reads left the replica)")
            check_all_redirected(redirect, users, "INVITEs with the replica cut off")


# ------------------------------------------------------------------------------------------------
# 2. Sentinel trio with a forced failover

def role(server: RedisServer) -> str:
    try:
        return redis_info(server.client, "replication").get("role", "")
    except (OSError, redis.RedisError):
        return ""


def test_sentinel_failover_under_load():
    users = make_users(100, "s")
    with contextlib.ExitStack() as stack:
        old = stack.enter_context(primary_server())
        new = stack.enter_context(replica_server(old))
        wait_replica_synced(old, new)
        sentinels = [stack.enter_context(RedisSentinel(old.port)) for _ in range(3)]
        wait_sentinels_ready(sentinels, [new.port])
        url = sentinel_url(sentinels)
        registrar = stack.enter_context(Registrar(url))
        redirect = stack.enter_context(Redirect(url))
        # One with the near-cache: its invalidation connection must follow the primary too.
        cached = stack.enter_context(Redirect(url, ["--cache-ttl", "60000"]))

        register_all(registrar, users)
        wait_replica_synced(old, new)  # what a failover may lose is Redis's business, not ours
        locctl_show(url, users[0])
        check_all_redirected(cached, users, "INVITEs through the near-cache before the failover")

        early = User(f"sip:early@{DOMAIN}", "sip:early@192.0.2.250:5999")
        with Load(redirect, users) as load:
            time.sleep(1.0)
            t_fail = time.monotonic()
            reply = sentinels[0].client.execute_command("SENTINEL", "FAILOVER", "mymaster")
            assert reply == "OK", "SENTINEL FAILOVER mymaster"
            wait_until(lambda: all(s.master_addr() == (LOCALHOST, new.port) for s in sentinels),
                       15, interval=0.02, what=f"every Sentinel to name :{new.port} the master")
            t_switch = time.monotonic()
            # The old master still says role:master until a Sentinel turns it into a replica
            # (some 10 s later): the daemons must leave it on their own, asking the Sentinels.
            wait_until(lambda: daemon_clients(old) == 0, 5, interval=0.02,
                       what=f"the daemons to leave the old master :{old.port}")
            t_left = time.monotonic()
            assert role(old) == "master", ("role of the old master when the daemons had left it "
                                          "(they left only when it was demoted)")
            wait_until(lambda: redis_up(registrar) and redis_up(redirect), 15, interval=0.02,
                       what="sipr_redis_up 1 on both daemons after the failover")
            t_up = time.monotonic()
            # A REGISTER answered now must be on the new master: one written to the old master
            # would be lost when it resyncs as a replica.
            early_status = register_one(registrar, early)
            wait_until(lambda: role(old) == "slave", 30, interval=0.02,
                       what=f"the old master :{old.port} to be turned into a replica")
            t_demoted = time.monotonic()
            time.sleep(2.0)
            outcomes = load.stop()

        invites = [o for o in outcomes if o.method == "INVITE"]
        bad = [o for o in invites if not (o.ok or o.status == 503)]
        n503 = [o for o in invites if o.status == 503]
        after = [o for o in invites if o.sent > t_up + GRACE]
        span = (f"{(n503[-1].sent - n503[0].sent) * 1000:.0f} ms, from "
                f"{(n503[0].sent - t_fail) * 1000:.0f} ms after SENTINEL FAILOVER"
                if n503 else "none")
        log(f"failover: every Sentinel named the new master after "
            f"{(t_switch - t_fail) * 1000:.0f} ms; the daemons had left the old one after "
            f"{(t_left - t_fail) * 1000:.0f} ms and were up after {(t_up - t_fail) * 1000:.0f} ms "
            f"(the window); the old master was demoted after "
            f"{(t_demoted - t_fail) * 1000:.0f} ms")
        log(f"failover: {len(invites)} INVITEs at {RATE}/s, statuses {tally(invites)}; "
            f"{len(n503)} 503s spanning {span}")
        assert not bad, (
            f"{len(bad)} INVITEs got neither a 302 with the user's Contact nor 503 "
            f"(status: count {tally(bad)})")
        late = [o for o in n503 if not t_fail <= o.sent <= t_up + GRACE]
        assert not late, (
            f"{len(late)} 503s outside the failover window, the first "
            f"{(late[0].sent - t_fail) * 1000:.0f} ms after SENTINEL FAILOVER"
            if late else "")
        assert len(after) >= RATE, f"only {len(after)} INVITEs after the window"
        assert all(o.ok for o in after), "an INVITE after the window did not get its 302"

        # Every binding is on the new master (a fresh connection: Sentinel closed the old ones).
        with connect(new.port) as c:
            assert role(new) == "master", f"role of :{new.port}"
            lost = [u.aor for u in users if stored_contact(c, u) != u.contact]
            assert not lost, (
                f"{len(lost)} of {len(users)} bindings missing on the new master: "
                f"{lost[:5]}")
            assert early_status == 200, "REGISTER once the daemons had followed the failover"
            assert stored_contact(c, early) == early.contact, (
                "binding of the REGISTER answered before the old master's demotion, on the "
                "new master after it (written to the old master and lost?)")

        # A REGISTER after the failover lands on the new master and is redirected.
        late_user = User(f"sip:late@{DOMAIN}", "sip:late@192.0.2.251:6000")
        assert register_one(registrar, late_user) == 200, "REGISTER after the failover"
        with connect(new.port) as c:
            assert stored_contact(c, late_user) == late_user.contact, (
                "binding of the REGISTER after the failover, on the new master")
        check_all_redirected(redirect, [late_user], "INVITE after the failover")
        locctl_show(url, late_user)

        # The near-cache: nothing stale after the failover (a user who moved is seen at once),
        # and it serves again, which needs tracking re-enabled on the new primary with the
        # invalidation connection there too.
        moved = User(users[1].aor, "sip:moved@192.0.2.252:6001")
        with registrar.ua() as ua:
            assert ua.send(ua.register(moved.aor, ["*"], expires=0)).status == 200, (
                "REGISTER removing every binding of a user after the failover")
        assert register_one(registrar, moved) == 200, "REGISTER of the user's new Contact"
        check_all_redirected(cached, [moved], "INVITE through the near-cache for a user who "
                                              "moved after the failover (stale entry?)")
        sample = [u for u in users if u.aor != moved.aor][:20]

        def cache_serves() -> bool:
            # --spread random sends each INVITE to either worker, and each worker has its own
            # near-cache: an AOR misses at most once per worker (2), so of 4 passes at least 2
            # are hits when the cache serves.
            h0 = metric_or_zero(cached, "sipr_cache_hits_total")
            with SipUdp(cached.port) as ua:
                for _ in range(4):
                    for u in sample:
                        ua.send(ua.build("INVITE", u.aor), timeout=2)
            return metric_or_zero(cached, "sipr_cache_hits_total") >= h0 + 2 * len(sample)
        t_cache = time.monotonic()
        wait_until(cache_serves, 15, interval=0.1,
                   what="the near-cache to serve hits again after the failover (tracking on the "
                        "new primary)")
        log(f"failover: the near-cache serves hits again {(time.monotonic() - t_cache) * 1000:.0f} "
            f"ms after the checks above; a user who moved after the failover was seen at once")
        # CONFIG SET on the old primary did not travel: the worker bounded the new primary's
        # tracking table (Redis's default 1,000,000) before tracking there (issue 14).
        with connect(new.port) as c:
            limit = int(c.config_get("tracking-table-max-keys")["tracking-table-max-keys"])
        assert limit == 100000, (
            "tracking-table-max-keys on the new primary (sip-redirectd's default)")


# ------------------------------------------------------------------------------------------------
# 3. Redis Cluster

@pytest.fixture(scope="module")
def cluster():
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(cluster_node()) for _ in range(3)]
        create_cluster(nodes)
        yield nodes


def inval_clients(node: RedisServer) -> int:
    """Connections named sipr-inval-* on `node`: the near-cache's invalidation connections."""
    return sum(1 for c in node.client.client_list() if c.get("name", "").startswith("sipr-inval-"))


def test_cluster_near_cache(cluster):
    """The near-cache is on by default with cluster:// too: each worker keeps one invalidation
    connection on every primary, look-ups are answered from memory, and a user who registers a new
    Contact is seen at once whichever node holds it (the node that served the read invalidates)."""
    url = cluster_url(cluster)
    users = make_users(60, "nc")
    with Registrar(url) as registrar, Redirect(url) as redirect:
        wait_until(lambda: redirect.stderr_text().count("near-cache on") >= 2 and
                   all(inval_clients(n) == 2 for n in cluster), 15, interval=0.05,
                   what="both workers' near-caches on, with one invalidation connection per "
                        "worker on each of the 3 primaries")
        register_all(registrar, users)
        owners = cluster_slot_owners(cluster[0].client)
        per_node = {n.port: sum(1 for u in users if owners[slot_of(n, u)] == n.port)
                    for n in cluster}
        assert all(per_node.values()), f"every node should hold some users: {per_node}"
        h0 = metric_or_zero(redirect, "sipr_cache_hits_total")
        for _ in range(4):
            check_all_redirected(redirect, users, "INVITEs through the near-cache over cluster://")
        hits = metric_or_zero(redirect, "sipr_cache_hits_total") - h0
        # Each AOR misses at most once per worker (2): of 4 passes at least 2 are hits.
        assert hits >= 2 * len(users), f"{hits:.0f} cache hits for {4 * len(users)} INVITEs"
        # One user per node moves; each is redirected to the new Contact at once, by both workers.
        i0 = metric_or_zero(redirect, "sipr_cache_invalidations_total")
        moved = []
        for n in cluster:
            u = next(u for u in users if owners[slot_of(n, u)] == n.port)
            m = User(u.aor, u.contact.replace("192.0.2.", "198.51.100."))
            with registrar.ua() as ua:  # the old Contact removed, the new one added
                r = ua.send(ua.register(u.aor, [f"<{u.contact}>;expires=0", f"<{m.contact}>"],
                                        expires=3600))
            assert r.status == 200, f"REGISTER moving {m.aor} to a new Contact: {r.status}"
            moved.append(m)
        check_all_redirected(redirect, moved * 4, "INVITEs right after the users moved")
        inv = metric_or_zero(redirect, "sipr_cache_invalidations_total") - i0
        assert inv >= len(moved), f"{inv:.0f} invalidations for {len(moved)} moved users"
        log(f"cluster near-cache: users per node {list(per_node.values())}, {hits:.0f} hits of "
            f"{4 * len(users)} INVITEs, {inv:.0f} invalidations after {len(moved)} moves")


def slot_of(node: RedisServer, user: User) -> int:
    return node.client.execute_command("CLUSTER", "KEYSLOT", location_key(user.aor))


def test_cluster_registration_events(cluster):
    """On a Redis Cluster the registrar's script PUBLISHes each change on sipr:events (README
    "Registration events and counts"); Cluster forwards it to every node, so one subscriber on one
    node sees the REGISTERs of users on all three, one JSON message each; sip-locctl watch --json
    prints them too."""
    url = cluster_url(cluster)
    users = make_users(12, "ev")
    owners = cluster_slot_owners(cluster[0].client)
    assert len({owners[slot_of(cluster[0], u)] for u in users}) >= 2, "users on several nodes"
    sub = cluster[1].client.pubsub()
    sub.subscribe("sipr:events")
    assert sub.get_message(timeout=scaled(5))["type"] == "subscribe"
    watch = subprocess.Popen([str(binary("sip-locctl")), "--redis", url, "watch", users[0].aor,
                              "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=ENV)
    try:
        with Registrar(url) as registrar:
            time.sleep(scaled(0.3))  # watch subscribed (Pub/Sub keeps nothing for latecomers)
            register_all(registrar, users)
            got = []
            deadline = time.monotonic() + scaled(5)
            while len(got) < len(users) and time.monotonic() < deadline:
                m = sub.get_message(timeout=0.2)
                if m and m["type"] == "message":
                    got.append(json.loads(m["data"]))
            assert sub.get_message(timeout=0.3) is None, "one message per REGISTER"
            assert sorted(e["aor"] for e in got) == sorted(u.aor for u in users)
            for e in got:
                u = next(u for u in users if u.aor == e["aor"])
                assert e["v"] == "1" and e["src"] == "registrar" and e["bindings"] == "1", e
                assert [(c["kind"], c["contact"]) for c in e["changes"]] == [("added", u.contact)]
            others = [k for n in cluster for k in n.client.keys("sipr:*")
                      if not k.startswith("sipr:loc:")]
            assert others == [], "no stream, counts or expiry index on a Cluster"
            line = []
            reader = threading.Thread(target=lambda: line.append(watch.stdout.readline()),
                                      daemon=True)
            reader.start()
            reader.join(scaled(5))
            assert line and json.loads(line[0])["aor"] == users[0].aor, line
            watch.send_signal(signal.SIGTERM)
            assert watch.wait(timeout=scaled(3)) == 0, watch.stderr.read()
    finally:
        sub.close()
        if watch.poll() is None:
            watch.kill()
            watch.wait()


def test_cluster_reshard_under_load(cluster):
    c1, c2, c3 = cluster
    by_port = {n.port: n for n in cluster}
    users = make_users(300, "c")
    url = cluster_url(cluster)
    with Registrar(url) as registrar, Redirect(url) as redirect:
        register_all(registrar, users)
        slots = {u: slot_of(c1, u) for u in users}
        owners = cluster_slot_owners(c1.client)
        per_node = {n.port: sum(1 for u in users if owners[slots[u]] == n.port) for n in cluster}
        log(f"cluster: {len(users)} users' keys per node {list(per_node.values())}, DBSIZE "
            f"{[n.client.execute_command('DBSIZE') for n in cluster]}")
        assert all(per_node.values()), f"some node holds none of the keys: {per_node}"
        for u in users:
            assert stored_contact(by_port[owners[slots[u]]].client, u) == u.contact, (
                f"binding of {u.aor} on the node owning slot {slots[u]}")
        locctl_show(url, users[0])

        moved0 = metric_or_zero(redirect, "sipr_redis_redirects_total", kind="moved")
        id1, id2 = (n.client.execute_command("CLUSTER", "MYID") for n in (c1, c2))
        with Load(redirect, users, registrar=registrar, register_every=10) as load:
            time.sleep(1.0)
            t0 = time.monotonic()
            redis_cli(["--cluster", "reshard", f"{LOCALHOST}:{c1.port}", "--cluster-from", id1,
                       "--cluster-to", id2, "--cluster-slots", "2000", "--cluster-yes"],
                      timeout=60)
            t_reshard = time.monotonic() - t0
            time.sleep(2.0)
            outcomes = load.stop()

        after = cluster_slot_owners(c1.client)
        moved_users = [u for u in users if after[slots[u]] != owners[slots[u]]]
        assert all(after[slots[u]] == c2.port for u in moved_users), "a key moved elsewhere than C2"
        assert moved_users, "no registered key was in the 2000 slots moved from C1 to C2"

        invites = [o for o in outcomes if o.method == "INVITE"]
        registers = [o for o in outcomes if o.method == "REGISTER"]
        n503 = sum(1 for o in invites if o.status == 503)
        log(f"cluster: reshard of 2000 slots (holding {len(moved_users)} users) took "
            f"{t_reshard * 1000:.0f} ms; {len(invites)} INVITEs at {RATE}/s, statuses "
            f"{tally(invites)}; {len(registers)} re-REGISTERs, statuses {tally(registers)}")
        bad = [o for o in invites if not (o.ok or o.status == 503)]
        assert not bad, (
            f"{len(bad)} INVITEs got neither a 302 with the user's Contact nor 503 "
            f"(status: count {tally(bad)})")
        assert n503 <= max(3, MAX_CLUSTER_503 * len(invites)), (
            f"{n503} of {len(invites)} INVITEs got 503 while slots moved")
        bad = [o for o in registers if not o.ok]
        assert not bad, (
            f"{len(bad)} re-REGISTERs did not get 200 with the user's Contact "
            f"(status: count {tally(bad)})")

        # No binding lost: each key, with its Contact, on the node that owns its slot now.
        lost = [u.aor for u in users
                if stored_contact(by_port[after[slots[u]]].client, u) != u.contact]
        assert not lost, (
            f"{len(lost)} of {len(users)} bindings missing after the reshard: "
            f"{lost[:5]}")
        check_all_redirected(redirect, users, "INVITEs after the reshard")
        locctl_show(url, moved_users[0])

        moved = metric_or_zero(redirect, "sipr_redis_redirects_total", kind="moved") - moved0
        ask = metric_or_zero(redirect, "sipr_redis_redirects_total", kind="ask")
        r_moved = metric_or_zero(registrar, "sipr_redis_redirects_total", kind="moved")
        r_ask = metric_or_zero(registrar, "sipr_redis_redirects_total", kind="ask")
        log(f"cluster: sipr_redis_redirects_total sip-redirectd moved +{moved:.0f} ask {ask:.0f}; "
            f"sip-registrard moved {r_moved:.0f} ask {r_ask:.0f}")
        assert moved > 0, 'sipr_redis_redirects_total{kind="moved"} did not grow on sip-redirectd'


def test_cluster_ask_during_a_slot_migration(cluster):
    """One slot half-way through a migration, by hand (CLUSTER SETSLOT IMPORTING / MIGRATING,
    MIGRATE of its one key): the old owner answers -ASK for it, which the reshard above rarely
    catches. INVITE, REGISTER and sip-locctl show must all follow the ASK to the new node."""
    by_id = {n.client.execute_command("CLUSTER", "MYID"): n for n in cluster}
    id_of = {n.port: i for i, n in by_id.items()}
    users = make_users(20, "a")
    url = cluster_url(cluster)
    with Registrar(url) as registrar, Redirect(url) as redirect:
        register_all(registrar, users)
        owners = cluster_slot_owners(cluster[0].client)
        # A user alone in its slot (the other users' keys elsewhere: 20 keys, 16384 slots), so
        # that the slot's one key is the one migrated.
        user = users[0]
        slot = slot_of(cluster[0], user)
        src = next(n for n in cluster if n.port == owners[slot])
        dst = next(n for n in cluster if n is not src)
        key = location_key(user.aor)
        assert src.client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 1, (
            f"keys in slot {slot} of {user.aor}")
        ask0 = metric_or_zero(redirect, "sipr_redis_redirects_total", kind="ask")
        rask0 = metric_or_zero(registrar, "sipr_redis_redirects_total", kind="ask")
        dst.client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", id_of[src.port])
        src.client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", id_of[dst.port])
        try:
            assert (src.client.execute_command("MIGRATE", LOCALHOST, dst.port, "", 0, 5000,
                                        "KEYS", key)) == "OK", f"MIGRATE {key}"
            check_all_redirected(redirect, [user], "INVITE while its slot migrates")
            ask = metric_or_zero(redirect, "sipr_redis_redirects_total", kind="ask") - ask0
            assert ask >= 1, (
                f'sipr_redis_redirects_total{{kind="ask"}} on sip-redirectd grew by '
                f"{ask:.0f} for a look-up of a key already migrated")

            moved_user = User(user.aor, "sip:moved@192.0.2.252:6001")  # a second binding
            assert register_one(registrar, moved_user) == 200, "REGISTER while its slot migrates"
            with connect(dst.port) as c:
                asking = c.pipeline(transaction=False)  # ASKING, then HGETALL on its connection
                asking.execute_command("ASKING")
                asking.hgetall(key)
                got = [unpack_binding(v).contact for v in asking.execute()[1].values()]
            assert moved_user.contact in got, (
                f"the REGISTER's binding is not on the importing "
                f"node: {got}")
            rask = metric_or_zero(registrar, "sipr_redis_redirects_total", kind="ask") - rask0
            assert rask >= 1, (
                f'sipr_redis_redirects_total{{kind="ask"}} on sip-registrard grew '
                f"by {rask:.0f} for a REGISTER of a key already migrated")
            locctl_show(url, moved_user)
            log(f"cluster: slot {slot} migrating :{src.port} -> :{dst.port}: INVITE, REGISTER "
                f"and sip-locctl followed -ASK (sip-redirectd ask +{ask:.0f}, sip-registrard ask "
                f"+{rask:.0f})")
        finally:
            for n in cluster:  # the migration ends: the slot is the new node's everywhere
                n.client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", id_of[dst.port])
        wait_until(lambda: all(cluster_slot_owners(n.client)[slot] == dst.port for n in cluster),
                   10, what=f"every node to give slot {slot} to :{dst.port}")
        with redirect.ua() as ua:
            r = ua.send(ua.build("INVITE", user.aor))
        assert ((r.status, sorted(c.uri for c in r.contacts))) == ((302, sorted([user.contact, moved_user.contact]))), (
            "INVITE after the migration (status, both bindings' contacts)")

def test_cluster_primary_failover_under_load():
    """A primary of a Cluster with one replica per primary is killed (SIGKILL) under load: the
    Cluster promotes its replica (after --cluster-node-timeout), the daemons learn the new map
    (their connection to the dead node is lost, which asks for it) and every INVITE gets its
    302 again. 503s only for the dead primary's users (the nodes run with
    cluster-require-full-coverage no), and only inside the window."""
    users = make_users(150, "f")
    with contextlib.ExitStack() as stack:
        nodes = []
        for _ in range(6):
            node = cluster_node(node_timeout_ms=1000)
            # By default every node answers -CLUSTERDOWN to every command while any slot has no
            # primary; with this the other primaries go on serving their own slots (README).
            node.extra_args += ["--cluster-require-full-coverage", "no"]
            nodes.append(stack.enter_context(node))
        create_cluster(nodes, replicas=1)
        url = cluster_url(nodes[:2])
        registrar = stack.enter_context(Registrar(url))
        redirect = stack.enter_context(Redirect(url))
        register_all(registrar, users)
        first = nodes[0]
        owners = cluster_slot_owners(first.client)
        slots = {u: slot_of(first, u) for u in users}
        victim = next(n for n in nodes if n is not first and n.port in set(owners))
        victims_users = {u for u in users if owners[slots[u]] == victim.port}
        assert victims_users, f"no user's key on the primary :{victim.port} to be killed"
        for n in nodes:  # every write replicated before the kill (WAIT 1 replica, 5 s)
            if n.port in set(owners):
                assert n.client.execute_command("WAIT", "1", "5000") == 1, (
                    f"replicas that acknowledged :{n.port}'s writes")

        with Load(redirect, users) as load:
            time.sleep(1.0)
            t_kill = time.monotonic()
            os.kill(victim.proc.pid, signal.SIGKILL)

            def promoted() -> bool:
                now = cluster_slot_owners(first.client)
                return all(now[slots[u]] not in (0, victim.port) for u in victims_users)
            wait_until(promoted, 20, interval=0.05,
                       what=f"the Cluster to promote the replica of :{victim.port}")
            t_promoted = time.monotonic()
            wait_until(lambda: all(ok for _, _, ok in invite_all(redirect, list(victims_users))),
                       10, interval=0.05,
                       what="every user of the killed primary to get a 302 again")
            t_back = time.monotonic()
            time.sleep(2.0)
            outcomes = load.stop()
        victim.stop(check_status=False)

        invites = [o for o in outcomes if o.method == "INVITE"]
        n503 = [o for o in invites if o.status == 503]
        span = (f"{(n503[0].sent - t_kill) * 1000:.0f}-{(n503[-1].sent - t_kill) * 1000:.0f} ms "
                f"after the kill" if n503 else "none")
        log(f"cluster failover: SIGKILL of primary :{victim.port} ({len(victims_users)} of "
            f"{len(users)} users); the Cluster promoted its replica after "
            f"{(t_promoted - t_kill) * 1000:.0f} ms, its users got 302 again after "
            f"{(t_back - t_kill) * 1000:.0f} ms; {len(invites)} INVITEs at {RATE}/s, statuses "
            f"{tally(invites)}; 503s {span}")
        bad = [o for o in invites if not (o.ok or o.status == 503)]
        assert not bad, (
            f"{len(bad)} INVITEs got neither a 302 with the user's Contact nor 503 "
            f"(status: count {tally(bad)})")
        others = [o for o in n503 if o.user not in victims_users]
        assert not others, f"{len(others)} 503s for users whose primary was not killed"
        late = [o for o in n503 if o.sent > t_back + GRACE]
        assert not late, f"{len(late)} 503s after the killed primary's users were served again"
        check_all_redirected(redirect, users, "INVITEs after the Cluster failover")
        assert register_one(registrar, next(iter(victims_users))) == 200, (
            "REGISTER of a user of the killed primary, after the failover")
