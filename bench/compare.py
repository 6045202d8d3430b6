#!/usr/bin/python3
"""The side-by-side benchmark behind bench/compare.sh (bench/README.md).

In one run, on loopback: starts one redis-server, our sip-registrard and one sip-redirectd per
configuration and worker count (CONFIGS x WORKERS below, all on that Redis), Kamailio in memory
(usrloc db_mode=0), Kamailio on Redis (db_redis, db_mode=3) and the null responder (the ceiling).
Registers the same AORs in every peer, checks each answers a known AOR 302 with the right Contact
and an unknown one 404, then drives INVITEs closed-loop from sip-bench with the same number of
client sockets for every peer: at the first window from each of SOCKETS (16: a tier fed by many
SBCs and proxies, which the kernel's SO_REUSEPORT hash spreads over a server's workers; 1: one
load balancer, one source address and port), at the other windows from the first of SOCKETS only;
every peer in each repetition, in an order rotated per repetition. REGISTERs go to both registrars
on Redis. Prints markdown tables of medians; every ratio is taken within one repetition and then
the median of those is shown. The first table is issue 16's: each sip-redirectd configuration
against Kamailio in memory, with server+Redis CPU per 302. Every process it starts is stopped by
its PID.

Then the near-cache (issue 8): a third redis-server holds 100,000 AORs written by
`sip-bench --populate redis`; sip-redirectd with its defaults (near-cache on; --cache-ttl sets
its TTL instead) and,
for reference, with --cache-ttl 0 run against it, and Kamailio in memory (the same 100,000 AORs
registered), each under Zipf 1.0 over 100,000 AORs and uniform over 10,000 AORs, window 64, from
the default socket count, rotated per repetition. For ours it
reports the hit ratio (sipr_cache_{hits,misses}_total over the run), Redis commands/s (INFO stats
total_commands_processed over the run) and Redis CPU per response; the ratio to Kamailio in
memory is taken within one repetition. In one more run of the first workload (not in the
table), a registrar on the same Redis changes one AOR's contact again and again while the load
runs; the time until the change is visible everywhere (StalenessProbe) is the staleness under
load.

Every run of ours also records its Redis's CPU and commands, and a "Capacity inputs" table gives
what bench/CAPACITY.md needs: daemon CPU, Redis CPU and Redis commands per response.

--smoke runs the same path in well under a minute (few AORs, one short repetition) and fails only
when a peer answers wrongly (a check fails, or a status other than 302 / 200 comes back), never
on speed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "lib"))

# The Python suites' library (tests/lib/sipr_test): ports, Redis, daemons.
from sipr_test import base, metrics, processes, redis_servers, sip  # noqa: E402
from bench_report import (CAPACITY_HEADER, capacity_row, config_label, fmt_rate,  # noqa: E402
                          fmt_ratio, med, paired_ratio, parse_config, rotated, summary_table)
from staleness import await_change  # noqa: E402

DOMAIN = "bench.example"

# ---- What is compared: change it here (or with --config / --workers / --sockets) ----
# sip-redirectd configurations: the flags passed beyond the bench's own (--listen, --redis,
# --metrics, --domain, --log-level warn, --workers). A row is labelled by exactly these flags,
# "defaults" when there are none, so it says what ran whatever this build's defaults are.
CONFIGS: list[tuple[str, ...]] = [
    (),                    # defaults
    ("--cache-ttl", "0"),  # no near-cache
]
# sip-redirectd --workers; each configuration runs at each count.
WORKERS: list[int] = [1, 2]
# sip-bench client sockets (source ports), the same for every peer. The first is the default: 16
# is a redirect tier fed by many SBCs and proxies at once; 1 is one load balancer in front of it.
SOCKETS: list[int] = [16, 1]


class Peer:
    """A server under test: where to send INVITEs (target), where to REGISTER (registrar), and
    the PIDs whose CPU counts as the server's."""

    name = ""
    label = ""
    target = ""
    registrar = ""
    checkable = True

    def pids(self) -> list[int]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class Ours(Peer):
    def __init__(self, redis: redis_servers.RedisServer, workers: int = 2, name: str = "sip-redirectd",
                 with_registrar: bool = True, flags: tuple[str, ...] = (), label: str = ""):
        self.name = name
        self.flags = tuple(flags)
        self.workers = workers
        self.config = config_label(self.flags)
        self.label = label or f"sip-redirectd {self.config}, {workers} worker{'s' if workers > 1 else ''}"
        self.redis = redis
        self.redirect = processes.ServiceDaemon("sip-redirectd", redis.url,
                                        ["--domain", DOMAIN, "--log-level", "warn", *flags],
                                        workers=workers, name=name).start()
        self.target = f"{base.LOCALHOST}:{self.redirect.port}"
        self.registrard = None
        if with_registrar:
            self.registrard = processes.ServiceDaemon("sip-registrard", redis.url,
                                              ["--domain", DOMAIN, "--log-level", "warn"],
                                              workers=2, name="sip-registrard").start()
            self.registrar = f"{base.LOCALHOST}:{self.registrard.port}"

    def pids(self) -> list[int]:
        return [self.redirect.pid, self.redis.proc.pid]

    def registrar_pids(self) -> list[int]:
        return [self.registrard.pid, self.redis.proc.pid]

    def stop(self) -> None:
        self.redirect.stop(check_status=False)
        if self.registrard is not None:
            self.registrard.stop(check_status=False)


class Kamailio(Peer):
    """bench/peers/kamailio.sh: `mem` (usrloc in memory) or `redis` (usrloc on db_redis)."""

    def __init__(self, mode: str, redis: redis_servers.RedisServer | None, children: int = 2):
        self.mode = mode
        self.name = f"kamailio-{mode}" + ("" if children == 2 else f"-{children}c")
        self.label = (f"Kamailio 5.6, usrloc in memory, {children} children" if mode == "mem"
                      else f"Kamailio 5.6, usrloc on Redis (db_redis), {children} children")
        self.redis = redis
        self.state = Path(tempfile.mkdtemp(prefix=f"sipr-{self.name}-"))
        port = base.free_udp_port()
        self.target = self.registrar = f"{base.LOCALHOST}:{port}"
        # The usrloc expiry sweep (a KEYS scan of Redis for db_redis) every 600 s instead of 60:
        # none falls inside a measurement, in Kamailio's favour.
        args = [str(HERE / "peers" / "kamailio.sh"), "start", mode, "--listen", self.target,
                "--state", str(self.state), "--children", str(children), "--timer-interval", "600"]
        if redis is not None:
            args += ["--redis-port", str(redis.port)]
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"{self.name} did not start: {r.stderr.strip() or r.stdout.strip()}")

    def kamailio_pids(self) -> list[int]:
        r = subprocess.run([str(HERE / "peers" / "kamailio.sh"), "pids", "--state", str(self.state)],
                           capture_output=True, text=True, timeout=10)
        return [int(x) for x in r.stdout.split()]

    def pids(self) -> list[int]:
        return self.kamailio_pids() + ([self.redis.proc.pid] if self.redis is not None else [])

    def registrar_pids(self) -> list[int]:
        return self.pids()

    def stop(self) -> None:
        subprocess.run([str(HERE / "peers" / "kamailio.sh"), "stop", "--state", str(self.state)],
                       capture_output=True, timeout=30)


class NullResponder(Peer):
    def __init__(self):
        self.name = "ceiling"
        self.label = "null responder (fixed 302, no look-up)"
        self.checkable = False
        port = base.free_udp_port()
        self.target = f"{base.LOCALHOST}:{port}"
        exe = base.build_dir() / "bench" / "null-responder"
        # Two threads, one SO_REUSEPORT socket each, like sip-redirectd's two workers.
        self.proc = subprocess.Popen([str(exe), "--listen", self.target, "--threads", "2"],
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        processes.CHILDREN.append(self)  # stopped at exit if we fail first
        time.sleep(0.2)
        if self.proc.poll() is not None:
            raise AssertionError(f"null-responder exited with {self.proc.returncode}")

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def stop(self) -> None:
        processes._stop_pid(self.proc, 5)

    def kill_quietly(self) -> None:
        self.stop()


def sip_bench(args: list[str], timeout: float) -> dict:
    exe = base.build_dir() / "bench" / "sip-bench"
    r = subprocess.run([str(exe), *args, "--json"], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"sip-bench {' '.join(args)} failed: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def populate(peer: Peer, aors: int) -> None:
    """Registers every AOR through the peer's registrar (sip-bench's population step)."""
    sip_bench(["--target", peer.target, "--registrar", peer.registrar, "--aors", str(aors),
               "--domain", DOMAIN, "--window", "1", "--duration", "0.2"], timeout=600)


def check_answers(peer: Peer) -> list[str]:
    """The behaviour check of bench/peers/check.py; returns the failures."""
    r = subprocess.run([sys.executable, str(HERE / "peers" / "check.py"), "--registrar",
                        peer.registrar, "--target", peer.target, "--domain", DOMAIN],
                       capture_output=True, text=True, timeout=60)
    print(f"  check {peer.name}: " + " | ".join(r.stdout.strip().splitlines()), flush=True)
    return [] if r.returncode == 0 else [f"{peer.name}: {r.stdout.strip()} {r.stderr.strip()}"]


def load_args(threads: int, sockets: int) -> list[str]:
    """sip-bench's sending threads and client sockets (at least one socket per thread)."""
    return ["--threads", str(threads), "--sockets", str(max(threads, sockets))]


def run_invites(peer: Peer, aors: int, window: int, duration: float, threads: int,
                zipf: float = 0.0, sockets: int = 1) -> dict:
    return sip_bench(["--target", peer.target, "--no-populate", "--aors", str(aors),
                      "--domain", DOMAIN, "--window", str(window), "--duration", str(duration),
                      *load_args(threads, sockets), "--zipf", str(zipf),
                      *sum((["--pid", str(p)] for p in peer.pids()), [])],
                     timeout=duration + 60)


def run_registers(peer: Peer, aors: int, window: int, duration: float, threads: int = 1,
                  sockets: int = 1) -> dict:
    return sip_bench(["--target", peer.registrar, "--register", "--aors", str(aors),
                      "--domain", DOMAIN, "--window", str(window), "--duration", str(duration),
                      *load_args(threads, sockets),
                      *sum((["--pid", str(p)] for p in peer.registrar_pids()), [])],
                     timeout=duration + 60)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_commands(redis: redis_servers.RedisServer) -> int:
    stats = redis.client.info("stats")
    if "total_commands_processed" not in stats:
        raise AssertionError("no total_commands_processed in INFO stats")
    return int(stats["total_commands_processed"])


def cache_counts(peer: "Ours") -> tuple[float, float]:
    text = peer.redirect.metrics()
    return (metrics.metric_value(text, "sipr_cache_hits_total") or 0.0,
            metrics.metric_value(text, "sipr_cache_misses_total") or 0.0)


def with_redis(redis: redis_servers.RedisServer, run, cache_of: "Ours | None" = None) -> dict:
    """run() (a sip-bench result) plus, over the run, on `redis`: Redis commands/s and per
    response (INFO stats total_commands_processed), Redis CPU per response, and the hit ratio of
    `cache_of`'s near-cache (None when it has none). The server CPU of the result already counts
    Redis where the peer's --pid list has it; the daemon's own is the difference."""
    if cache_of is not None:
        h0, m0 = cache_counts(cache_of)
    c0, cpu0 = redis_commands(redis), cpu_seconds(redis.proc.pid)
    r = run()
    c1, cpu1 = redis_commands(redis), cpu_seconds(redis.proc.pid)
    if cache_of is not None:
        h1, m1 = cache_counts(cache_of)
        looked = (h1 - h0) + (m1 - m0)
        r["hit_ratio"] = (h1 - h0) / looked if looked else None  # None: no cache
    n = r["answered"]
    r["redis_commands_per_s"] = (c1 - c0) / r["seconds"] if r["seconds"] else 0.0
    r["redis_commands_per_response"] = (c1 - c0) / n if n else 0.0
    r["redis_cpu_us_per_response"] = (cpu1 - cpu0) * 1e6 / n if n else 0.0
    return r


def run_invites_measured(peer: Peer, aors: int, window: int, duration: float, threads: int,
                         zipf: float, sockets: int) -> dict:
    """run_invites() plus, for ours, with_redis()'s figures on its Redis."""
    run = lambda: run_invites(peer, aors, window, duration, threads, zipf, sockets)  # noqa: E731
    return with_redis(peer.redis, run, peer) if isinstance(peer, Ours) else run()


class StalenessProbe:
    """While a load runs: changes the contact of one AOR through `registrar` again and again and
    probes `target` from several sockets until the change is visible everywhere.

    Every datagram may go to any worker (--spread random), and each worker's near-cache learns of
    the change on its own invalidation connection, so for a few milliseconds one worker may answer
    the new contact and the next the old one: the contract (DESIGN §7) is "visible everywhere
    within milliseconds", not monotonic reads across workers. So the probe counts the change
    visible at the first of kFreshRounds consecutive rounds in which every answer is the new
    contact; staleness = the REGISTER's 200 to that round. It fails on an answer that is neither
    the old nor the new contact, on the old contact later than kStaleBound after the 200 (a stale
    reply stored in a cache would show here: it lives for the TTL)."""

    kFreshRounds = 3
    kStaleBound = 0.5  # seconds: milliseconds by contract, with room for a loaded CI machine

    def __init__(self, registrar_port: int, target_port: int, sockets: int = 4):
        import threading
        self.reg = sip.SipUdp(registrar_port)
        self.uas = [sip.SipUdp(target_port) for _ in range(sockets)]
        self.samples: list[float] = []
        self.workload = ""
        self.errors: list[str] = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "StalenessProbe":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=30)
        for ua in [self.reg, *self.uas]:
            ua.close()

    def _round(self, aor: str) -> tuple[float, list[list[str]]]:
        reqs = [ua.build("INVITE", aor) for ua in self.uas]
        t = time.monotonic()
        for ua, q in zip(self.uas, reqs):
            ua.send_raw(q.data)
        out = []
        for ua, q in zip(self.uas, reqs):
            deadline = time.monotonic() + 2.0
            got: list[str] | None = None
            while got is None and time.monotonic() < deadline:
                r = ua.recv(deadline - time.monotonic())
                if r is not None and ua.matches(q, r) and r.status >= 200:
                    got = [c.uri for c in r.contacts] if r.status == 302 else []
            if got is None:
                raise AssertionError("staleness probe: no answer within 2 s")
            out.append(got)
        return t, out

    def _run(self) -> None:
        aor = f"sip:stale@{DOMAIN}"
        old = None
        i = 0
        try:
            while not self.stop_flag.is_set():
                new = f"sip:stale@192.0.2.1:{10000 + i}"
                contacts = [f"<{new}>"] + ([f"<{old}>;expires=0"] if old else [])
                r = self.reg.send(self.reg.register(aor, contacts, expires=600))
                if r.status != 200:
                    raise AssertionError(f"staleness probe: REGISTER answered {r.status}")
                t0 = time.monotonic()
                t = await_change(lambda: self._round(aor), old, new, t0,
                                 self.kFreshRounds, self.kStaleBound)
                if old is not None:  # the first registration of the AOR was not cached before
                    self.samples.append(max(0.0, t - t0))
                old = new
                i += 1
                time.sleep(0.005)
        except AssertionError as e:
            self.errors.append(str(e))


def percentile_ms(xs: list[float], q: float) -> float:
    ms = sorted(x * 1000 for x in xs)
    return ms[min(len(ms) - 1, int(q * len(ms)))] if ms else float("nan")


def wrong_answers(result: dict, want: str) -> str | None:
    other = {k: v for k, v in result["status"].items() if k != want}
    return None if not other else f"answers other than {want}: {other}"


def generator_cpu_us(r: dict) -> float:
    """sip-bench's own CPU per answered request, µs: it shares the cores with the server, so what
    it spends (more with many sockets) is not the server's."""
    return r["client_cpu_s"] * 1e6 / r["answered"] if r["answered"] else float("nan")


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="short run; fails only on wrong answers")
    ap.add_argument("--aors", type=int, default=10000)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--windows", default="64,256",
                    help="closed-loop windows; the first is run from every --sockets count")
    ap.add_argument("--threads", type=int, default=1,
                    help="sip-bench sending threads (the sockets are spread over them)")
    ap.add_argument("--sockets", default=",".join(map(str, SOCKETS)),
                    help="sip-bench client sockets, same for every peer; the first is the default "
                         "for every run but the first window's (default %(default)s)")
    ap.add_argument("--workers", default=",".join(map(str, WORKERS)),
                    help="sip-redirectd --workers counts (default %(default)s)")
    ap.add_argument("--config", action="append", metavar="FLAGS",
                    help="a sip-redirectd configuration: its extra flags, e.g. "
                         "--config=defaults --config='--cache-ttl 0' --config='--cache-ttl 60000' "
                         "(repeatable; replaces CONFIGS in compare.py: "
                         + "; ".join(config_label(c) for c in CONFIGS) + ")")
    ap.add_argument("--cache-ttl", type=int, default=None,
                    help="the near-cache section's --cache-ttl in ms (default: the daemon's own)")
    ap.add_argument("--json-out", help="write every raw sip-bench result here")
    o = ap.parse_args()
    if o.smoke:
        o.aors, o.duration, o.reps, o.windows = 500, 0.5, 1, "64"
    windows = int_list(o.windows)
    socket_counts = int_list(o.sockets)
    worker_counts = int_list(o.workers)
    configs = [parse_config(c) for c in o.config] if o.config else list(CONFIGS)
    if not windows or not socket_counts or not worker_counts or not configs:
        ap.error("--windows, --sockets, --workers and --config need at least one value each")
    default_sockets = socket_counts[0]
    failures: list[str] = []
    raw: list[dict] = []
    peers: list[Peer] = []
    started = time.monotonic()

    redis = redis_servers.RedisServer().start()
    # Kamailio's db_redis gets a redis-server of its own: each Redis-backed peer's Redis CPU is
    # then its own. So do the near-cache rows.
    kam_redis_server = redis_servers.RedisServer().start()
    cache_redis = redis_servers.RedisServer().start()
    cache_results: dict[tuple[str, str], list[dict]] = {}
    cache_workloads: list[tuple[str, int, float]] = []
    cache_peers: list[Peer] = []
    staleness: StalenessProbe | None = None
    try:
        print(f"== starting peers ({o.aors} AORs, windows {windows}, generator sockets "
              f"{socket_counts}, {o.reps} repetitions of {o.duration:g} s)", flush=True)
        # One sip-redirectd per configuration and worker count, all on one Redis (one runs at a
        # time, so the Redis CPU of a run is that instance's); the first also has the registrar.
        ours_all: list[Ours] = []
        for ci, flags in enumerate(configs):
            for w in worker_counts:
                ours_all.append(Ours(redis, workers=w, name=f"sipr-c{ci}-{w}w", flags=flags,
                                     with_registrar=not ours_all))
        ours = ours_all[0]
        peers += ours_all
        kmem = Kamailio("mem", None)
        kred = Kamailio("redis", kam_redis_server)
        peers += [kmem, kred]
        # db_redis blocks a child per round trip: more children are its best case (same Redis
        # and the same bindings as the 2-children instance).
        kred8 = None if o.smoke else Kamailio("redis", kam_redis_server, children=8)
        ceiling = NullResponder()
        peers += ([kred8] if kred8 else []) + [ceiling]

        print("== populating and checking", flush=True)
        for p in [ours, kmem, kred]:
            populate(p, o.aors)
        for p in peers:
            if p.checkable:
                if isinstance(p, Ours) and p is not ours:
                    p.registrar = ours.registrar  # its bindings are in the same Redis
                failures += check_answers(p)

        if not o.smoke:
            # A second's load on each of ours first (not measured): a near-cache, where a
            # configuration has one, is then warm, as it is in service.
            for p in ours_all:
                run_invites(p, o.aors, 64, 1.0, o.threads, 0.0, default_sockets)

        invite_peers: list[Peer] = [*ours_all, kred] + ([kred8] if kred8 else []) + [kmem, ceiling]
        cells = [(w, s) for w in windows for s in (socket_counts if w == windows[0] else [default_sockets])]
        results: dict[tuple[str, int, int], list[dict]] = {}  # (peer, window, sockets) -> runs
        for w, socks in cells:
            for rep in range(o.reps):
                for p in rotated(invite_peers, rep):
                    r = run_invites_measured(p, o.aors, w, o.duration, o.threads, 0.0, socks)
                    r.update(peer=p.name, label=p.label, rep=rep, kind="invite", window=w)
                    raw.append(r)
                    results.setdefault((p.name, w, socks), []).append(r)
                    bad = wrong_answers(r, "302")
                    if bad:
                        failures.append(f"INVITE {p.name} window {w} sockets {socks}: {bad}")
                    print(f"  window {w} sockets {socks} rep {rep + 1} {p.name:14s} "
                          f"{r['responses_per_s']:>9,.0f}/s p50 {r['p50_us']}us p99 {r['p99_us']}us "
                          f"lost {r['lost']} cpu {r['server_cpu_us_per_response']:.2f}us", flush=True)

        reg_results: dict[str, list[dict]] = {}
        reg_peers = [ours, kred]
        for rep in range(o.reps):
            for p in (reg_peers if rep % 2 == 0 else reg_peers[::-1]):
                run = lambda: run_registers(p, o.aors, 64, o.duration, o.threads, default_sockets)  # noqa: E731
                r = with_redis(ours.redis, run) if p is ours else run()
                r.update(peer=p.name, rep=rep, kind="register")
                raw.append(r)
                reg_results.setdefault(p.name, []).append(r)
                bad = wrong_answers(r, "200")
                if bad:
                    failures.append(f"REGISTER {p.name}: {bad}")
                who = "sip-registrard" if p is ours else p.name
                print(f"  REGISTER rep {rep + 1} {who:14s} {r['responses_per_s']:>9,.0f}/s "
                      f"p99 {r['p99_us']}us lost {r['lost']}", flush=True)

        scaling: list[tuple[str, float]] = []
        if not o.smoke:
            print("== scaling", flush=True)
            w64 = windows[0]
            for p in ours_all:
                if p.flags == configs[0]:
                    scaling.append((f"1 instance, {p.workers} worker{'s' if p.workers > 1 else ''}",
                                    med([r["responses_per_s"] for r in results[(p.name, w64, default_sockets)]])))
            top = max(worker_counts)
            first = next(p for p in ours_all if p.flags == configs[0] and p.workers == top)
            second = Ours(redis, workers=top, name="sipr-second", flags=configs[0], with_registrar=False)
            peers.append(second)
            totals = []
            for _ in range(o.reps):
                exe = base.build_dir() / "bench" / "sip-bench"
                procs = [subprocess.Popen([str(exe), "--target", p.target, "--no-populate",
                                           "--aors", str(o.aors), "--domain", DOMAIN, "--window", "64",
                                           "--duration", str(o.duration),
                                           *load_args(o.threads, default_sockets), "--json"],
                                          stdout=subprocess.PIPE, text=True)
                         for p in (first, second)]
                outs = [json.loads(p.communicate(timeout=o.duration + 60)[0].strip().splitlines()[-1])
                        for p in procs]
                totals.append(sum(x["responses_per_s"] for x in outs))
            scaling.append((f"2 instances x {top} workers, one Redis (two generators)", med(totals)))

        # ---- near-cache (issue 8)
        print("== near-cache", flush=True)
        big = 500 if o.smoke else 100_000
        cache_workloads = ([(f"uniform over {o.aors:,} AORs", o.aors, 0.0)] if o.smoke else
                           [(f"Zipf 1.0 over {big:,} AORs", big, 1.0),
                            (f"uniform over {o.aors:,} AORs", o.aors, 0.0)])
        cache_flags = () if o.cache_ttl is None else ("--cache-ttl", str(o.cache_ttl))
        ours_cache = Ours(cache_redis, name="sip-redirectd-cache", flags=cache_flags)
        ours_plain = Ours(cache_redis, name="sip-redirectd-nocache", with_registrar=False,
                          flags=("--cache-ttl", "0"))
        ours_plain.label += " (same Redis)"
        peers += [ours_cache, ours_plain]
        cache_peers = [ours_cache, ours_plain, kmem]
        # The cache's Redis gets every AOR straight in our schema; Kamailio gets the extra ones
        # by REGISTER (the first o.aors are registered already).
        sip_bench(["--target", ours_plain.target, "--populate", "redis", "--redis", cache_redis.url,
                   "--aors", str(big), "--domain", DOMAIN, "--duration", "0.1"], timeout=600)
        if big > o.aors:
            populate(kmem, big)
        failures += check_answers(ours_cache)
        for label, n, zipf in cache_workloads:
            # A short warm-up (not measured): the steady state is what a cache is for.
            run_invites(ours_cache, n, 64, 1.0 if o.smoke else 2.0, o.threads, zipf, default_sockets)
            for rep in range(o.reps):
                for p in rotated(cache_peers, rep):
                    r = run_invites_measured(p, n, 64, o.duration, o.threads, zipf, default_sockets)
                    r.update(peer=p.name, rep=rep, kind="invite-cache", workload=label)
                    raw.append(r)
                    cache_results.setdefault((label, p.name), []).append(r)
                    bad = wrong_answers(r, "302")
                    if bad:
                        failures.append(f"INVITE {p.name} {label}: {bad}")
                    extra = (f" hits {r['hit_ratio']:.1%}" if r.get("hit_ratio") is not None else "") + \
                            (f" redis {r['redis_commands_per_s']:,.0f} cmd/s"
                             if "redis_commands_per_s" in r else "")
                    print(f"  {label} rep {rep + 1} {p.name:22s} {r['responses_per_s']:>9,.0f}/s "
                          f"p99 {r['p99_us']}us lost {r['lost']}{extra}", flush=True)
            if staleness is None and ours_cache.registrard is not None:
                # One more run of the first workload, not in the table: registration changes
                # probed while the cache instance is under load.
                staleness = StalenessProbe(ours_cache.registrard.port, ours_cache.redirect.port)
                staleness.workload = label
                staleness.start()
                try:
                    run_invites(ours_cache, n, 64, max(3.0, o.duration), o.threads, zipf, default_sockets)
                finally:
                    staleness.stop()
                failures += [f"staleness under load: {e}" for e in staleness.errors]

        # ---- report
        w0 = windows[0]
        print()
        print(f"### sip-redirectd against Kamailio in memory: INVITE -> 302, window {w0}, "
              f"{o.aors:,} AORs, closed loop, median of {o.reps} (sip-bench, {o.duration:g} s each, "
              f"{o.threads} sending thread{'s' if o.threads > 1 else ''})")
        print()
        summary_runs: dict[tuple, list[dict]] = {}
        for p in ours_all:
            for socks in socket_counts:
                summary_runs[("ours", p.config, p.workers, socks)] = results[(p.name, w0, socks)]
        for socks in socket_counts:
            summary_runs[(kmem.name, socks)] = results[(kmem.name, w0, socks)]
            summary_runs[(ceiling.name, socks)] = results[(ceiling.name, w0, socks)]
        rows = [(p.config, p.workers, socks) for socks in socket_counts for p in ours_all]
        for line in summary_table(rows, summary_runs, kmem.name, ceiling.name):
            print(line)
        print()
        print("Generator sockets: each is a source address and port of its own, which the kernel's "
              "SO_REUSEPORT hash gives to one worker; many are a tier fed by many SBCs and proxies, "
              "1 is one load balancer (one worker gets it all unless the daemon spreads one source). "
              "A ratio is taken within one repetition, then the median. CPU: sip-redirectd + its "
              "redis-server; Kamailio: all its processes; the null responder answers a fixed 302 "
              "with no look-up.")
        print()
        print(f"### INVITE -> 302 by peer, {o.aors:,} AORs, closed loop, median of {o.reps} "
              f"(sip-bench, {o.duration:g} s each)")
        print()
        for w, socks in cells:
            print(f"Window {w}, {socks} generator socket{'s' if socks > 1 else ''}:")
            print()
            print("| peer | responses/s | p50 us | p99 us | p99.9 us | server CPU us/response | "
                  "generator CPU us/response | peer / Kamailio in memory | peer / ceiling |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            kam_rs = results[(kmem.name, w, socks)]
            ceil_rs = results[(ceiling.name, w, socks)]
            for p in invite_peers:
                rs = results[(p.name, w, socks)]
                print(f"| {p.label} | {fmt_rate(med([r['responses_per_s'] for r in rs]))} | "
                      f"{med([r['p50_us'] for r in rs]):.0f} | {med([r['p99_us'] for r in rs]):.0f} | "
                      f"{med([r['p999_us'] for r in rs]):.0f} | "
                      f"{med([r['server_cpu_us_per_response'] for r in rs]):.2f} | "
                      f"{med([generator_cpu_us(r) for r in rs]):.2f} | "
                      f"{'—' if p is kmem else fmt_ratio(paired_ratio(rs, kam_rs))} | "
                      f"{paired_ratio(rs, ceil_rs):.2f} |")
            print()
        print(f"### REGISTER -> 200, {o.aors:,} AORs walked in order, window 64, {default_sockets} "
              f"generator socket{'s' if default_sockets > 1 else ''}, median of {o.reps}")
        print()
        print("| registrar | registrations/s | p50 us | p99 us | server CPU us/response | ours / peer |")
        print("|---|---:|---:|---:|---:|---:|")
        for p in reg_peers:
            rs = reg_results[p.name]
            label = "sip-registrard (2 workers, Redis)" if p is ours else p.label
            print(f"| {label} | {fmt_rate(med([r['responses_per_s'] for r in rs]))} | "
                  f"{med([r['p50_us'] for r in rs]):.0f} | {med([r['p99_us'] for r in rs]):.0f} | "
                  f"{med([r['server_cpu_us_per_response'] for r in rs]):.2f} | "
                  f"{'—' if p is ours else fmt_ratio(paired_ratio(reg_results[ours.name], rs))} |")
        print()
        top = max(worker_counts)
        print(f"### Capacity inputs (bench/CAPACITY.md): window {w0}, {default_sockets} generator "
              f"sockets, {top} workers, median of {o.reps}")
        print()
        for line in CAPACITY_HEADER:
            print(line)
        for p in ours_all:
            if p.workers == top:
                print(capacity_row("INVITE -> 302", f"sip-redirectd {p.config}",
                                   results[(p.name, w0, default_sockets)]))
        print(capacity_row("REGISTER -> 200", "sip-registrard (2 workers)", reg_results[ours.name]))
        print()
        print("Daemon CPU = server CPU minus its redis-server's, run by run; per core = 10^6 us over "
              "the CPU per response, a core fully busy with nothing else (the generator and the "
              "other processes ran on the same two cores). Redis commands: INFO stats "
              "total_commands_processed over the run.")
        print()
        if scaling:
            print(f"### Scaling (INVITE, window 64 per generator, {config_label(configs[0])}, "
                  f"{default_sockets} generator sockets each)")
            print()
            print("| setup | responses/s |")
            print("|---|---:|")
            for what, v in scaling:
                print(f"| {what} | {fmt_rate(v)} |")
            print()
        if cache_workloads:
            print(f"### Near-cache: INVITE -> 302, window 64, {default_sockets} generator sockets, "
                  f"median of {o.reps} ({o.duration:g} s each, after a warm-up), one Redis of its own")
            print()
            print("| workload | peer | responses/s | p50 us | p99 us | server CPU us/response | "
                  "Redis CPU us/response | hit ratio | Redis commands/s | ours / Kamailio in memory |")
            print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for label, _, _ in cache_workloads:
                kam = cache_results[(label, kmem.name)]
                for p in cache_peers:
                    rs = cache_results[(label, p.name)]
                    ours_p = isinstance(p, Ours)
                    cells_out = [label, p.label, fmt_rate(med([r["responses_per_s"] for r in rs])),
                                 f"{med([r['p50_us'] for r in rs]):.0f}",
                                 f"{med([r['p99_us'] for r in rs]):.0f}",
                                 f"{med([r['server_cpu_us_per_response'] for r in rs]):.2f}"]
                    if ours_p:
                        hits = [r["hit_ratio"] for r in rs if r["hit_ratio"] is not None]
                        cells_out += [f"{med([r['redis_cpu_us_per_response'] for r in rs]):.2f}",
                                      f"{med(hits):.1%}" if hits else "—",
                                      fmt_rate(med([r["redis_commands_per_s"] for r in rs])),
                                      fmt_ratio(paired_ratio(rs, kam))]
                    else:
                        cells_out += ["—", "—", "—", "—"]
                    print("| " + " | ".join(cells_out) + " |")
                on = cache_results[(label, ours_cache.name)]
                off = cache_results[(label, ours_plain.name)]
                down = paired_ratio(off, on, "redis_commands_per_s")
                print(f"| {label} | Redis commands/s, --cache-ttl 0 / {config_label(cache_flags)} | | | | | | | "
                      f"{down:.1f}x | |")
            print()
            if staleness is not None and staleness.samples:
                xs = staleness.samples
                print(f"Staleness under load ({staleness.workload}, window 64; REGISTER 200 to the first of "
                      f"{StalenessProbe.kFreshRounds} rounds of probes all answering the new contact, {len(xs)} changes): p50 "
                      f"{percentile_ms(xs, 0.5):.2f} ms, p99 {percentile_ms(xs, 0.99):.2f} ms, "
                      f"max {max(xs) * 1000:.2f} ms")
                print()
        print(f"(run took {time.monotonic() - started:.0f} s; lost requests: "
              f"{sum(r['lost'] for r in raw)})")
    except AssertionError as e:
        failures.append(str(e))
    finally:
        for p in peers:
            try:
                p.stop()
            except Exception as e:  # keep stopping the rest
                failures.append(f"stopping {p.name}: {e}")
        if staleness is not None and staleness.thread.is_alive():
            staleness.stop()
        redis.stop(check_status=False)
        kam_redis_server.stop(check_status=False)
        cache_redis.stop(check_status=False)
        if o.json_out:
            Path(o.json_out).write_text(json.dumps(raw, indent=1))

    for f in failures:
        print(f"FAIL - {f}")
    print(f"compare: {'1 passed, 0 failed' if not failures else '0 passed, 1 failed'}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
