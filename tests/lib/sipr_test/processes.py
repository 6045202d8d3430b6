"""The daemons under test and one-shot runs of the project's binaries.

Daemon: a binary of $SIPR_BUILD_DIR/src/app/ (or any executable) in the background, stopped by
its PID; ServiceDaemon: sip-redirectd or sip-registrard on free ports; Kamailio: one of deploy/'s
run.sh scripts. run_program() and startup_refused() for one-shot runs. Every child is stopped by
PID at exit (stop_all_children), also after SIGTERM from a meson timeout.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .base import LOCALHOST, binary, free_port, free_tcp_port, scaled, tail, wait_until
from .metrics import metric_value, scrape_metrics
from .sip import SipUdp

def _stop_pid(proc: subprocess.Popen, timeout: float) -> tuple[int, bool]:
    """SIGTERM, wait up to `timeout`, else SIGKILL. Returns (exit status, killed)."""
    if proc.poll() is not None:
        return proc.returncode, False
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return proc.returncode, True


def _sanitizer_env(env: dict[str, str]) -> dict[str, str]:
    # A UBSan report must fail the run, not just print; ASan already aborts on its own.
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    return env


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer")


def sanitizer_report(text: str) -> str | None:
    """The first sanitizer report line in `text`, if any."""
    for line in text.splitlines():
        if any(m in line for m in SANITIZER_MARKERS):
            return line.strip()
    return None


@dataclass
class ProgramResult:
    returncode: int
    stdout: str
    stderr: str


def run_program(program: str, args: Sequence[str], timeout: float = 10.0,
                env: dict[str, str] | None = None) -> ProgramResult:
    """Runs a binary of $SIPR_BUILD_DIR/src/app/ to completion (killed after `timeout` scaled
    seconds, which fails the test)."""
    full_env = _sanitizer_env(dict(os.environ if env is None else env))
    try:
        p = subprocess.run([str(binary(program)), *args], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=scaled(timeout), env=full_env)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{program} {' '.join(args)} did not finish within "
                             f"{scaled(timeout):.0f}s; "
                          f"stderr: {tail((e.stderr or b'').decode(errors='replace'), 5)}")
    out = ProgramResult(p.returncode, p.stdout.decode(errors="replace"),
                        p.stderr.decode(errors="replace"))
    report = sanitizer_report(out.stderr)
    assert report is None, f"{program} {' '.join(args)}: sanitizer report: {report}"
    return out


def startup_refused(program: str, args: Sequence[str], mention: str, *,
                    env: dict[str, str]) -> str | None:
    """What is wrong with how `program args` fails to start on free ports with no Redis running
    (want: non-zero exit, exactly one line on stderr mentioning `mention`), or None. `env` should
    carry SIPR_SECRET: without it the daemons add a warning line."""
    full = ["--listen", f"{LOCALHOST}:{free_port()}", "--metrics",
            f"{LOCALHOST}:{free_tcp_port()}", "--redis", f"redis://{LOCALHOST}:{free_tcp_port()}",
            *args]
    r = run_program(program, full, timeout=15, env=env)
    lines = r.stderr.splitlines()
    what = f"{program} {' '.join(args)}"
    if r.returncode == 0:
        return f"{what}: exit status 0"
    if len(lines) != 1:
        return f"{what}: want one line on stderr, got {len(lines)}: {r.stderr!r}"
    if mention not in lines[0]:
        return f"{what}: stderr does not mention {mention!r}: {lines[0]!r}"
    return None


# Everything started here, so that an interrupted run (Ctrl-C, SIGTERM from a test timeout) still
# stops it by PID on the way out.
CHILDREN: list[Any] = []


def stop_all_children() -> None:
    for c in reversed(CHILDREN):
        proc = getattr(c, "proc", None)
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            except ProcessLookupError:
                pass
            _stop_pid(proc, 5)
        if getattr(c, "dir", None) is not None:  # a RedisServer's private directory
            shutil.rmtree(c.dir, ignore_errors=True)


atexit.register(stop_all_children)


class Daemon:
    """A long-running binary of $SIPR_BUILD_DIR/src/app/ (or any `executable`, such as Kamailio), as
    a context manager.

    start() launches it with stdout and stderr captured in files of a private temporary directory
    and waits until it answers an OPTIONS over UDP on `sip_port` with 200 (when given), or fails
    with the tail of its stderr. stop() sends SIGTERM to its PID and requires exit status 0 and no
    sanitizer report (SIGKILL after the timeout, which fails)."""

    registry: list["Daemon"] = []  # every daemon started, for tests/conftest.py's failure report

    def __init__(self, program: str, args: Sequence[str], *, sip_port: int | None = None,
                 name: str | None = None, ready_timeout: float = 10.0, stop_timeout: float = 10.0,
                 env: dict[str, str] | None = None, executable: str | Path | None = None):
        self.program = program
        self.executable = executable
        self.args = list(args)
        self.sip_port = sip_port
        self.name = name or program
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix=f"sipr-{program}-"))
        self.stderr_path = self.tmp / "stderr.log"
        self.stdout_path = self.tmp / "stdout.log"
        self.returncode: int | None = None
        self.started_at = 0.0

    # -- life cycle
    def start(self, wait_ready: bool = True) -> "Daemon":
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        env = _sanitizer_env(dict(os.environ if self.env is None else self.env))
        # sip-redirectd drains for 5 s on SIGTERM by default: the tests that are not about the
        # drain stop it at once (a --drain-seconds flag overrides this).
        env.setdefault("SIPR_DRAIN_SECONDS", "0")
        with open(self.stderr_path, "ab") as err, open(self.stdout_path, "ab") as out:
            exe = self.executable if self.executable is not None else binary(self.program)
            self.proc = subprocess.Popen([str(exe), *self.args],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=env, start_new_session=True)
        self.returncode = None
        self.started_at = time.monotonic()
        Daemon.registry.append(self)
        CHILDREN.append(self)
        if wait_ready:
            try:
                self.wait_ready()
            except BaseException:
                self.kill_quietly()
                raise
        return self

    def wait_ready(self) -> None:
        """Waits until OPTIONS to the daemon gets 200 (or, without a SIP port, until it has run for
        a moment without exiting)."""
        deadline = time.monotonic() + scaled(self.ready_timeout)
        if self.sip_port is None:
            time.sleep(0.2)
            self._check_alive("while starting")
            return
        last = "no answer"
        with SipUdp(self.sip_port) as ua:
            # One short-lived OPTIONS after another (not one transaction's T1 back-off): the
            # socket may not be bound yet, and Redis may not be connected yet (503).
            while time.monotonic() < deadline:
                self._check_alive("while starting")
                req = ua.options()
                ua.send_raw(req.data)
                until = time.monotonic() + 0.1
                while (left := until - time.monotonic()) > 0:
                    r = ua.recv(left)
                    if r is None or not ua.matches(req, r):
                        continue
                    if r.status == 200:
                        return
                    last = f"{r.status} {r.reason}"
                    time.sleep(0.05)
                    break
        raise AssertionError(f"{self.name} did not answer OPTIONS with 200 within "
                          f"{scaled(self.ready_timeout):.0f}s (last: {last}); stderr:\n"
                          f"{self.stderr_tail()}")

    def _check_alive(self, when: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            raise AssertionError(f"{self.name} exited with status {self.proc.returncode} {when}; "
                              f"stderr:\n{self.stderr_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check_status: bool = True) -> int:
        """SIGTERM by PID; returns the exit status. With check_status, anything but a clean exit 0
        without sanitizer reports fails."""
        if self.proc is None:
            return 0
        if self.returncode is not None and self.proc.poll() is not None:
            rc, killed = self.proc.returncode, False
        else:
            rc, killed = _stop_pid(self.proc, scaled(self.stop_timeout))
        self.returncode = rc
        if check_status:
            assert not killed, (f"{self.name} ignored SIGTERM for {scaled(self.stop_timeout):.0f}s "
                              f"and was killed; stderr:\n{self.stderr_tail()}")
            report = sanitizer_report(self.stderr_text())
            assert report is None, (
                f"{self.name}: sanitizer report: {report}\n{self.stderr_tail(40)}")
            assert rc == 0, (f"{self.name} exited with status {rc} after SIGTERM (want 0); "
                           f"stderr:\n{self.stderr_tail()}")
        return rc

    def kill_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _stop_pid(self.proc, scaled(self.stop_timeout))

    def cleanup(self) -> None:
        self.kill_quietly()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.stop(check_status=True)
            else:
                self.kill_quietly()
        finally:
            if exc_type is None:
                self.cleanup()
            # On failure keep the temporary directory: the failure report shows its stderr tail.

    # -- output
    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, lines: int = 20) -> str:
        return tail(self.stderr_text(), lines)


class ServiceDaemon(Daemon):
    """sip-registrard or sip-redirectd on free 127.0.0.1 ports: --listen (UDP, and TCP for
    sip-redirectd: the port is free for both), --metrics (TCP),
    --redis `redis_url`, --workers `workers`, then `flags`."""

    def __init__(self, program: str, redis_url: str, flags: Sequence[str] = (), *,
                 name: str | None = None, workers: int = 2, **kw: Any):
        self.port = free_port()  # sip-redirectd listens on UDP and TCP
        self.metrics_port = free_tcp_port()
        super().__init__(program, ["--listen", f"{LOCALHOST}:{self.port}", "--redis", redis_url,
                                   "--metrics", f"{LOCALHOST}:{self.metrics_port}",
                                   "--workers", str(workers), *flags],
                         sip_port=self.port, name=name, **kw)

    def wait_ready(self) -> None:
        """As Daemon.wait_ready, then until every worker's Redis connection is ready
        (sipr_redis_up 1): an OPTIONS 200 speaks for the one worker that answered it, and with
        --spread random the next request may reach another."""
        super().wait_ready()
        wait_until(lambda: metric_value(self.metrics(), "sipr_redis_up") == 1,
                   self.ready_timeout, interval=0.02,
                   what=f"every worker of {self.name} to be connected to Redis (sipr_redis_up 1)")

    def ua(self) -> "SipUdp":
        """A new UDP client aimed at the daemon."""
        return SipUdp(self.port)

    def metrics(self) -> str:
        return scrape_metrics(self.metrics_port)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of GET /metrics; fails when there is none."""
        v = metric_value(self.metrics(), name, labels)
        assert v is not None, f"no metric {name}{labels} in GET /metrics of {self.name}"
        return v


class Kamailio(Daemon):
    """Kamailio started by one of the run.sh scripts of deploy/ (kamailio-proxy, kamailio-lb), which
    exec kamailio: the PID is Kamailio's main process. Its runtime directory (run.sh --dir) is
    `self.tmp / "run"`, and Kamailio's processes name it on their command line.

    stop(): SIGTERM to the main process, which stops its children and exits 0. Now and then (twice
    in some thirty runs, under load) a child stays, asleep with no signal pending, and the main
    process waits for it for ever; a second SIGTERM ends it. So a child still there after a grace
    period gets SIGTERM again, by its PID; the main process must then exit 0 as any daemon must,
    and whatever is left of the tree at the end is killed by PID."""

    def __init__(self, run_sh: Path, args: Sequence[str], *, sip_port: int, name: str,
                 **kw: Any):
        assert shutil.which("kamailio") is not None, (
            "kamailio is not installed (Debian package kamailio; tools/packages.sh)")
        super().__init__("kamailio", [], sip_port=sip_port, name=name, executable=run_sh, **kw)
        self.run_dir = self.tmp / "run"
        self.args = ["--dir", str(self.run_dir), *args]

    def stop(self, check_status: bool = True) -> int:
        tree = self.children() if self.running() else []
        try:
            if self.running():
                assert self.proc is not None
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=scaled(3))
                except subprocess.TimeoutExpired:
                    left = self.children()
                    print(f"# {self.name}: children {left} missed SIGTERM; sent again", flush=True)
                    for child in left:
                        signal_quietly(child, signal.SIGTERM)
            return super().stop(check_status)
        finally:
            for child in tree:
                if self.ours(child):
                    signal_quietly(child, signal.SIGKILL)

    def kill_quietly(self) -> None:
        tree = self.children() if self.running() else []
        super().kill_quietly()
        for child in tree:
            if self.ours(child):
                signal_quietly(child, signal.SIGKILL)

    def children(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.pid)], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def ours(self, pid: int) -> bool:
        """Still one of this Kamailio's processes (its command line names its private directory)."""
        try:
            return str(self.tmp).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False


def signal_quietly(pid: int, sig: int) -> None:
    """Sends `sig` to `pid`, unless it is gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


