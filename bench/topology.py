#!/usr/bin/env python3
"""What Redis beyond one node costs sip-redirectd: INVITE throughput, server CPU per 302 and p99,
against one redis-server, against a 3-primary Redis Cluster (cluster://), and against a primary
with its look-ups sent to a replica (--redis-read), runs interleaved, medians of --runs.

All processes run on loopback on this machine and are stopped by PID. Each sip-redirectd has one
worker; sip-bench populates --aors users through a sip-registrard on the same topology.

    bench/topology.py [BUILD_DIR] [--runs 3] [--duration 8] [--aors 10000] [--window 64]
"""
from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port(spacing: int = 0) -> int:
    """A TCP port free on loopback (and port + spacing too, for a cluster bus)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if spacing == 0 or port + spacing > 65535:
            if spacing == 0:
                return port
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + spacing))
                return port
            except OSError:
                continue
    raise SystemExit("no free port")


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str]) -> subprocess.Popen:
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.procs)):
            self.stop(p)


def cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          timeout=30).stdout


def wait_for(what: str, cond, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def redis(procs: Procs, d: str, port: int, *extra: str) -> None:
    procs.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", d, "--repl-diskless-sync-delay", "0", *extra])
    wait_for(f"redis-server :{port}", lambda: cli(port, "PING").strip() == "PONG")


def bench_once(procs: Procs, build: Path, url: str, extra: list[str], args) -> dict:
    app = build / "src" / "app"
    reg_port, red_port = free_port(), free_port()
    reg = procs.start([str(app / "sip-registrard"), "--listen", f"127.0.0.1:{reg_port}",
                       "--metrics", f"127.0.0.1:{free_port()}", "--redis", url, "--workers", "1"])
    red = procs.start([str(app / "sip-redirectd"), "--listen", f"127.0.0.1:{red_port}",
                       "--metrics", f"127.0.0.1:{free_port()}", "--redis", url, "--workers", "1",
                       "--drain-seconds", "0", *extra])
    try:
        time.sleep(1.0)
        out = subprocess.run([str(build / "bench" / "sip-bench"), "--target", f"127.0.0.1:{red_port}",
                              "--registrar", f"127.0.0.1:{reg_port}", "--aors", str(args.aors),
                              "--window", str(args.window), "--duration", str(args.duration),
                              "--pid", str(red.pid), "--json"],
                             capture_output=True, text=True, timeout=args.duration + 120)
        if out.returncode != 0:
            raise SystemExit(f"sip-bench failed: {out.stderr.strip()}")
        r = json.loads(out.stdout)
        if r["status"].get("302", 0) != r["answered"] or r["lost"] != 0:
            raise SystemExit(f"wrong answers against {url}: {r['status']}, {r['lost']} lost")
        return r
    finally:
        procs.stop(red)
        procs.stop(reg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default="build/release")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--aors", type=int, default=10000)
    ap.add_argument("--window", type=int, default=64)
    args = ap.parse_args()
    build = Path(args.build)
    procs = Procs()
    with tempfile.TemporaryDirectory() as d:
        try:
            single = free_port()
            redis(procs, d + "/", single)
            replica = free_port()
            Path(d, "r").mkdir()
            redis(procs, d + "/r", replica, "--replicaof", "127.0.0.1", str(single))
            nodes = [free_port(10000) for _ in range(3)]
            for p in nodes:
                Path(d, str(p)).mkdir()
                redis(procs, f"{d}/{p}", p, "--cluster-enabled", "yes", "--cluster-config-file",
                      f"{d}/{p}/nodes.conf", "--cluster-node-timeout", "2000")
            subprocess.run(["redis-cli", "--cluster", "create",
                            *[f"127.0.0.1:{p}" for p in nodes], "--cluster-replicas", "0",
                            "--cluster-yes"], capture_output=True, check=True, timeout=60)
            wait_for("cluster_state:ok", lambda: all(
                "cluster_state:ok" in cli(p, "CLUSTER", "INFO") for p in nodes))
            setups = {
                "one node": (f"redis://127.0.0.1:{single}", []),
                "cluster of 3": ("cluster://" + ",".join(f"127.0.0.1:{p}" for p in nodes), []),
                "primary + --redis-read replica": (f"redis://127.0.0.1:{single}",
                                                   ["--redis-read", f"redis://127.0.0.1:{replica}"]),
            }
            results: dict[str, list[dict]] = {k: [] for k in setups}
            for i in range(args.runs):
                for name, (url, extra) in setups.items():
                    r = bench_once(procs, build, url, extra, args)
                    results[name].append(r)
                    print(f"run {i + 1} {name}: {r['responses_per_s']}/s, "
                          f"{r['server_cpu_us_per_response']} µs CPU per 302, p99 {r['p99_us']} µs",
                          flush=True)
        finally:
            procs.stop_all()
    base = statistics.median(r["responses_per_s"] for r in results["one node"])
    print(f"\nmedians of {args.runs} runs ({args.aors} AORs, window {args.window}, "
          f"{args.duration:g} s, one worker):")
    print("| setup | 302/s | vs one node | server CPU µs per 302 | p99 µs |")
    print("|---|---|---|---|---|")
    for name, rs in results.items():
        rate = statistics.median(r["responses_per_s"] for r in rs)
        cpu = statistics.median(r["server_cpu_us_per_response"] for r in rs)
        p99 = statistics.median(r["p99_us"] for r in rs)
        print(f"| {name} | {rate:.0f} | {rate / base:.2f}x | {cpu:.2f} | {p99:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
