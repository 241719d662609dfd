"""Optimization profiles: how to load and run the detector on one kind of device, as measured there.

``misinfo optimize`` (registry/optimize/) measures candidates and writes a profile; the detector
applies it at load through :class:`~detector.model.LoadOptions` (``profile=``). The profile is a JSON
document with a versioned schema (:data:`PROFILE_SCHEMA`, ``schema_version`` 1):

- ``candidates``: every measured candidate with its options and figures (the table);
- ``choice``: the chosen candidate's options, or null when none qualified;
- ``machine``: where it was measured; ``device_kind`` decides whether it may be applied elsewhere;
- ``libraries``: versions of torch, transformers, peft (and flash-attn when installed).

A candidate's options may also name ``vision_attention`` (varlen, batched, stock, auto) and
``compile_blocks`` (compiled vision blocks and decoder layers); both are optional, so profiles
written before them still read, and then the loader's own defaults apply.

Rules when applying: a profile measured on another device kind (``cpu:x86_64`` vs
``cuda:NVIDIA H100 80GB HBM3``) is not applied unless forced; an unreadable or invalid profile is not
applied either. Both only warn: the detector still loads, with the options it was given.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detector.options import FallbackWarning, resolve_device

if TYPE_CHECKING:
    import torch

    from detector.options import LoadOptions

SCHEMA_VERSION = 1
DTYPES = ("float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
VISION_ATTENTIONS = ("auto", "varlen", "batched", "stock")  # detector.vision_attention.CHOICES


class ProfileError(ValueError):
    """A profile document is unreadable or does not match :data:`PROFILE_SCHEMA`."""


_OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["dtype", "attn_implementation", "compile", "quantize_int8", "merge_adapter", "batch_size"],
    "properties": {
        "dtype": {"enum": list(DTYPES)},
        "attn_implementation": {"enum": list(ATTN_IMPLEMENTATIONS)},
        "compile": {"type": "boolean"},
        "quantize_int8": {"type": "boolean"},
        "merge_adapter": {"type": "boolean"},
        "batch_size": {"type": "integer", "minimum": 1},
        "num_threads": {"type": ["integer", "null"], "minimum": 1},
        "vision_attention": {"enum": list(VISION_ATTENTIONS)},
        "compile_blocks": {"type": ["boolean", "null"]},
    },
}

_NUM_OR_NULL = {"type": ["number", "null"]}

_METRICS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "images_per_s",
        "peak_memory_mb",
        "load_s",
        "label_agreement",
        "max_score_diff",
    ],
    "properties": {
        "p50_ms": {"type": "number", "minimum": 0},
        "p95_ms": {"type": "number", "minimum": 0},
        "p99_ms": {"type": "number", "minimum": 0},
        "images_per_s": {"type": "number", "minimum": 0},
        "images_per_s_median": {"type": "number", "minimum": 0},
        "peak_memory_mb": {"type": "number", "minimum": 0},
        "load_s": {"type": "number", "minimum": 0},
        "warmup_s": _NUM_OR_NULL,
        "label_agreement": {"type": "number", "minimum": 0, "maximum": 1},
        "max_score_diff": {"type": "number", "minimum": 0},
        "batches": {"type": "integer", "minimum": 0},
    },
}

PROFILE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://misinfo-watch/schemas/optimization-profile-1.json",
    "title": "Detector optimization profile",
    "type": "object",
    "required": [
        "schema_version",
        "profile_id",
        "created_at",
        "model",
        "machine",
        "libraries",
        "criteria",
        "candidates",
        "choice",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "profile_id": {"type": "string", "minLength": 1},
        "created_at": {"type": "string"},
        "model": {
            "type": "object",
            "required": ["path"],
            "properties": {"path": {"type": "string"}, "adapter_path": {"type": ["string", "null"]}},
        },
        "eval_set": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "images": {"type": "integer", "minimum": 1}},
        },
        "machine": {
            "type": "object",
            "required": ["device_kind", "device"],
            "properties": {
                "device_kind": {"type": "string", "minLength": 1},
                "device": {"type": "string"},
                "device_name": {"type": "string"},
                "cpu_count": {"type": "integer"},
                "platform": {"type": "string"},
            },
        },
        "libraries": {
            "type": "object",
            "required": ["torch", "transformers"],
            "additionalProperties": {"type": ["string", "null"]},
        },
        "criteria": {
            "type": "object",
            "required": ["min_agreement", "agreement_on", "baseline"],
            "properties": {
                "min_agreement": {"type": "number", "minimum": 0, "maximum": 1},
                "memory_budget_mb": _NUM_OR_NULL,
                "agreement_on": {"enum": ["argmax"]},
                "baseline": {"type": "string"},
            },
        },
        "candidates": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "options", "status", "eligible"],
                "properties": {
                    "id": {"type": "string"},
                    "options": _OPTIONS_SCHEMA,
                    "status": {"enum": ["ok", "failed"]},
                    "error": {"type": ["string", "null"]},
                    "fallbacks": {"type": "array", "items": {"type": "string"}},
                    "metrics": {"oneOf": [_METRICS_SCHEMA, {"type": "null"}]},
                    "eligible": {"type": "boolean"},
                    "why_not": {"type": ["string", "null"]},
                },
            },
        },
        "choice": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["id", "options", "speedup_vs_baseline", "label_agreement"],
                    "properties": {
                        "id": {"type": "string"},
                        "options": _OPTIONS_SCHEMA,
                        "speedup_vs_baseline": {"type": "number", "minimum": 0},
                        "label_agreement": {"type": "number", "minimum": 0, "maximum": 1},
                        "max_score_diff": {"type": "number", "minimum": 0},
                        "images_per_s": {"type": "number", "minimum": 0},
                        "ranked_by": {"type": "string"},
                    },
                },
            ]
        },
    },
}


def validate_profile(doc: Any) -> None:
    """Raise :class:`ProfileError` naming the first problem when ``doc`` does not match the schema."""
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - jsonschema is in the locked environment
        raise ImportError("profile validation needs `jsonschema` (pip install jsonschema)") from exc
    validator = jsonschema.Draft202012Validator(PROFILE_SCHEMA)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.path) or "(root)"
        raise ProfileError(f"profile does not match schema v{SCHEMA_VERSION} at {where}: {err.message}")


def read_profile(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Read (path or already-parsed dict) and validate a profile."""
    if isinstance(source, dict):
        doc = source
    else:
        try:
            doc = json.loads(Path(source).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ProfileError(f"cannot read profile {source}: {exc}") from exc
    validate_profile(doc)
    return doc


def write_profile(doc: dict[str, Any], path: str | Path) -> Path:
    """Validate and write a profile (pretty JSON); returns the path."""
    validate_profile(doc)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return out


def device_kind(device: torch.device | str) -> str:
    """What a profile must match to apply: ``cpu:<arch>`` or ``cuda:<GPU name>``."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev.index or 0)}"
    return f"{dev.type}:{platform.machine()}"


def machine_info(device: torch.device | str) -> dict[str, Any]:
    import torch

    dev = torch.device(device)
    name = (
        torch.cuda.get_device_name(dev.index or 0)
        if dev.type == "cuda"
        else (platform.processor() or platform.machine())
    )
    return {
        "device_kind": device_kind(dev),
        "device": str(dev),
        "device_name": name,
        "cpu_count": os.cpu_count() or 1,
        "platform": platform.platform(),
    }


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "flash-attn"):
        try:
            out[dist.replace("-", "_")] = version(dist)
        except PackageNotFoundError:
            out[dist.replace("-", "_")] = None
    return out


def new_profile_id(machine: dict[str, Any], choice: dict[str, Any] | None, model_path: str) -> str:
    """A short id that changes with the machine kind, the model and the chosen options."""
    key = json.dumps(
        [machine.get("device_kind"), model_path, choice and choice.get("options")], sort_keys=True
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"prof-{stamp}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _warn(msg: str) -> None:
    import logging

    logging.getLogger(__name__).warning(msg)
    warnings.warn(msg, FallbackWarning, stacklevel=3)


def apply_profile(
    options: LoadOptions, profile: str | Path | dict[str, Any], *, force: bool = False
) -> tuple[LoadOptions, dict[str, Any] | None]:
    """Options with the profile's choice filled in, and the profile's summary when it was applied.

    Not applied (with a :class:`FallbackWarning`) when the profile is unreadable or invalid, has no
    choice, or was measured on another device kind than the one ``options.device`` resolves to here
    (``force`` overrides the last check only). Options that then fail on this machine fall back one by
    one in :meth:`Detector.load`.
    """
    try:
        doc = read_profile(profile)
    except ProfileError as exc:
        _warn(f"optimization profile not applied: {exc}")
        return options, None
    choice = doc["choice"]
    if choice is None:
        _warn(f"optimization profile {doc['profile_id']} has no choice (no candidate qualified); not applied")
        return options, None
    here = device_kind(resolve_device(options.device))
    there = doc["machine"]["device_kind"]
    if here != there:
        if not force:
            _warn(
                f"optimization profile {doc['profile_id']} was measured on {there!r}, this is {here!r}; "
                "not applied (measure here with `misinfo optimize`, or force it)"
            )
            return options, None
        _warn(f"optimization profile {doc['profile_id']} from {there!r} forced onto {here!r}")
    chosen = choice["options"]
    applied = replace(
        options,
        dtype=chosen["dtype"],
        attn_implementation=chosen["attn_implementation"],
        compile=chosen["compile"],
        quantize_int8=chosen["quantize_int8"],
        merge_adapter=chosen["merge_adapter"] if options.adapter_path else options.merge_adapter,
        num_threads=chosen.get("num_threads") or options.num_threads,
        vision_attention=chosen.get("vision_attention", options.vision_attention),
        compile_blocks=chosen.get("compile_blocks", options.compile_blocks),
    )
    summary = {
        "profile_id": doc["profile_id"],
        "candidate": choice["id"],
        "batch_size": chosen["batch_size"],
        "device_kind": there,
        "vision_attention": chosen.get("vision_attention"),
        "compile_blocks": chosen.get("compile_blocks"),
    }
    return applied, summary
