"""CI checks of the production stack in compose/, without a Docker engine and without network.

- docker-compose.yml validates against the Compose Specification JSON schema (vendored in
  compose/schema/, see its README), after the same ${VAR} interpolation `docker compose` does;
- every service command is a real `misinfo` subcommand: `misinfo <command...> --help` must succeed
  (a command whose module is missing fails its --help, which is what we want);
- every MISINFO_* variable set anywhere in the stack is one the settings read, every setting that
  production needs is set, and each service's environment loads into Settings;
- the Grafana dashboard parses and names only metrics the workers and the retrain watcher export
  (stream_workers.metric_names, trainer.metric_names), and Prometheus scrapes them where they serve them.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from core.config import env_names, load_settings
from stream_workers.metric_names import METRIC_NAMES, METRICS, all_series
from trainer.metric_names import WATCHER_METRIC_NAMES, WATCHER_METRICS, watcher_series

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "compose"
COMPOSE_FILE = COMPOSE / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE / ".env.example"
SCHEMA_FILE = COMPOSE / "schema" / "compose-spec.json"
PROMETHEUS_FILE = COMPOSE / "prometheus" / "prometheus.yml"
GRAFANA = COMPOSE / "grafana"
TOPICS_SCRIPT = COMPOSE / "kafka" / "create-topics.sh"

# Settings production must set explicitly on every `misinfo` service: the defaults point at the
# embedded single-machine stack (127.0.0.1 ports, a local blob directory) and would silently split
# the system if a container fell back to them. Topic names are set so that kafka-init and the
# services cannot disagree.
REQUIRED_EVERYWHERE = frozenset(
    {
        "MISINFO_KAFKA_BOOTSTRAP",
        "MISINFO_REDIS_URL",
        "MISINFO_REDIS_PREFIX",
        "MISINFO_MLFLOW_TRACKING_URI",
        "MISINFO_RAY_ADDRESS",
        "MISINFO_BLOB_URI",
        "MISINFO_STATE_DIR",
        "MISINFO_MODEL_NAME",
        "MISINFO_TOPIC_IMAGES",
        "MISINFO_TOPIC_VERDICTS",
        "MISINFO_TOPIC_FEEDBACK",
        "MISINFO_TOPIC_DEAD_LETTERS",
        "MISINFO_TOPIC_CONTROL",
        "MISINFO_TOPIC_PARTITIONS",
    }
)
# Per service, on top of REQUIRED_EVERYWHERE. MODEL_PATH: '' would load the tiny random test
# checkpoint. WORKER_WEB_PORT: Prometheus scrapes it. Credentials: the collector is useless without.
REQUIRED_BY_SERVICE: dict[str, frozenset[str]] = {
    "worker": frozenset(
        {"MISINFO_DEVICE", "MISINFO_MODEL_PATH", "MISINFO_WORKER_GROUP", "MISINFO_WORKER_WEB_PORT"}
    ),
    "optimize": frozenset({"MISINFO_DEVICE", "MISINFO_MODEL_PATH"}),
    "ray-gpu-worker": frozenset({"MISINFO_DEVICE"}),
    "collect-reddit": frozenset({"MISINFO_REDDIT_CLIENT_SECRET"}),
    "collect-x": frozenset({"MISINFO_X_BEARER_TOKEN"}),
    "collect-instagram": frozenset({"MISINFO_INSTAGRAM_ACCESS_TOKEN"}),
}
# Services on the project image whose command is not `misinfo ...`, and the program they run.
NON_MISINFO_COMMANDS = {"ray-head": "ray", "ray-gpu-worker": "ray"}
# Long-running services that need no health check: nothing listens (collectors) or Ray's head
# already checks its members (ray-gpu-worker). One-shots and ops tools are recognised by restart: "no".
NO_HEALTHCHECK = {"ray-gpu-worker"} | {
    f"collect-{s}" for s in ("reddit", "x", "instagram", "rss", "web", "folder")
}
GPU_SERVICES = {"worker", "ray-gpu-worker", "optimize"}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY|KEY_ID|CREDENTIAL)")


# --- loading, as `docker compose` does -------------------------------------------------------------

_INTERP = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file (comments and blanks skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        out[key.strip()] = value.strip().strip("'\"")
    return out


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?error}, ${VAR:+alt}, $VAR and $$ substitution."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        unset_or_empty = not current if (op or "").startswith(":") else current is None
        if op in (":-", "-"):
            return arg if unset_or_empty else current or ""
        if op in (":?", "?"):
            if unset_or_empty:
                raise ValueError(f"{name}: {arg}")
            return current or ""
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return current or ""

    return _INTERP.sub(sub, value)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(x, env) for x in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def referenced_variables(text: str) -> set[str]:
    return {m.group("name") or m.group("bare") for m in _INTERP.finditer(text) if m.group(0) != "$$"}


def deployment_env() -> dict[str, str]:
    """compose/.env as an operator fills it from .env.example: empty secrets get a stand-in value."""
    return {k: v or f"test-{k.lower()}" for k, v in parse_env_file(ENV_EXAMPLE).items()}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    return interpolate_tree(raw, deployment_env())


def services_on_project_image(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    image = deployment_env()["PROJECT_IMAGE"]
    return {name: svc for name, svc in compose["services"].items() if svc.get("image") == image}


def service_env(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment: its `environment` plus its env_file(s), read from their .example."""
    env_block = svc.get("environment") or {}
    if isinstance(env_block, list):
        env_block = dict(item.partition("=")[::2] for item in env_block)
    env = {k: "" if v is None else str(v) for k, v in env_block.items()}
    for entry in _env_files(svc):
        example = COMPOSE / (entry + ".example")
        assert example.is_file(), f"env_file {entry} has no {example.name} beside it"
        env.update({k: v or f"test-{k.lower()}" for k, v in parse_env_file(example).items()})
    return env


def _env_files(svc: dict[str, Any]) -> list[str]:
    files = svc.get("env_file") or []
    files = [files] if isinstance(files, str | dict) else files
    return [f if isinstance(f, str) else f["path"] for f in files]


def allowed_misinfo_names() -> set[str]:
    """What the code reads: the settings, and the CLI root's own options (e.g. MISINFO_LOG_LEVEL)."""
    from misinfo.cli import cli

    cli_envvars = {p.envvar for p in cli.params if isinstance(p.envvar, str)}
    return set(env_names()) | cli_envvars


# --- 1. the Compose Specification ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_validates_against_the_compose_spec(compose, validator) -> None:
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_rejects_a_broken_service(compose, validator) -> None:
    """Guards the check above: the vendored schema really is strict about service keys."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["comand"] = ["misinfo", "worker"]
    assert list(validator.iter_errors(broken))


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    documented = set(parse_env_file(ENV_EXAMPLE))
    missing = referenced_variables(COMPOSE_FILE.read_text()) - documented
    assert not missing, f"add to compose/.env.example: {sorted(missing)}"


def test_services_have_health_checks_restart_policies_and_declared_volumes(compose) -> None:
    declared = set(compose.get("volumes", {}))
    for name, svc in compose["services"].items():
        assert "restart" in svc, f"{name}: no restart policy"
        one_shot = svc["restart"] == "no"
        if not one_shot and name not in NO_HEALTHCHECK:
            assert "healthcheck" in svc, f"{name}: long-running service without a health check"
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0] if isinstance(mount, str) else mount["source"]
            if source.startswith((".", "/")):
                assert (COMPOSE / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
        for dep in svc.get("depends_on", {}):
            assert dep in compose["services"], f"{name}: depends on unknown service {dep}"
        build = svc.get("build")
        if build:
            context = build if isinstance(build, str) else build["context"]
            assert (COMPOSE / context / "Dockerfile").is_file(), f"{name}: no Dockerfile in {context}"


def test_gpu_services_reserve_exactly_one_nvidia_gpu(compose) -> None:
    for name in GPU_SERVICES:
        devices = compose["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}], name
    others = {n for n, s in compose["services"].items() if "devices" in str(s.get("deploy", ""))}
    assert others == GPU_SERVICES


def test_kafka_runs_kraft_from_the_official_image(compose) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    redis_cmd = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in redis_cmd


# --- 2. every command is a real subcommand ----------------------------------------------------------------


def _commands() -> list[tuple[str, list[str]]]:
    doc = interpolate_tree(yaml.safe_load(COMPOSE_FILE.read_text()), deployment_env())
    out = []
    for name, svc in services_on_project_image(doc).items():
        command = svc.get("command")
        assert isinstance(command, list) and command, f"{name}: use the exec (list) form for command"
        out.append((name, command))
    return sorted(out)


@pytest.mark.parametrize(("service", "command"), _commands(), ids=[n for n, _ in _commands()])
def test_service_command_exists(service: str, command: list[str]) -> None:
    if service in NON_MISINFO_COMMANDS:
        program = NON_MISINFO_COMMANDS[service]
        assert command[0] == program
        exe = ROOT / ".venv" / "bin" / program
        result = subprocess.run(
            [str(exe), *command[1:], "--help"], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return
    assert command[0] == "misinfo", f"{service}: runs {command[0]!r}, not the misinfo console script"
    from misinfo.cli import cli

    result = CliRunner().invoke(cli, [*command[1:], "--help"], prog_name="misinfo")
    assert result.exit_code == 0, (
        f"`{' '.join(command)} --help` failed:\n{result.output}{result.exception or ''}"
    )


# --- 3. environment variables against the settings ---------------------------------------------------------


def test_every_misinfo_variable_set_is_a_setting(compose) -> None:
    allowed = allowed_misinfo_names()
    seen: dict[str, set[str]] = {}
    for name, svc in compose["services"].items():
        for key in service_env(svc):
            seen.setdefault(key, set()).add(f"service {name}")
    for path in [ENV_EXAMPLE, *sorted((COMPOSE / "secrets").glob("*.env.example"))]:
        for key in parse_env_file(path):
            seen.setdefault(key, set()).add(path.name)
    unknown = {k: sorted(v) for k, v in seen.items() if k.startswith("MISINFO_") and k not in allowed}
    assert not unknown, f"MISINFO_* variables no setting reads: {unknown}"


def test_required_settings_are_known_settings() -> None:
    required = REQUIRED_EVERYWHERE.union(*REQUIRED_BY_SERVICE.values())
    assert not required - set(env_names()), "the required list names settings that no longer exist"


@pytest.mark.parametrize("service", sorted(n for n, _ in _commands()))
def test_every_required_setting_is_set(compose, service: str) -> None:
    env = service_env(compose["services"][service])
    required = REQUIRED_EVERYWHERE | REQUIRED_BY_SERVICE.get(service, frozenset())
    missing = sorted(required - set(env))
    assert not missing, f"{service} does not set {missing}"
    empty = sorted(k for k in required if not env[k])
    assert not empty, f"{service} sets {empty} empty"
    # The values load into Settings (types: ints, floats) exactly as the entry point will read them.
    load_settings(environ=env)


def test_topic_names_have_one_source(compose) -> None:
    """kafka-init creates exactly the topics the services use, and knows every topic setting."""
    topic_settings = {n for n in env_names() if n.startswith("MISINFO_TOPIC_")}
    init_env = service_env(compose["services"]["kafka-init"])
    script = TOPICS_SCRIPT.read_text()
    for key in topic_settings:
        assert key in init_env, f"kafka-init does not get {key}"
        assert key in script, f"create-topics.sh ignores {key}"
    for name in services_on_project_image(compose):
        env = service_env(compose["services"][name])
        for key in topic_settings:
            assert env[key] == init_env[key], f"{name}: {key}={env[key]!r}, kafka-init has {init_env[key]!r}"


def test_topic_script_is_valid_shell() -> None:
    result = subprocess.run(["sh", "-n", str(TOPICS_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- no secrets in the files ------------------------------------------------------------------------


def _env_pairs(node: Any) -> list[tuple[str, str]]:
    """Every environment-variable assignment in the raw (uninterpolated) compose document."""
    pairs: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "environment" or (
                isinstance(key, str) and key.startswith("x-") and key.endswith("-env")
            ):
                pairs.extend((k, str(v)) for k, v in (value or {}).items())
            else:
                pairs.extend(_env_pairs(value))
    elif isinstance(node, list):
        for item in node:
            pairs.extend(_env_pairs(item))
    return pairs


def test_no_secret_is_written_in_the_compose_file(raw) -> None:
    pairs = _env_pairs(raw)
    assert pairs
    for key, value in pairs:
        if SECRET_NAME.search(key) and key != "RAY_AUTH_MODE":
            assert _INTERP.fullmatch(value), (
                f"{key} must come from compose/.env (${{...}}), not be written here"
            )


def test_example_files_leave_secrets_empty_and_real_copies_are_ignored() -> None:
    for key, value in parse_env_file(ENV_EXAMPLE).items():
        if SECRET_NAME.search(key):
            assert value == "", f".env.example: {key} must be empty (filled in compose/.env only)"
    for path in (COMPOSE / "secrets").glob("*.env.example"):
        assert all(v == "" for v in parse_env_file(path).values()), f"{path.name} holds a value"
    ignored = (COMPOSE / ".gitignore").read_text().split()
    assert ".env" in ignored and "secrets/*.env" in ignored


# --- 4. Prometheus and Grafana -------------------------------------------------------------------------

_PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_PROMQL_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_PROMQL_SELECTOR = re.compile(r"\{([^}]*)\}")
_PROMQL_RANGE = re.compile(r"\[[^\]]*\]")
_PROMQL_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_PROMQL_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "inf", "nan", "atan2", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right"}
)
TARGET_LABELS = {"instance", "job", "le"}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) that a PromQL expression uses. Functions are what precedes `(`."""
    expr = _PROMQL_STRING.sub('""', expr)
    labels: set[str] = set()
    for m in _PROMQL_GROUPING.finditer(expr):
        labels |= {x.strip() for x in m.group(2).split(",") if x.strip()}
    expr = _PROMQL_GROUPING.sub(" ", expr)
    for m in _PROMQL_SELECTOR.finditer(expr):
        labels |= {x.split("=")[0].split("!")[0].strip() for x in m.group(1).split(",") if x.strip()}
    expr = _PROMQL_SELECTOR.sub(" ", _PROMQL_RANGE.sub(" ", _PROMQL_OFFSET.sub(" ", expr)))
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables ($__rate_interval, $__range)
    metrics = set()
    for m in _PROMQL_IDENT.finditer(expr):
        word = m.group(0)
        if expr[m.end() :].lstrip().startswith("(") or word.lower() in _PROMQL_KEYWORDS:
            continue
        if re.fullmatch(r"\d+(\.\d+)?(e\d+)?", word):
            continue
        metrics.add(word)
    return metrics, labels


def test_promql_parser_sees_metrics_and_labels() -> None:
    metrics, labels = promql_names(
        'histogram_quantile(0.95, sum by (le) (rate(misinfo_model_latency_seconds_bucket{job="w"}[5m])))'
        " / on (instance) group_left up offset 5m"
    )
    assert metrics == {"misinfo_model_latency_seconds_bucket", "up"}
    assert labels == {"le", "job", "instance"}


def _dashboards() -> list[Path]:
    return sorted((GRAFANA / "dashboards").glob("*.json"))


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            out.extend((inner.get("title", ""), t) for t in inner.get("targets", []))
    return out


def test_dashboards_name_only_exported_metrics() -> None:
    assert _dashboards(), "no dashboard in compose/grafana/dashboards"
    series = {**all_series(), **watcher_series()}  # the workers' and the retrain watcher's
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    ds_uids = {d["uid"] for d in datasource["datasources"]}
    used: set[str] = set()
    for path in _dashboards():
        dashboard = json.loads(path.read_text())
        targets = _targets(dashboard)
        assert targets, f"{path.name}: no queries"
        for title, target in targets:
            assert target.get("datasource", {}).get("uid") in ds_uids, f"{path.name} / {title}: datasource"
            metrics, labels = promql_names(target["expr"])
            assert metrics, f"{path.name} / {title}: no metric in {target['expr']!r}"
            unknown = metrics - set(series)
            assert not unknown, f"{path.name} / {title}: {sorted(unknown)} not exported (*METRIC_NAMES)"
            specs = {series[m] for m in metrics}
            allowed_labels = TARGET_LABELS.union(*(s.labels for s in specs))
            assert labels <= allowed_labels, (
                f"{path.name} / {title}: labels {sorted(labels - allowed_labels)}"
            )
            used |= {s.name for s in specs}
    exported = set(METRIC_NAMES) | set(WATCHER_METRIC_NAMES)
    assert exported <= used, f"metrics no panel shows: {sorted(exported - used)}"
    assert len(METRIC_NAMES) == len(set(METRIC_NAMES)) == len(METRICS)
    assert len(WATCHER_METRIC_NAMES) == len(set(WATCHER_METRIC_NAMES)) == len(WATCHER_METRICS)


def test_grafana_provisioning_points_at_the_mounted_dashboards(compose) -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "misinfo.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]


def test_prometheus_scrapes_every_worker_replica(compose) -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "misinfo-workers")
    worker = compose["services"]["worker"]
    port = int(service_env(worker)["MISINFO_WORKER_WEB_PORT"])
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A" and sd["port"] == port
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert str(port) in [str(p) for p in worker.get("expose", [])]
    assert f"127.0.0.1:{port}/metrics" in " ".join(worker["healthcheck"]["test"])
    # Prometheus calls in over the compose network: the default loopback bind would refuse it.
    assert service_env(worker)["MISINFO_WORKER_WEB_BIND"] == "0.0.0.0"


def test_prometheus_scrapes_the_retrain_watcher(compose) -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "misinfo-retrain-watcher")
    watcher = compose["services"]["retrain-watcher"]
    env = service_env(watcher)
    port = int(env["MISINFO_WATCHER_WEB_PORT"])
    assert job["static_configs"][0]["targets"] == [f"retrain-watcher:{port}"]
    assert env["MISINFO_WATCHER_WEB_BIND"] == "0.0.0.0"  # reachable over the compose network
    assert f"127.0.0.1:{port}/metrics" in " ".join(watcher["healthcheck"]["test"])
