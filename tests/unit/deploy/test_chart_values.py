"""What the values decide: workers scale on lag through KEDA within the partition count, request a
GPU each and shut down without losing a batch; a broken value (a missing required setting, an
unknown or chart-owned variable, a secret in plain values, replicas above partitions, ...) fails
`helm install` with a message that names it, through values.schema.json or the chart's checks."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
import yaml

from core.config import SecretStr, Settings
from tests.unit.deploy.chart import VALUES_FILES, by_kind, named, render, resources, values_for


def render_error(values: dict[str, Any]) -> str:
    import helm_python as helm

    with pytest.raises((helm.HelmRenderError, helm.HelmValuesError)) as excinfo:
        render(values)
    return str(excinfo.value)


def worker_deployments(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in by_kind(docs, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    ]


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


# --- scaling on lag --------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["production", "external"])
def test_workers_scale_on_the_images_topic_lag_of_their_group(values: str) -> None:
    docs = resources(values)
    deployments = worker_deployments(docs)
    scaled = by_kind(docs, "ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {
        d["metadata"]["name"] for d in deployments
    }
    partitions = None
    total_max = 0
    for so in scaled:
        deployment = named(docs, "Deployment", so["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in deployment["spec"], (
            "KEDA owns the replica count; helm upgrade must not reset it"
        )
        env = env_of(deployment)
        (trigger,) = so["spec"]["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["consumerGroup"] == env["MISINFO_WORKER_GROUP"]
        assert meta["topic"] == env["MISINFO_TOPIC_IMAGES"]
        assert meta["bootstrapServers"] == env["MISINFO_KAFKA_BOOTSTRAP"]
        assert meta["allowIdleConsumers"] == "false", "an idle consumer holds a GPU for nothing"
        assert int(meta["lagThreshold"]) > 0
        spec = so["spec"]
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        partitions = int(env["MISINFO_TOPIC_PARTITIONS"])
        total_max += spec["maxReplicaCount"]
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300, "each scale-down is a rebalance"
    assert partitions is not None and total_max <= partitions, (
        f"max replicas {total_max} > partitions {partitions}"
    )


def test_without_autoscaling_the_replicas_are_fixed_and_no_scaledobject_is_rendered() -> None:
    docs = resources("minimal")
    assert not by_kind(docs, "ScaledObject")
    (deployment,) = worker_deployments(docs)
    assert deployment["spec"]["replicas"] == 1


# --- GPUs and shutdown -----------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_FILES)
def test_each_worker_holds_one_gpu_and_has_time_to_finish_its_batch(values: str) -> None:
    docs = resources(values)
    for deployment in worker_deployments(docs):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        resources_ = container["resources"]
        assert resources_["limits"]["nvidia.com/gpu"] == 1 and resources_["requests"]["nvidia.com/gpu"] == 1
        assert any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])), (
            "GPU nodes are tainted"
        )
        env = env_of(deployment)
        assert env["MISINFO_DEVICE"] == "cuda"
        # Exec form: the worker itself is PID 1 and gets SIGTERM (a shell would swallow it).
        assert container["command"][:2] == ["misinfo", "worker"]
        # Grace: the longest batch wait plus the batch itself, the commit and leaving the group.
        grace = pod["terminationGracePeriodSeconds"]
        assert grace >= 60 and grace > float(env["MISINFO_MAX_WAIT_S"]) + 30
        assert (
            container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 300
        )
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy == {"maxSurge": 0, "maxUnavailable": 1}
        pdbs = [
            p
            for p in by_kind(docs, "PodDisruptionBudget")
            if p["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        ]
        assert len(pdbs) == 1 and pdbs[0]["spec"]["maxUnavailable"] == 1


def test_shared_weights_reach_workers_and_training_at_the_model_path() -> None:
    docs = resources("production")
    model_path = env_of(worker_deployments(docs)[0])["MISINFO_MODEL_PATH"]
    watcher = named(docs, "Deployment", "misinfo-misinfo-watch-retrain-watcher")
    assert env_of(watcher)["MISINFO_MODEL_PATH"] == model_path, "training must fine-tune what serves"
    (ray,) = by_kind(docs, "RayCluster")
    pods = [d["spec"]["template"]["spec"] for d in worker_deployments(docs)]
    pods += [g["template"]["spec"] for g in ray["spec"]["workerGroupSpecs"]]
    for pod in pods:
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        mount = next(m for path, m in mounts.items() if model_path.startswith(path + "/"))
        assert mount["readOnly"] is True
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert (
            volume["persistentVolumeClaim"]["claimName"]
            == values_for("production")["models"]["existingClaim"]
        )


def test_collectors_keep_cursors_on_a_claim_under_the_state_dir() -> None:
    docs = resources("production")
    collectors = [
        d
        for d in by_kind(docs, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "collector"
    ]
    assert {d["metadata"]["labels"]["misinfo.io/source"] for d in collectors} == {"reddit", "x", "rss"}
    claims = {c["metadata"]["name"]: c for c in by_kind(docs, "PersistentVolumeClaim")}
    for deployment in collectors:
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        state_dir = env_of(deployment)["MISINFO_STATE_DIR"]
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == f"{state_dir}/cursors")
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        claim = claims[volume["persistentVolumeClaim"]["claimName"]]
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_review_service_trusts_the_ingress_controller_and_is_exposed() -> None:
    docs = resources("production")
    deployment = named(docs, "Deployment", "misinfo-misinfo-watch-moderation")
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["misinfo", "moderate"]
    assert command[command.index("--forwarded-allow-ips") + 1] == "10.0.0.0/8"
    assert env_of(deployment)["MISINFO_MODERATION_FORWARDED_ALLOW_IPS"] == "10.0.0.0/8"
    (ingress,) = by_kind(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = named(docs, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]


def test_training_runs_on_the_rayclusters_gpu_workers() -> None:
    docs = resources("production")
    (ray,) = by_kind(docs, "RayCluster")
    group = ray["spec"]["workerGroupSpecs"][0]
    container = group["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == int(group["rayStartParams"]["num-gpus"])
    assert ray["spec"]["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    assert ray["spec"]["authOptions"]["mode"] == "token"
    watcher = named(docs, "Deployment", "misinfo-misinfo-watch-retrain-watcher")
    env = {e["name"]: e for e in watcher["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MISINFO_RAY_ADDRESS"]["value"] == f"http://{ray['metadata']['name']}-head-svc:8265"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "auth_token"


# --- broken values fail -----------------------------------------------------------------------------

BROKEN: list[tuple[str, dict[str, Any], str]] = [
    ("missing model path", {"workers": {"modelPath": ""}}, "workers.modelPath"),
    ("unknown variable", {"settings": {"MISINFO_NOT_A_SETTING": "1"}}, "MISINFO_NOT_A_SETTING"),
    (
        "unknown pool variable",
        {"workers": {"pools": [{"name": "gpu", "settings": {"MISINFO_BATCH": 8}}]}},
        "MISINFO_BATCH",
    ),
    ("misspelt key", {"workers": {"maxbatch": 8}}, "maxbatch"),
    (
        "replicas above partitions (autoscaling)",
        {
            "topics": {"partitions": 4},
            "workers": {
                "autoscaling": {"enabled": True},
                "pools": [{"name": "gpu", "minReplicas": 1, "maxReplicas": 5}],
            },
        },
        "topics.partitions",
    ),
    (
        "replicas above partitions (pools add up)",
        {
            "topics": {"partitions": 8},
            "workers": {
                "autoscaling": {"enabled": True},
                "pools": [{"name": "a", "maxReplicas": 5}, {"name": "b", "maxReplicas": 4}],
            },
        },
        "topics.partitions",
    ),
    (
        "replicas above partitions (fixed)",
        {
            "topics": {"partitions": 4},
            "workers": {"pools": [{"name": "gpu", "replicas": 5, "maxReplicas": 5}]},
        },
        "topics.partitions",
    ),
    (
        "chart-owned variable",
        {"settings": {"MISINFO_KAFKA_BOOTSTRAP": "elsewhere:9092"}},
        "the chart sets MISINFO_KAFKA_BOOTSTRAP",
    ),
    (
        "short grace period",
        {"workers": {"terminationGracePeriodSeconds": 10}},
        "terminationGracePeriodSeconds",
    ),
    (
        "missing secret value",
        {"secrets": {"values": {"redis-password": ""}}},
        "secrets.values.redis-password",
    ),
    (
        "ingress without trusted proxies",
        {"moderation": {"ingress": {"enabled": True, "host": "r.example.org"}}},
        "moderation.trustedProxies",
    ),
    ("external kafka without bootstrap", {"kafka": {"mode": "external"}}, "kafka.external.bootstrap"),
    ("watcher without ray", {"watcher": {"enabled": True}}, "watcher.enabled"),
    ("replication above brokers", {"topics": {"replicationFactor": 3}}, "topics.replicationFactor"),
]


@pytest.mark.parametrize(("case", "override", "message"), BROKEN, ids=[c for c, _, _ in BROKEN])
def test_broken_values_fail_with_a_message_naming_them(
    case: str, override: dict[str, Any], message: str
) -> None:
    assert message in render_error(values_for("minimal", **override)), case


def test_the_minimal_values_render_as_given() -> None:
    """Guards the cases above: each fails because of its override, not because minimal is broken."""
    render(values_for("minimal"))


@pytest.mark.parametrize(
    "name", sorted("MISINFO_" + f.name.upper() for f in fields(Settings) if isinstance(f.default, SecretStr))
)
def test_a_secret_setting_in_plain_values_is_refused(name: str) -> None:
    assert "is a secret" in render_error(values_for("minimal", settings={name: "leaked"}))


def test_large_numbers_reach_int_settings_as_integers() -> None:
    """Helm reads YAML numbers as float64 and would print 50000000 as 5e+07, which int() refuses."""
    docs = []
    for text in render(values_for("minimal", settings={"MISINFO_MAX_DOWNLOAD_BYTES": 50_000_000})).values():
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    (deployment,) = worker_deployments(docs)
    assert env_of(deployment)["MISINFO_MAX_DOWNLOAD_BYTES"] == "50000000"
