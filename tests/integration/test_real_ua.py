"""Real SIP user agents from Debian register with a password to sip-registrard --auth digest as
shipped (no algorithm flags), then an INVITE to their AOR is redirected (302) by sip-redirectd to
the contact they registered (issue 14, defect 8; DESIGN §5, §6, §9; RFC 8760).

- baresip 1.0 answers MD5 only, and gives up ("Register: Function not implemented") on a 401 that
  offers SHA-256 at all, in either order. Its subscriber has no algorithm list: the registrar's
  default, MD5 alone.
- linphonec (linphone-cli 5.1) answers SHA-256. Its subscriber is added with
  `sip-locctl user add --algorithms SHA-256,MD5`, and must authenticate with SHA-256
  (sipr_auth_successes_total{algorithm="SHA-256"}); a subscriber without a list registers from the
  same linphonec with MD5.

Each UA runs headless from a private config dir under a temporary directory, bound to 127.0.0.1 on
a free port, bounded in time and stopped by PID. A case whose UA binary is missing is skipped with
the reason printed (tools/packages.sh installs both, so CI runs them).

    /usr/bin/python3 -m pytest tests/integration/test_real_ua.py [-k name-substring]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from sipr_test.base import LOCALHOST, free_port, scaled, tail
from sipr_test.bindings import location_key, unpack_binding
from sipr_test.processes import CHILDREN, ServiceDaemon, _stop_pid, run_program
from sipr_test.redis_servers import RedisServer

DOMAIN = "example.com"
SECRET = "real-ua-integration-secret"
ENV = {**os.environ, "SIPR_SECRET": SECRET}
# user -> (password, sip-locctl user add --algorithms, or None for the registrar's default)
USERS = {
    "alice": ("baresip-pass-1", None),         # baresip: MD5 only
    "carol": ("linphone-pass-3", "SHA-256,MD5"),  # linphonec: SHA-256 where allowed
    "dave": ("linphone-pass-4", None),          # linphonec on a record without a list
}
REGISTER_WAIT = 20.0  # seconds a UA gets to register (scaled)
UA_LIFETIME = 90      # seconds after which baresip quits by itself, whatever happens


def aor(user: str) -> str:
    return f"sip:{user}@{DOMAIN}"


# ------------------------------------------------------------------------------------------------
# Fixtures: one redis-server, one registrar as shipped (--auth digest, no algorithm flag), one
# redirect server, for the whole run.

def add_users(r: RedisServer) -> None:
    r.client.flushall()
    for user, (password, algorithms) in USERS.items():
        args = ["--redis", r.url, "user", "add", aor(user), "--password", password]
        if algorithms:
            args += ["--algorithms", algorithms]
        res = run_program("sip-locctl", args)
        assert res.returncode == 0, (
            f"sip-locctl {' '.join(args)} exited {res.returncode}: "
            f"{res.stderr}")


@pytest.fixture(scope="module")
def redis_reset():
    return add_users


@pytest.fixture(scope="module")
def registrar(redis_server):
    with ServiceDaemon("sip-registrard", redis_server.url, ["--domain", DOMAIN, "--auth", "digest"],
                       env=ENV) as d:
        yield d


@pytest.fixture(scope="module")
def redirect(redis_server):
    with ServiceDaemon("sip-redirectd", redis_server.url, ["--domain", DOMAIN], env=ENV) as d:
        yield d


# ------------------------------------------------------------------------------------------------
# A real UA as a child process

class UserAgent:
    """A UA binary started in its own temporary directory (its config and logs), stdin a pipe
    kept open (linphonec quits on end of input), output to a log file. Stopped by PID: SIGTERM,
    then SIGKILL after 5 s; registered with the harness so an interrupted run stops it too."""

    def __init__(self, name: str, argv: list[str], work: Path, env: dict[str, str]):
        self.name, self.argv, self.work, self.env = name, argv, work, env
        self.log_path = work / "ua.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "UserAgent":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.work, env=self.env)
        CHILDREN.append(self)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, lines: int = 25) -> str:
        try:
            return tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        _stop_pid(self.proc, 5)
        if self.proc.stdin:
            self.proc.stdin.close()

    def __enter__(self) -> "UserAgent":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def baresip(work: Path, user: str, port: int, registrar_port: int) -> UserAgent:
    """baresip with a config dir of its own: SIP on 127.0.0.1:`port`, no audio or UI module (only
    account.so, which reads the accounts file), one account registering through the registrar
    (outbound proxy), quitting after UA_LIFETIME seconds (-t)."""
    exe = shutil.which("baresip")
    if exe is None:
        pytest.skip("baresip is not installed (apt-get install baresip; tools/packages.sh lists it)")
    conf = work / "baresip"
    conf.mkdir()
    (conf / "config").write_text(
        "poll_method\tepoll\n"
        f"sip_listen\t{LOCALHOST}:{port}\n"
        "module_path\t/usr/lib/baresip/modules\n"
        "module_app\taccount.so\n"
        "audio_player\tnothing\naudio_source\tnothing\naudio_alert\tnothing\n")
    password = USERS[user][0]
    (conf / "accounts").write_text(
        f"<{aor(user)}>;auth_pass={password};"
        f"outbound=\"sip:{LOCALHOST}:{registrar_port}\";regint=600\n")
    env = {**os.environ, "HOME": str(work)}
    return UserAgent("baresip", [exe, "-f", str(conf), "-t", str(UA_LIFETIME)], work, env)


def linphonec(work: Path, user: str, port: int, registrar_port: int) -> UserAgent:
    """linphonec (console linphone) with a linphonerc of its own: SIP on UDP 127.0.0.1:`port`
    only, one proxy config registering to the registrar with the user's password, its database
    and any other file under `work` (HOME, XDG dirs)."""
    exe = shutil.which("linphonec")
    if exe is None:
        pytest.skip("linphonec is not installed (apt-get install linphone-cli; tools/packages.sh "
             "lists it)")
    home = work / "home"
    (home / ".local" / "share" / "linphone").mkdir(parents=True)
    rc = work / "linphonerc"
    password = USERS[user][0]
    rc.write_text(
        "[sip]\n"
        f"sip_port={port}\nsip_tcp_port=0\nsip_tls_port=0\n"
        f"bind_address={LOCALHOST}\nipv6_enabled=0\n"
        "default_proxy=0\nregister_only_when_network_is_up=0\n"
        "[net]\nfirewall_policy=0\n"
        "[video]\ncapture=0\ndisplay=0\n"
        "[proxy_0]\n"
        f"reg_proxy=<sip:{LOCALHOST}:{registrar_port}>\n"
        f"reg_identity={aor(user)}\nreg_expires=600\nreg_sendregister=1\n"
        "[auth_info_0]\n"
        f"username={user}\npasswd={password}\nrealm={DOMAIN}\n")
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local" / "share")}
    # Bounded by its stdin: linphonec quits at end of input, so it ends with the test process
    # even if that is killed; otherwise stop() ends it by PID.
    return UserAgent("linphonec", [exe, "-c", str(rc), "-d", "0"], work, env)


# ------------------------------------------------------------------------------------------------
# The check shared by every UA

def successes(registrar: ServiceDaemon) -> dict[str, float]:
    return {a: registrar.metric("sipr_auth_successes_total", algorithm=a)
            for a in ("MD5", "SHA-256")}


def register_then_redirect(redis: RedisServer, registrar: ServiceDaemon,
                           redirect: ServiceDaemon, make_ua, user: str, algorithm: str) -> None:
    """Starts the UA for `user`, waits until Redis holds its binding (pointing at the UA's port on
    127.0.0.1), checks that it authenticated with `algorithm` alone (the success metric by
    algorithm), then INVITEs the AOR through sip-redirectd: a 302 whose only Contact is the
    registered contact."""
    before = successes(registrar)
    work = Path(tempfile.mkdtemp(prefix=f"sipr-ua-{user}-"))
    # baresip binds UDP and TCP on the port and TLS (TCP) on the next one.
    port = free_port(span=2)
    ua = make_ua(work, user, port, registrar.port)
    try:
        with ua:
            key = location_key(aor(user))
            deadline = time.monotonic() + scaled(REGISTER_WAIT)
            while redis.client.hlen(key) == 0 and ua.running() and time.monotonic() < deadline:
                time.sleep(0.1)
            if redis.client.hlen(key) == 0:
                raise AssertionError(
                    f"{ua.name} did not register {aor(user)} within "
                    f"{scaled(REGISTER_WAIT):.0f}s (running: {ua.running()}); its log:\n"
                    f"{ua.log()}\nregistrar stderr:\n{registrar.stderr_tail(10)}")
            stored = [unpack_binding(v) for v in redis.client.hgetall(key).values()]
            assert len(stored) == 1, f"bindings of {aor(user)}"
            contact = stored[0].contact
            assert f"@{LOCALHOST}:{port}" in contact, (
                f"{ua.name}'s contact {contact} is not its 127.0.0.1:{port}")
            after = successes(registrar)
            other = "MD5" if algorithm == "SHA-256" else "SHA-256"
            assert after[algorithm] - before[algorithm] >= 1, (
                f'sipr_auth_successes_total{{algorithm="{algorithm}"}} did not rise '
                f"({before} -> {after})")
            assert after[other] - before[other] == 0, (
                f'sipr_auth_successes_total{{algorithm="{other}"}} rise')

            with redirect.ua() as caller:
                r = caller.transact("INVITE", aor(user))
            assert r.status == 302, f"INVITE {aor(user)}: status ({r.status} {r.reason})"
            assert [c.uri for c in r.contacts] == [contact], "302 contacts"
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Cases

def test_baresip_registers_md5_and_is_redirected_to(redis, registrar, redirect):
    """baresip (MD5 only) on a subscriber without an algorithm list, registrar as shipped: it
    registers (before issue 14's fix the default 401 offered SHA-256 and MD5, and baresip gave up),
    with MD5, and an INVITE to its AOR gets a 302 to its contact."""
    register_then_redirect(redis, registrar, redirect, baresip, "alice", "MD5")


def test_linphonec_registers_sha256_where_allowed(redis, registrar, redirect):
    """linphonec on a subscriber added with --algorithms SHA-256,MD5: challenged with SHA-256
    first, it authenticates with SHA-256, and an INVITE to its AOR gets a 302 to its contact."""
    register_then_redirect(redis, registrar, redirect, linphonec, "carol", "SHA-256")


def test_linphonec_registers_md5_on_a_record_without_a_list(redis, registrar, redirect):
    """A subscriber record written before --algorithms existed (no "algorithms" field) keeps
    working from a SHA-256-capable UA: the registrar's default, MD5."""
    register_then_redirect(redis, registrar, redirect, linphonec, "dave", "MD5")
