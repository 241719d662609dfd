"""The chart's containers against the code: every MISINFO_* variable it sets is a setting, every
setting a component needs is set (not empty), each environment loads into Settings as the entry
point reads it, every command is a real `misinfo` subcommand, every endpoint and Secret key the pods
use is rendered by the chart (or by the operator it hands a resource to), and the dashboard names
only metrics the workers export."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from click.testing import CliRunner

from core.config import SecretStr, Settings, env_names, load_settings
from stream_workers.metric_names import METRIC_NAMES, all_series
from tests.unit.compose.test_compose_stack import promql_names
from tests.unit.deploy.chart import (
    CHART,
    ROOT,
    VALUES_FILES,
    by_kind,
    misinfo_containers,
    named,
    resolved_env,
    resources,
    secret_data,
    values_for,
)
from trainer.metric_names import WATCHER_METRIC_NAMES, watcher_series

# Every misinfo container must set these: the defaults point at the embedded one-machine stack
# (127.0.0.1 ports, a local blob directory) and would silently split the system if a pod fell back
# to them; topic names so that the topics created and the topics used cannot disagree.
REQUIRED_EVERYWHERE = frozenset(
    {
        "MISINFO_STATE_DIR",
        "MISINFO_KAFKA_BOOTSTRAP",
        "MISINFO_REDIS_URL",
        "MISINFO_REDIS_PREFIX",
        "MISINFO_MLFLOW_TRACKING_URI",
        "MISINFO_BLOB_URI",
        "MISINFO_MODEL_NAME",
        "MISINFO_TOPIC_IMAGES",
        "MISINFO_TOPIC_VERDICTS",
        "MISINFO_TOPIC_FEEDBACK",
        "MISINFO_TOPIC_DEAD_LETTERS",
        "MISINFO_TOPIC_CONTROL",
        "MISINFO_TOPIC_PARTITIONS",
    }
)
# Per component (the pod's app.kubernetes.io/component), on top. MODEL_PATH: '' would load the tiny
# random test checkpoint. The web ports: probes and Prometheus use them. Credentials: the collector
# is useless without. TRAIN_PYTHON: the watcher's own interpreter path is right only by accident;
# MODEL_PATH on the watcher: a training job gets the watcher's settings and fine-tunes that base.
REQUIRED_BY_COMPONENT: dict[str, frozenset[str]] = {
    "worker": frozenset(
        {"MISINFO_DEVICE", "MISINFO_MODEL_PATH", "MISINFO_WORKER_GROUP", "MISINFO_WORKER_WEB_PORT"}
    ),
    "retrain-watcher": frozenset(
        {
            "MISINFO_RAY_ADDRESS",
            "MISINFO_WATCHER_GROUP",
            "MISINFO_WATCHER_WEB_PORT",
            "MISINFO_TRAIN_PYTHON",
            "MISINFO_MODEL_PATH",
        }
    ),
    "ray-gpu-worker": frozenset({"MISINFO_DEVICE"}),
    "collect-reddit": frozenset({"MISINFO_REDDIT_CLIENT_SECRET"}),
    "collect-x": frozenset({"MISINFO_X_BEARER_TOKEN"}),
    "collect-instagram": frozenset({"MISINFO_INSTAGRAM_ACCESS_TOKEN"}),
}
COMPOSE_DASHBOARD = ROOT / "compose" / "grafana" / "dashboards" / "misinfo-workers.json"


def allowed_misinfo_names() -> set[str]:
    """What the code reads: the settings, and the CLI root's own options (MISINFO_LOG_LEVEL)."""
    from misinfo.cli import cli

    return set(env_names()) | {p.envvar for p in cli.params if isinstance(p.envvar, str)}


def image_repository(values: str) -> str:
    chart_defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return (values_for(values).get("image") or {}).get("repository") or chart_defaults["image"]["repository"]


def cases() -> list[tuple[str, str, str]]:
    """(values file, container owner, component) for every misinfo container of every example."""
    out = []
    for values in VALUES_FILES:
        for c in misinfo_containers(resources(values), image_repository(values)):
            out.append((values, c.owner + "/" + c.spec["name"], c.component))
    return out


CASES = cases()


def container(values: str, owner: str):  # type: ignore[no-untyped-def]
    docs = resources(values)
    for c in misinfo_containers(docs, image_repository(values)):
        if c.owner + "/" + c.spec["name"] == owner:
            return c, secret_data(docs)
    raise AssertionError(owner)


def test_every_example_runs_the_services() -> None:
    for values in VALUES_FILES:
        components = {c for v, _, c in CASES if v == values}
        assert {"worker", "moderation"} <= components, f"{values}: {sorted(components)}"
    assert "retrain-watcher" in {c for _, _, c in CASES}


# --- 1. variables against the settings ------------------------------------------------------------


def test_values_schema_lists_exactly_the_settings() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    listed = set(schema["$defs"]["settingName"]["enum"])
    assert listed == allowed_misinfo_names(), (
        "values.schema.json and core/config.py disagree on the settings: "
        "run .venv/bin/python deploy/helm/update_settings_schema.py"
    )


def test_required_settings_are_known_settings() -> None:
    required = REQUIRED_EVERYWHERE.union(*REQUIRED_BY_COMPONENT.values())
    assert not required - set(env_names()), "the required lists name settings that no longer exist"


@pytest.mark.parametrize(("values", "owner", "component"), CASES, ids=[f"{v}:{o}" for v, o, _ in CASES])
def test_misinfo_variables_are_settings_and_required_ones_are_set(
    values: str, owner: str, component: str
) -> None:
    c, secrets = container(values, owner)
    names = [e["name"] for e in c.spec.get("env", [])]
    assert len(names) == len(set(names)), f"{owner}: a variable is set twice: {sorted(names)}"
    unknown = sorted(n for n in names if n.startswith("MISINFO_") and n not in allowed_misinfo_names())
    assert not unknown, f"{owner}: MISINFO_* variables no setting reads: {unknown}"

    env = resolved_env(c, secrets)
    required = REQUIRED_EVERYWHERE | REQUIRED_BY_COMPONENT.get(component, frozenset())
    missing = sorted(required - set(env))
    assert not missing, f"{owner} ({component}) does not set {missing}"
    empty = sorted(k for k in required if not env[k])
    assert not empty, f"{owner} sets {empty} empty"
    assert not [v for v in env.values() if "$(" in v], f"{owner}: an unresolved $(VAR) reference"
    # The values load into Settings (ints, floats, bools) exactly as the entry point will read them.
    settings = load_settings(environ=env)
    assert urlsplit(settings.redis_url).scheme == "redis"
    assert settings.blob_uri.startswith("s3://")


def test_secret_settings_come_only_from_the_secret() -> None:
    """Every SecretStr setting set anywhere is a secretKeyRef, never a literal value in a manifest."""
    secret_names = {"MISINFO_" + f.name.upper() for f in fields(Settings) if isinstance(f.default, SecretStr)}
    seen = set()
    for values in VALUES_FILES:
        for c in misinfo_containers(resources(values), image_repository(values)):
            for entry in c.spec.get("env", []):
                if entry["name"] in secret_names:
                    seen.add(entry["name"])
                    assert "valueFrom" in entry, f"{c.owner}: {entry['name']} written in the manifest"
    assert seen == secret_names, f"never exercised by an example: {sorted(secret_names - seen)}"


def test_topics_have_one_source() -> None:
    """The topics Strimzi or the hook Job create are the ones every container uses, with the
    partitions the workers are bounded by; the control topic is one compacted partition."""
    for values in VALUES_FILES:
        docs = resources(values)
        envs = [
            resolved_env(c, secret_data(docs)) for c in misinfo_containers(docs, image_repository(values))
        ]
        topic_keys = sorted(k for k in env_names() if k.startswith("MISINFO_TOPIC_"))
        first = {k: envs[0][k] for k in topic_keys}
        assert all({k: e[k] for k in topic_keys} == first for e in envs), f"{values}: containers disagree"
        v = values_for(values)
        expected_retention = yaml.safe_load((CHART / "values.yaml").read_text())["topics"]["retentionMs"]
        expected_retention.update((v.get("topics") or {}).get("retentionMs") or {})
        partitions = int(first["MISINFO_TOPIC_PARTITIONS"])
        kafka_topics = {t["spec"]["topicName"]: t["spec"] for t in by_kind(docs, "KafkaTopic")}
        jobs = [j for j in by_kind(docs, "Job") if "create-topics" in j["metadata"]["name"]]
        if kafka_topics:
            assert set(kafka_topics) == {first[k] for k in topic_keys if k != "MISINFO_TOPIC_PARTITIONS"}
            control = kafka_topics.pop(first["MISINFO_TOPIC_CONTROL"])
            assert control["partitions"] == 1 and control["config"]["cleanup.policy"] == "compact"
            assert {t["partitions"] for t in kafka_topics.values()} == {partitions}
            retention = kafka_topics[first["MISINFO_TOPIC_IMAGES"]]["config"]["retention.ms"]
            assert retention == expected_retention["images"] and isinstance(retention, int), retention
        else:
            assert len(jobs) == 1, f"{values}: external Kafka without topic creation"
            job_env = {
                e["name"]: e["value"] for e in jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"]
            }
            assert {k: job_env[k] for k in topic_keys} == first
            assert job_env["RETENTION_IMAGES_MS"] == str(expected_retention["images"])
            script = named(docs, "ConfigMap", jobs[0]["metadata"]["name"])["data"]["create-topics.sh"]
            assert script.strip() == (ROOT / "compose" / "kafka" / "create-topics.sh").read_text().strip()


# --- 2. commands ------------------------------------------------------------------------------------


def _commands() -> list[list[str]]:
    seen: dict[str, list[str]] = {}
    for values in VALUES_FILES:
        for c in misinfo_containers(resources(values), image_repository(values)):
            command = c.spec.get("command")
            if command:  # Ray pods: KubeRay generates `ray start ...`
                seen[" ".join(command[:3])] = command
    return [seen[k] for k in sorted(seen)]


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c[:3]))
def test_container_command_is_a_real_subcommand(command: list[str]) -> None:
    assert command[0] == "misinfo", f"{command}: not the misinfo console script"
    from misinfo.cli import cli

    result = CliRunner().invoke(cli, [*command[1:], "--help"], prog_name="misinfo")
    assert result.exit_code == 0, (
        f"`{' '.join(command)} --help` failed:\n{result.output}{result.exception or ''}"
    )


# --- 3. endpoints and secrets resolve inside the release -------------------------------------------


def _provided_hosts(docs: list[dict]) -> set[str]:
    """Service names in the namespace: the chart's, and those its operators derive from its resources."""
    hosts = {s["metadata"]["name"] for s in by_kind(docs, "Service")}
    hosts |= {f"{k['metadata']['name']}-kafka-bootstrap" for k in by_kind(docs, "Kafka")}  # Strimzi
    hosts |= {f"{r['metadata']['name']}-head-svc" for r in by_kind(docs, "RayCluster")}  # KubeRay
    return hosts


@pytest.mark.parametrize("values", VALUES_FILES)
def test_in_cluster_endpoints_resolve_to_rendered_services(values: str) -> None:
    docs = resources(values)
    hosts = _provided_hosts(docs)
    v = values_for(values)
    for c in misinfo_containers(docs, image_repository(values)):
        env = resolved_env(c, secret_data(docs))
        urls = {
            k: env[k]
            for k in ("MISINFO_MLFLOW_TRACKING_URI", "MISINFO_RAY_ADDRESS", "AWS_ENDPOINT_URL_S3")
            if env.get(k)
        }
        urls["MISINFO_REDIS_URL"] = env["MISINFO_REDIS_URL"]
        targets = [(k, urlsplit(u).hostname) for k, u in urls.items()]
        targets += [
            ("MISINFO_KAFKA_BOOTSTRAP", hp.rsplit(":", 1)[0])
            for hp in env["MISINFO_KAFKA_BOOTSTRAP"].split(",")
        ]
        for key, host in targets:
            if "." in str(host):  # a DNS name outside the namespace: external by the values' choice
                assert (v.get(key_to_section(key)) or {}).get("mode") != "create", f"{c.owner}: {key}={host}"
                continue
            assert host in hosts, f"{c.owner}: {key} points at {host}, which this release does not provide"


def key_to_section(key: str) -> str:
    return {
        "MISINFO_MLFLOW_TRACKING_URI": "mlflow",
        "MISINFO_RAY_ADDRESS": "ray",
        "AWS_ENDPOINT_URL_S3": "s3",
        "MISINFO_REDIS_URL": "redis",
        "MISINFO_KAFKA_BOOTSTRAP": "kafka",
    }[key]


@pytest.mark.parametrize("values", VALUES_FILES)
def test_secret_references_name_the_release_secret_and_existing_keys(values: str) -> None:
    docs = resources(values)
    v = values_for(values)
    expected = (
        v["secrets"].get("existingSecret")
        or f"{docs[0]['metadata']['labels']['app.kubernetes.io/instance']}-misinfo-watch-secrets"
    )
    rendered = secret_data(docs)
    refs = [(doc["metadata"]["name"], ref) for doc in docs for ref in _secret_key_refs(doc)]
    for ray in by_kind(docs, "RayCluster"):
        if "authOptions" in ray["spec"]:
            refs.append(
                (
                    ray["metadata"]["name"],
                    {"name": ray["spec"]["authOptions"]["secretName"], "key": "auth_token"},
                )
            )
    assert refs
    for owner, ref in refs:
        assert ref["name"] == expected, f"{owner}: reads Secret {ref['name']}, the release's is {expected}"
        if expected in rendered and not ref.get("optional"):
            assert ref["key"] in rendered[expected], (
                f"{owner}: key {ref['key']} is not in the rendered Secret"
            )


def _secret_key_refs(node: object) -> list[dict]:
    if isinstance(node, dict):
        found = [node["secretKeyRef"]] if "secretKeyRef" in node else []
        return found + [r for v in node.values() for r in _secret_key_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _secret_key_refs(v)]
    return []


# --- 4. metrics: probes, scraping, dashboard -------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_FILES)
def test_probes_and_scrapes_use_the_port_the_settings_bind(values: str) -> None:
    docs = resources(values)
    checked = 0
    for c in misinfo_containers(docs, image_repository(values)):
        env = resolved_env(c, secret_data(docs))
        port_setting = {
            "worker": "MISINFO_WORKER_WEB_PORT",
            "retrain-watcher": "MISINFO_WATCHER_WEB_PORT",
        }.get(c.component)
        if port_setting is None:
            continue
        port = int(env[port_setting])
        # Probes and scrapers call the pod's address: a server bound to loopback would fail them.
        bind_setting = port_setting.replace("_PORT", "_BIND")
        assert env.get(bind_setting) == "0.0.0.0", f"{c.owner}: {bind_setting} must be 0.0.0.0"
        ports = {p["name"]: p["containerPort"] for p in c.spec["ports"]}
        assert ports.get("metrics") == port, (
            f"{c.owner}: container port 'metrics' is not {port_setting}={port}"
        )
        for probe in ("readinessProbe", "livenessProbe"):
            http = c.spec[probe]["httpGet"]
            assert (http["path"], http["port"]) == ("/metrics", "metrics"), f"{c.owner}: {probe}"
        owner = next(d for d in docs if f"{d['kind']}/{d['metadata']['name']}" == c.owner)
        annotations = owner["spec"]["template"]["metadata"].get("annotations", {})
        if values_for(values).get("metrics", {}).get("podAnnotations", True):
            assert (
                annotations["prometheus.io/port"] == str(port)
                and annotations["prometheus.io/path"] == "/metrics"
            )
        checked += 1
    assert checked
    for sm in by_kind(docs, "ServiceMonitor"):
        selector = sm["spec"]["selector"]["matchLabels"]
        services = [
            s
            for s in by_kind(docs, "Service")
            if selector.items() <= s["metadata"]["labels"].items()
            or selector.items() <= s["spec"]["selector"].items()
        ]
        assert len(services) == 1, f"ServiceMonitor {sm['metadata']['name']} selects {len(services)} Services"
        svc = services[0]
        ports = {p["name"]: p for p in svc["spec"]["ports"]}
        for endpoint in sm["spec"]["endpoints"]:
            assert endpoint["port"] in ports and ports[endpoint["port"]]["targetPort"] == "metrics"
        pods = [
            c
            for c in misinfo_containers(docs, image_repository(values))
            if svc["spec"]["selector"].items() <= _pod_labels(docs, c.owner).items()
        ]
        assert pods, f"Service {svc['metadata']['name']} selects no pod"


def _pod_labels(docs: list[dict], owner: str) -> dict[str, str]:
    doc = next(d for d in docs if f"{d['kind']}/{d['metadata']['name']}" == owner)
    if doc["kind"] == "RayCluster":
        return {}
    return doc["spec"]["template"]["metadata"].get("labels", {})


def test_dashboard_configmap_is_the_compose_dashboard_and_names_exported_metrics() -> None:
    docs = resources("production")
    dashboards = [cm for cm in by_kind(docs, "ConfigMap") if cm["metadata"]["name"].endswith("-dashboard")]
    assert len(dashboards) == 1
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(dashboards[0]["data"]["misinfo-workers.json"])
    assert dashboard == json.loads(COMPOSE_DASHBOARD.read_text()), "one dashboard for compose and the chart"
    series = {**all_series(), **watcher_series()}
    used = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            metrics, _labels = promql_names(target["expr"])
            unknown = metrics - set(series)
            assert not unknown, (
                f"panel {panel['title']!r} queries {sorted(unknown)}, not exported by the workers or the watcher"
            )
            used |= {series[m].name for m in metrics}
    assert used and used <= set(METRIC_NAMES) | set(WATCHER_METRIC_NAMES)
    assert Path(CHART / "files" / "misinfo-workers.json").resolve() == COMPOSE_DASHBOARD.resolve()
