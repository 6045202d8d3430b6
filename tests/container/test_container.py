"""The container image and the compose site, built and run with podman (issue 20, part 1).

deploy/container/Containerfile is built from a Debian 12 base bootstrapped here with mmdebstrap
(sipr_test.containers: Debian's packages, no registry), then:
  - the image: only the runtime (no compiler), every shared library the programs load found,
    user 10001, within a size bound over its base;
  - sip-registrard and sip-redirectd from it on the host network against a private
    redis-server: a REGISTER, then an INVITE answered 302 with the registered contact, both
    daemons' /metrics counting them, the processes' real uid/gid and capabilities, and
    `podman stop` returning within the drain (OPTIONS answered 503 and INVITE 302 meanwhile)
    with exit status 0;
  - deploy/compose/compose.yaml brought up with `podman-compose up --build` (redis and
    prometheus from tests/container/standins.Containerfile, free host ports): a REGISTER to the
    published registrar, an INVITE through the Kamailio balancer answered 302, Prometheus
    scraping every daemon's /metrics, the daemons' uid, and `podman stop` within the drain.
Skipped with the reason where podman cannot run (not installed, not root, no Debian mirror for
the bootstrap, podman cannot start a container). Every container, network and image name the
suite makes is removed at the end; the base image, its tarball and the layer cache stay in
/var/tmp/sipr-container (sipr_test.containers), so a second run does not compile again unless
the sources changed.

    /usr/bin/python3 -m pytest tests/container/test_container.py [-k name-substring]
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from sipr_test.base import LOCALHOST, free_tcp_port, free_udp_port, wait_until
from sipr_test.containers import BASE_IMAGE, Podman, ensure_base, unavailable
from sipr_test.metrics import metric_value, scrape_metrics
from sipr_test.sip import SipUdp

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
COMPOSE_FILE = ROOT / "deploy" / "compose" / "compose.yaml"
STANDINS = Path(__file__).resolve().parent / "standins.Containerfile"

RUN_ID = f"sipr-test-{os.getpid()}"
IMAGE = f"localhost/{RUN_ID}/sip-redirect:test"
SECRET = "container-test-secret"
DOMAIN = "example.com"
DRAIN = 3  # SIPR_DRAIN_SECONDS of the redirect servers here
USER = 10001
# The runtime stage adds the shared libraries (about 11 MB) and the stripped programs to its
# base; the build stage's toolchain alone is several hundred MB.
MAX_GROWTH_MB = 60


def build_args() -> dict[str, str]:
    return {"BASE_IMAGE": BASE_IMAGE}


# ------------------------------------------------------------------------------------------------
# Fixtures

def remove_leftovers(podman: Podman) -> None:
    """Removes the containers, networks and image names of an earlier run of this file that was
    killed before its teardown: they carry the PID of that run (RUN_ID), which is gone."""
    def stale(name: str) -> bool:
        m = re.search(r"sipr-?test-?(\d+)", name)
        return m is not None and not Path(f"/proc/{m.group(1)}").exists()

    for name in podman.run(["ps", "--all", "--format", "{{.Names}}"]).stdout.split():
        if stale(name):
            podman.remove_container(name)
    for net in podman.run(["network", "ls", "--format", "{{.Name}}"]).stdout.split():
        if stale(net):
            podman.run(["network", "rm", "--force", net], check=False)
    for tag in podman.run(["images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout.split():
        if stale(tag):
            podman.untag(tag)


@pytest.fixture(scope="module")
def podman():
    why = unavailable()
    if why:
        pytest.skip(why)
    p = Podman()
    p.configure()
    remove_leftovers(p)
    p.prune_cache()
    start = time.monotonic()
    why = ensure_base(p)
    if why:
        pytest.skip(why)
    print(f"# base image {BASE_IMAGE} ready in {time.monotonic() - start:.0f}s", flush=True)
    return p


@pytest.fixture(scope="module")
def image(podman):
    try:
        secs = podman.build(IMAGE, CONTAINERFILE, ROOT, build_args=build_args())
        print(f"# podman build {IMAGE}: {secs:.0f}s", flush=True)
        yield IMAGE
    finally:
        podman.untag(IMAGE)


class Container:
    """One of the image's daemons, run detached on the host network by name."""

    def __init__(self, podman: Podman, image: str, program: str, env: dict[str, str]):
        self.podman = podman
        self.program = program
        self.name = f"{RUN_ID}-{program}"
        self.port = free_udp_port()
        self.metrics_port = free_tcp_port()
        self.env = {"SIPR_LISTEN": f"{LOCALHOST}:{self.port}",
                    "SIPR_METRICS": f"{LOCALHOST}:{self.metrics_port}", **env}
        args = ["run", "--detach", "--name", self.name, "--network", "host", "--read-only",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        for k, v in self.env.items():
            args += ["--env", f"{k}={v}"]
        podman.run([*args, image, f"/usr/local/bin/{program}"])

    def logs(self) -> str:
        p = self.podman.run(["logs", self.name], check=False)
        return "\n".join((p.stdout + p.stderr).splitlines()[-15:])

    def wait_ready(self) -> None:
        try:
            wait_until(lambda: options_status(self.port) == 200, 30,
                       what=f"{self.program} in its container to answer OPTIONS 200")
            wait_until(lambda: metric_value(self.metrics(), "sipr_redis_up") == 1, 15,
                       what=f"{self.program} to be connected to Redis")
        except AssertionError as e:
            raise AssertionError(f"{e}; its log:\n{self.logs()}") from None

    def metrics(self) -> str:
        return scrape_metrics(self.metrics_port)

    def remove(self) -> None:
        self.podman.remove_container(self.name)


def options_status(port: int) -> int | None:
    """The status of one OPTIONS to 127.0.0.1:`port` (no retransmission), None without one."""
    with SipUdp(port) as ua:
        req = ua.options()
        ua.send_raw(req.data)
        deadline = time.monotonic() + 0.3
        while (left := deadline - time.monotonic()) > 0:
            r = ua.recv(left)
            if r is not None and ua.matches(req, r):
                return r.status
    return None


@pytest.fixture(scope="module")
def site(podman, image, redis_server):
    """sip-registrard and sip-redirectd from the image on the host network."""
    env = {"SIPR_REDIS": redis_server.url, "SIPR_SECRET": SECRET, "SIPR_DOMAIN": DOMAIN,
           "SIPR_WORKERS": "1"}
    started: list[Container] = []
    try:
        started.append(Container(podman, image, "sip-registrard", env))
        started.append(Container(podman, image, "sip-redirectd",
                                 {**env, "SIPR_DRAIN_SECONDS": str(DRAIN)}))
        for c in started:
            c.wait_ready()
        yield {c.program: c for c in started}
    finally:
        for c in started:
            c.remove()


def register_and_invite(registrar_port: int, redirect_port: int, user: str,
                        invite_timeout: float = 8.0) -> None:
    """REGISTER `user` with one contact (200 with that contact), then an INVITE to the AOR is
    answered 302 naming it."""
    aor = f"sip:{user}@{DOMAIN}"
    contact = f"sip:{user}@192.0.2.7:5099"
    with SipUdp(registrar_port) as ua:
        r = ua.send(ua.register(aor, [f"<{contact}>"], expires=600))
        assert r.status == 200, f"REGISTER: {r.status} {r.reason}"
        assert [c.uri for c in r.contacts] == [contact], f"REGISTER 200 contacts: {r}"
    with SipUdp(redirect_port) as ua:
        r = ua.transact("INVITE", aor, timeout=invite_timeout)
        assert r.status == 302, f"INVITE: {r.status} {r.reason}"
        assert [c.uri for c in r.contacts] == [contact], f"302 contacts: {r}"


def process_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.strip()
    return fields


def assert_unprivileged(podman: Podman, name: str, program: str) -> None:
    """The container's main process is `program`, with real, effective, saved and filesystem
    uid and gid 10001 on the host, and no capabilities."""
    pid = int(podman.inspect(name, "{{.State.Pid}}"))
    assert pid > 0, f"{name}: not running"
    status = process_status(pid)
    assert status["Name"] == program[:15], f"{name}: main process is {status['Name']}"
    assert status["Uid"].split() == [str(USER)] * 4, f"{name}: Uid {status['Uid']}"
    assert status["Gid"].split() == [str(USER)] * 4, f"{name}: Gid {status['Gid']}"
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, (
        f"{name}: capabilities {status['CapEff']}")


def stop_within_drain(podman: Podman, names: list[str], redirect_ports: list[int],
                      invite_ports: list[int]) -> float:
    """`podman stop` of the redirect containers `names`: meanwhile OPTIONS to each of
    `redirect_ports` is answered 503 and then an INVITE sent to each of `invite_ports` still 302;
    the stop returns after the drain and at most 5 s past it (podman itself is slow to start on a
    busy machine), every container with exit status 0. Returns the stop's duration."""
    start = time.monotonic()
    stop = subprocess.Popen(["podman", "stop", "--time", str(DRAIN + 10), *names],
                            env=podman.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        draining: set[int] = set()
        while len(draining) < len(redirect_ports) and stop.poll() is None:
            draining |= {p for p in redirect_ports if options_status(p) == 503}
        assert len(draining) == len(redirect_ports), (
            f"OPTIONS to {sorted(set(redirect_ports) - draining)} never answered 503 before "
            f"the container stopped (no drain)")
        if not redirect_ports:
            time.sleep(1)  # the stop under way: SIGTERM sent, the drain begun
        for port in invite_ports:
            with SipUdp(port) as ua:
                r = ua.transact("INVITE", f"sip:alice@{DOMAIN}", timeout=1)
                assert r.status == 302, f"INVITE while draining: {r.status} {r.reason}"
        out, _ = stop.communicate(timeout=DRAIN + 20)
    finally:
        if stop.poll() is None:
            stop.kill()
            stop.wait()
    took = time.monotonic() - start
    assert stop.returncode == 0, f"podman stop: exit status {stop.returncode}: {out}"
    for name in names:
        code = podman.inspect(name, "{{.State.ExitCode}}")
        assert code == "0", f"{name} exited with status {code} (137: killed after the timeout)"
    assert DRAIN - 0.5 <= took <= DRAIN + 5, f"podman stop took {took:.1f}s, drain {DRAIN}s"
    return took


# ------------------------------------------------------------------------------------------------
# The image

def test_image_holds_the_runtime_only(podman, image):
    user = podman.inspect(image, "{{.Config.User}}")
    assert user == f"{USER}:{USER}", f"image user {user!r}"
    cmd = json.loads(podman.inspect(image, "{{json .Config.Cmd}}"))
    assert cmd == ["/usr/local/bin/sip-redirectd"], f"image command {cmd}"
    size = int(podman.inspect(image, "{{.Size}}"))
    base = int(podman.inspect(BASE_IMAGE, "{{.Size}}"))
    print(f"# image size {size / 1e6:.1f} MB (base {base / 1e6:.1f} MB, "
          f"+{(size - base) / 1e6:.1f} MB)", flush=True)
    assert size - base < MAX_GROWTH_MB * 1e6, (
        f"the runtime stage adds {(size - base) / 1e6:.0f} MB to its base (bound "
        f"{MAX_GROWTH_MB} MB): a build dependency in it?")
    out = podman.run(["run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c",
                      "ldd /usr/local/bin/sip-redirectd /usr/local/bin/sip-registrard "
                      "/usr/local/bin/sip-locctl; echo tools:; "
                      "command -v c++ g++ gcc cc meson ninja || true"]).stdout
    libs, _, tools = out.partition("tools:")
    assert "=>" in libs and "not found" not in libs, f"ldd in the image:\n{libs}"
    assert tools.strip() == "", f"build tools in the runtime image: {tools.split()}"


# ------------------------------------------------------------------------------------------------
# The daemons from the image, host network

def test_register_and_302_through_the_container(site):
    reg, red = site["sip-registrard"], site["sip-redirectd"]
    before_reg, before_red = reg.metrics(), red.metrics()
    register_and_invite(reg.port, red.port, "alice")
    after_reg, after_red = reg.metrics(), red.metrics()

    def delta(before: str, after: str, name: str, **labels: str) -> float:
        return (metric_value(after, name, labels) or 0) - (metric_value(before, name, labels) or 0)

    assert delta(before_reg, after_reg, "sipr_registrations_total", result="ok") == 1, (
        "registrar /metrics: registrations ok")
    assert delta(before_red, after_red, "sipr_responses_total", code="302") == 1, (
        "redirect /metrics: 302 responses")
    for c in site.values():
        assert metric_value(c.metrics(), "sipr_build_info") is not None, f"{c.program} build info"


def test_daemons_run_unprivileged(podman, site):
    for c in site.values():
        assert_unprivileged(podman, c.name, c.program)


def test_stop_returns_within_the_drain(podman, site, redis_server):
    reg, red = site["sip-registrard"], site["sip-redirectd"]
    register_and_invite(reg.port, red.port, "alice")
    took = stop_within_drain(podman, [red.name], [red.port], [red.port])
    print(f"# podman stop sip-redirectd: {took:.1f}s (drain {DRAIN}s)", flush=True)
    start = time.monotonic()
    podman.run(["stop", "--time", "10", reg.name])
    took = time.monotonic() - start
    assert podman.inspect(reg.name, "{{.State.ExitCode}}") == "0", "registrar exit status"
    assert took < 5, f"podman stop sip-registrard took {took:.1f}s (it has no drain)"


# ------------------------------------------------------------------------------------------------
# deploy/compose/compose.yaml with podman-compose

class Compose:
    """podman-compose on deploy/compose/compose.yaml, as project RUN_ID."""

    def __init__(self, podman: Podman, env: dict[str, str]):
        self.podman = podman
        self.project = RUN_ID.replace("-", "")
        self.env = env

    def run(self, args: list[str], timeout: float = 300, check: bool = True):
        return self.podman.run(["-p", self.project, "-f", str(COMPOSE_FILE), *args],
                               program="podman-compose", timeout=timeout, check=check,
                               env=self.env)

    def containers(self) -> dict[str, str]:
        """service name -> container name, for every container of the project."""
        out = self.podman.run(["ps", "--all", "--filter",
                               f"label=io.podman.compose.project={self.project}",
                               "--format", "{{.Names}} {{.Labels}}"]).stdout
        found = {}
        for line in out.splitlines():
            name = line.split()[0]
            labels = json.loads(self.podman.inspect(name, "{{json .Config.Labels}}"))
            found[labels.get("com.docker.compose.service", name)] = name
        return found


COMPOSE_IMAGES = {  # the names compose.yaml gives the images it builds
    "localhost/sip-redirect:0.1.0": "runtime",
    "localhost/sip-redirect-kamailio-lb:0.1.0": "kamailio-lb",
}


@pytest.fixture(scope="module")
def compose(podman, image):
    """The compose site, up; its host ports in .ports."""
    standins = {target: f"localhost/{RUN_ID}/{target}:test" for target in ("redis", "prometheus")}
    ports = {"SIPR_REGISTRAR_PORT": free_udp_port(), "SIPR_LB_PORT": free_udp_port(),
             "SIPR_PROMETHEUS_PORT": free_tcp_port()}
    env = {"SIPR_BASE_IMAGE": BASE_IMAGE, "SIPR_REDIS_IMAGE": standins["redis"],
           "SIPR_PROMETHEUS_IMAGE": standins["prometheus"], "SIPR_SECRET": SECRET,
           "SIPR_DOMAIN": DOMAIN, "SIPR_DRAIN_SECONDS": str(DRAIN),
           **{k: str(v) for k, v in ports.items()}}
    site = Compose(podman, env)
    site.ports = ports
    tagged = list(standins.values())
    try:
        start = time.monotonic()
        for target, tag in standins.items():
            podman.build(tag, STANDINS, STANDINS.parent, target=target, build_args=build_args())
        # Built here with the host's network for apt-get; compose's own build below (which
        # podman-compose runs without it) then finds every step in the layer cache, and fails
        # if compose.yaml does not give the same base.
        for tag, target in COMPOSE_IMAGES.items():
            tagged.append(tag)
            podman.build(tag, CONTAINERFILE, ROOT, target=target, build_args=build_args())
        print(f"# compose images built in {time.monotonic() - start:.0f}s", flush=True)
        start = time.monotonic()
        site.run(["up", "--detach", "--build"], timeout=600)
        print(f"# podman-compose up: {time.monotonic() - start:.0f}s", flush=True)
        yield site
    finally:
        site.run(["down", "--timeout", "0"], check=False, timeout=300)
        for name in site.containers().values():
            podman.remove_container(name)
        for net in podman.run(["network", "ls", "--format", "{{.Name}}"]).stdout.split():
            if net.startswith(site.project + "_"):
                podman.run(["network", "rm", "--force", net], check=False)
        for tag in tagged:
            podman.untag(tag)
        assert site.containers() == {}, "compose containers left behind"


def prometheus_query(port: int, query: str) -> list[dict]:
    url = f"http://{LOCALHOST}:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())["data"]["result"]
    except OSError:
        return []


def test_compose_site_answers(podman, compose):
    reg_port, lb_port = compose.ports["SIPR_REGISTRAR_PORT"], compose.ports["SIPR_LB_PORT"]
    wait_until(lambda: options_status(reg_port) == 200, 60,
               what="the compose registrar (published port) to answer OPTIONS 200")

    def routed() -> bool:  # the balancer answers 503 until a redirect server is up
        with SipUdp(reg_port) as ua:
            ua.send(ua.register(f"sip:probe@{DOMAIN}", ["<sip:probe@192.0.2.9>"], expires=600))
        with SipUdp(lb_port) as ua:
            try:
                return ua.transact("INVITE", f"sip:probe@{DOMAIN}", timeout=2).status == 302
            except AssertionError:
                return False

    wait_until(routed, 60, interval=0.5, what="an INVITE through the balancer answered 302")
    register_and_invite(reg_port, lb_port, "alice")


def test_compose_prometheus_scrapes_every_daemon(podman, compose):
    port = compose.ports["SIPR_PROMETHEUS_PORT"]
    want = {("sip-registrar", "registrar:9060")} | {
        ("sip-redirect", f"redirect-{i}:9070") for i in (1, 2, 3)}

    def scraped() -> bool:
        up = {(s["metric"]["job"], s["metric"]["instance"]) for s in prometheus_query(port, "up")
              if s["value"][1] == "1"}
        redis_up = {(s["metric"]["job"], s["metric"]["instance"])
                    for s in prometheus_query(port, "sipr_redis_up") if s["value"][1] == "1"}
        return up >= want and redis_up >= want

    # Prometheus scrapes every 15 s (deploy/prometheus/prometheus.yml).
    wait_until(scraped, 60, interval=1,
               what=f"Prometheus to scrape {sorted(want)} with up 1 and sipr_redis_up 1")


def test_compose_daemons_unprivileged_and_drain(podman, compose):
    names = compose.containers()
    for service in ("registrar", "redirect-1", "redirect-2", "redirect-3"):
        assert service in names, f"no container for compose service {service}: {names}"
        assert_unprivileged(podman, names[service],
                            "sip-registrard" if service == "registrar" else "sip-redirectd")
    # The balancer's probe sees each redirect server drain (503); INVITEs through it still 302.
    redirects = [names[f"redirect-{i}"] for i in (1, 2, 3)]
    took = stop_within_drain(podman, redirects, [], [compose.ports["SIPR_LB_PORT"]])
    print(f"# podman stop of the three compose redirect servers: {took:.1f}s", flush=True)
