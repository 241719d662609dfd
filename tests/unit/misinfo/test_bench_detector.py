"""``misinfo bench detector``: the seed's keyword parse, the generated images, the JSON line last."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from misinfo.bench.detector import bench_detector, seed_keyword_label
from misinfo.samples import bench_images


def test_seed_keyword_parse_is_the_fragile_one() -> None:
    assert seed_keyword_label("This image looks fake.") == "fake"
    assert seed_keyword_label("It is AI generated") == "fake"
    assert seed_keyword_label("a real photo") == "real"
    assert seed_keyword_label("not real") == "real"  # the seed's known failure, reproduced on purpose
    assert seed_keyword_label("::::") is None


def test_bench_images_are_deterministic_and_vary_in_size() -> None:
    a, b = bench_images(6, seed=2), bench_images(6, seed=2)
    assert [im.size for im in a] == [im.size for im in b]
    assert [im.tobytes() for im in a] == [im.tobytes() for im in b]
    assert len({im.size for im in a}) > 1 and all(im.mode == "RGB" for im in a)


def test_bench_cli_prints_one_json_line_last(tiny_ckpt) -> None:
    args = [
        "--model",
        str(tiny_ckpt),
        "--images",
        "4",
        "--batch-size",
        "2",
        "--seed-max-new-tokens",
        "4",
        "--ours-passes",
        "1",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(bench_detector, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("seed_images_per_s", "ours_images_per_s", "ratio", "batch_size", "model", "device"):
        assert key in figures
    assert figures["batch_size"] == 2 and figures["device"] == "cpu" and figures["images"] == 4
    assert figures["ratio"] == pytest.approx(
        figures["ours_images_per_s"] / figures["seed_images_per_s"], rel=0.01
    )
    assert 0 < figures["seed_mean_new_tokens"] <= 4
    assert "seed:" in result.stderr and "ours:" in result.stderr  # progress goes to stderr
