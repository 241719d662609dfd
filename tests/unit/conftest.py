"""Fixtures shared by the unit tests of several packages."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detector.tiny import build_tiny_checkpoint

    # Under the session's base temp dir by a fixed name: one build serves every unit test.
    path = tmp_path_factory.getbasetemp() / "tiny-seed0"
    return path if (path / "config.json").exists() else build_tiny_checkpoint(path, seed=0)
