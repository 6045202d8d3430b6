"""Build directory, time scale, free ports, waiting: what every other module of sipr_test uses."""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

LOCALHOST = "127.0.0.1"
TESTS = Path(__file__).resolve().parents[2]  # tests/
SCENARIOS = TESTS / "integration" / "scenarios"


# ------------------------------------------------------------------------------------------------
# Build directory and time scale

def build_dir() -> Path:
    """$SIPR_BUILD_DIR (set by meson test), else build/release of the source tree."""
    d = os.environ.get("SIPR_BUILD_DIR")
    if d:
        return Path(d).resolve()
    default = TESTS.parent / "build" / "release"
    if not (default / "build.ninja").exists():
        raise AssertionError("SIPR_BUILD_DIR is not set (the meson build directory)")
    return default


def binary(program: str) -> Path:
    p = build_dir() / "src" / "app" / program
    if not p.exists():
        raise AssertionError(f"{p} does not exist: build it first (ninja -C {build_dir()})")
    return p


def _sanitized_build() -> bool:
    try:
        opts = json.loads((build_dir() / "meson-info" / "intro-buildoptions.json").read_text())
    except (OSError, ValueError, AssertionError):
        return False
    for o in opts:
        if o.get("name") == "b_sanitize":
            return o.get("value") not in ("none", "", None, [])
    return False


_TIME_SCALE: float | None = None


def time_scale() -> float:
    """How much slower than a release build the binaries are: SIPR_TEST_TIME_SCALE, else 3 for a
    sanitizer build, else 1. Every deadline in sipr_test is multiplied by it."""
    global _TIME_SCALE
    if _TIME_SCALE is None:
        env = os.environ.get("SIPR_TEST_TIME_SCALE")
        _TIME_SCALE = float(env) if env else (3.0 if _sanitized_build() else 1.0)
    return _TIME_SCALE


def scaled(seconds: float) -> float:
    return seconds * time_scale()


# ------------------------------------------------------------------------------------------------
# Ports

_handed_out: set[int] = set()
_port_lock = threading.Lock()


def _can_bind(port: int, kind: int) -> bool:
    s = socket.socket(socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOCALHOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _free_port(kinds: Sequence[int], spacing: Sequence[int] = (0,)) -> int:
    """A port on 127.0.0.1 where every `port + d` (d in spacing) is free for every socket kind,
    never the same one twice in this process."""
    with _port_lock:
        for _ in range(500):
            probe = socket.socket(socket.AF_INET, kinds[0])
            probe.bind((LOCALHOST, 0))
            port = probe.getsockname()[1]
            probe.close()
            ports = [port + d for d in spacing]
            if any(p > 65535 or p in _handed_out for p in ports):
                continue
            if all(_can_bind(p, k) for p in ports for k in kinds):
                _handed_out.update(ports)
                return port
    raise AssertionError("no free port on 127.0.0.1")


def free_udp_port() -> int:
    return _free_port([socket.SOCK_DGRAM])


def free_tcp_port() -> int:
    return _free_port([socket.SOCK_STREAM])


def free_port(span: int = 1) -> int:
    """A port free for both UDP and TCP, with the `span` - 1 ports after it (a SIP UA that binds
    UDP and TCP on its port and TLS on the next one asks for 2)."""
    return _free_port([socket.SOCK_DGRAM, socket.SOCK_STREAM], spacing=range(span))



def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Polls `pred` until it returns something true (returned) or the scaled timeout passes."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {scaled(timeout):.1f}s waiting for {what}")
        time.sleep(interval)


