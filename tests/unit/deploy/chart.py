"""Rendering the Helm chart offline (helm-python-sdk: Helm v4's Go engine, no binary, no cluster) and
reading what it renders: resources by kind, the `misinfo` containers, their environment resolved
the way the kubelet resolves it (secretKeyRef from the rendered Secret, `$(VAR)` references)."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "misinfo-watch"
VALUES_DIR = ROOT / "deploy" / "helm" / "values"
VALUES_FILES = ("minimal", "production", "external")
RELEASE, NAMESPACE = "misinfo", "misinfo"

# What an operator passes with --set-string when the chart creates the Secret (minimal.yaml).
STAND_IN_SECRETS = {
    key: f"test-{key}"
    for key in (
        "redis-password",
        "postgres-password",
        "s3-access-key-id",
        "s3-secret-access-key",
        "auth_token",
        "reddit-client-secret",
        "x-bearer-token",
        "instagram-access-token",
    )
}

# What a Secret made outside the chart (secrets.existingSecret) holds, where the form matters.
EXISTING_SECRET_STAND_INS = {"redis-url": "redis://:test@redis.internal.example.org:6379/0"}


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of values files: maps merge key by key, anything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def values_for(name: str, **overrides: Any) -> dict[str, Any]:
    """An example values file, plus the stand-in secrets when it lets the chart create the Secret."""
    values = yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text()) or {}
    if values.get("secrets", {}).get("create", True):
        values = deep_merge(values, {"secrets": {"values": STAND_IN_SECRETS}})
    return deep_merge(values, overrides)


def render(values: dict[str, Any]) -> dict[str, str]:
    """Template file -> rendered text, as `helm install --dry-run` would (schema checked first)."""
    import helm_python as helm

    helm.disable_logging()  # the engine logs an INFO line per symlinked file in files/
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


@cache
def _rendered(name: str) -> tuple[dict[str, Any], ...]:
    docs = []
    for text in render(values_for(name)).values():
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return tuple(docs)


def resources(name: str) -> list[dict[str, Any]]:
    """The resources of one example values file (a fresh copy each call: tests may mutate)."""
    return copy.deepcopy(list(_rendered(name)))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


# --- pods and containers ---------------------------------------------------------------------------


@dataclass
class Container:
    owner: str  # Kind/name of the resource holding the pod template
    component: str  # app.kubernetes.io/component of the pod
    pod: dict[str, Any]  # the pod spec
    spec: dict[str, Any]  # the container


def pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(component, pod metadata, pod spec) of every pod template a resource holds."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind in {"Deployment", "StatefulSet", "Job"}:
        template = spec["template"]
        yield _component(doc, template), template.get("metadata", {}), template["spec"]
    elif kind == "RayCluster":
        template = spec["headGroupSpec"]["template"]
        yield _component(doc, template), template.get("metadata", {}), template["spec"]
        for group in spec.get("workerGroupSpecs", []):
            template = group["template"]
            yield _component(doc, template), template.get("metadata", {}), template["spec"]


def _component(doc: dict[str, Any], template: dict[str, Any]) -> str:
    labels = template.get("metadata", {}).get("labels") or doc["metadata"].get("labels") or {}
    return str(labels.get("app.kubernetes.io/component", doc["metadata"]["name"]))


def containers(docs: list[dict[str, Any]]) -> list[Container]:
    out = []
    for doc in docs:
        for component, _meta, pod in pod_specs(doc):
            for c in pod.get("containers", []):
                out.append(Container(f"{doc['kind']}/{doc['metadata']['name']}", component, pod, c))
    return out


def misinfo_containers(docs: list[dict[str, Any]], image_repository: str) -> list[Container]:
    """Containers running the project image (the ones that read MISINFO_* settings)."""
    return [c for c in containers(docs) if c.spec["image"].rsplit(":", 1)[0] == image_repository]


def secret_data(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: dict(d.get("stringData") or {}) for d in by_kind(docs, "Secret")}


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def resolved_env(container: Container, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment the process sees: values with `$(VAR)` expanded from variables defined
    earlier in the list (the kubelet's rule), secretKeyRef read from the rendered Secret or, for a
    Secret made outside the chart, a stand-in; a missing optional key leaves the variable unset."""
    env: dict[str, str] = {}
    for entry in container.spec.get("env", []):
        name = entry["name"]
        if "value" in entry:
            env[name] = _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), str(entry["value"]))
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        data = secrets.get(ref["name"])
        if data is None:  # existingSecret: made by the operator, assumed complete
            env[name] = EXISTING_SECRET_STAND_INS.get(ref["key"], f"test-{ref['key']}")
        elif ref["key"] in data:
            env[name] = data[ref["key"]]
        else:
            assert ref.get("optional"), f"{container.owner}: {name} reads missing key {ref['key']}"
    return env
