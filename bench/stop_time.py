#!/usr/bin/env python3
"""How long sip-redirectd and sip-registrard take to exit after SIGTERM (with no drain), over
several starts: a rolling restart or a failed probe waits that long. Starts its own redis-server
on a free loopback port and stops everything it started by PID.

    bench/stop_time.py [BUILD_DIR] [--runs N]       (default build/release, 6 runs)
"""
from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(exe: Path, redis_port: int, runs: int) -> list[float]:
    out = []
    for i in range(runs):
        p = subprocess.Popen([str(exe), "--listen", f"127.0.0.1:{free_port()}",
                              "--metrics", f"127.0.0.1:{free_port()}",
                              "--redis", f"redis://127.0.0.1:{redis_port}", "--workers", "2",
                              *(["--drain-seconds", "0"] if "redirect" in exe.name else [])],
                             stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0 + 0.37 * i)  # stop at different phases of any internal timer
            if p.poll() is not None:
                raise SystemExit(f"{exe.name} exited at start ({p.returncode})")
            t = time.monotonic()
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
            out.append((time.monotonic() - t) * 1000)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default="build/release")
    ap.add_argument("--runs", type=int, default=6)
    args = ap.parse_args()
    app = Path(args.build) / "src" / "app"
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--dir", d], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            for name in ("sip-redirectd", "sip-registrard"):
                ms = measure(app / name, port, args.runs)
                print(f"{name}: SIGTERM to exit, ms: {[round(x) for x in ms]}; "
                      f"median {statistics.median(ms):.0f}")
        finally:
            redis.terminate()
            redis.wait()


if __name__ == "__main__":
    main()
