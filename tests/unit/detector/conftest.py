"""One tiny random checkpoint and one loaded detector per test session (both take seconds to build)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detector.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0)


@pytest.fixture(scope="session")
def tiny_detector(tiny_ckpt: Path):  # type: ignore[no-untyped-def]
    """Shared, read-only: tests that need other thresholds build their own Detector around its parts."""
    from detector.model import Detector, LoadOptions

    return Detector.load(tiny_ckpt, LoadOptions(device="cpu", dtype="float32", attn_implementation="sdpa"))


@pytest.fixture(scope="session")
def images():  # type: ignore[no-untyped-def]
    """Images of different sizes and aspect ratios (the processor resizes them into its pixel bounds)."""
    from detector.bench import bench_images

    ims = bench_images(5, seed=3, min_side=40, max_side=200)
    from PIL import Image

    ims.append(Image.new("L", (300, 40), 90))  # grey, very wide: converted to RGB on the way in
    return ims
