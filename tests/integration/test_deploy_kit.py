"""deploy/: the Prometheus config, rules and rule tests pass promtool; every YAML file parses and
the Kubernetes objects hang together (selectors, ports, probes, UDP Services); the readiness probe
the manifests run really tracks the daemon's health (200, then 503 without Redis); the Grafana
dashboard and the rules ask only for metrics, labels and label values that the running daemons
export; the container image installs every library the binaries link. The systemd units are
test_systemd_units.py's. Without promtool the promtool steps are skipped (a '#' line says so).

    /usr/bin/python3 -m pytest tests/integration/test_deploy_kit.py [-k name-substring]
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sipr_test.base import LOCALHOST, binary, build_dir, scaled, wait_until
from sipr_test.processes import ServiceDaemon, run_program
from sipr_test.redis_servers import RedisServer

try:
    import yaml
except ImportError:  # tools/packages.sh installs python3-yaml
    yaml = None

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM = DEPLOY / "prometheus"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose"
DASHBOARD = DEPLOY / "grafana" / "sip-redirect.json"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
PROMTOOL = shutil.which("promtool")
# The jobs and target files agreed with the cluster test, which copies deploy/prometheus and
# writes these files.
JOB_FILES = {"sip-redirect": "targets/redirect.json", "sip-registrar": "targets/registrar.json"}
# Series and labels Prometheus itself adds to every target.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}


def need_yaml():
    assert yaml is not None, (
        "python3-yaml is missing (apt-get install python3-yaml; "
        "tools/packages.sh lists it)")


def load_all(path: Path) -> list:
    need_yaml()
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        raise AssertionError(f"{path.relative_to(ROOT)} is not valid YAML: {e}")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=scaled(60), stdin=subprocess.DEVNULL)


def k8s_objects() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_all(path):
            out.append((path.name, doc))
    return out


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def env_names(obj: dict) -> set[str]:
    return {e["name"] for c in containers(obj) for e in c.get("env", [])}


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ------------------------------------------------------------------------------------------------
# What the daemons export: names -> label names -> values seen

def parse_exposition(text: str) -> dict[str, dict[str, set[str]]]:
    metrics: dict[str, dict[str, set[str]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s", line)
        assert m is not None, f"unparseable /metrics line: {line!r}"
        labels = metrics.setdefault(m.group(1), {})
        for k, v in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""):
            labels.setdefault(k, set()).add(v)
    return metrics


@pytest.fixture(scope="module")
def exported():
    """Both daemons running against a private Redis: the union of their GET /metrics."""
    with RedisServer() as redis:
        metrics: dict[str, dict[str, set[str]]] = {}
        for program in ("sip-redirectd", "sip-registrard"):
            with ServiceDaemon(program, redis.url, workers=1) as d:
                for name, labels in parse_exposition(d.metrics()).items():
                    for k, vs in labels.items():
                        metrics.setdefault(name, {}).setdefault(k, set()).update(vs)
                    metrics.setdefault(name, {})
        assert any(n.startswith("sipr_") for n in metrics), "no sipr_* metric in GET /metrics"
        yield metrics


SELECTOR_RE = re.compile(r"\b((?:sipr[_:]|up\b)[a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
MATCHER_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING_RE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def recorded_names() -> dict[str, str]:
    """Recording rule name -> its expression, from every rules/*.yml."""
    out = {}
    for path in sorted((PROM / "rules").glob("*.yml")):
        for doc in load_all(path):
            for g in doc.get("groups", []):
                for r in g.get("rules", []):
                    if "record" in r:
                        out[r["record"]] = r["expr"]
    return out


def check_expr(where: str, expr: str, metrics: dict[str, dict[str, set[str]]]) -> int:
    """Fails unless every series `expr` selects is exported (or recorded, or Prometheus's own `up`)
    and every label matcher names a label the series has and, for a literal value, a value the
    daemons export. Returns how many series names it checked."""
    records = recorded_names()
    seen = 0
    used_labels: set[str] = set(TARGET_LABELS)
    for m in SELECTOR_RE.finditer(expr):
        name, braces = m.group(1), m.group(2) or ""
        seen += 1
        if name in PROMETHEUS_SERIES:
            known: dict[str, set[str]] = {}
        elif name in records:
            # A recorded series has the labels its expression keeps; check that expression.
            check_expr(f"{where} (via {name})", records[name], metrics)
            kept = GROUPING_RE.search(records[name])
            known = {l.strip(): set() for l in kept.group(1).split(",")} if kept else {}
        else:
            assert name in metrics, (
                f"{where}: {name} is not exported by sip-redirectd or "
                f"sip-registrard (GET /metrics)")
            known = metrics[name]
        used_labels.update(known)
        for label, op, value in MATCHER_RE.findall(braces):
            if label in TARGET_LABELS:
                continue
            assert label in known, (
                f"{where}: {name} has no label {label!r} "
                f"(it has {sorted(known) or 'none'})")
            if "$" in value or not known[label]:
                continue
            alternatives = value.split("|") if op in ("=~", "!~") else [value]
            for alt in alternatives:
                if re.fullmatch(r"[A-Za-z0-9_.+-]+", alt):  # a literal, not a pattern
                    assert alt in known[label], (
                        f"{where}: {name}{{{label}={alt!r}}} never "
                        f"exported (values: {sorted(known[label])})")
    for group in GROUPING_RE.findall(expr):
        for label in (l.strip() for l in group.split(",") if l.strip()):
            assert label in used_labels, (
                f"{where}: grouping by {label!r}, which none of its "
                f"series has")
    return seen


# ------------------------------------------------------------------------------------------------
# Prometheus

def test_prometheus_scrapes_the_agreed_jobs_and_files():
    config = load_all(PROM / "prometheus.yml")[0]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == set(JOB_FILES), "scrape jobs of prometheus.yml"
    for job, target_file in JOB_FILES.items():
        files = [f for sd in jobs[job].get("file_sd_configs", []) for f in sd["files"]]
        assert files == [target_file], f"file_sd_configs files of job {job}"
        example = json.loads((PROM / target_file).read_text())
        assert (isinstance(example, list) and example and all(
            isinstance(g.get("targets"), list) and g["targets"] for g in example)), (
            f"{target_file}: want a list of {{\"targets\": [...], \"labels\": {{...}}}}")
    assert config.get("rule_files") == ["rules/*.yml"], "rule_files of prometheus.yml"
    # Whoever names a job (rules, dashboard, ServiceMonitor labels) names one of these.
    texts = [p.read_text() for p in (PROM / "rules").glob("*.yml")] + [DASHBOARD.read_text()]
    for text in texts:
        for m in re.finditer(r'job\s*=~?\s*\\?"([^"\\$]+)\\?"', text):
            for job in m.group(1).split("|"):
                assert job in jobs, (
                    f"a rule or panel names job {job!r}, not scraped by "
                    f"prometheus.yml ({sorted(jobs)})")
    for _, obj in k8s_objects():
        job = obj.get("metadata", {}).get("labels", {}).get("sipr-job")
        if job is not None:
            assert job in jobs, (
                f"k8s {obj['metadata']['name']}: sipr-job {job!r} is not a job "
                f"of prometheus.yml")


def test_promtool_accepts_config_and_rules_and_the_rule_tests_pass():
    if PROMTOOL is None:
        print("# skipped: no promtool (apt-get install prometheus; tools/packages.sh lists it)",
              flush=True)
        return
    rules = sorted(str(p.relative_to(ROOT)) for p in (PROM / "rules").glob("*.yml"))
    assert rules, "no deploy/prometheus/rules/*.yml"
    for args in (["check", "config", "deploy/prometheus/prometheus.yml"],
                 ["check", "rules", *rules],
                 ["test", "rules", *sorted(str(p.relative_to(ROOT))
                                           for p in (PROM / "tests").glob("*.yml"))]):
        r = promtool(*args)
        assert r.returncode == 0, (
            f"promtool {' '.join(args)} (exit {r.returncode}):\n"
            f"{r.stdout[-3000:]}{r.stderr[-3000:]}")
    # Every alert has a test that expects it to fire.
    alerts = {r["alert"] for p in (PROM / "rules").glob("*.yml") for d in load_all(p)
              for g in d["groups"] for r in g["rules"] if "alert" in r}
    fired = {t["alertname"] for p in (PROM / "tests").glob("*.yml") for d in load_all(p)
             for test in d["tests"] for t in test.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert sorted(alerts - fired) == [], "alerts no rule test makes fire"


def test_rules_and_rule_tests_use_exported_metrics(exported):
    n = 0
    for path in sorted((PROM / "rules").glob("*.yml")):
        for doc in load_all(path):
            for g in doc["groups"]:
                for r in g["rules"]:
                    n += check_expr(f"{path.name} {r.get('alert') or r.get('record')}",
                                    r["expr"], exported)
    # The synthetic series of the rule tests look like the real ones (names, labels, le values).
    for path in sorted((PROM / "tests").glob("*.yml")):
        for doc in load_all(path):
            for test in doc["tests"]:
                for s in test.get("input_series", []):
                    n += check_expr(f"{path.name} input series", s["series"], exported)
    assert n >= 10, f"only {n} series found in the rules and their tests"


# ------------------------------------------------------------------------------------------------
# Grafana

def test_dashboard_is_valid_json_and_asks_for_exported_metrics(exported):
    try:
        dash = json.loads(DASHBOARD.read_text())
    except ValueError as e:
        raise AssertionError(f"{DASHBOARD.relative_to(ROOT)} is not JSON: {e}")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = [v for v in variables.values() if v["type"] == "datasource"]
    assert len(ds) == 1 and ds[0]["query"] == "prometheus", (
        "want one datasource variable of type prometheus")
    ds_ref = "${" + ds[0]["name"] + "}"
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "distinct panel ids"
    exprs = []
    for p in panels:
        assert p.get("datasource", {}).get("uid") == ds_ref, (
            f"panel {p['title']!r} does not use the datasource variable {ds_ref}")
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            exprs.append((f"panel {p['title']!r}", t["expr"]))
    for v in variables.values():
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            exprs.append((f"variable {v['name']}", q))
    n = sum(check_expr(where, e, exported) for where, e in exprs)
    # What the issue asks the dashboard to show.
    text = " ".join(e for _, e in exprs)
    for want in ("sipr_responses_total", "sipr_requests_total", "sipr_lookup_duration_seconds_bucket",
                 "sipr_inflight_lookups", "sipr_redis_up", "sipr_redis_errors_total",
                 "sipr_dropped_total", "sipr_cache_hits_total", "sipr_registrations_total",
                 "sipr_auth_failures_total"):
        assert want in text, f"no panel shows {want}"
    assert n >= len(panels), f"only {n} series in {len(panels)} panels"


# ------------------------------------------------------------------------------------------------
# Kubernetes, compose: every YAML file

def test_every_yaml_file_under_deploy_parses():
    files = sorted(p for ext in ("*.yml", "*.yaml") for p in DEPLOY.rglob(ext))
    assert len(files) >= 8, f"only {len(files)} YAML files under deploy/"
    for path in files:
        assert load_all(path), f"{path.relative_to(ROOT)} is empty"


def test_k8s_objects_are_well_formed_and_hang_together():
    objs = k8s_objects()
    by_kind: dict[str, list[dict]] = {}
    for file, o in objs:
        for key in ("apiVersion", "kind"):
            assert o.get(key), f"k8s/{file}: an object without {key}"
        assert o.get("metadata", {}).get("name"), f"k8s/{file}: a {o['kind']} without metadata.name"
        if o["kind"] not in ("Namespace", "Kustomization"):
            assert o["metadata"].get("namespace") == "sip-redirect", (
                f"k8s/{file} {o['kind']} {o['metadata']['name']} namespace")
        by_kind.setdefault(o["kind"], []).append(o)
    kust = by_kind["Kustomization"][0]
    assert sorted(kust["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"), (
        "kustomization.yaml resources (every manifest, once)")
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    for want in ("sip-redirectd", "sip-registrard"):
        assert want in deployments, f"no Deployment {want}"
    for d in deployments.values():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert selects(d["spec"]["selector"]["matchLabels"], labels), (
            f"Deployment {d['metadata']['name']}: selector does not match its pods")
    services = by_kind.get("Service", [])
    for s in services:
        name = s["metadata"]["name"]
        targets = [d for d in deployments.values()
                   if selects(s["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} Deployments"
        ports = {p["name"]: p for c in containers(targets[0]) for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            assert p["targetPort"] in ports, (
                f"Service {name}: targetPort {p['targetPort']} is "
                f"no container port")
            assert p.get("protocol", "TCP") == ports[p["targetPort"]]["protocol"], (
                f"Service {name} port {p['name']} protocol")
            if p["name"] == "sip":  # SIP over UDP only (DESIGN §4)
                assert p.get("protocol") == "UDP", f"Service {name} SIP port protocol"
    sip_services = {s["metadata"]["name"] for s in services
                    if any(p["name"] == "sip" for p in s["spec"]["ports"])}
    assert {"sip-redirectd", "sip-registrard"} <= sip_services, (
        f"want UDP Services sip-redirectd and sip-registrard, have {sorted(sip_services)}")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments, (
            f"HPA {hpa['metadata']['name']} scales {ref}")
        assert (all(c.get("resources", {}).get("requests", {}).get("cpu")
                  for c in containers(deployments[ref["name"]]))), (
            f"HPA on CPU but {ref['name']} requests no CPU")
    assert (any(h["spec"]["scaleTargetRef"]["name"] == "sip-redirectd"
              for h in by_kind.get("HorizontalPodAutoscaler", []))), "no HPA for sip-redirectd"
    for pdb in by_kind.get("PodDisruptionBudget", []):
        assert (any(selects(pdb["spec"]["selector"]["matchLabels"],
                          d["spec"]["template"]["metadata"]["labels"]) for d in deployments.values())), (
            f"PDB {pdb['metadata']['name']} selects no Deployment's pods")
    assert (any(selects(p["spec"]["selector"]["matchLabels"],
                      deployments["sip-redirectd"]["spec"]["template"]["metadata"]["labels"])
              for p in by_kind.get("PodDisruptionBudget", []))), "no PDB for sip-redirectd"
    monitors = by_kind.get("ServiceMonitor", [])
    assert monitors, "no ServiceMonitor"
    for sm in monitors:
        chosen = [s for s in services if selects(sm["spec"]["selector"]["matchLabels"],
                                                 s["metadata"].get("labels", {}))]
        names = {s["metadata"]["name"] for s in chosen}
        assert len(chosen) == 2, f"ServiceMonitor {sm['metadata']['name']} selects {sorted(names)}"
        for ep in sm["spec"]["endpoints"]:
            for s in chosen:
                assert any(p["name"] == ep["port"] for p in s["spec"]["ports"]), (
                    f"ServiceMonitor port {ep['port']} not on Service {s['metadata']['name']}")
        if sm["spec"].get("jobLabel"):
            for s in chosen:
                assert sm["spec"]["jobLabel"] in s["metadata"]["labels"], (
                    f"Service {s['metadata']['name']} lacks the jobLabel "
                    f"{sm['spec']['jobLabel']}")


def probes() -> list[tuple[str, list[str], int]]:
    """(where, command, the SIP port the daemon listens on) of every sip-locctl probe: the k8s
    readiness probes and the compose health checks."""
    out = []
    for file, o in k8s_objects():
        if o["kind"] != "Deployment" or o["metadata"]["name"] == "redis":
            continue
        for c in containers(o):
            probe = c.get("readinessProbe", {}).get("exec", {}).get("command")
            assert probe, f"k8s/{file}: container {c['name']} has no exec readiness probe"
            listen = {e["name"]: e.get("value") for e in c.get("env", [])}.get("SIPR_LISTEN", "")
            sip = [p for p in c["ports"] if p["name"] == "sip"]
            assert len(sip) == 1 and listen.endswith(f":{sip[0]['containerPort']}"), (
                f"k8s/{file}: SIPR_LISTEN {listen!r} and the sip containerPort disagree")
            out.append((f"k8s/{file} {c['name']}", probe, sip[0]["containerPort"]))
    compose = load_all(COMPOSE / "compose.yaml")[0]
    for name, svc in compose["services"].items():
        test = svc.get("healthcheck", {}).get("test", [])
        if "sip-locctl" in " ".join(map(str, test)):
            assert test[0] == "CMD", f"compose {name} healthcheck form"
            listen = svc["environment"]["SIPR_LISTEN"]
            out.append((f"compose {name}", test[1:], int(listen.rsplit(":", 1)[1])))
    return out


def test_probes_run_sip_locctl_ping_on_the_daemons_own_port():
    found = probes()
    assert len(found) >= 6, f"only {len(found)} sip-locctl probes (k8s 2, compose 4 wanted)"
    for where, cmd, port in found:
        assert Path(cmd[0]).name == "sip-locctl" and cmd[1] == "ping", (
            f"{where}: the probe is {cmd}, not sip-locctl ping")
        assert cmd[2] == f"127.0.0.1:{port}", f"{where}: probe target"


def test_the_readiness_probe_passes_with_redis_and_fails_without():
    """The k8s probe command itself, pointed at the built sip-locctl and a daemon's free port."""
    for where, cmd, port in probes():
        if not where.startswith("k8s/"):
            continue
        program = "sip-redirectd" if "redirectd" in where else "sip-registrard"
        with RedisServer() as redis, ServiceDaemon(program, redis.url, workers=1) as d:
            args = [a.replace(f"127.0.0.1:{port}", f"{LOCALHOST}:{d.port}") for a in cmd[1:]]
            r = run_program("sip-locctl", args)
            assert r.returncode == 0 and " 200 " in r.stdout, (
                f"{where}: probe with Redis up: exit {r.returncode}, {r.stdout.strip()!r}")
            redis.stop()
            # Without Redis the daemon answers 503 and the probe exits 1: the pod leaves the
            # Service (and, unlike no answer at all, this is not mistaken for a hung daemon).
            last = wait_until(lambda: (lambda x: x if x.returncode == 1 else None)(
                run_program("sip-locctl", args)), timeout=10, what=f"{where}: probe exit 1")
            assert " 503 " in last.stdout, f"{where}: want a 503 answer, got {last.stdout!r}"
            redis.start()
            wait_until(lambda: run_program("sip-locctl", args).returncode == 0, timeout=15,
                       what=f"{where}: probe exit 0 once Redis is back")
        # No daemon: no answer at all, exit 2.
        r = run_program("sip-locctl", [*args[:1], args[1], "--timeout", "300"])
        assert r.returncode == 2, f"{where}: probe exit status with no daemon"


def known_env_names() -> set[str]:
    helps = ""
    for program in ("sip-redirectd", "sip-registrard"):
        helps += run_program(program, ["--help"]).stdout
    names = set(re.findall(r"\bSIPR_[A-Z_]+\b", helps))
    assert len(names) > 10, f"--help names only {len(names)} SIPR_* variables"
    return names


def test_every_sipr_variable_set_is_one_the_daemons_know():
    known = known_env_names()
    found: dict[str, str] = {}
    for file, o in k8s_objects():
        if o["kind"] == "Deployment":
            for n in env_names(o):
                found[n] = f"k8s/{file}"
        if o["kind"] in ("ConfigMap", "Secret"):
            for n in {**o.get("data", {}), **o.get("stringData", {})}:
                found[n] = f"k8s/{file}"
    compose = load_all(COMPOSE / "compose.yaml")[0]
    for name, svc in compose["services"].items():
        for n in svc.get("environment", {}):
            if n.startswith("SIPR_"):
                found[n] = f"compose {name}"
    assert len(found) >= 6, f"only {len(found)} SIPR_* settings found"
    for n, where in sorted(found.items()):
        assert n in known, f"{where} sets {n}, which neither daemon knows (--help)"


def test_compose_wires_the_site_together():
    compose = load_all(COMPOSE / "compose.yaml")[0]
    services = compose["services"]
    redirects = sorted(n for n in services if n.startswith("redirect-"))
    assert redirects == ["redirect-1", "redirect-2", "redirect-3"], "redirect services"
    for want in ("redis", "registrar", "lb", "prometheus"):
        assert want in services, f"compose.yaml has no service {want}"
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            assert (COMPOSE / build["context"] / build["dockerfile"]).resolve() == CONTAINERFILE, (
                f"compose {name}: build does not name deploy/container/Containerfile")
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"compose {name}: {port} is not loopback"
        if name in redirects + ["registrar"]:
            assert svc["environment"]["SIPR_REDIS"] == "redis://redis:6379", f"{name} SIPR_REDIS"
            assert svc["depends_on"]["redis"]["condition"] == "service_healthy", (
                f"{name} waits for Redis")
    mounts = {v.split(":")[1]: (COMPOSE / v.split(":")[0]).resolve()
              for v in services["lb"]["volumes"]}
    assert mounts.get("/etc/kamailio-lb") == DEPLOY / "kamailio-lb", "lb mounts deploy/kamailio-lb"
    assert services["lb"]["build"]["target"] == "kamailio-lb", "lb is not the kamailio-lb stage"
    mounts = {v.split(":")[1]: (COMPOSE / v.split(":")[0]).resolve()
              for v in services["prometheus"]["volumes"]}
    assert mounts.get("/etc/prometheus") == PROM, "prometheus mounts deploy/prometheus"
    # Its targets are the compose services' metrics ports.
    targets_dir = mounts.get("/etc/prometheus/targets")
    assert targets_dir is not None, "prometheus: no targets mounted over the examples"
    want = {"redirect.json": {f"{r}:9070" for r in redirects}, "registrar.json": {"registrar:9060"}}
    for file, hosts in want.items():
        got = {t for g in json.loads((targets_dir / file).read_text()) for t in g["targets"]}
        assert got == hosts, f"compose targets/{file}"
    for r in redirects + ["registrar"]:
        metrics_port = services[r]["environment"]["SIPR_METRICS"].rsplit(":", 1)[1]
        assert metrics_port in ("9070" if r != "registrar" else "9060"), (
            f"compose {r}: SIPR_METRICS {services[r]['environment']['SIPR_METRICS']}")
    listed = [l.split()[1] for l in (COMPOSE / "dispatcher.list").read_text().splitlines()
              if l.strip() and not l.startswith("#")]
    assert sorted(listed) == [f"sip:{r}:5070" for r in redirects], "dispatcher.list"


# ------------------------------------------------------------------------------------------------
# Container image

def containerfile_stages() -> dict[str, str]:
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    stages: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if m:
            name = m.group(1)
            stages[name] = ""
        elif name:
            stages[name] += line + "\n"
    return stages


def apt_packages(stage: str) -> set[str]:
    pkgs: set[str] = set()
    for m in re.finditer(r"apt-get install ([^&\n]*)", stage):
        pkgs.update(w for w in m.group(1).split() if not w.startswith("-"))
    return pkgs


def test_container_image_installs_what_the_binaries_link():
    stages = containerfile_stages()
    assert list(stages)[-1] == "runtime", "the last (default) stage"
    runtime, build = stages["runtime"], stages["build"]
    # The build stage has the build dependencies tools/packages.sh installs for this machine.
    listed = re.search(r"SIPR_PACKAGES=\((.*?)\)", (ROOT / "tools" / "packages.sh").read_text(), re.S)
    for p in listed.group(1).split():
        if p.endswith("-dev") and not p.startswith("libclang") or p in ("g++", "meson", "ninja-build",
                                                                        "pkg-config", "python3"):
            assert p in apt_packages(build), f"Containerfile build stage lacks {p}"
    user = re.search(r"^USER\s+(\d+):(\d+)", runtime, re.M)
    assert user is not None, "runtime stage: no numeric USER uid:gid (runAsNonRoot checks it)"
    assert user.group(1) != "0", "runtime stage runs as root"
    for file, o in k8s_objects():
        if o["kind"] == "Deployment" and o["metadata"]["name"] != "redis":
            assert str(o["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == user.group(1), (
                f"k8s/{file} runAsUser vs the image's USER")
    # Every program the manifests run is one meson installs (and the image copies /usr/local/bin).
    installed = json.loads((build_dir() / "meson-info" / "intro-installed.json").read_text())
    programs = {Path(p).name for p in installed.values() if "/bin/" in p}
    assert programs == {"sip-redirectd", "sip-registrard", "sip-locctl"}, "installed programs"
    assert "COPY --from=build /out/usr/local/bin/ /usr/local/bin/" in runtime, (
        "runtime stage does not copy the installed binaries")
    commands = [c["command"][0] for _, o in k8s_objects() if o["kind"] == "Deployment"
                and o["metadata"]["name"] != "redis" for c in containers(o)]
    commands += [s["command"][0] for s in load_all(COMPOSE / "compose.yaml")[0]["services"].values()
                 if str(s.get("command", [""])[0]).startswith("/usr/local/bin/")]
    for cmd in commands:
        assert cmd.startswith("/usr/local/bin/") and Path(cmd).name in programs, (
            f"{cmd} is not an installed program")
    # Every shared library the built binaries load comes from a package the runtime stage
    # installs (or one debian:12-slim already has).
    if shutil.which("dpkg-query") is None or shutil.which("ldd") is None:
        print("# skipped the library check: no dpkg-query or ldd", flush=True)
        return
    in_slim = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
    runtime_pkgs = apt_packages(runtime)
    ldd = subprocess.run(["ldd", *(str(binary(p)) for p in sorted(programs))],
                         capture_output=True, text=True, timeout=30).stdout
    libs = sorted({lib for lib in re.findall(r"=>\s+(/\S+)", ldd)
                   if not re.search(r"lib(a|ub|t|l|hwa)san", lib)})  # a sanitizer build's own
    assert len(libs) >= 5, f"ldd found only {libs}"
    # One dpkg-query for all (Debian 12 has merged /usr: ask for the resolved path too).
    paths = sorted({str(Path(lib).resolve()) for lib in libs} | set(libs))
    owners = subprocess.run(["dpkg-query", "-S", *paths], capture_output=True, text=True,
                            timeout=30).stdout
    owner = {}
    for line in owners.splitlines():
        pkg, _, path = line.partition(": ")
        owner[path.strip()] = pkg.split(":")[0]
    for lib in libs:
        pkg = owner.get(lib) or owner.get(str(Path(lib).resolve()))
        assert pkg is not None, f"the binaries load {lib}, which no package owns"
        assert pkg in runtime_pkgs or pkg in in_slim, (
            f"the binaries need {lib} from {pkg}, which the runtime stage does not install")
