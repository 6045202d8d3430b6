"""The fixtures shared by the Python suites (integration/, cluster/, e2e/) and the glue between
pytest and sipr_test: failures report the stderr tails of the daemons involved, SIGTERM (a meson
timeout) stops the run and everything started by PID, and the header names the time scale.

Redis: `redis_server` is one private redis-server per test file; every test whose fixtures
include it gets it reset first (`redis_reset`, FLUSHALL unless the file overrides that fixture);
`redis` is the same server, for a test that talks to it.

Lifetime: the servers and daemons of a file are module-scoped fixtures, shared by consecutive
tests that use them and torn down as soon as the next test does not (pytest_runtest_teardown
below); a later test that uses one again gets a fresh one. So a test sees the same state whether
it runs alone (-k) or with the others, and a daemon's exit status is judged (at its teardown)
right after the last test that used it."""
from __future__ import annotations

import signal
import sys
from typing import Callable

import pytest

sys.dont_write_bytecode = True  # keep the source tree clean when run by hand
pytest.register_assert_rewrite("sipr_test")

from sipr_test.base import time_scale  # noqa: E402
from sipr_test.processes import Daemon, stop_all_children  # noqa: E402
from sipr_test.redis_servers import RedisServer  # noqa: E402


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config) -> None:
    signal.signal(signal.SIGTERM, _terminate)


def pytest_unconfigure(config) -> None:
    stop_all_children()
    for d in Daemon.registry:
        d.cleanup()


def pytest_report_header(config) -> str:
    return f"time scale {time_scale():g} (every deadline is multiplied by it)"


def pytest_runtest_setup(item) -> None:
    item.sipr_first_daemon = len(Daemon.registry)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem) -> None:
    """Tears down the module-scoped fixtures `item` used that `nextitem` does not (those that
    depend on one go first). A failure there (a daemon that did not exit 0) is `item`'s."""
    # pytest has no public call for this: FixtureDef.finish() is what pytest itself runs at the
    # end of a fixture's scope (pytest 7, Debian 12's python3-pytest).
    if nextitem is None:
        return  # the end of the session tears everything down
    keep = set(nextitem.fixturenames) if nextitem.module is item.module else set()
    for name in reversed(item.fixturenames):
        defs = item._fixtureinfo.name2fixturedefs.get(name)
        if name in keep or not defs:
            continue
        fixturedef = defs[-1]
        if fixturedef.scope == "module" and fixturedef.cached_result is not None:
            fixturedef.finish(item._request)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failure's report ends with the stderr tails of the daemons started for the test and of
    those still running."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    first = getattr(item, "sipr_first_daemon", 0)
    shown: list[Daemon] = []
    for d in Daemon.registry[first:] + [d for d in Daemon.registry[:first] if d.running()]:
        if all(d is not s for s in shown):
            shown.append(d)
    lines = []
    for d in shown:
        lines.append(f"{d.name} (pid {d.proc.pid if d.proc else '-'}) stderr tail:")
        lines += ["  " + line for line in d.stderr_tail(15).splitlines()]
    if lines:
        report.sections.append(("daemon stderr", "\n".join(lines)))


@pytest.fixture(scope="module")
def redis_server():
    """A private redis-server for the test file."""
    with RedisServer() as r:
        yield r


@pytest.fixture(scope="module")
def redis_reset() -> Callable[[RedisServer], None]:
    """What runs on `redis_server` before each test that uses it (directly or through a daemon
    fixture). A test file overrides this fixture to seed more (users, for example)."""
    return lambda r: r.client.flushall()


@pytest.fixture(autouse=True)
def _reset_redis(request) -> None:
    if "redis_server" in request.fixturenames:
        request.getfixturevalue("redis_reset")(request.getfixturevalue("redis_server"))


@pytest.fixture
def redis(redis_server) -> RedisServer:
    """The file's redis-server, reset for this test."""
    return redis_server
