"""One tiny random checkpoint and one loaded detector per test session (both take seconds to build)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_detector(tiny_ckpt: Path):  # type: ignore[no-untyped-def]
    """Shared, read-only: tests that need other thresholds build their own Detector around its parts."""
    from detector.model import Detector
    from detector.options import LoadOptions

    return Detector.load(tiny_ckpt, LoadOptions(device="cpu", dtype="float32", attn_implementation="sdpa"))


@pytest.fixture(scope="session")
def images():  # type: ignore[no-untyped-def]
    """Images of different sizes and aspect ratios (the processor resizes them into its pixel bounds)."""
    from misinfo.samples import bench_images

    ims = bench_images(5, seed=3, min_side=40, max_side=200)
    from PIL import Image

    ims.append(Image.new("L", (300, 40), 90))  # grey, very wide: converted to RGB on the way in
    return ims


def _make_profile(kind: str | None = None, **choice_options) -> dict:
    """A valid profile document whose choice has ``choice_options`` (default kind: this CPU)."""
    import torch

    from detector.profile import SCHEMA_VERSION, device_kind

    kind = kind or device_kind("cpu")
    options = {
        "dtype": "float32",
        "attn_implementation": "eager",
        "compile": False,
        "quantize_int8": False,
        "merge_adapter": False,
        "batch_size": 4,
        "num_threads": 1,
    }
    options.update(choice_options)
    metrics = {
        "p50_ms": 10.0,
        "p95_ms": 12.0,
        "p99_ms": 13.0,
        "images_per_s": 400.0,
        "peak_memory_mb": 900.0,
        "load_s": 1.0,
        "label_agreement": 1.0,
        "max_score_diff": 0.0,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "profile_id": "prof-test",
        "created_at": "2026-11-26T00:00:00+00:00",
        "model": {"path": "/x", "adapter_path": None},
        "machine": {"device_kind": kind, "device": "cpu"},
        "libraries": {"torch": torch.__version__, "transformers": "5.17.0"},
        "criteria": {
            "min_agreement": 0.99,
            "memory_budget_mb": None,
            "agreement_on": "argmax",
            "baseline": "b",
        },
        "candidates": [
            {"id": "b", "options": dict(options), "status": "ok", "metrics": metrics, "eligible": True},
            {
                "id": "bad",
                "options": dict(options),
                "status": "failed",
                "error": "boom",
                "metrics": None,
                "eligible": False,
                "why_not": "failed",
            },
        ],
        "choice": {"id": "b", "options": dict(options), "speedup_vs_baseline": 1.0, "label_agreement": 1.0},
    }


@pytest.fixture(scope="session")
def make_profile():  # type: ignore[no-untyped-def]
    return _make_profile
