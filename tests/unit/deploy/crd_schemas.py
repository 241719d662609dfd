"""Validating custom resources against the vendored CRD schemas (deploy/helm/schemas/, see its README).

The API server prunes unknown fields of a structural schema without a word; here an unknown field is
an error (unless the schema preserves unknown fields or says what extra keys may hold), so a
misspelt key in a template fails CI instead of silently doing nothing in the cluster.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "schemas"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def strict(node: Any) -> Any:
    """The schema with `additionalProperties: false` on every object that lists its properties."""
    if isinstance(node, list):
        return [strict(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: (strict(v) if k != "properties" else {p: strict(s) for p, s in v.items()}) for k, v in node.items()
    }
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def schema_file(api_version: str, kind: str) -> Path:
    group, _, version = api_version.rpartition("/")
    return SCHEMAS / f"{group}_{kind}_{version}.json"


def has_schema(api_version: str, kind: str) -> bool:
    return "/" in api_version and schema_file(api_version, kind).is_file()


@cache
def validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = strict(json.loads(schema_file(api_version, kind).read_text()))
    # The CRD leaves metadata to the API server (ObjectMeta); check the parts a typo could break.
    schema.setdefault("properties", {})["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": DNS_SUBDOMAIN.pattern},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "namespace": {"type": "string"},
        },
        "additionalProperties": False,
    }
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return jsonschema.Draft7Validator(schema)


def errors(doc: dict[str, Any]) -> list[str]:
    """Validation errors of one custom resource, as 'path: message' lines."""
    found = validator(doc["apiVersion"], doc["kind"]).iter_errors(doc)
    return [
        f"{doc['kind']}/{doc['metadata'].get('name')}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in sorted(found, key=lambda e: list(map(str, e.absolute_path)))
    ]
