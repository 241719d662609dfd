"""Turn upstream CustomResourceDefinition YAML files into the JSON schemas vendored beside this file.

    python deploy/helm/schemas/vendor_crds.py CRD.yaml [CRD.yaml ...]

For each CRD, the storage version's ``openAPIV3Schema`` (the version the chart writes) is written to
``<group>_<kind>_<version>.json`` here, with the ``description`` texts removed (they are most of the
bytes and never change what validates) and nothing else changed. The README says which upstream
files and releases they come from; tests/unit/deploy/ validates the chart's custom resources with them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def strip_descriptions(node: Any, *, in_properties: bool = False) -> Any:
    """The schema without its ``description`` strings; a *property* named description is kept."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if not in_properties and key == "description" and isinstance(value, str):
                continue
            out[key] = strip_descriptions(value, in_properties=(key == "properties" and not in_properties))
        return out
    if isinstance(node, list):
        return [strip_descriptions(x) for x in node]
    return node


def vendor(path: Path) -> list[Path]:
    written = []
    for crd in yaml.safe_load_all(path.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("storage", False):
                continue
            schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
            target = HERE / f"{group}_{kind}_{version['name']}.json"
            target.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
            written.append(target)
    return written


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        for target in vendor(Path(arg)):
            print(f"{arg} -> {target.name} ({target.stat().st_size} bytes)")
