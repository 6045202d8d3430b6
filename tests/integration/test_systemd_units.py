#!/usr/bin/env python3
"""deploy/systemd: the units parse cleanly (systemd-analyze verify, with ExecStart= pointed at the
built binaries), keep the hardening SECURITY.md promises, and score an exposure of at most 2.0 in
systemd-analyze security; the example environment file is NAME=value lines of known variables.
Without systemd-analyze on the machine only the text checks run (a '#' line says so).

    SIPR_BUILD_DIR=build python3 tests/integration/test_systemd_units.py
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True  # keep the source tree clean when run by hand
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import binary, case, check, main  # noqa: E402

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
PROGRAMS = ("sip-redirectd", "sip-registrard")
# What SECURITY.md says the units do.
REQUIRED = [
    "DynamicUser=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
    "NoNewPrivileges=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    "AmbientCapabilities=CAP_NET_BIND_SERVICE", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter=@system-service", "Restart=on-failure",
    "LoadCredential=redis-password:/etc/sip-redirect/redis-password",
    "Environment=SIPR_REDIS_PASSWORD_FILE=%d/redis-password",
]
ANALYZE = shutil.which("systemd-analyze")


def unit_lines(program: str) -> list[str]:
    return [l.strip() for l in (UNITS / f"{program}.service").read_text().splitlines()
            if l.strip() and not l.lstrip().startswith("#")]


def runnable_copy(program: str, tmp: Path) -> Path:
    """The unit with ExecStart= naming the built binary, so verify can check it exists."""
    text = (UNITS / f"{program}.service").read_text()
    want = f"ExecStart=/usr/local/bin/{program}"
    check(want in text, f"{program}.service: no {want}")
    out = tmp / f"{program}.service"
    out.write_text(text.replace(want, f"ExecStart={binary(program)}"))
    return out


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@case
def units_keep_the_promised_hardening():
    for program in PROGRAMS:
        lines = unit_lines(program)
        for want in REQUIRED:
            check(want in lines, f"{program}.service lacks {want}")
        check(any(l.startswith("MemoryMax=") for l in lines), f"{program}.service: no MemoryMax=")
        check(f"ExecStart=/usr/local/bin/{program}" in lines, f"{program}.service: ExecStart=")


@case
def units_verify_cleanly():
    if ANALYZE is None:
        print("# skipped: no systemd-analyze (apt-get install systemd)", flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="sipr-units-") as d:
        for program in PROGRAMS:
            unit = runnable_copy(program, Path(d))
            # verify exits 0 even on unknown keys and bad values: anything printed is a finding.
            r = analyze("verify", "--man=no", str(unit))
            check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
                  f"systemd-analyze verify {program}.service (exit {r.returncode}):\n"
                  f"{r.stdout}{r.stderr}")


@case
def units_exposure_is_low():
    if ANALYZE is None:
        print("# skipped: no systemd-analyze (apt-get install systemd)", flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="sipr-units-") as d:
        for program in PROGRAMS:
            unit = runnable_copy(program, Path(d))
            # --threshold is in tenths: 20 is an overall exposure of 2.0 ("OK").
            r = analyze("security", "--offline=true", "--threshold=20", str(unit))
            level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
            check(r.returncode == 0, f"{program}.service exposure "
                                     f"{level.group(1) if level else '?'} is over 2.0:\n"
                                     f"{r.stdout[-3000:]}{r.stderr}")


@case
def env_example_is_name_value_lines():
    text = (UNITS / "sip-redirect.env").read_text()
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.fullmatch(r"(SIPR_[A-Z_]+)=(\S*)", line)
        check(m is not None, f"sip-redirect.env:{n}: not NAME=value: {line!r}")
        values[m.group(1)] = m.group(2)
    for want in ("SIPR_REDIS", "SIPR_SECRET"):
        check(want in values, f"sip-redirect.env does not set {want}")
    # The URL in the example carries no password: that is the credential's job.
    check("@" not in values["SIPR_REDIS"], "the example SIPR_REDIS holds user info")
    # Every variable it sets is one the daemons know (their --help lists each one).
    helps = ""
    for program in PROGRAMS:
        helps += subprocess.run([str(binary(program)), "--help"], capture_output=True, text=True,
                                timeout=30, env={**os.environ}).stdout
    for name in values:
        check(name in helps, f"sip-redirect.env sets {name}, which neither daemon knows")


if __name__ == "__main__":
    sys.exit(main())
