"""Redis credentials (the security issue): sip-registrard, sip-redirectd and sip-locctl against a
real redis-server started with --requirepass and an ACL user.

- The right credentials, in the URL (redis://:PASSWORD@host, redis://USER:PASSWORD@host) or in the
  file named by SIPR_REDIS_PASSWORD_FILE / --redis-password-file (which overrides the URL's; then
  redis://USER@host names the ACL user): both daemons start, register and redirect.
- A wrong password, none at all, or a password file that is missing, empty or a directory: one
  line on stderr and a non-zero exit, for all three programs.
- No password string appears in any stdout or stderr: logs at debug level, start-up errors,
  --help (also with SIPR_REDIS set), and the command-line parser's errors.

    /usr/bin/python3 -m pytest tests/integration/test_redis_auth.py [-k name-substring]
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path


import pytest

from sipr_test.base import LOCALHOST, free_tcp_port, free_udp_port, scaled
from sipr_test.bindings import location_key
from sipr_test.processes import ServiceDaemon, run_program
from sipr_test.redis_servers import RedisServer
from sipr_test.sip import Response, SipUdp, unique

DOMAIN = "example.com"
# Distinctive strings, so that finding one in an output is never a coincidence.
PASSWORD = "Default-Pw-" + secrets.token_hex(8)
ACL_USER = "sipr-app"
ACL_PASSWORD = "Acl-Pw-" + secrets.token_hex(8)
WRONG = "Wrong-Pw-" + secrets.token_hex(8)
SECRETS = (PASSWORD, ACL_PASSWORD, WRONG)
REFUSED = "Redis refused the password (AUTH): check the URL or SIPR_REDIS_PASSWORD_FILE"
PROGRAMS = ("sip-registrard", "sip-redirectd", "sip-locctl")


# ------------------------------------------------------------------------------------------------
# Helpers

def base_env(**extra: str) -> dict[str, str]:
    """The environment without any SIPR_REDIS* of the caller's, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPR_REDIS")}
    env.update(extra)
    return env


def url(redis: RedisServer, userinfo: str | None = None) -> str:
    return f"redis://{userinfo + '@' if userinfo is not None else ''}{LOCALHOST}:{redis.port}"


def no_secret(where: str, *texts: str) -> None:
    for text in texts:
        for s in SECRETS:
            assert s not in text, f"{where} printed a password:\n{text}"


def one_line(where: str, text: str) -> str:
    lines = text.strip("\n").splitlines()
    assert len(lines) == 1, f"{where}: want one line on stderr, got {len(lines)}:\n{text}"
    return lines[0]


_tmp = Path(tempfile.mkdtemp(prefix="sipr-redis-auth-"))


def password_file(content: str) -> Path:
    p = _tmp / unique("pw")
    p.write_text(content)
    p.chmod(0o600)
    return p


def start_args(program: str, redis_url: str) -> list[str]:
    """Arguments that start `program` on free ports (or run one sip-locctl command)."""
    if program == "sip-locctl":
        return ["--redis", redis_url, "show", f"sip:nobody@{DOMAIN}"]
    return ["--listen", f"{LOCALHOST}:{free_udp_port()}", "--metrics",
            f"{LOCALHOST}:{free_tcp_port()}", "--workers", "1", "--redis", redis_url,
            "--redis-timeout", str(int(scaled(2000)))]


def refused(program: str, redis_url: str, env: dict[str, str], sentence: str) -> None:
    """`program` with these credentials: non-zero exit, one line on stderr holding `sentence`,
    no password anywhere."""
    r = run_program(program, start_args(program, redis_url), timeout=15, env=env)
    where = f"{program} --redis {redis_url.replace(WRONG, '<wrong>')}"
    no_secret(where, r.stdout, r.stderr)
    assert r.returncode != 0, f"{where}: exited 0 (stdout {r.stdout!r})"
    line = one_line(where, r.stderr)
    assert line.startswith(program + ": "), f"{where}: the line does not name the program: {line}"
    assert sentence in line, f"{where}: want {sentence!r} in: {line}"


def serve_and_redirect(redis: RedisServer, redis_url: str, env: dict[str, str],
                       flags: tuple[str, ...] = ()) -> None:
    """Both daemons with these credentials: they become ready (OPTIONS 200 needs Redis), a
    REGISTER is stored and an INVITE redirected; nothing they print holds a password."""
    user = unique("u")
    aor = f"sip:{user}@{DOMAIN}"
    contact = f"sip:{user}@192.0.2.10:5070"
    common = ["--domain", DOMAIN, "--log-level", "debug", "--redis-timeout",
              str(int(scaled(2000))), *flags]
    with ServiceDaemon("sip-registrard", redis_url, common, env=env) as reg, \
            ServiceDaemon("sip-redirectd", redis_url, common, env=env) as red:
        with SipUdp(reg.port) as ua:
            r = ua.send(ua.register(aor, [f"<{contact}>"], expires=600))
            assert r.status == 200, "REGISTER status"
        assert redis.client.hlen(location_key(aor)) == 1, "the binding is not in Redis"
        with SipUdp(red.port) as ua:
            r: Response = ua.send(ua.build("INVITE", aor))
            assert r.status == 302, "INVITE status"
            assert [c.uri for c in r.contacts] == [contact], "302 contacts"
        outputs = [(d.name, d.stderr_text(), d.stdout_path.read_text(errors="replace"))
                   for d in (reg, red)]
    for name, err, out in outputs:
        no_secret(name, err, out)
        assert "listening on udp" in err, f"{name}: no 'listening' line:\n{err}"


# ------------------------------------------------------------------------------------------------
# Fixtures

@pytest.fixture(scope="module")
def redis_server():
    """The file's redis-server requires a password (and the harness's client sends it)."""
    with RedisServer(password=PASSWORD) as r:
        # Redis 6+ ACL: a second user with its own password and every right.
        r.client.execute_command("ACL", "SETUSER", ACL_USER, "on", ">" + ACL_PASSWORD, "~*",
                                 "&*", "+@all")
        yield r
    shutil.rmtree(_tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# The right credentials

def test_password_in_url_serves(redis):
    serve_and_redirect(redis, url(redis, ":" + PASSWORD), base_env())


def test_acl_user_and_password_in_url_serve(redis):
    serve_and_redirect(redis, url(redis, f"{ACL_USER}:{ACL_PASSWORD}"), base_env())


def test_password_file_serves(redis):
    pw = password_file(PASSWORD + "\n")
    serve_and_redirect(redis, url(redis), base_env(SIPR_REDIS_PASSWORD_FILE=str(pw)))


def test_password_file_overrides_the_url_password(redis):
    pw = password_file(PASSWORD + "\r\n")
    serve_and_redirect(redis, url(redis, ":" + WRONG), base_env(SIPR_REDIS_PASSWORD_FILE=str(pw)))


def test_password_file_with_acl_user_in_url(redis):
    # redis://USER@host with a password file: USER is the ACL user (--redis-password-file form).
    pw = password_file(ACL_PASSWORD)
    serve_and_redirect(redis, url(redis, ACL_USER), base_env(),
                       flags=("--redis-password-file", str(pw)))


def test_locctl_with_password_in_url_and_in_file(redis):
    aor = f"sip:{unique('s')}@{DOMAIN}"
    contact = "sip:static@192.0.2.20:5060"
    r = run_program("sip-locctl", ["--redis", url(redis, ":" + PASSWORD), "bind", aor, contact],
                    env=base_env())
    assert r.returncode == 0, f"sip-locctl bind exited {r.returncode}: {r.stderr}"
    no_secret("sip-locctl bind", r.stdout, r.stderr)
    pw = password_file(ACL_PASSWORD + "\n")
    r = run_program("sip-locctl", ["--redis", url(redis, ACL_USER), "show", aor],
                    env=base_env(SIPR_REDIS_PASSWORD_FILE=str(pw)))
    assert r.returncode == 0, f"sip-locctl show exited {r.returncode}: {r.stderr}"
    assert contact in r.stdout, f"sip-locctl show does not list {contact}:\n{r.stdout}"
    no_secret("sip-locctl show", r.stdout, r.stderr)


# ------------------------------------------------------------------------------------------------
# Wrong or missing credentials: one line, non-zero exit

def test_wrong_password_in_url_is_one_line(redis):
    for program in PROGRAMS:
        refused(program, url(redis, ":" + WRONG), base_env(), REFUSED)
        refused(program, url(redis, f"{ACL_USER}:{WRONG}"), base_env(), REFUSED)
        # Through SIPR_REDIS rather than --redis.
        r = run_program(program, [a for a in start_args(program, "x") if a not in ("--redis", "x")],
                        timeout=15, env=base_env(SIPR_REDIS=url(redis, ":" + WRONG)))
        no_secret(f"{program} with SIPR_REDIS", r.stdout, r.stderr)
        assert r.returncode != 0 and REFUSED in one_line(program, r.stderr), (
            f"{program} with SIPR_REDIS and a wrong password: exit {r.returncode}: {r.stderr}")


def test_wrong_password_in_file_is_one_line(redis):
    pw = password_file(WRONG + "\n")
    for program in PROGRAMS:
        refused(program, url(redis), base_env(SIPR_REDIS_PASSWORD_FILE=str(pw)), REFUSED)
        # Even when the URL holds the right one: the file wins.
        refused(program, url(redis, ":" + PASSWORD), base_env(SIPR_REDIS_PASSWORD_FILE=str(pw)),
                REFUSED)


def test_no_password_is_one_line(redis):
    for program in PROGRAMS:
        refused(program, url(redis), base_env(), "SIPR_REDIS_PASSWORD_FILE")


def test_bad_password_file_is_one_line(redis):
    empty = password_file("\n")
    for program in PROGRAMS:
        for path, why in ((_tmp / "no-such-file", "No such file"), (empty, "is empty"),
                          (_tmp, "Is a directory")):
            refused(program, url(redis, ":" + PASSWORD),
                    base_env(SIPR_REDIS_PASSWORD_FILE=str(path)), why)


# ------------------------------------------------------------------------------------------------
# Never printed

def test_help_never_shows_the_password(redis):
    env = base_env(SIPR_REDIS=url(redis, ":" + PASSWORD),
                   SIPR_REDIS_PASSWORD_FILE=str(password_file(ACL_PASSWORD)))
    for program in PROGRAMS:
        r = run_program(program, ["--redis", url(redis, f"{ACL_USER}:{WRONG}"), "--help"], env=env)
        assert r.returncode == 0, f"{program} --help exit status"
        assert "--redis-password-file" in r.stdout and "SIPR_REDIS_PASSWORD_FILE" in r.stdout, (
            f"{program} --help does not list --redis-password-file:\n{r.stdout}")
        no_secret(f"{program} --help", r.stdout, r.stderr)


def test_command_line_errors_mask_the_password(redis):
    secret_url = url(redis, ":" + PASSWORD)
    bad = {
        "sip-registrard": [["--redis", secret_url, secret_url],      # a stray positional
                           ["--workers", secret_url]],               # a value that is no number
        "sip-redirectd": [["--redis", secret_url, "--no-such-flag", secret_url],
                          ["--redis-timeout", f"redis://{ACL_USER}:{WRONG}@h"]],
        "sip-locctl": [["--redis", secret_url, "no-such-command", secret_url],
                       ["--redis", secret_url]],                     # no subcommand
    }
    for program, runs in bad.items():
        for args in runs:
            r = run_program(program, args, env=base_env())
            where = f"{program} (bad command line)"
            assert r.returncode != 0, f"{where}: exited 0"
            no_secret(where, r.stdout, r.stderr)
            one_line(where, r.stderr)


def test_bad_url_errors_never_quote_the_password(redis):
    for text in (f"http://:{PASSWORD}@{LOCALHOST}:{redis.port}",
                 f":{PASSWORD}@{LOCALHOST}:{redis.port}",
                 f"redis://:{PASSWORD}@{LOCALHOST}:port",
                 f"redis://:{PASSWORD[:4]}/{PASSWORD[4:]}@{LOCALHOST}:{redis.port}/x"):
        for program in PROGRAMS:
            r = run_program(program, start_args(program, text), env=base_env())
            where = f"{program} with a malformed URL"
            assert r.returncode != 0, f"{where}: exited 0"
            no_secret(where, r.stdout, r.stderr)
            assert PASSWORD[4:] not in r.stderr, f"{where}: part of the password printed"
            one_line(where, r.stderr)
