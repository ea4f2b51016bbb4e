"""The container deployment (project issue #8): docker-compose.yml and its
FreeSWITCH-host override, the Dockerfile, Prometheus' and Grafana's files.

No container engine runs here: the compose files are checked with a compose
implementation's `config` when one is installed (Debian's docker-compose
parses without an engine), and always structurally with PyYAML against what
the code expects (CLI flags, settings, mediasim options, metric names)."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from smartstream import settings
from smartstream.metrics import Metrics
from smartstream.target import parse_target

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "docker-compose.yml"
HOST = ROOT / "docker-compose.freeswitch-host.yml"
DEPLOY = ROOT / "deploy"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def interpolate(value):
    """Compose's ${VAR:-default} / ${VAR} with an empty environment."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def merged(*docs: dict) -> dict:
    """The services of override files laid over each other, as compose merges
    the keys used here (mappings merge, everything else replaces)."""
    out: dict = {}
    for doc in docs:
        for name, svc in doc["services"].items():
            cur = out.setdefault(name, {})
            for k, v in svc.items():
                if isinstance(v, dict) and isinstance(cur.get(k), dict):
                    cur[k] = {**cur[k], **v}
                else:
                    cur[k] = v
    return interpolate(out)


def flag(cmd: list, name: str) -> str:
    return cmd[cmd.index(name) + 1]


@pytest.fixture(scope="module")
def base() -> dict:
    return merged(load(BASE))


@pytest.fixture(scope="module")
def host() -> dict:
    return merged(load(BASE), load(HOST))


def compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


# -- compose ---------------------------------------------------------------------

@pytest.mark.parametrize("files", [[BASE], [BASE, HOST]], ids=["base", "freeswitch-host"])
def test_compose_config_validates(files):
    cli = compose_cli()
    if cli is None:
        pytest.fail("no compose implementation installed (`make test` puts docker-compose in); "
                    "the structure is still checked below with PyYAML")
    args = [a for f in files for a in ("-f", str(f))]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTSTREAM_", "FREESWITCH_"))}
    r = subprocess.run([*cli, *args, "config"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    services = yaml.safe_load(r.stdout)["services"]
    assert {"smartstream", "ai-1", "ai-2", "mediasim", "prometheus", "grafana"} <= set(services)


def test_daemon_service(base):
    d = base["smartstream"]
    assert d["build"] in (".", {"context": "."})
    cmd = d["command"]
    assert cmd[:2] == ["smartstream", "run"]
    env = {k: str(v) for k, v in d["environment"].items()}
    # What the daemon would load: every SMARTSTREAM_ variable is a valid setting.
    cfg = settings.load(None, env, {"--pool-path": flag(cmd, "--pool-path"),
                                    "--pool-slots": int(flag(cmd, "--pool-slots"))})
    assert cfg.admin_listen.startswith("0.0.0.0:"), "Prometheus must reach /metrics"
    assert d["ipc"] == "shareable"


def ai_servers(base) -> tuple[set[str], int]:
    """The DNS names every example AI server answers to, and their port."""
    ais = [s for s in base.values()
           if s.get("command", [])[:2] == ["python3", "examples/echo_server.py"]]
    assert len(ais) >= 2, "two AI servers: round-robin has something to spread over"
    aliases = [set(s["networks"]["default"]["aliases"]) for s in ais]
    common = set.intersection(*aliases)
    assert common, "the AI servers need one DNS name to be resolved together"
    ports = {parse_target(flag(s["command"], "--listen")).port for s in ais}
    assert len(ports) == 1
    return common, ports.pop()


def test_ai_servers_share_a_dns_name(base):
    assert (ROOT / "examples" / "echo_server.py").exists()
    names, port = ai_servers(base)
    assert names and port


def test_simulator_shares_the_pool_and_targets_the_ai_name(base, mediasim):
    sim, daemon = base["mediasim"], base["smartstream"]
    assert sim["ipc"] == "service:smartstream"
    cmd = sim["command"]
    assert cmd[0] == "csrc/build/mediasim"
    assert flag(cmd, "--pool") == flag(daemon["command"], "--pool-path")
    assert flag(cmd, "--pool").startswith("/dev/shm/")
    target = parse_target(flag(cmd, "--target"))
    assert target.scheme == "dns"
    names, port = ai_servers(base)
    assert target.host in names and target.port == port
    # every option the service passes is one mediasim has
    usage = subprocess.run([mediasim, "--help"], capture_output=True, text=True)
    known = set(re.findall(r"--[a-z-]+", usage.stdout + usage.stderr))
    assert {a for a in cmd if a.startswith("--")} <= known


def test_prometheus_and_grafana_services(base):
    prom, graf = base["prometheus"], base["grafana"]
    for svc in (prom, graf):
        for vol in svc["volumes"]:
            src = vol.split(":")[0]
            assert (ROOT / src).exists(), vol
    assert any(v.endswith(":/etc/prometheus/prometheus.yml:ro") for v in prom["volumes"])
    assert any(":/etc/grafana/provisioning" in v for v in graf["volumes"])
    for svc in (prom, graf):   # published on loopback only
        assert all(str(p).startswith("127.0.0.1:") for p in svc.get("ports", []))


def test_freeswitch_host_override(host):
    d = host["smartstream"]
    assert d["network_mode"] == "host" and d["ipc"] == "host"
    assert "ports" not in d
    env = {k: str(v) for k, v in d["environment"].items()}
    cfg = settings.load(None, env)
    assert cfg.pool_group == "" and cfg.pool_mode == 0o660
    assert cfg.admin_listen.startswith("127.0.0.1:")   # not exposed on the host unless set
    assert flag(d["command"], "--pool-path") == "/dev/shm/smartstream.pool"
    for name in ("mediasim", "ai-1", "ai-2", "prometheus", "grafana"):
        assert host[name].get("profiles"), f"{name} must not start on a FreeSWITCH host by default"
    assert "freeswitch" not in " ".join(map(str, d["command"])).lower()   # nothing builds FreeSWITCH


# -- Dockerfile = the README's install (the Makefile is the single source) ----------

def makefile_vars() -> dict:
    text = (ROOT / "Makefile").read_text()
    return dict(re.findall(r"^(\w+)\s*\??=\s*(.*)$", text, re.M))


def recipe(target: str) -> list[str]:
    text = (ROOT / "Makefile").read_text()
    m = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.M)
    return [line.strip() for line in m.group(1).splitlines()] if m else []


def prerequisites(target: str) -> set[str]:
    """The target and every target it depends on, transitively."""
    text = (ROOT / "Makefile").read_text()
    deps = {t: d.split() for t, d in re.findall(r"^([\w-]+):(?!=)(.*)$", text, re.M)}
    seen, todo = set(), [target]
    while todo:
        t = todo.pop()
        if t not in seen:
            seen.add(t)
            todo += deps.get(t, [])
    return seen


def dockerfile_runs() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("RUN ")]


def test_readme_and_ci_are_the_same_two_commands():
    readme = (ROOT / "README.md").read_text()
    setup = re.search(r"## Set-up.*?```sh\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in setup.splitlines()]
    assert commands == ["make demo", "make test"]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert ci == commands
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    for var in ("APT_PACKAGES", "TEST_APT_PACKAGES"):   # the README names what gets installed
        for pkg in makefile_vars()[var].split():
            assert re.search(rf"(?<![\w-]){re.escape(pkg)}(?![\w-])", section), pkg


def test_the_runtime_install_leaves_the_test_world_out():
    assert "install" in prerequisites("demo") and "install" in prerequisites("service")
    runtime = prerequisites("install")
    assert "test-deps" not in runtime and "test-deps" in prerequisites("test")
    steps = " ".join(s for t in runtime for s in recipe(t))
    assert "$(PIP) install -e . " in steps + " " and ".[" not in steps   # no extras
    assert "npm" not in steps and "$(MAKE) -C csrc" not in steps
    apt = set(makefile_vars()["APT_PACKAGES"].split())
    assert not apt & {"nodejs", "npm", "docker-compose", "openssl", "systemd"}
    assert {"python3", "python3-venv", "python3-dev"} <= apt
    assert "$(TEST_EXTRAS)" in " ".join(recipe("test"))
    assert "$(VENV)/bin/python -m pytest" in " ".join(recipe("test"))


def test_dockerfile_installs_as_the_readme_does():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:\S+", text, re.M), "APT_PACKAGES are Debian package names"
    runs = " && ".join(dockerfile_runs())
    commands = [c.strip() for c in re.split(r"&&|;", runs)]
    make_install = [c for c in commands if re.match(r"make\s+install\b", c)]
    assert make_install, "the image must install with `make install`"
    assert all('VENV="$VIRTUAL_ENV"' in c for c in make_install)
    # nothing of the project installed besides the Makefile: no second list to drift
    apt_pkgs = set(makefile_vars()["APT_PACKAGES"].split())
    for c in commands:
        if "apt-get install" in c:
            assert not apt_pkgs & set(shlex.split(c)), f"{c!r}: leave APT_PACKAGES to the Makefile"
        assert not re.search(r"pip\d?\s+install|-m\s+pip\s+install|python3?\s+-m\s+venv", c), c
    assert re.search(r"^COPY \. \.", text, re.M)
    assert re.search(r"^ENV SMARTSTREAM_ADMIN_LISTEN=0\.0\.0\.0:\d+", text, re.M)
    assert re.search(r'^CMD \["smartstream", "run"\]', text, re.M)


# -- Prometheus and Grafana -----------------------------------------------------------

def test_prometheus_scrapes_the_daemon(base):
    doc = load(DEPLOY / "prometheus.yml")
    [job] = [j for j in doc["scrape_configs"] if j["job_name"] == "smartstream"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    admin = base["smartstream"]["environment"]["SMARTSTREAM_ADMIN_LISTEN"]
    assert f"smartstream:{parse_target(admin).port}" in targets


def exported_names() -> set[str]:
    from prometheus_client import generate_latest
    m = Metrics()
    m.dropped("x")
    m.stream_error("UNAVAILABLE")
    m.reconnects.labels("UNAVAILABLE").inc()
    text = generate_latest(m.registry).decode()
    return {line.split("{")[0].split()[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_grafana_dashboard_uses_real_metrics():
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "smartstream.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {n for e in exprs for n in re.findall(r"\bsmartstream_\w+", e)}
    missing = used - exported_names()
    assert not missing, f"not in smartstream/metrics.py: {missing}"
    # streams, frames, drops, latency histograms, reconnects
    for needed in ("smartstream_active_streams", "smartstream_frames_sent_total",
                   "smartstream_frames_dropped_total", "smartstream_reconnects_total",
                   "smartstream_hook_to_send_seconds_bucket",
                   "smartstream_ai_to_playout_seconds_bucket"):
        assert needed in used, needed
    assert any("histogram_quantile" in e for e in exprs)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_grafana_provisioning_matches():
    prov = DEPLOY / "grafana" / "provisioning"
    [ds] = load(prov / "datasources" / "prometheus.yml")["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "smartstream.json").read_text())
    uids = {p["datasource"]["uid"] for p in dash["panels"]}
    assert uids == {ds["uid"]}
    [provider] = load(prov / "dashboards" / "smartstream.yml")["providers"]
    graf = merged(load(BASE))["grafana"]
    mounted = {v.split(":")[1] for v in graf["volumes"]}
    assert provider["options"]["path"] in mounted


def test_deployment_doc_covers_the_override():
    doc = (ROOT / "docs" / "deployment.md").read_text()
    for needed in ("docker-compose.freeswitch-host.yml", "dns:///", "network_mode: host",
                   "headless", "Envoy", "FREESWITCH_GID"):
        assert needed in doc, needed


def test_readme_states_the_core_patchs_size():
    patch = (ROOT / "freeswitch_patch" / "0001-core-read-frame-hook.patch").read_text()
    body = patch.split("\ndiff --git ", 1)[1].split("\n-- \n", 1)[0]   # up to git's signature
    added = [ln[1:] for ln in body.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    removed = [ln for ln in body.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    code = [ln for ln in re.sub(r"/\*.*?\*/", "", "\n".join(added), flags=re.S).splitlines()
            if ln.strip()]
    files = body.count("\ndiff --git ") + 1
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (f"core patch ({len(added)} lines added, {len(removed)} changed, in {files} files; "
            f"{len(code)} of the added lines are code)") in readme
