"""sip-bench --register --auth-password against sip-registrard --auth digest and a real
redis-server (bench/README.md; issue 16's "REGISTER and auth paths not slower" needs a generator
that gets through the digest check).

sip-bench answers each challenge with credentials computed by the project's DigestHasher; these
cases check the registrar accepts them (200, never a final 401), that the bindings written are
the benchmark's REGISTERs' (not --populate's), that --populate redis writes subscribers the
registrar can check (and sip-locctl's do as well), that an AOR reuses its nonce with a rising nc
by default, and that a wrong password is not counted as a registration. About 5 s.

    /usr/bin/python3 -m pytest tests/integration/test_bench_auth.py [-k name-substring]
Registered in bench/meson.build (it needs sip-bench, built with the benchmarks).
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from sipr_test.base import build_dir, scaled
from sipr_test.bindings import location_key, unpack_binding
from sipr_test.processes import ServiceDaemon, run_program
from sipr_test.redis_servers import RedisServer

DOMAIN = "bench.example"
PASSWORD = "bench password"
ENV = {**os.environ, "SIPR_SECRET": "bench-auth-integration-secret"}


class Registrar(ServiceDaemon):
    def __init__(self, redis: RedisServer, flags: list[str], name: str):
        super().__init__("sip-registrard", redis.url,
                         ["--domain", DOMAIN, "--auth", "digest", "--log-level", "warn", *flags],
                         name=name, env=ENV)


@pytest.fixture(scope="module")
def registrar(redis_server):
    """As shipped: MD5 challenges, 300 s nonces."""
    with Registrar(redis_server, [], "sip-registrard[md5]") as d:
        yield d


@pytest.fixture(scope="module")
def registrar_sha256(redis_server):
    with Registrar(redis_server, ["--auth-algorithms", "SHA-256,MD5"],
                   "sip-registrard[sha256]") as d:
        yield d


def sip_bench(*args: str) -> dict:
    exe = build_dir() / "bench" / "sip-bench"
    assert exe.exists(), f"{exe} does not exist: build it (ninja -C {build_dir()} bench/sip-bench)"
    r = subprocess.run([str(exe), *args, "--domain", DOMAIN, "--json"], capture_output=True,
                       text=True, timeout=scaled(30))
    assert r.returncode == 0, f"sip-bench {' '.join(args)} exited {r.returncode}: {r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def aor(i: int) -> str:
    return f"sip:bench{i}@{DOMAIN}"


def bindings(redis: RedisServer, i: int) -> list:
    return [unpack_binding(v) for v in redis.client.hvals(location_key(aor(i)))]


def test_populated_subscribers_register_reusing_nonces(registrar, redis):
    aors = 40
    r = sip_bench("--target", f"127.0.0.1:{registrar.port}", "--register", "--populate", "redis",
                  "--redis", redis.url, "--aors", str(aors), "--window", "8", "--duration", "1",
                  "--auth-password", PASSWORD, "--pid", str(registrar.pid))
    assert r["auth"] == "digest-reuse"
    assert r["status"] == {"200": r["answered"]}, r
    assert r["lost"] == 0 and r["answered"] > 2 * aors, r
    # One challenge per AOR: with the window below the AOR count an AOR has one REGISTER in
    # flight at a time, and every later one goes on its nonce with the next nc.
    assert r["challenges"] == aors, r
    assert registrar.metric("sipr_auth_successes_total", algorithm="MD5") >= r["answered"]
    for i in range(aors):
        sub = redis.client.hgetall(f"sipr:sub:{{{aor(i)}}}")
        assert sub.get("realm") == DOMAIN and len(sub.get("ha1-md5", "")) == 32, sub
        # The binding is the benchmark REGISTERs' (Call-ID b<seq>...), written over --populate's.
        bs = bindings(redis, i)
        assert len(bs) == 1 and bs[0].call_id.startswith("b"), bs
        assert bs[0].contact == f"sip:bench{i}@127.0.0.1:5999"
    counts = [int(redis.client.get(k)) for k in redis.client.scan_iter("sipr:nc:*")]
    assert len(counts) == aors and min(counts) >= 2, counts


def test_locctl_users_sha256_fresh_nonces(registrar_sha256, redis):
    aors = 4
    for i in range(aors):
        r = run_program("sip-locctl", ["--redis", redis.url, "user", "add", aor(i), "--password",
                                       PASSWORD])
        assert r.returncode == 0, r.stderr
    before = registrar_sha256.metric("sipr_auth_successes_total", algorithm="SHA-256")
    r = sip_bench("--target", f"127.0.0.1:{registrar_sha256.port}", "--register", "--aors",
                  str(aors), "--window", "2", "--duration", "0.5", "--auth-password", PASSWORD,
                  "--auth-algorithm", "SHA-256", "--auth-nonce", "fresh")
    assert r["auth"] == "digest-fresh"
    assert r["status"] == {"200": r["answered"]} and r["answered"] > aors, r
    assert r["challenges"] == r["answered"], r  # every REGISTER challenged once
    after = registrar_sha256.metric("sipr_auth_successes_total", algorithm="SHA-256")
    assert after - before == r["answered"]
    for i in range(aors):
        bs = bindings(redis, i)
        assert len(bs) == 1 and bs[0].call_id.startswith("b"), bs


def test_wrong_password_is_no_registration(registrar, redis):
    aors = 4
    r = sip_bench("--target", f"127.0.0.1:{registrar.port}", "--register", "--populate", "redis",
                  "--redis", redis.url, "--aors", str(aors), "--window", "2", "--duration", "0.3",
                  "--auth-password", PASSWORD)
    assert r["status"] == {"200": r["answered"]}, r
    registered = [bindings(redis, i) for i in range(aors)]
    r = sip_bench("--target", f"127.0.0.1:{registrar.port}", "--register", "--aors", str(aors),
                  "--window", "2", "--duration", "0.3", "--auth-password", "not " + PASSWORD)
    # Challenged, answered, refused (then locked out): every answer a 401 or 403, none counted
    # as a registration, and the bindings untouched.
    assert r["answered"] > 0 and r["challenges"] > 0, r
    assert set(r["status"]) <= {"401", "403"}, r
    assert [bindings(redis, i) for i in range(aors)] == registered
