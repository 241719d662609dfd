"""The chart renders with each example values file, and every resource it renders validates offline:
core kinds against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are
errors) at the oldest and the newest Kubernetes the chart supports; custom resources (KEDA, KubeRay,
Strimzi, Prometheus Operator) against the CRD schemas vendored in deploy/helm/schemas/."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.unit.deploy import crd_schemas
from tests.unit.deploy.chart import CHART, VALUES_FILES, by_kind, resources, values_for

# Chart.yaml says kubeVersion >=1.30; 1.34 is the newest the tests pin (kubernetes-validate 1.37.0
# ships both). Raise both together when the chart's floor moves.
KUBE_VERSIONS = ("1.30.0", "1.34.0")
CUSTOM_KINDS = {"ScaledObject", "RayCluster", "Kafka", "KafkaNodePool", "KafkaTopic", "ServiceMonitor"}


@pytest.mark.parametrize("values", VALUES_FILES)
def test_chart_renders_and_lints(values: str) -> None:
    import helm_python as helm

    docs = resources(values)
    assert by_kind(docs, "Deployment"), "no Deployment rendered"
    report = helm.lint(str(CHART), values_for(values), strict=True, kube_version="v1.30.0", quiet=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", VALUES_FILES)
def test_core_resources_validate_against_kubernetes(values: str, version: str) -> None:
    failures = []
    for doc in resources(values):
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(map(str, exc.path))
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("values", VALUES_FILES)
def test_custom_resources_validate_against_their_crds(values: str) -> None:
    docs = resources(values)
    unknown = {
        (d["apiVersion"], d["kind"])
        for d in docs
        if d["kind"] not in {"Deployment", "StatefulSet", "Service", "Secret", "ConfigMap", "Job"}
        and d["kind"] not in {"PersistentVolumeClaim", "PodDisruptionBudget", "Ingress"}
        and not crd_schemas.has_schema(d["apiVersion"], d["kind"])
    }
    assert not unknown, f"custom resources without a vendored schema: {sorted(unknown)}"
    failures = [e for d in docs if d["kind"] in CUSTOM_KINDS for e in crd_schemas.errors(d)]
    assert not failures, "\n".join(failures)


def test_every_custom_kind_is_rendered_by_some_example() -> None:
    """The CRD checks above are only as good as their coverage: each kind appears at least once."""
    seen = {d["kind"] for values in VALUES_FILES for d in resources(values)}
    assert seen >= CUSTOM_KINDS, f"never rendered: {sorted(CUSTOM_KINDS - seen)}"


def test_crd_validation_rejects_a_misspelt_field() -> None:
    """Guards the strictness: an unknown key in a custom resource is an error, as is a wrong type."""
    so = by_kind(resources("production"), "ScaledObject")[0]
    so["spec"]["maxReplicas"] = 3  # the field is maxReplicaCount
    assert any("maxReplicas" in e for e in crd_schemas.errors(so))
    rc = by_kind(resources("production"), "RayCluster")[0]
    rc["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    assert crd_schemas.errors(rc)


def test_core_validation_rejects_a_misspelt_field() -> None:
    deployment = by_kind(resources("minimal"), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["enviroment"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)
