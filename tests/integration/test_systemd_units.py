"""deploy/systemd: the units parse cleanly (systemd-analyze verify, with ExecStart= pointed at the
built binaries), keep the hardening SECURITY.md promises, and score an exposure of at most 2.0 in
systemd-analyze security; the example environment file is NAME=value lines of known variables.
Without systemd-analyze on the machine only the text checks run (a '#' line says so).

    /usr/bin/python3 -m pytest tests/integration/test_systemd_units.py [-k name-substring]
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path


from sipr_test.base import binary

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
    assert want in text, f"{program}.service: no {want}"
    out = tmp / f"{program}.service"
    out.write_text(text.replace(want, f"ExecStart={binary(program)}"))
    return out


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_units_keep_the_promised_hardening():
    for program in PROGRAMS:
        lines = unit_lines(program)
        for want in REQUIRED:
            assert want in lines, f"{program}.service lacks {want}"
        assert any(l.startswith("MemoryMax=") for l in lines), f"{program}.service: no MemoryMax="
        assert f"ExecStart=/usr/local/bin/{program}" in lines, f"{program}.service: ExecStart="


def test_units_verify_cleanly():
    if ANALYZE is None:
        print("# skipped: no systemd-analyze (apt-get install systemd)", flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="sipr-units-") as d:
        for program in PROGRAMS:
            unit = runnable_copy(program, Path(d))
            # verify exits 0 even on unknown keys and bad values: anything printed is a finding.
            r = analyze("verify", "--man=no", str(unit))
            assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (
                f"systemd-analyze verify {program}.service (exit {r.returncode}):\n"
                f"{r.stdout}{r.stderr}")


def test_units_exposure_is_low():
    if ANALYZE is None:
        print("# skipped: no systemd-analyze (apt-get install systemd)", flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="sipr-units-") as d:
        for program in PROGRAMS:
            unit = runnable_copy(program, Path(d))
            # --threshold is in tenths: 20 is an overall exposure of 2.0 ("OK").
            r = analyze("security", "--offline=true", "--threshold=20", str(unit))
            level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
            assert r.returncode == 0, (
                f"{program}.service exposure "
                f"{level.group(1) if level else '?'} is over 2.0:\n"
                f"{r.stdout[-3000:]}{r.stderr}")


def test_env_example_is_name_value_lines():
    text = (UNITS / "sip-redirect.env").read_text()
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.fullmatch(r"(SIPR_[A-Z_]+)=(\S*)", line)
        assert m is not None, f"sip-redirect.env:{n}: not NAME=value: {line!r}"
        values[m.group(1)] = m.group(2)
    for want in ("SIPR_REDIS", "SIPR_SECRET"):
        assert want in values, f"sip-redirect.env does not set {want}"
    # The URL in the example carries no password: that is the credential's job.
    assert "@" not in values["SIPR_REDIS"], "the example SIPR_REDIS holds user info"
    # Every variable it sets is one the daemons know (their --help lists each one).
    helps = ""
    for program in PROGRAMS:
        helps += subprocess.run([str(binary(program)), "--help"], capture_output=True, text=True,
                                timeout=30, env={**os.environ}).stdout
    for name in values:
        assert name in helps, f"sip-redirect.env sets {name}, which neither daemon knows"
