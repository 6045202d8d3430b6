"""Integration-test harness: real redis-server, the real daemons, loopback UDP, SIPp.

Python 3 standard library only. Everything here talks to 127.0.0.1 only, is bounded in time, and
stops what it started by PID (never by name).

    ports        free_udp_port(), free_tcp_port(), free_port() (free for both)
    Redis        RedisServer (a private redis-server on a free port), RedisClient (tiny RESP client)
    topologies   primary_server()/replica_server(), RedisSentinel, cluster_node()/create_cluster()
    daemons      Daemon (a binary of $SIPR_BUILD_DIR/src/app/, or any executable), ServiceDaemon
                 (one of the SIP daemons on free ports), run_program() for one-shot runs
    SIP          SipUdp (requests, RFC 3261 §17.1.2 retransmission, response parsing),
                 Response / ContactValue, transact_many() for load with a window
    SIPp         run_sipp() (a caller, to completion), SippProcess (a server in the background)
    metrics      scrape_metrics(), metric_value()
    location     unpack_binding() (the packed form of include/sipr/location/binding.h)
    runner       @fixture, @case, main(): "ok - name" / "FAIL - name: reason", then exactly one
                 line "N passed, N failed"; exit status 1 on any failure
"""
from __future__ import annotations

import atexit
import inspect
import itertools
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

LOCALHOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"


class TestFailure(AssertionError):
    """A failed expectation; the message is the reason printed after "FAIL - name: "."""


class Skipped(Exception):
    """Raised by skip(): the case counts as neither passed nor failed."""


def skip(reason: str) -> None:
    """Ends the current case as skipped, printing `reason`. Only for a missing external program
    that CI installs (tools/packages.sh), never to hide a failure."""
    raise Skipped(reason)


def check(cond: Any, message: str) -> None:
    """Raises TestFailure(message) unless `cond` is true."""
    if not cond:
        raise TestFailure(message)


def check_eq(got: Any, want: Any, what: str) -> None:
    if got != want:
        raise TestFailure(f"{what}: got {got!r}, want {want!r}")


# ------------------------------------------------------------------------------------------------
# Build directory and time scale

def build_dir() -> Path:
    d = os.environ.get("SIPR_BUILD_DIR")
    if not d:
        raise TestFailure("SIPR_BUILD_DIR is not set (the meson build directory)")
    return Path(d).resolve()


def binary(program: str) -> Path:
    p = build_dir() / "src" / "app" / program
    if not p.exists():
        raise TestFailure(f"{p} does not exist: build it first (ninja -C {build_dir()})")
    return p


def _sanitized_build() -> bool:
    try:
        opts = json.loads((build_dir() / "meson-info" / "intro-buildoptions.json").read_text())
    except (OSError, ValueError, TestFailure):
        return False
    for o in opts:
        if o.get("name") == "b_sanitize":
            return o.get("value") not in ("none", "", None, [])
    return False


_TIME_SCALE: float | None = None


def time_scale() -> float:
    """How much slower than a release build the binaries are: SIPR_TEST_TIME_SCALE, else 3 for a
    sanitizer build, else 1. Every deadline in the harness is multiplied by it."""
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
    raise TestFailure("no free port on 127.0.0.1")


def free_udp_port() -> int:
    return _free_port([socket.SOCK_DGRAM])


def free_tcp_port() -> int:
    return _free_port([socket.SOCK_STREAM])


def free_port() -> int:
    """A port free for both UDP and TCP."""
    return _free_port([socket.SOCK_DGRAM, socket.SOCK_STREAM])


# ------------------------------------------------------------------------------------------------
# Processes

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


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


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
        raise TestFailure(f"{program} {' '.join(args)} did not finish within {scaled(timeout):.0f}s; "
                          f"stderr: {tail((e.stderr or b'').decode(errors='replace'), 5)}")
    out = ProgramResult(p.returncode, p.stdout.decode(errors="replace"),
                        p.stderr.decode(errors="replace"))
    report = sanitizer_report(out.stderr)
    check(report is None, f"{program} {' '.join(args)}: sanitizer report: {report}")
    return out


def startup_refused(program: str, args: Sequence[str], mention: str, *,
                    env: dict[str, str]) -> str | None:
    """What is wrong with how `program args` fails to start on free ports with no Redis running
    (want: non-zero exit, exactly one line on stderr mentioning `mention`), or None. `env` should
    carry SIPR_SECRET: without it the daemons add a warning line."""
    full = ["--listen", f"{LOCALHOST}:{free_udp_port()}", "--metrics",
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
_children: list[Any] = []


def _stop_all_children() -> None:
    for c in reversed(_children):
        proc = getattr(c, "proc", None)
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            except ProcessLookupError:
                pass
            _stop_pid(proc, 5)
        if isinstance(c, RedisServer):
            shutil.rmtree(c.dir, ignore_errors=True)


atexit.register(_stop_all_children)


class Daemon:
    """A long-running binary of $SIPR_BUILD_DIR/src/app/ (or any `executable`, such as Kamailio), as
    a context manager.

    start() launches it with stdout and stderr captured in files of a private temporary directory
    and waits until it answers an OPTIONS over UDP on `sip_port` with 200 (when given), or fails
    with the tail of its stderr. stop() sends SIGTERM to its PID and requires exit status 0 and no
    sanitizer report (SIGKILL after the timeout, which fails)."""

    registry: list["Daemon"] = []  # every daemon started, for the runner's failure report

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
        check(self.proc is None or self.proc.poll() is not None, f"{self.name} already running")
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
        _children.append(self)
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
        raise TestFailure(f"{self.name} did not answer OPTIONS with 200 within "
                          f"{scaled(self.ready_timeout):.0f}s (last: {last}); stderr:\n"
                          f"{self.stderr_tail()}")

    def _check_alive(self, when: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            raise TestFailure(f"{self.name} exited with status {self.proc.returncode} {when}; "
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
            check(not killed, f"{self.name} ignored SIGTERM for {scaled(self.stop_timeout):.0f}s "
                              f"and was killed; stderr:\n{self.stderr_tail()}")
            report = sanitizer_report(self.stderr_text())
            check(report is None, f"{self.name}: sanitizer report: {report}\n{self.stderr_tail(40)}")
            check(rc == 0, f"{self.name} exited with status {rc} after SIGTERM (want 0); "
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
            # On failure keep the temporary directory: the runner prints its stderr tail first.

    # -- output
    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, lines: int = 20) -> str:
        return tail(self.stderr_text(), lines)


class ServiceDaemon(Daemon):
    """sip-registrard or sip-redirectd on free 127.0.0.1 ports: --listen (UDP), --metrics (TCP),
    --redis `redis_url`, --workers `workers`, then `flags`."""

    def __init__(self, program: str, redis_url: str, flags: Sequence[str] = (), *,
                 name: str | None = None, workers: int = 2, **kw: Any):
        self.port = free_udp_port()
        self.metrics_port = free_tcp_port()
        super().__init__(program, ["--listen", f"{LOCALHOST}:{self.port}", "--redis", redis_url,
                                   "--metrics", f"{LOCALHOST}:{self.metrics_port}",
                                   "--workers", str(workers), *flags],
                         sip_port=self.port, name=name, **kw)

    def ua(self) -> "SipUdp":
        """A new UDP client aimed at the daemon."""
        return SipUdp(self.port)

    def metrics(self) -> str:
        return scrape_metrics(self.metrics_port)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of GET /metrics; fails when there is none."""
        v = metric_value(self.metrics(), name, labels)
        check(v is not None, f"no metric {name}{labels} in GET /metrics of {self.name}")
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
        check(shutil.which("kamailio") is not None,
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


# ------------------------------------------------------------------------------------------------
# Redis

class RedisError(Exception):
    """An error reply from Redis."""


class RedisClient:
    """A tiny synchronous RESP2 client over one TCP connection (reconnected on demand)."""

    def __init__(self, port: int, host: str = LOCALHOST, timeout: float = 5.0,
                 auth: Sequence[str] = ()):
        """`auth`: the arguments of the AUTH sent on every (re)connect: (password,) or
        (user, password); empty sends none."""
        self.host, self.port, self.timeout = host, port, timeout
        self.auth = tuple(auth)
        self._sock: socket.socket | None = None
        self._file = None

    def _connect(self) -> None:
        self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self._file = self._sock.makefile("rb")
        if self.auth:
            self._sock.sendall(self._encode(["AUTH", *self.auth]))
            reply = self._read()
            if isinstance(reply, RedisError):
                self.close()
                raise reply

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    def __enter__(self) -> "RedisClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _encode(args: Sequence[Any]) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _read(self) -> Any:
        assert self._file is not None
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._file.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("Redis closed the connection")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"unexpected RESP type {line!r}")

    def command(self, *args: Any) -> Any:
        """Sends one command; returns str (status), int, bytes, None or list. An error reply raises
        RedisError; a transport error closes the connection and raises OSError."""
        try:
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            self._sock.sendall(self._encode(args))
            reply = self._read()
        except (OSError, ConnectionError):
            self.close()
            raise
        if isinstance(reply, RedisError):
            raise reply
        return reply

    # conveniences; strings are decoded as UTF-8 (surrogateescape keeps any byte)
    @staticmethod
    def _s(b: bytes) -> str:
        return b.decode("utf-8", "surrogateescape")

    def ping(self) -> bool:
        return self.command("PING") == "PONG"

    def flushall(self) -> None:
        self.command("FLUSHALL")

    def hgetall(self, key: str) -> dict[str, str]:
        r = self.command("HGETALL", key)
        return {self._s(r[i]): self._s(r[i + 1]) for i in range(0, len(r), 2)}

    def hget(self, key: str, fld: str) -> str | None:
        r = self.command("HGET", key, fld)
        return None if r is None else self._s(r)

    def hlen(self, key: str) -> int:
        return self.command("HLEN", key)

    def pttl(self, key: str) -> int:
        return self.command("PTTL", key)

    def exists(self, key: str) -> int:
        return self.command("EXISTS", key)

    def keys(self, pattern: str = "*") -> list[str]:
        return sorted(self._s(k) for k in self.command("KEYS", pattern))

    def time_ms(self) -> int:
        s, us = self.command("TIME")
        return int(s) * 1000 + int(us) // 1000


class RedisServer:
    """A private redis-server on a free 127.0.0.1 port in a temporary directory, no persistence.
    stop() and start() again keep the port (for outage tests)."""

    kind = "redis-server"  # for messages

    def __init__(self, port: int | None = None, exe: str = "redis-server",
                 extra_args: Sequence[str] = (), password: str | None = None):
        """`password`: started with --requirepass, and the harness's own clients AUTH with it."""
        self.port = port or free_tcp_port()
        self.exe = shutil.which(exe) or exe
        self.extra_args = list(extra_args)
        self.password = password
        if password is not None:
            self.extra_args += ["--requirepass", password]
        self.auth: tuple[str, ...] = (password,) if password is not None else ()
        self.dir = Path(tempfile.mkdtemp(prefix="sipr-redis-"))
        self.log_path = self.dir / "redis.log"
        self.proc: subprocess.Popen | None = None
        self._client: RedisClient | None = None
        _children.append(self)

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}"

    def _command_line(self) -> list[str]:
        return [self.exe, "--port", str(self.port), "--bind", LOCALHOST, "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--logfile", str(self.log_path), *self.extra_args]

    def start(self, timeout: float = 10.0) -> "RedisServer":
        check(self.proc is None or self.proc.poll() is not None, f"{self.kind} already running")
        self.proc = subprocess.Popen(self._command_line(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure(f"{self.kind} exited with {self.proc.returncode} at start: "
                                  f"{self.log_tail()}")
            try:
                with RedisClient(self.port, timeout=1.0, auth=self.auth) as c:
                    if c.ping():
                        return self
            except (OSError, ConnectionError, RedisError):
                time.sleep(0.02)
        self.stop(check_status=False)
        raise TestFailure(f"{self.kind} on port {self.port} did not answer PING within "
                          f"{timeout:.0f}s: {self.log_tail()}")

    def stop(self, timeout: float = 10.0, check_status: bool = True) -> int:
        if self._client is not None:
            self._client.close()
        if self.proc is None:
            return 0
        rc, killed = _stop_pid(self.proc, timeout)
        self.proc = None  # stopped: a second stop() (a context's exit) has nothing to judge
        if check_status:
            check(not killed, f"{self.kind} ignored SIGTERM for {timeout:.0f}s and was killed")
            check(rc == 0, f"{self.kind} exited with {rc}: {self.log_tail()}")
        return rc

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 10) -> str:
        try:
            return tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return ""

    @property
    def client(self) -> RedisClient:
        """A shared connection (reconnects after a restart)."""
        if self._client is None:
            self._client = RedisClient(self.port, auth=self.auth)
        return self._client

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.stop(check_status=exc_type is None)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Redis topologies (added for tests/cluster/test_redis_topologies.py): a replica, Sentinels, a
# Redis Cluster. Every node is a RedisServer (or a subclass): 127.0.0.1, a free port, a private
# directory, stopped by its PID.

def redis_info(client: RedisClient, section: str) -> dict[str, str]:
    """INFO `section` as a dict of its "name:value" lines. Asked again once on a new connection
    when the old one was closed (a Sentinel reconfiguring a node closes its clients'
    connections)."""
    try:
        text = client.command("INFO", section).decode(errors="replace")
    except ConnectionError:
        text = client.command("INFO", section).decode(errors="replace")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


# Redis 7 waits repl-diskless-sync-delay (5 s) for more replicas before a full sync: too long for a
# test. Give it to every node that may serve a sync (a primary, and a replica that may be promoted).
NO_SYNC_DELAY = ("--repl-diskless-sync-delay", "0")


def primary_server() -> RedisServer:
    """A RedisServer (not started) that serves a replica's full sync at once."""
    return RedisServer(extra_args=NO_SYNC_DELAY)


def replica_server(primary: RedisServer) -> RedisServer:
    """A RedisServer (not started) that replicates `primary` (--replicaof); after start(),
    wait_replica_synced() waits for its copy."""
    return RedisServer(extra_args=[*NO_SYNC_DELAY, "--replicaof", LOCALHOST, str(primary.port)])


def wait_replica_synced(primary: RedisServer, replica: RedisServer, timeout: float = 10.0) -> None:
    """Waits until `replica`'s link to `primary` is up and it has applied every write `primary`
    had made when this was called (its replication offset reached the primary's)."""
    want = int(redis_info(primary.client, "replication")["master_repl_offset"])

    def synced() -> bool:
        try:
            info = redis_info(replica.client, "replication")
        except OSError:  # a Sentinel reconfiguring it closes every normal client's connection
            return False
        return (info.get("master_link_status") == "up"
                and int(info.get("slave_repl_offset", -1)) >= want)
    wait_until(synced, timeout, what=f"replica :{replica.port} to sync with :{primary.port} "
                                     f"(offset {want})")


def pairs_to_dict(flat: Sequence[Any]) -> dict[str, str]:
    """[b"k1", b"v1", b"k2", b"v2"] (a RESP2 map) → {"k1": "v1", "k2": "v2"}."""
    return {RedisClient._s(flat[i]): RedisClient._s(flat[i + 1])
            for i in range(0, len(flat) - 1, 2)}


class RedisSentinel(RedisServer):
    """`redis-server <conf> --sentinel` on a free port, monitoring the master at 127.0.0.1:
    `master_port` under `name` with `quorum`; its config file (which Sentinel rewrites) lives in
    its private directory. The Sentinels of one master find each other through the master."""

    def __init__(self, master_port: int, name: str = "mymaster", quorum: int = 2,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 5000):
        super().__init__()
        self.master_name = name
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text("\n".join([
            f"port {self.port}", f"bind {LOCALHOST}", "daemonize no", f"dir {self.dir}",
            f"logfile {self.log_path}", "sentinel resolve-hostnames no",
            f"sentinel monitor {name} {LOCALHOST} {master_port} {quorum}",
            f"sentinel down-after-milliseconds {name} {down_after_ms}",
            f"sentinel failover-timeout {name} {failover_timeout_ms}", ""]))

    kind = "redis sentinel"

    def _command_line(self) -> list[str]:
        return [self.exe, str(self.conf), "--sentinel"]

    def master_addr(self) -> tuple[str, int] | None:
        """SENTINEL get-master-addr-by-name: the master it believes in, or None."""
        r = self.client.command("SENTINEL", "get-master-addr-by-name", self.master_name)
        return None if not r else (RedisClient._s(r[0]), int(r[1]))

    def known(self, what: str) -> list[dict[str, str]]:
        """SENTINEL replicas|sentinels <name>: one dict per instance it knows."""
        return [pairs_to_dict(x) for x in
                self.client.command("SENTINEL", what, self.master_name)]


def sentinel_url(sentinels: Sequence[RedisSentinel], name: str = "mymaster") -> str:
    """sentinel://127.0.0.1:S1,127.0.0.1:S2,.../name"""
    return "sentinel://" + ",".join(f"{LOCALHOST}:{s.port}" for s in sentinels) + f"/{name}"


def wait_sentinels_ready(sentinels: Sequence[RedisSentinel], replica_ports: Sequence[int],
                         timeout: float = 20.0) -> None:
    """Waits until every Sentinel knows every replica (linked to its master: a failover can pick
    it) and every other Sentinel."""
    want = {str(p) for p in replica_ports}

    def ready() -> bool:
        for s in sentinels:
            replicas = {r["port"] for r in s.known("replicas")
                        if r.get("master-link-status") == "ok"
                        and "disconnected" not in r.get("flags", "")
                        and "s_down" not in r.get("flags", "")}
            if not want <= replicas or len(s.known("sentinels")) < len(sentinels) - 1:
                return False
        return True
    wait_until(ready, timeout, interval=0.1,
               what=f"each of {len(sentinels)} sentinels to know replicas {sorted(want)} and "
                    f"the other sentinels")


def cluster_node(node_timeout_ms: int = 2000) -> RedisServer:
    """A RedisServer (not started) with --cluster-enabled yes, its nodes-PORT.conf in its private
    directory, on a port whose cluster bus port (port + 10000) is free too."""
    node = RedisServer(port=_free_port([socket.SOCK_STREAM], spacing=(0, 10000)))
    node.extra_args += ["--cluster-enabled", "yes",
                        "--cluster-config-file", str(node.dir / f"nodes-{node.port}.conf"),
                        "--cluster-node-timeout", str(node_timeout_ms)]
    return node


def cluster_url(nodes: Sequence[RedisServer]) -> str:
    """cluster://127.0.0.1:C1,127.0.0.1:C2,..."""
    return "cluster://" + ",".join(f"{LOCALHOST}:{n.port}" for n in nodes)


def redis_cli(args: Sequence[str], timeout: float = 60.0) -> str:
    """Runs redis-cli with `args` to completion (killed after `timeout` scaled seconds, which
    fails); returns its stdout; a non-zero exit fails with the tail of its output."""
    exe = shutil.which("redis-cli")
    check(exe is not None, "redis-cli is not installed (Debian package redis-tools)")
    try:
        p = subprocess.run([exe, *args], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=scaled(timeout))
    except subprocess.TimeoutExpired as e:
        raise TestFailure(f"redis-cli {' '.join(args)} did not finish within "
                          f"{scaled(timeout):.0f}s: {tail(str(e.stdout or ''), 5)}")
    check(p.returncode == 0, f"redis-cli {' '.join(args)} exited {p.returncode}:\n"
                             f"{tail(p.stdout + p.stderr, 10)}")
    return p.stdout


def create_cluster(nodes: Sequence[RedisServer], timeout: float = 30.0, replicas: int = 0) -> None:
    """redis-cli --cluster create over the started `nodes` (`replicas` replicas per master; the
    slots split evenly over the masters), then waits until every node says cluster_state:ok and
    knows all the others."""
    redis_cli(["--cluster", "create", *[f"{LOCALHOST}:{n.port}" for n in nodes],
               "--cluster-replicas", str(replicas), "--cluster-yes"], timeout)

    def ok() -> bool:
        for n in nodes:
            info = dict(line.split(":", 1) for line in
                        n.client.command("CLUSTER", "INFO").decode().splitlines() if ":" in line)
            if info.get("cluster_state") != "ok" or \
                    int(info.get("cluster_known_nodes", 0)) != len(nodes):
                return False
        return True
    wait_until(ok, timeout, interval=0.1, what="cluster_state:ok on every node")


def cluster_slot_owners(client: RedisClient) -> list[int]:
    """CLUSTER SLOTS as seen by `client`'s node: the master's port of each of the 16384 slots
    (0 where none)."""
    owners = [0] * 16384
    for start, end, master, *_ in client.command("CLUSTER", "SLOTS"):
        for slot in range(start, end + 1):
            owners[slot] = int(master[1])
    return owners


def location_key(aor: str) -> str:
    """The Redis key of an AOR's bindings (DESIGN §6)."""
    return f"sipr:loc:{{{aor}}}"


@dataclass
class StoredBinding:
    """One packed binding (include/sipr/location/binding.h, version 1)."""
    expires_at_ms: int
    updated_at_ms: int
    cseq: int
    call_id: str
    contact: str
    q: int  # thousandths
    path: str
    received: str
    user_agent: str
    instance: str
    reg_id: int | None


def unpack_binding(packed: str) -> StoredBinding:
    parts = packed.split("\x1f")
    check(len(parts) == 12 and parts[0] == "1", f"not a version-1 packed binding: {packed!r}")
    return StoredBinding(int(parts[1]), int(parts[2]), int(parts[3]), parts[4], parts[5],
                         int(parts[6]), parts[7], parts[8], parts[9], parts[10],
                         int(parts[11]) if parts[11] != "" else None)


def pack_binding(b: StoredBinding) -> str:
    """The packed form of `b` (to seed Redis directly)."""
    return "\x1f".join(["1", str(b.expires_at_ms), str(b.updated_at_ms), str(b.cseq), b.call_id,
                        b.contact, str(b.q), b.path, b.received, b.user_agent, b.instance,
                        "" if b.reg_id is None else str(b.reg_id)])


# ------------------------------------------------------------------------------------------------
# SIP messages

COMPACT = {"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
           "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
           "v": "via", "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by",
           "x": "session-expires", "a": "accept-contact", "j": "reject-contact",
           "d": "request-disposition", "y": "identity"}

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1); Date, WWW-Authenticate and the
# like contain commas that are not separators.
LIST_HEADERS = {"via", "contact", "route", "record-route", "path", "allow", "supported", "require",
                "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
                "allow-events", "content-encoding", "in-reply-to", "service-route"}


def split_list(value: str) -> list[str]:
    """Splits a header value at commas outside quotes and angle brackets."""
    out, cur, quoted, angle, i = [], [], False, 0, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\" and i + 1 < len(value):
                cur.append(value[i:i + 2])
                i += 2
                continue
            if ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle += 1
        elif ch == ">":
            angle = max(0, angle - 1)
        elif ch == "," and angle == 0:
            out.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    last = "".join(cur).strip()
    if last or out:
        out.append(last)
    return out


def split_params(text: str) -> list[str]:
    """Splits at ';' outside quotes."""
    out, cur, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def parse_params(text: str) -> dict[str, str | None]:
    """';name=value;flag' → {"name": "value", "flag": None}; names lower-cased, quotes removed."""
    params: dict[str, str | None] = {}
    for p in split_params(text):
        p = p.strip()
        if not p:
            continue
        name, eq, value = p.partition("=")
        v: str | None = value.strip() if eq else None
        if v is not None and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = v[1:-1]
        params[name.strip().lower()] = v
    return params


@dataclass
class ContactValue:
    """One element of a Contact header."""
    star: bool = False
    display: str = ""
    uri: str = ""
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def expires(self) -> int | None:
        v = self.params.get("expires")
        return None if v is None else int(v)

    @property
    def q(self) -> str | None:
        return self.params.get("q")


def parse_name_addr(value: str) -> ContactValue:
    """name-addr or addr-spec with header parameters (Contact, From, To, Path...)."""
    v = value.strip()
    if v == "*":
        return ContactValue(star=True)
    if "<" in v:
        lt = v.index("<")
        gt = v.index(">", lt)
        display = v[:lt].strip().strip('"')
        return ContactValue(display=display, uri=v[lt + 1:gt], params=parse_params(v[gt + 1:]))
    uri, _, params = v.partition(";")
    return ContactValue(uri=uri.strip(), params=parse_params(params))


@dataclass
class Response:
    """A parsed SIP response. Header names are lower-case long forms; `headers` keeps every header
    line in order, `values(name)` splits list headers into their elements."""
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    source: tuple[str, int] = ("", 0)

    def values(self, name: str) -> list[str]:
        name = name.lower()
        out: list[str] = []
        for n, v in self.headers:
            if n == name:
                out.extend(split_list(v) if n in LIST_HEADERS else [v])
        return out

    def header(self, name: str) -> str | None:
        """The first value of `name` (the whole header line's value), or None."""
        name = name.lower()
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.headers if n == name.lower())

    @property
    def contacts(self) -> list[ContactValue]:
        return [parse_name_addr(v) for v in self.values("contact")]

    def contact_map(self) -> dict[str, ContactValue]:
        return {c.uri: c for c in self.contacts}

    @property
    def top_via(self) -> dict[str, str | None]:
        vias = self.values("via")
        return parse_params(vias[0].partition(";")[2]) if vias else {}

    @property
    def to_tag(self) -> str | None:
        to = self.header("to")
        return None if to is None else parse_name_addr(to).params.get("tag")

    def __str__(self) -> str:
        return self.raw.decode(errors="replace")


class SipParseError(ValueError):
    pass


def parse_response(data: bytes, source: tuple[str, int] = ("", 0)) -> Response:
    """Parses one SIP response datagram (folded lines and compact names understood)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipParseError("no blank line after the headers")
    lines = head.decode("utf-8", "replace").split("\r\n")
    m = re.match(r"SIP/2\.0 (\d{3}) ?(.*)$", lines[0])
    if not m:
        raise SipParseError(f"not a SIP response: {lines[0]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # RFC 3261 §7.3.1 folding
            n, v = headers[-1]
            headers[-1] = (n, v + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"header line without a colon: {line!r}")
        name = name.strip().lower()
        headers.append((COMPACT.get(name, name), value.strip()))
    resp = Response(int(m.group(1)), m.group(2), headers, body, data, source)
    clen = resp.header("content-length")
    if clen is not None and int(clen) != len(body):
        raise SipParseError(f"Content-Length {clen} but {len(body)} body bytes")
    return resp


class SipTimeout(TestFailure):
    """No final response within the transaction's time bound."""


_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_ids)}x{random.getrandbits(32):08x}"


@dataclass
class Request:
    method: str
    ruri: str
    branch: str
    call_id: str
    cseq: int
    data: bytes

    def __str__(self) -> str:
        return self.data.decode(errors="replace")


T1 = 0.5
T2 = 4.0


class SipUdp:
    """A UDP user agent client on 127.0.0.1 talking to one server port.

    Requests are built with a Via carrying rport and a fresh RFC 3261 branch, a From tag, Call-ID,
    CSeq, Max-Forwards, any Contacts and extra headers. send() runs a client transaction: it
    retransmits as §17.1.1.2 / §17.1.2.2 say (T1 = 500 ms doubling, capped at T2 for non-INVITE)
    until a final response whose top Via branch and CSeq match, bounded by `timeout`; for INVITE it
    ACKs a non-2xx final response as §17.1.1.3 says."""

    def __init__(self, port: int, host: str = LOCALHOST, rcvbuf: int = 4 << 20):
        self.server = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if opt is None:
                continue
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                break
            except OSError:
                continue
        self.sock.bind((LOCALHOST, 0))
        self.local_port = self.sock.getsockname()[1]
        self.from_tag = unique("ft")
        self.stray: list[Response] = []  # responses that matched no transaction

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "SipUdp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def local(self) -> str:
        return f"{LOCALHOST}:{self.local_port}"

    # -- building
    def build(self, method: str, ruri: str, *, to: str | None = None, from_: str | None = None,
              call_id: str | None = None, cseq: int = 1, cseq_method: str | None = None,
              contacts: Iterable[str] = (), contact_line: bool = False,
              expires: int | str | None = None, headers: Iterable[str | tuple[str, str]] = (),
              body: bytes = b"", branch: str | None = None, rport: bool = True,
              max_forwards: int | None = 70, from_tag: str | None = None,
              via: str | None = None) -> Request:
        """A request. `contacts` are Contact values written as given, one header each, or one
        comma-separated header with contact_line=True. `headers` are extra lines ("Name: value" or
        (name, value)), written after the standard ones."""
        branch = branch or unique("z9hG4bK")
        call_id = call_id or unique("cid") + "@127.0.0.1"
        to = to or f"<{ruri}>"
        if from_ is None:  # the To without its header parameters
            from_ = to[:to.index(">") + 1] if "<" in to else to.split(";")[0]
        tag = from_tag if from_tag is not None else self.from_tag
        lines = [f"{method} {ruri} SIP/2.0",
                 via or f"Via: SIP/2.0/UDP {self.local};branch={branch}" + (";rport" if rport else ""),
                 ]
        if max_forwards is not None:
            lines.append(f"Max-Forwards: {max_forwards}")
        lines += [f"From: {from_}" + (f";tag={tag}" if tag else ""),
                  f"To: {to}",
                  f"Call-ID: {call_id}",
                  f"CSeq: {cseq} {cseq_method or method}"]
        contacts = list(contacts)
        if contacts:
            if contact_line:
                lines.append("Contact: " + ", ".join(contacts))
            else:
                lines += [f"Contact: {c}" for c in contacts]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        for h in headers:
            lines.append(h if isinstance(h, str) else f"{h[0]}: {h[1]}")
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        return Request(method, ruri, branch, call_id, cseq, data)

    def register(self, aor: str, contacts: Iterable[str] = (), *, registrar: str | None = None,
                 **kw: Any) -> Request:
        """A REGISTER for `aor` (To and From), Request-URI the AOR's domain unless given."""
        if registrar is None:
            registrar = "sip:" + aor.split("@", 1)[1] if "@" in aor else aor
        kw.setdefault("to", f"<{aor}>")
        return self.build("REGISTER", registrar, contacts=contacts, **kw)

    def options(self, ruri: str | None = None, **kw: Any) -> Request:
        """OPTIONS addressed to the server itself (no user part): its health probe."""
        ruri = ruri or f"sip:{self.server[0]}:{self.server[1]}"
        kw.setdefault("headers", ["Accept: application/sdp"])
        return self.build("OPTIONS", ruri, **kw)

    # -- sending
    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def recv(self, timeout: float) -> Response | None:
        """The next response datagram within `timeout`, or None. Unparsable datagrams fail."""
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return None
        data, src = self.sock.recvfrom(65536)
        try:
            return parse_response(data, src)
        except SipParseError as e:
            raise TestFailure(f"unparsable datagram from {src}: {e}: {data[:300]!r}")

    def answer_raw(self, data: bytes, branch: str, timeout: float = 3.0) -> Response:
        """Sends `data` once, as it is (no retransmission, no matching beyond the branch), and
        returns the first response whose top Via branch is `branch`; `timeout` is scaled."""
        self.send_raw(data)
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            r = self.recv(deadline - time.monotonic())
            if r is not None and r.top_via.get("branch") == branch:
                return r
        raise TestFailure(f"no answer within {scaled(timeout):.1f}s to {data[:120]!r}")

    def expect_silence(self, seconds: float) -> None:
        """Fails if any datagram arrives within `seconds`."""
        r = self.recv(seconds)
        check(r is None, f"expected no answer, got {r.status if r else ''} {r.reason if r else ''}")

    def matches(self, req: Request, resp: Response) -> bool:
        cseq = (resp.header("cseq") or "").split()
        return (resp.top_via.get("branch") == req.branch and len(cseq) == 2
                and cseq[0] == str(req.cseq) and cseq[1] == req.method)

    def send(self, req: Request, timeout: float = 8.0, retransmit: bool = True,
             accept_provisional: bool = False) -> Response:
        """Runs one client transaction; returns its final response (or the first provisional one
        with accept_provisional). `timeout` is scaled by time_scale()."""
        deadline = time.monotonic() + scaled(timeout)
        interval = T1
        next_send = time.monotonic()
        invite = req.method == "INVITE"
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise SipTimeout(f"no final response to {req.method} {req.ruri} within "
                                 f"{scaled(timeout):.1f}s (Call-ID {req.call_id})")
            if now >= next_send:
                self.send_raw(req.data)
                if not retransmit:
                    next_send = deadline
                else:
                    next_send = now + interval
                    interval = interval * 2 if invite else min(interval * 2, T2)
            resp = self.recv(min(next_send, deadline) - time.monotonic())
            if resp is None:
                continue
            if not self.matches(req, resp):
                self.stray.append(resp)
                continue
            if resp.status < 200:
                if accept_provisional:
                    return resp
                if not invite:
                    interval = T2  # §17.1.2.2: Proceeding retransmits every T2
                continue
            if invite and resp.status >= 300:
                self.send_raw(self.ack_for(req, resp).data)
            return resp

    def ack_for(self, invite: Request, resp: Response) -> Request:
        """The ACK of a non-2xx final response to `invite` (§17.1.1.3): same branch, Call-ID,
        From, CSeq number, the response's To."""
        text = invite.data.decode()
        head = text.split("\r\n\r\n")[0].split("\r\n")
        from_line = next(l for l in head if l.lower().startswith("from:"))
        via_line = head[1]
        lines = [f"ACK {invite.ruri} SIP/2.0", via_line, "Max-Forwards: 70", from_line,
                 f"To: {resp.header('to')}", f"Call-ID: {invite.call_id}",
                 f"CSeq: {invite.cseq} ACK", "Content-Length: 0"]
        return Request("ACK", invite.ruri, invite.branch, invite.call_id, invite.cseq,
                       ("\r\n".join(lines) + "\r\n\r\n").encode())

    def transact(self, method: str, ruri: str, timeout: float = 8.0, **kw: Any) -> Response:
        return self.send(self.build(method, ruri, **kw), timeout=timeout)


_STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3})")
_BRANCH_RE = re.compile(rb"\r\n(?:Via|v)[ \t]*:[^\r\n]*?;branch=([^;,\s]+)", re.I)


@dataclass
class BulkResult:
    status: int | None = None
    response: bytes = b""
    sends: int = 0


def transact_many(port: int, requests: Sequence[Request], window: int = 32,
                  timeout: float = 60.0, keep_response: bool = False) -> list[BulkResult]:
    """Sends `requests` to 127.0.0.1:`port` from one socket with at most `window` outstanding,
    retransmitting each as §17.1.2.2 does (T1 doubling, capped at T2) until its final response,
    matched by top-Via branch. Returns one result per request (status None if none came before the
    scaled `timeout`). Parses only the status line and branch, so it keeps up with large 200s."""
    ua = SipUdp(port, rcvbuf=16 << 20)
    results = [BulkResult() for _ in requests]
    by_branch = {r.branch.encode(): i for i, r in enumerate(requests)}
    pending: dict[int, tuple[float, float]] = {}  # index -> (next send time, interval)
    deadline = time.monotonic() + scaled(timeout)
    nxt = 0
    done = 0
    try:
        while done < len(requests) and time.monotonic() < deadline:
            now = time.monotonic()
            while nxt < len(requests) and len(pending) < window:
                ua.send_raw(requests[nxt].data)
                results[nxt].sends += 1
                pending[nxt] = (now + T1, T1)
                nxt += 1
            for i, (when, interval) in list(pending.items()):
                if when <= now:
                    ua.send_raw(requests[i].data)
                    results[i].sends += 1
                    interval = min(interval * 2, T2)
                    pending[i] = (now + interval, interval)
            wake = min((w for w, _ in pending.values()), default=now + 0.05)
            r, _, _ = select.select([ua.sock], [], [], max(0.0, min(wake, deadline) - now))
            while r:
                data = ua.sock.recv(65536)
                m = _STATUS_RE.match(data)
                b = _BRANCH_RE.search(data)
                if m and b:
                    i = by_branch.get(b.group(1))
                    status = int(m.group(1))
                    if i is not None and status >= 200 and results[i].status is None:
                        results[i].status = status
                        if keep_response:
                            results[i].response = data
                        pending.pop(i, None)
                        done += 1
                r, _, _ = select.select([ua.sock], [], [], 0)
    finally:
        ua.close()
    return results


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
    check(scen.exists(), f"no SIPp scenario {scen}")
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
        check(exe is not None, "sipp is not installed (Debian package sip-tester)")
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
        _children.append(self)
        return self

    def start(self, ready_timeout: float = 5.0) -> "SippProcess":
        """Starts SIPp and waits until its SIP port is bound (for a server that waits for calls)."""
        self.launch()
        deadline = time.monotonic() + scaled(ready_timeout)
        while _can_bind(self.port, socket.SOCK_DGRAM):
            if self.proc.poll() is not None:
                raise TestFailure(f"{self.name} exited with {self.proc.returncode} at start:\n"
                                  f"{tail(self.read('stdout.log'), 10)}")
            if time.monotonic() >= deadline:
                self.stop()
                raise TestFailure(f"{self.name} did not bind udp {LOCALHOST}:{self.port} within "
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
            raise TestFailure(f"{self.name} did not exit within {self.limit + 10}s and was stopped")
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


# ------------------------------------------------------------------------------------------------
# Metrics

def scrape_metrics(port: int, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://{LOCALHOST}:{port}/metrics",
                                timeout=scaled(timeout)) as r:
        check(r.status == 200, f"GET /metrics: HTTP {r.status}")
        return r.read().decode()


_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of the sample `name` whose labels include `labels` (Prometheus text format), or
    None when there is no such sample."""
    want = labels or {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(_LABEL_RE.findall(m.group(3) or ""))
        if all(have.get(k) == v for k, v in want.items()):
            return float(m.group(4))
    return None


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Polls `pred` until it returns something true (returned) or the scaled timeout passes."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TestFailure(f"timed out after {scaled(timeout):.1f}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------
# Runner

@dataclass
class _Fixture:
    name: str
    fn: Callable[..., Any]
    needs: tuple[str, ...]
    reset: Callable[[Any], None] | None


@dataclass
class _Case:
    name: str
    fn: Callable[..., Any]
    uses: tuple[str, ...]


_fixtures: dict[str, _Fixture] = {}
_cases: list[_Case] = []


def fixture(name: str | None = None, *, needs: Sequence[str] = (),
            reset: Callable[[Any], None] | None = None):
    """Registers a generator function as a fixture: the code before its `yield` sets up, the value
    yielded is passed to cases (and fixtures) naming it, the code after tears down. A fixture
    lives across consecutive cases that use it; `reset(value)` runs before each of them."""
    def deco(fn):
        _fixtures[name or fn.__name__] = _Fixture(name or fn.__name__, fn, tuple(needs), reset)
        return fn
    return deco


def case(fn=None, *, uses: Sequence[str] | None = None):
    """Registers a test case; cases run in definition order. The fixtures it receives are its
    parameters' names (or `uses`)."""
    def deco(f):
        names = tuple(uses) if uses is not None else tuple(inspect.signature(f).parameters)
        _cases.append(_Case(f.__name__, f, names))
        return f
    return deco(fn) if fn is not None else deco


class _Active:
    def __init__(self, fx: _Fixture, gen, value):
        self.fx, self.gen, self.value = fx, gen, value


def _closure(names: Iterable[str]) -> list[str]:
    """The fixtures `names` need, dependencies first."""
    order: list[str] = []

    def visit(n: str) -> None:
        if n in order:
            return
        if n not in _fixtures:
            raise TestFailure(f"unknown fixture {n!r}")
        for d in _fixtures[n].needs:
            visit(d)
        order.append(n)

    for n in names:
        visit(n)
    return order


def _one_line(e: BaseException) -> tuple[str, str]:
    """(first line of the reason, the rest) for an exception."""
    if isinstance(e, AssertionError) and str(e):
        text = str(e)
    else:
        text = f"{type(e).__name__}: {e}"
    first, _, rest = text.partition("\n")
    if not isinstance(e, AssertionError):
        rest = (rest + "\n" if rest else "") + "".join(traceback.format_exception(e)).rstrip()
    return first, rest


class Interrupted(BaseException):
    """SIGTERM or SIGINT: stop running cases, tear everything down."""


def _interrupt(signum, frame) -> None:
    raise Interrupted(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the registered cases in order (those whose names contain an argument, if any) and
    prints one line per case and the summary line. Returns the process exit status. SIGTERM or
    SIGINT stop the run: everything started is stopped by PID and the summary still printed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    selected = [c for c in _cases if not argv or any(a in c.name for a in argv)]
    active: dict[str, _Active] = {}
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    started = time.monotonic()

    def teardown(names: Iterable[str]) -> list[str]:
        errors = []
        for n in reversed(list(active)):
            if n not in names:
                continue
            a = active.pop(n)
            try:
                next(a.gen)
            except StopIteration:
                pass
            except Exception as e:  # noqa: BLE001 - reported as the case's failure
                errors.append(f"tearing down {n}: {_one_line(e)[0]}")
                if not isinstance(e, AssertionError):
                    errors.append(_one_line(e)[1])
        return errors

    def run_case(idx: int, c: _Case) -> None:
        first_daemon = len(Daemon.registry)
        t0 = time.monotonic()
        reason = detail = skipped = ""
        try:
            need = _closure(c.uses)
            for n in need:
                if n not in active:
                    fx = _fixtures[n]
                    kwargs = {d: active[d].value for d in fx.needs}
                    gen = fx.fn(**kwargs)
                    active[n] = _Active(fx, gen, next(gen))
            for n in need:
                if active[n].fx.reset is not None:
                    active[n].fx.reset(active[n].value)
            c.fn(**{n: active[n].value for n in c.uses})
        except Skipped as e:
            skipped = str(e) or "skipped"
        except Exception as e:  # noqa: BLE001
            reason, detail = _one_line(e)
        # Tear down the fixtures the next case does not use (all after the last case); a failure
        # there (a daemon that did not exit 0) is this case's failure.
        try:
            keep = set(_closure(selected[idx + 1].uses)) if idx + 1 < len(selected) else set()
        except TestFailure:
            keep = set()
        errs = teardown([n for n in active if n not in keep])
        if errs and not reason:
            reason, detail = errs[0], "\n".join(errs[1:])
        elif errs:
            detail = "\n".join([detail, *errs]).strip()
        took = time.monotonic() - t0
        if skipped and not reason:
            counts["skipped"] += 1
            print(f"skip - {c.name}: {skipped}", flush=True)
            return
        if not reason:
            counts["passed"] += 1
            print(f"ok - {c.name} ({took:.1f}s)", flush=True)
            return
        counts["failed"] += 1
        print(f"FAIL - {c.name}: {reason}", flush=True)
        lines = detail.splitlines() if detail else []
        shown = set()
        for d in Daemon.registry[first_daemon:] + [d for d in Daemon.registry[:first_daemon]
                                                   if d.running()]:
            if id(d) in shown:
                continue
            shown.add(id(d))
            lines.append(f"{d.name} (pid {d.proc.pid if d.proc else '-'}) stderr tail:")
            lines += ["  " + l for l in d.stderr_tail(15).splitlines()]
        for l in lines:
            print(f"#   {l}", flush=True)

    current = ""
    try:
        for idx, c in enumerate(selected):
            current = c.name
            run_case(idx, c)
        current = "(teardown)"
        errs = teardown(list(active))
        if errs:
            counts["failed"] += 1
            print(f"FAIL - teardown: {errs[0]}", flush=True)
    except (KeyboardInterrupt, Interrupted) as e:
        counts["failed"] += 1
        print(f"FAIL - {current}: interrupted ({e})", flush=True)
        _stop_all_children()
    finally:
        for d in Daemon.registry:
            d.cleanup()
    print(f"# {len(selected)} cases in {time.monotonic() - started:.1f}s "
          f"(time scale {time_scale():g})", flush=True)
    if counts["skipped"]:
        print(f"# {counts['skipped']} skipped (neither passed nor failed)", flush=True)
    print(f"{counts['passed']} passed, {counts['failed']} failed", flush=True)
    return 1 if counts["failed"] else 0


# ------------------------------------------------------------------------------------------------
# Bulk transactions over several sockets (added for test_redirect.py)

@dataclass
class BulkRun:
    """The outcome of transact_bulk(): per request its final status (0: none before the deadline)
    and how often it was sent; the responses of the requests asked for in `keep`; elapsed seconds
    from the first send to the last final response."""
    statuses: list[int]
    sends: list[int]
    kept: dict[int, bytes]
    elapsed: float

    @property
    def answered(self) -> int:
        return sum(1 for s in self.statuses if s)

    @property
    def retransmissions(self) -> int:
        return sum(self.sends) - sum(1 for n in self.sends if n)


def transact_bulk(port: int, requests: Sequence[Request], window: int = 200, sockets: int = 4,
                  timeout: float = 120.0, keep: Iterable[int] = ()) -> BulkRun:
    """Like transact_many(), for large loads: the requests go to 127.0.0.1:`port` round-robin
    from `sockets` sockets (so that SO_REUSEPORT spreads them over the daemon's workers), at most
    `window` outstanding in all, each retransmitted T1, 2*T1, ... capped at T2 until its final
    response (matched by top-Via branch). The requests should carry `;rport` (RFC 3581): a
    response goes to the socket that sent the request, whatever port its Via names. Retransmission
    timers live in a heap, so the cost per message does not grow with the window. Bounded by the
    scaled `timeout`."""
    import heapq

    uas = [SipUdp(port, rcvbuf=16 << 20) for _ in range(max(1, sockets))]
    for ua in uas:
        ua.sock.setblocking(False)
    by_fd = {ua.sock.fileno(): ua.sock for ua in uas}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    n = len(requests)
    statuses = [0] * n
    sends = [0] * n
    keep_set = set(keep)
    kept: dict[int, bytes] = {}
    by_branch = {r.branch.encode(): i for i, r in enumerate(requests)}
    timers: list[tuple[float, int, float]] = []  # (when, index, interval)
    server = (LOCALHOST, port)

    def send(i: int) -> None:
        sends[i] += 1
        try:
            uas[i % len(uas)].sock.sendto(requests[i].data, server)
        except (BlockingIOError, InterruptedError):
            pass  # as if lost: the retransmission timer covers it

    start = time.monotonic()
    deadline = start + scaled(timeout)
    last = start
    outstanding = nxt = done = 0
    try:
        while done < n:
            now = time.monotonic()
            if now >= deadline:
                break
            while nxt < n and outstanding < window:
                send(nxt)
                heapq.heappush(timers, (now + T1, nxt, T1))
                outstanding += 1
                nxt += 1
            while timers and timers[0][0] <= now:
                _, i, interval = heapq.heappop(timers)
                if statuses[i]:
                    continue
                send(i)
                interval = min(interval * 2, T2)
                heapq.heappush(timers, (now + interval, i, interval))
            wake = timers[0][0] if timers else now + 0.05
            for fd, _ in poller.poll(max(0.0, min(wake, deadline) - now) * 1000):
                sock = by_fd[fd]
                while True:
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    m = _STATUS_RE.match(data)
                    b = _BRANCH_RE.search(data)
                    if not (m and b):
                        continue
                    i = by_branch.get(b.group(1))
                    status = int(m.group(1))
                    if i is None or status < 200 or statuses[i]:
                        continue
                    statuses[i] = status
                    if i in keep_set:
                        kept[i] = data
                    outstanding -= 1
                    done += 1
                    last = time.monotonic()
    finally:
        for ua in uas:
            ua.close()
    return BulkRun(statuses, sends, kept, last - start)
