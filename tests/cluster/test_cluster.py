"""A load-balanced cluster (issue 7): Kamailio's dispatcher (deploy/kamailio-lb) in front of three
sip-redirectd instances, probing each with OPTIONS, while SIPp drives INVITEs through it and
instances go away: one is stopped gracefully (SIGTERM: it drains, its probe answers 503 while it
still redirects), one is killed (SIGKILL) and restarted. Prometheus (deploy/prometheus) scrapes
every daemon meanwhile.

Real processes on 127.0.0.1, free ports, every one stopped by its PID at the end (also on
failure): redis-server, sip-registrard, three sip-redirectd (--drain-seconds 3), Kamailio
(deploy/kamailio-lb/run.sh), Prometheus, SIPp (tests/cluster/scenarios/invite_lb.xml). Users are
registered through sip-registrard (REGISTER over UDP) first.

Asserted: at least 99.9% of the INVITEs got their 302 with the registered Contact (SIPp's
statistics); the dispatcher (kamcmd dispatcher.list) marks the drained and the killed instance
inactive, and active again once restarted; every restarted instance then answers its share; in
Prometheus every target is up and sum(rate(sipr_responses_total{code="302"}[30s])) > 0. Printed
("# " lines): the success ratio, how long the dispatcher took to take each instance out and back
in, and the window during which the killed instance was still sent requests (from the balancer's
failover log). Nothing is asserted about how fast: that depends on the machine.

    /usr/bin/python3 -m pytest tests/cluster/test_cluster.py [-k name-substring]
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from sipr_test.base import LOCALHOST, free_tcp_port, free_udp_port, scaled, wait_until
from sipr_test.processes import Daemon, Kamailio, ServiceDaemon
from sipr_test.redis_servers import RedisServer
from sipr_test.sipp import SippProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

DOMAIN = "example.com"
ENV = {**os.environ, "SIPR_SECRET": "cluster-test-secret"}  # one To-tag key for all instances
LB_RUN = ROOT / "deploy" / "kamailio-lb" / "run.sh"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus"
SCENARIO = HERE / "scenarios" / "invite_lb.xml"

USERS = 200
RATE = 100            # INVITEs per second
CALLS = 3500          # 35 s of load
DRAIN_SECONDS = 3     # sip-redirectd --drain-seconds
PING_INTERVAL = 1     # dispatcher probe every second ...
PROBING_THRESHOLD = 2  # ... two failed in a row take an instance out
REDIRECT_TIMEOUT = 500  # ms an instance may take before the balancer asks the next one
MIN_SUCCESS = 0.999


def log(msg: str) -> None:
    print(f"# {msg}", flush=True)


class Redirect(ServiceDaemon):
    def __init__(self, redis: RedisServer, index: int):
        super().__init__("sip-redirectd", redis.url,
                         ["--domain", DOMAIN, "--drain-seconds", str(DRAIN_SECONDS)],
                         name=f"sip-redirectd #{index}", workers=1, env=ENV)

    @property
    def uri(self) -> str:
        return f"sip:{LOCALHOST}:{self.port}"


class Balancer(Kamailio):
    """deploy/kamailio-lb on a free port in front of `redirects` (round-robin)."""

    def __init__(self, redirects: list[Redirect]):
        self.port = free_udp_port()
        args = ["--listen", f"{LOCALHOST}:{self.port}", "--algorithm", "4",
                "--ping-interval", str(PING_INTERVAL),
                "--probing-threshold", str(PROBING_THRESHOLD),
                "--redirect-timeout", str(REDIRECT_TIMEOUT)]
        for r in redirects:
            args += ["--redirect", f"{LOCALHOST}:{r.port}"]
        super().__init__(LB_RUN, args, sip_port=self.port, name="kamailio balancer")

    def dispatcher_flags(self) -> dict[str, str]:
        """kamcmd dispatcher.list over the ctl socket: destination URI -> FLAGS (AP: active,
        IP: inactive, TP: trying; P: probed)."""
        exe = shutil.which("kamcmd")
        assert exe is not None, "kamcmd is not installed (Debian package kamailio)"
        p = subprocess.run([exe, "-s", f"unix:{self.run_dir}/kamailio_ctl", "dispatcher.list"],
                           capture_output=True, text=True, timeout=5)
        assert p.returncode == 0, (
            f"kamcmd dispatcher.list exited {p.returncode}: {p.stderr.strip()}")
        return dict(re.findall(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)", p.stdout))

    def failovers(self) -> list[tuple[str, int, float]]:
        """(instance URI, status, wall-clock time) of every failover the balancer logged."""
        return [(m.group(1), int(m.group(2)), float(m.group(3))) for m in re.finditer(
            r"failover from (\S+) \((\d+)\) at ([0-9.]+)", self.stderr_text())]


class Prometheus(Daemon):
    """Debian's prometheus with a copy of deploy/prometheus/ whose targets/*.json name the daemons'
    metrics addresses, its storage in its temporary directory, its web API on a free port."""

    def __init__(self, redirect_metrics: list[str], registrar_metrics: list[str]):
        exe = shutil.which("prometheus")
        assert exe is not None, (
            "prometheus is not installed (Debian package prometheus; "
            "tools/packages.sh)")
        self.port = free_tcp_port()
        super().__init__("prometheus", [], name="prometheus", executable=exe)
        conf = self.tmp / "config"
        shutil.copytree(PROMETHEUS_CONFIG, conf)
        (conf / "targets").mkdir(exist_ok=True)
        for name, targets in (("redirect", redirect_metrics), ("registrar", registrar_metrics)):
            (conf / "targets" / f"{name}.json").write_text(json.dumps([{"targets": targets}]))
        self.args = [f"--config.file={conf / 'prometheus.yml'}",
                     f"--storage.tsdb.path={self.tmp / 'data'}",
                     f"--web.listen-address={LOCALHOST}:{self.port}", "--log.level=warn"]

    def start(self, wait_ready: bool = True) -> "Prometheus":
        super().start(wait_ready)

        def ready() -> bool:
            self._check_alive("while starting")
            try:
                with urllib.request.urlopen(f"http://{LOCALHOST}:{self.port}/-/ready",
                                            timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_until(ready, 30, interval=0.2, what="prometheus /-/ready")
        return self

    def query(self, expr: str) -> list[dict]:
        """The result vector of an instant query (/api/v1/query)."""
        url = (f"http://{LOCALHOST}:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        assert body.get("status") == "success", f"prometheus query {expr}"
        return body["data"]["result"]


def register_users(registrar: ServiceDaemon, path: Path) -> None:
    """Registers USERS users through sip-registrard, one contact each, and writes SIPp's injection
    file: user;contact per line."""
    lines = ["SEQUENTIAL"]
    with registrar.ua() as ua:
        for i in range(USERS):
            user, contact = f"u{i}", f"sip:u{i}@192.0.2.{1 + i % 250}:{5060 + i}"
            r = ua.send(ua.register(f"sip:{user}@{DOMAIN}", [f"<{contact}>"], expires=3600))
            assert r.status == 200, f"REGISTER of {user}"
            lines.append(f"{user};{contact}")
    path.write_text("\n".join(lines) + "\n")


def wait_flag(lb: Balancer, uri: str, state: str, timeout: float) -> float:
    """Polls dispatcher.list until `uri`'s flags start with `state` (A or I); returns the monotonic
    time it was first seen."""
    def seen():
        return lb.dispatcher_flags().get(uri, "").startswith(state) and time.monotonic()
    return wait_until(seen, timeout, interval=0.1,
                      what=f"dispatcher.list to mark {uri} {'active' if state == 'A' else 'inactive'}")


def sipp_stats(sipp: SippProcess) -> dict[str, int]:
    """The last row of SIPp's -trace_stat CSV: cumulative counters by column name."""
    text = sipp.read("stats.csv")
    rows = list(csv.reader(text.splitlines(), delimiter=";"))
    assert len(rows) >= 2, f"no SIPp statistics in stats.csv:\n{text[-500:]}"
    out = {}
    for k, v in zip(rows[0], rows[-1]):
        if k.endswith("(C)"):
            try:
                out[k[:-3]] = int(v)
            except ValueError:
                pass
    return out


def tail_text(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def responses_302(d: ServiceDaemon) -> float:
    return d.metric("sipr_responses_total", code="302")


def test_balanced_cluster_rides_out_drain_kill_and_restart():
    assert LB_RUN.exists(), f"{LB_RUN} is missing"
    with RedisServer() as redis, \
            ServiceDaemon("sip-registrard", redis.url, ["--domain", DOMAIN], workers=1,
                          env=ENV) as registrar:
        redirects = [Redirect(redis, i) for i in range(3)]
        try:
            for r in redirects:
                r.start()
            run_cluster(redis, registrar, redirects)
        except BaseException:
            stop_all(redirects, check_status=False)
            raise
        stop_all(redirects, check_status=True)


def stop_all(redirects: list[Redirect], check_status: bool) -> None:
    """SIGTERM to every running instance at once, so they drain together rather than one after
    the other; then stop() each (exit status 0 required with `check_status`)."""
    for r in redirects:
        if r.running():
            r.proc.send_signal(signal.SIGTERM)
    for r in redirects:
        if check_status:
            r.stop()
        else:
            r.kill_quietly()


def run_cluster(redis: RedisServer, registrar: ServiceDaemon, redirects: list[Redirect]) -> None:
    a, b, c = redirects  # a: drained and restarted; b: killed and restarted; c: left alone
    with Balancer(redirects) as lb, \
            Prometheus([f"{LOCALHOST}:{r.metrics_port}" for r in redirects],
                       [f"{LOCALHOST}:{registrar.metrics_port}"]) as prom:
        flags = wait_until(lambda: (f := lb.dispatcher_flags()) and
                           all(f.get(r.uri, "").startswith("A") for r in redirects) and f, 10,
                           what="dispatcher.list to list the three instances active")
        log(f"dispatcher.list at start: {flags}")
        users = lb.tmp / "users.csv"
        register_users(registrar, users)

        sipp = SippProcess(SCENARIO, lb.port,
                           ["-inf", str(users), "-r", str(RATE), "-rp", "1000",
                            "-trace_stat", "-stf", "stats.csv", "-fd", "1"],
                           calls=CALLS, timeout=CALLS / RATE + 60, name="sipp caller")
        sipp.launch()
        try:
            t_start = time.monotonic()
            time.sleep(8)
            assert sipp.running(), (
                f"SIPp exited early ({sipp.proc.returncode}):\n"
                f"{tail_text(sipp.read('stdout.log'))}\n{sipp.read('errors.log')[-800:]}")

            # -- a: graceful stop. SIGTERM: it drains (probe 503, INVITEs still 302) and exits 0.
            log(f"SIGTERM to instance #0 ({a.uri}) at {time.monotonic() - t_start:.1f}s")
            t_term = time.monotonic()
            a.proc.send_signal(signal.SIGTERM)
            t_out = wait_flag(lb, a.uri, "I", DRAIN_SECONDS + scaled(10))
            rc = a.proc.wait(timeout=DRAIN_SECONDS + scaled(10))
            t_exit = time.monotonic()
            assert rc == 0, "exit status of the drained instance"
            a.returncode = rc
            log(f"instance #0 taken out by the balancer {t_out - t_term:.2f}s after SIGTERM, "
                f"exited {t_exit - t_term:.2f}s after SIGTERM "
                f"({'out before it exited' if t_out <= t_exit else 'OUT ONLY AFTER IT EXITED'})")
            a.start()
            t_a_up = time.monotonic()
            t_back = wait_flag(lb, a.uri, "A", scaled(10))
            log(f"instance #0 restarted; active again {t_back - t_a_up:.2f}s after it was ready")

            # -- b: sudden death. SIGKILL, restart a few seconds later.
            time.sleep(2)
            log(f"SIGKILL to instance #1 ({b.uri}) at {time.monotonic() - t_start:.1f}s")
            t_kill, wall_kill = time.monotonic(), time.time()
            b.proc.kill()
            b.proc.wait(timeout=5)
            t_b_out = wait_flag(lb, b.uri, "I", scaled(10))
            log(f"instance #1 marked inactive {t_b_out - t_kill:.2f}s after SIGKILL")
            time.sleep(3)
            b.start()
            t_b_up = time.monotonic()
            t_b_back = wait_flag(lb, b.uri, "A", scaled(10))
            log(f"instance #1 restarted; active again {t_b_back - t_b_up:.2f}s after it was ready")

            # -- Prometheus, while the load runs: every target up, and 302s flowing.
            def all_up():
                res = prom.query("up")
                ups = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1] for r in res}
                return len(ups) == 4 and all(v == "1" for v in ups.values()) and ups
            ups = wait_until(all_up, 30, interval=0.5,
                             what="Prometheus to see all 4 targets up (up == 1)")
            jobs = sorted(job for job, _ in ups)
            assert jobs == ["sip-redirect"] * 3 + ["sip-registrar"], "Prometheus jobs"
            rate_expr = 'sum(rate(sipr_responses_total{code="302"}[30s]))'

            last: list = []

            def rate_positive():
                last[:] = prom.query(rate_expr)
                return last and float(last[0]["value"][1]) > 0 and float(last[0]["value"][1])
            try:
                rate = wait_until(rate_positive, 30, interval=0.5, what=f"{rate_expr} > 0")
            except AssertionError as e:
                raise AssertionError(
                    f"{e}; last result {last}; 302s per instance "
                    f"{[responses_302(r) for r in redirects]}; SIPp so far "
                    f"{sipp_stats(sipp) if sipp.read('stats.csv') else 'no statistics'}") from None
            log(f"Prometheus: up == 1 for {len(ups)} targets; {rate_expr} = {rate:.1f}/s")

            res = sipp.wait()
        finally:
            if sipp.running():
                sipp.stop()
        elapsed = time.monotonic() - t_start

        stats = sipp_stats(sipp)
        ok, failed = res.counts()
        created = stats.get("TotalCallCreated", ok + failed)
        assert stats.get("SuccessfulCall") == ok, "successful calls: CSV and final screen"
        ratio = ok / CALLS
        log(f"SIPp: {CALLS} INVITEs at {RATE}/s over {elapsed:.0f}s: {ok} got their 302, "
            f"{failed} failed, {created} created; success ratio {ratio:.5f} "
            f"({stats.get('Retransmissions', 0)} retransmissions)")

        # Where requests still went to the instances that had gone.
        fo = lb.failovers()
        for who, since in ((b, wall_kill), (a, None)):
            mine = [t for uri, _, t in fo if uri == who.uri]
            if who is b:
                mine = [t for t in mine if t >= since]
            if not mine:
                log(f"balancer: no request failed over from {who.uri}")
                continue
            # A request fails over REDIRECT_TIMEOUT after it was sent.
            sent_last = max(mine) - REDIRECT_TIMEOUT / 1000
            if who is b:
                log(f"killed instance {b.uri} was still sent requests for "
                    f"{max(0.0, sent_last - wall_kill):.2f}s after SIGKILL "
                    f"({len(mine)} requests failed over to another instance)")
            else:
                log(f"drained instance {a.uri}: {len(mine)} requests failed over "
                    f"(sent after it had exited)")
        assert res.returncode == 0 or failed > 0, (
            f"sipp exited {res.returncode} without failed calls\n{res.summary()}")
        assert ok + failed == CALLS, "calls placed"
        assert ratio >= MIN_SUCCESS, (
            f"only {ok} of {CALLS} INVITEs got their 302 ({ratio:.4%} < {MIN_SUCCESS:.1%})"
            f"\n{res.summary()}")

        # Every instance running now answered some of the load after its (re)start: the
        # balancer took the restarted ones back.
        for r in redirects:
            n = responses_302(r)
            log(f"{r.name}: {n:.0f} 302s since its last start")
            assert n > 0, f"{r.name} answered no INVITE after its last start"
        sipp.cleanup()  # on failure its logs stay for a look
