#!/usr/bin/python3
"""Before and after, in one run: two builds of the daemons (A, the baseline; B, this tree) against
one redis-server, the same AORs, the same load generator (B's sip-bench), in rotated order per
repetition. Reports medians of INVITE->302/s (16 client sockets and 1), REGISTER/s, and
REGISTER/s through digest authentication (both registrars with --auth digest and the same
SIPR_SECRET; sip-bench --auth-password answers each challenge, the challenge round trip counted
inside the registration, and only 200s are counted: an AOR's first REGISTER is challenged, its
later ones reuse its nonce with the next nc unless --auth-nonce fresh), and the ratio B/A taken
within each repetition.

    git worktree add /tmp/base <commit> && (cd /tmp/base && meson setup build/release \
        --buildtype=release && ninja -C build/release)
    SIPR_BUILD_DIR=build/release /usr/bin/python3 bench/ab.py --baseline /tmp/base/build/release

Loopback only; every process it starts is stopped by its PID. On this 2-core machine the load
generator shares the cores with the daemon and Redis: compare ratios, not absolute rates.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "lib"))

import compare as c  # noqa: E402  (sip_bench(), the peers' population step)
from sipr_test import base, processes, redis_servers  # noqa: E402

DOMAIN = c.DOMAIN
ENV = {**os.environ, "SIPR_SECRET": "ab-bench-secret"}  # also the digest nonces' key
PASSWORD = "ab-bench-password"  # every AOR's, for the --auth digest row


def exe(build: Path, program: str) -> Path:
    p = build / "src" / "app" / program
    if not p.exists():
        raise SystemExit(f"{p} does not exist: build it first")
    return p


def daemon(build: Path, program: str, redis: redis_servers.RedisServer, flags: list[str],
           workers: int) -> processes.ServiceDaemon:
    return processes.ServiceDaemon(program, redis.url, ["--domain", DOMAIN, "--log-level", "warn", *flags],
                           workers=workers, name=f"{program}[{build}]", env=ENV,
                           executable=exe(build, program)).start()


def invites(port: int, pid: int, o, sockets: int) -> dict:
    return c.sip_bench(["--target", f"{base.LOCALHOST}:{port}", "--no-populate", "--aors",
                        str(o.aors), "--domain", DOMAIN, "--window", "64", "--duration",
                        str(o.duration), *c.load_args(o.threads, sockets), "--pid", str(pid)],
                       timeout=o.duration + 60)


def registers(port: int, pid: int, o, auth: bool = False) -> dict:
    extra = ["--auth-password", PASSWORD, "--auth-nonce", o.auth_nonce] if auth else []
    return c.sip_bench(["--target", f"{base.LOCALHOST}:{port}", "--register", "--aors", str(o.aors),
                        "--domain", DOMAIN, "--window", "64", "--duration", str(o.duration),
                        *c.load_args(1, 1), "--pid", str(pid), *extra], timeout=o.duration + 60)


def authenticated(r: dict) -> dict:
    """`r` with `answered` counting only its 200s; fails when anything else came back (a digest
    answer refused measures the refusal, not the registrar)."""
    others = {k: v for k, v in r["status"].items() if k != "200"}
    if others or r["lost"]:
        raise SystemExit(f"--auth digest: answers other than 200 {others}, {r['lost']} lost")
    return {**r, "answered": r["status"].get("200", 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="build directory of the baseline (A)")
    ap.add_argument("--aors", type=int, default=10_000)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--redirect-flags", default="--cache-ttl 0",
                    help="flags for both sip-redirectd builds (default: every look-up in Redis)")
    ap.add_argument("--auth-nonce", choices=("reuse", "fresh"), default="reuse",
                    help="the --auth digest row: an AOR reuses its nonce with the next nc "
                         "(default), or every REGISTER is challenged (sip-bench --auth-nonce)")
    ap.add_argument("--b-flags", default="",
                    help="extra flags for B's daemons only (a flag the baseline does not know)")
    ap.add_argument("--b-registrar-flags", default="",
                    help="extra flags for B's sip-registrard only (e.g. --events off)")
    o = ap.parse_args()
    builds = {"A": Path(o.baseline).resolve(), "B": base.build_dir()}
    rflags = o.redirect_flags.split()
    bflags = o.b_flags.split()
    extra = {"A": [], "B": bflags}
    reg_extra = {"A": [], "B": o.b_registrar_flags.split()}
    samples: dict[str, dict[str, list[float]]] = {}

    def note(kind: str, side: str, r: dict) -> None:
        samples.setdefault(kind, {"A": [], "B": []})[side].append(r["answered"] / r["seconds"])

    with redis_servers.RedisServer() as redis:
        # Populate once, straight into Redis (sip-bench --populate redis): both builds read the
        # same bindings, and the same subscribers for --auth digest.
        c.sip_bench(["--target", f"{base.LOCALHOST}:9", "--populate", "redis", "--redis", redis.url,
                     "--aors", str(o.aors), "--domain", DOMAIN, "--window", "1", "--duration",
                     "0.1", "--auth-password", PASSWORD], timeout=600)
        for rep in range(o.reps):
            order = ["A", "B"] if rep % 2 == 0 else ["B", "A"]
            for side in order:
                rd = daemon(builds[side], "sip-redirectd", redis, rflags + extra[side], o.workers)
                try:
                    for sockets in (16, 1):
                        note(f"INVITE->302/s, {sockets} socket(s)", side,
                             invites(rd.port, rd.pid, o, sockets))
                finally:
                    rd.stop()
                rg = daemon(builds[side], "sip-registrard", redis, extra[side] + reg_extra[side],
                            o.workers)
                try:
                    note("REGISTER/s", side, registers(rg.port, rg.pid, o))
                finally:
                    rg.stop()
                rg = daemon(builds[side], "sip-registrard", redis,
                            ["--auth", "digest", *extra[side], *reg_extra[side]], o.workers)
                try:
                    note("REGISTER/s, --auth digest", side,
                         authenticated(registers(rg.port, rg.pid, o, auth=True)))
                finally:
                    rg.stop()
            print(f"  repetition {rep + 1}/{o.reps} done", flush=True)

    print(f"\nA = {builds['A']}\nB = {builds['B']}\n{o.aors:,} AORs, window 64, "
          f"{o.duration:g} s per run, median of {o.reps}, sip-redirectd {' '.join(rflags)} "
          f"--workers {o.workers}" + (f"; B also {' '.join(bflags)}" if bflags else "") +
          (f"; B's registrar also {o.b_registrar_flags}" if o.b_registrar_flags else "") +
          f"; --auth digest: sip-bench --auth-nonce {o.auth_nonce}, 200s only\n")
    print("| load | A | B | B/A (median of per-repetition ratios) |")
    print("|---|---|---|---|")
    for kind, s in samples.items():
        ratios = [b / a for a, b in zip(s["A"], s["B"]) if a]
        print(f"| {kind} | {statistics.median(s['A']):,.0f} | {statistics.median(s['B']):,.0f} | "
              f"{statistics.median(ratios):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
