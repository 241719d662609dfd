"""The demo's images, its summary line and its cache key (tests/e2e/test_demo.py builds the detector)."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from misinfo.demo import summary_line_of
from misinfo.demo_model import RECIPE, Recipe, cached_model, write_demo_images


def test_demo_images_are_half_manipulated_reproducible_and_named_by_content(tmp_path):
    truth = write_demo_images(tmp_path / "a", 6, seed=5)
    again = write_demo_images(tmp_path / "b", 6, seed=5)
    assert truth == again and len(truth) == 6
    assert sorted(truth.values()) == ["authentic"] * 3 + ["manipulated"] * 3
    files = sorted((tmp_path / "a").glob("*.jpg"))
    assert {hashlib.sha256(f.read_bytes()).hexdigest() for f in files} == set(truth)
    assert all("manipulated" not in f.name and "authentic" not in f.name for f in files)
    assert set(write_demo_images(tmp_path / "c", 6, seed=6)).isdisjoint(truth)  # another seed, other images


def test_the_summary_counts_flagged_images_by_true_class():
    truth = {"a": "authentic", "b": "authentic", "c": "manipulated", "d": "manipulated"}
    verdicts = {k: SimpleNamespace(flagged=k in ("b", "c", "d")) for k in truth}
    assert summary_line_of(4, verdicts, truth) == (
        "demo: 4 images, 4 verdicts, 3 flagged: manipulated 2/2 (100%), authentic 1/2 (50%)"
    )


def test_the_cache_is_named_by_the_recipe(tmp_path):
    assert cached_model(tmp_path) == cached_model(tmp_path, Recipe())
    assert cached_model(tmp_path, Recipe(steps=RECIPE.steps + 1)) != cached_model(tmp_path)
