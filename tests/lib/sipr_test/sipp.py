"""SIPp (Debian sip-tester 3.6) as the peer: run_sipp() runs a caller to completion, SippProcess
runs a user agent server in the background."""
from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .base import LOCALHOST, SCENARIOS, _can_bind, _free_port, free_udp_port, scaled, tail
from .processes import CHILDREN, _stop_pid

# ------------------------------------------------------------------------------------------------
# SIPp

@dataclass
class SippResult:
    returncode: int
    stdout: str
    errors: str     # -trace_err log
    messages: str   # -trace_msg log
    logs: str       # <log> actions
    command: list[str]

    def summary(self) -> str:
        return (f"sipp exit {self.returncode}\n--- errors\n{tail(self.errors, 15)}\n--- messages\n"
                f"{tail(self.messages, 30)}\n--- logs\n{tail(self.logs, 10)}")

    def counts(self) -> tuple[int, int]:
        """(successful, failed) calls from SIPp's final statistics screen; (0, 0) without one."""
        ok = re.search(r"^\s*Successful call\s*\|\s*\d+\s*\|\s*(\d+)", self.stdout, re.M)
        bad = re.search(r"^\s*Failed call\s*\|\s*\d+\s*\|\s*(\d+)", self.stdout, re.M)
        return (int(ok.group(1)) if ok else 0, int(bad.group(1)) if bad else 0)


def _scenario_path(scenario: str | Path) -> Path:
    scen = Path(scenario)
    if not scen.is_absolute() and not scen.exists():
        scen = SCENARIOS / scenario
    assert scen.exists(), f"no SIPp scenario {scen}"
    return scen


class SippProcess:
    """SIPp (sip-tester 3.6) as a process of its own: a user agent server (a scenario that starts
    with <recv>) that answers until stopped, or a caller awaited with wait(). Its SIP, media and
    control ports are on 127.0.0.1, its logs in a private temporary directory; -trace_err,
    -trace_msg and -trace_logs are on. SIPp's own -timeout (scaled `timeout`) bounds its life.

    start() returns once its SIP port is bound. stop() asks it to finish by PID (SIGUSR1: SIPp
    places no new calls and exits once the current ones end), then SIGTERM, then SIGKILL; both
    stop() and wait() return its SippResult."""

    def __init__(self, scenario: str | Path, target_port: int | None = None,
                 args: Sequence[str] = (), *, calls: int | None = None,
                 local_port: int | None = None, service: str = "service", timeout: float = 120.0,
                 name: str = "sipp"):
        self.scenario = _scenario_path(scenario)
        exe = shutil.which("sipp")
        assert exe is not None, "sipp is not installed (Debian package sip-tester)"
        self.name = name
        self.work = Path(tempfile.mkdtemp(prefix="sipr-sipp-"))
        self.port = local_port or free_udp_port()
        media_port = _free_port([socket.SOCK_DGRAM], spacing=(0, 1, 2, 3))
        control_port = free_udp_port()
        self.limit = max(1, int(scaled(timeout)))
        self.command = [exe, *([f"{LOCALHOST}:{target_port}"] if target_port else []),
                        "-sf", str(self.scenario), *(["-m", str(calls)] if calls else []),
                        "-s", service, "-i", LOCALHOST, "-p", str(self.port), "-bind_local",
                        "-mi", LOCALHOST, "-mp", str(media_port), "-cp", str(control_port),
                        "-nostdin", "-timeout", f"{self.limit}s", "-timeout_error",
                        "-trace_err", "-error_file", str(self.work / "errors.log"),
                        "-trace_msg", "-message_file", str(self.work / "messages.log"),
                        "-trace_logs", "-log_file", str(self.work / "logs.log"),
                        *args]
        self.proc: subprocess.Popen | None = None
        self.result: SippResult | None = None

    def launch(self) -> "SippProcess":
        """Starts SIPp and returns at once."""
        with open(self.work / "stdout.log", "wb") as out:
            self.proc = subprocess.Popen(self.command, cwd=self.work, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        CHILDREN.append(self)
        return self

    def start(self, ready_timeout: float = 5.0) -> "SippProcess":
        """Starts SIPp and waits until its SIP port is bound (for a server that waits for calls)."""
        self.launch()
        deadline = time.monotonic() + scaled(ready_timeout)
        while _can_bind(self.port, socket.SOCK_DGRAM):
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} at start:\n"
                                  f"{tail(self.read('stdout.log'), 10)}")
            if time.monotonic() >= deadline:
                self.stop()
                raise AssertionError(f"{self.name} did not bind udp {LOCALHOST}:{self.port} within "
                                  f"{scaled(ready_timeout):.0f}s")
            time.sleep(0.02)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def read(self, name: str) -> str:
        p = self.work / name
        return p.read_text(errors="replace") if p.exists() else ""

    def logs(self) -> str:
        """What its <log> actions wrote so far."""
        return self.read("logs.log")

    def _finish(self, rc: int) -> SippResult:
        self.result = SippResult(rc, self.read("stdout.log"), self.read("errors.log"),
                                 self.read("messages.log"), self.read("logs.log"), self.command)
        return self.result

    def wait(self) -> SippResult:
        """Waits for SIPp to exit by itself (its -timeout plus a grace period, else it is stopped
        and the test fails)."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=self.limit + 10)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.name} did not exit within {self.limit + 10}s and was "
                                 "stopped")
        return self._finish(rc)

    def stop(self, timeout: float = 10.0) -> SippResult:
        """Ends it by PID: SIGUSR1 and up to `timeout` (scaled) seconds for its calls to end, then
        SIGTERM/SIGKILL. Returns its result (exit status as SIPp reports it, or the signal)."""
        if self.result is not None:
            return self.result
        assert self.proc is not None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGUSR1)
                self.proc.wait(timeout=scaled(timeout))
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                _stop_pid(self.proc, 5)
        return self._finish(self.proc.returncode)

    def cleanup(self) -> None:
        if self.running():
            _stop_pid(self.proc, 5)
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> "SippProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.cleanup()


def run_sipp(scenario: str | Path, target_port: int, args: Sequence[str] = (),
             timeout: float = 15.0, calls: int = 1, local_port: int | None = None,
             service: str = "service") -> SippResult:
    """Runs SIPp (sip-tester 3.6) non-interactively against 127.0.0.1:`target_port`: the scenario
    (a path or a name under scenarios/), `calls` calls, its own SIP, media and control ports on
    127.0.0.1, logs in a temporary directory. Bounded by `timeout` (scaled): SIPp's own -timeout
    fails the run first, and the process is killed by PID after a grace period."""
    sipp = SippProcess(scenario, target_port, args, calls=calls, local_port=local_port,
                       service=service, timeout=timeout)
    try:
        return sipp.launch().wait()
    finally:
        sipp.cleanup()


