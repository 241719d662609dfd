"""``misinfo optimize``: eval-set checks, the candidate grid, selection, and a real run on the tiny model."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.optimize.candidates import Candidate, OptimizeError, default_grid, eval_images
from registry.optimize.choose import compare
from registry.optimize.cli import optimize as optimize_cmd
from registry.optimize.measure import Result, percentile


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    """One SQLite store for the module (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):  # type: ignore[no-untyped-def]
    from misinfo.samples import bench_images

    root = tmp_path_factory.mktemp("eval")
    (root / "sub").mkdir()
    for i, im in enumerate(bench_images(6, seed=5)):
        im.save(root / ("sub" if i % 2 else ".") / f"im{i}.png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_eval_set_missing_or_empty_is_refused(tmp_path, eval_dir) -> None:
    with pytest.raises(OptimizeError, match="eval set is required"):
        eval_images(None)
    with pytest.raises(OptimizeError, match="not a directory"):
        eval_images(tmp_path / "nope")
    with pytest.raises(OptimizeError, match="holds no images"):
        eval_images(tmp_path)
    files = eval_images(eval_dir)
    assert len(files) == 6 and all(p.suffix == ".png" for p in files)
    assert len(eval_images(eval_dir, max_images=2)) == 2


def test_cli_refuses_without_eval_set(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(optimize_cmd, ["--model", str(tmp_path)])
    assert result.exit_code != 0 and "eval set is required" in result.output
    result = runner.invoke(optimize_cmd, ["--model", str(tmp_path), "--eval-set", str(tmp_path)])
    assert result.exit_code != 0 and "holds no images" in result.output
    assert not (tmp_path / "profile.json").exists()


def test_default_cpu_grid_is_small_and_starts_with_the_baseline() -> None:
    grid = default_grid("cpu")
    cores = os.cpu_count() or 1
    assert grid[0] == Candidate("float32", "eager", batch_size=8, num_threads=cores)
    ids = [c.id for c in grid]
    assert len(ids) == len(set(ids)) and len(grid) <= 10
    assert not any(c.attn_implementation == "flash_attention_2" for c in grid)  # no GPU, no flash-attn
    assert not any(c.compile for c in grid)  # compile is opt-in on CPU
    assert any(c.quantize_int8 for c in grid) and any(c.dtype == "bfloat16" for c in grid)
    assert {1, 8, 16} <= {c.batch_size for c in grid}
    assert not any(c.merge_adapter for c in grid)
    with_adapter = default_grid("cpu", adapter=True, compile=True)
    assert any(c.merge_adapter for c in with_adapter) and any(c.compile for c in with_adapter)
    full = default_grid(
        "cpu",
        dtypes=["float32"],
        attns=["eager", "sdpa"],
        batch_sizes=[4],
        threads=[1],
        int8=False,
        full=True,
    )
    # 2 attentions x 2 batch sizes at 1 thread, plus the baseline (all cores; the same row on 1 core),
    # plus the batched vision attention row (vision rows vary one at a time around the reference)
    assert len(full) == 2 * 2 + (1 if cores > 1 else 0) + 1
    assert [c.vision_attention for c in grid].count("batched") == 1 and grid[0].vision_attention == "stock"


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 95) == 3.0


def _result(cand: Candidate, probs, ips: float, mem: float = 100.0, fallbacks=()) -> Result:  # type: ignore[no-untyped-def]
    metrics = {"images_per_s": ips, "images_per_s_median": ips, "peak_memory_mb": mem}
    return Result(cand, "ok", fallbacks=list(fallbacks), metrics=metrics, probs=probs)


def test_agreement_is_on_the_argmax_and_selection_respects_budget() -> None:
    base = [[0.34, 0.33, 0.33], [0.30, 0.36, 0.34], [0.2, 0.3, 0.5], [0.4, 0.3, 0.3]]
    same_argmax = [[0.36, 0.32, 0.32], [0.31, 0.35, 0.34], [0.25, 0.25, 0.5], [0.5, 0.25, 0.25]]
    one_flip = [[0.33, 0.34, 0.33], [0.30, 0.36, 0.34], [0.2, 0.3, 0.5], [0.4, 0.3, 0.3]]
    results = [
        _result(Candidate("float32", "eager"), base, 100),
        _result(Candidate("bfloat16"), same_argmax, 300),
        _result(Candidate("float16"), one_flip, 500),
        _result(Candidate(batch_size=16), base, 400, mem=5000),
        _result(Candidate(batch_size=2), base, 450, fallbacks=["x"]),
        Result(Candidate(quantize_int8=True), "failed", error="boom"),
    ]
    compare(results, min_agreement=0.99, memory_budget_mb=1000)
    assert [r.eligible for r in results] == [True, True, False, False, False, False]
    assert results[1].metrics["label_agreement"] == 1.0
    assert results[1].metrics["max_score_diff"] == pytest.approx(0.1)
    assert results[2].metrics["label_agreement"] == 0.75 and "agreement" in results[2].why_not
    assert "budget" in results[3].why_not and "fell back" in results[4].why_not
    compare(results, min_agreement=0.75, memory_budget_mb=None)
    assert [r.eligible for r in results] == [True, True, True, True, False, False]


def test_optimize_writes_a_profile_on_the_tiny_checkpoint(tiny_ckpt, eval_dir, tmp_path, mlflow_uri) -> None:
    from detector.model import Detector
    from detector.options import FallbackWarning, LoadOptions
    from detector.profile import read_profile

    out = tmp_path / "prof" / "profile.json"
    cores = str(os.cpu_count() or 1)
    args = [
        "--model",
        str(tiny_ckpt),
        "--eval-set",
        str(eval_dir),
        "--out",
        str(out),
        "--dtypes",
        "float32",
        "--attn",
        "eager",
        "--batch-sizes",
        "",
        "--threads",
        cores,
        "--no-int8",
        "--vision-attention",
        "stock",
        "--no-compile",
        "--batch-size",
        "4",
        "--min-batches",
        "3",
        "--mlflow-uri",
        mlflow_uri,
        "--experiment",
        "opt-test",
    ]
    result = CliRunner().invoke(optimize_cmd, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    doc = read_profile(out)  # validates against the schema
    assert summary["profile"] == str(out) and summary["profile_id"] == doc["profile_id"]
    # A minimal grid keeps the test fast (each candidate is a child process): the baseline alone.
    # Agreement and selection over several candidates are covered by the test above.
    assert [c["id"] for c in doc["candidates"]] == [f"fp32-eager-b4-t{cores}"]
    assert all(c["status"] == "ok" for c in doc["candidates"]), doc["candidates"]
    base = doc["candidates"][0]["metrics"]
    assert base["label_agreement"] == 1.0 and base["max_score_diff"] == 0.0
    for c in doc["candidates"]:
        m = c["metrics"]
        assert m["p50_ms"] <= m["p95_ms"] <= m["p99_ms"] and m["images_per_s"] > 0 and m["peak_memory_mb"] > 0
        assert m["batches"] >= 3
    assert doc["choice"]["id"] in summary["choice"] and doc["choice"]["label_agreement"] >= 0.99
    assert doc["machine"]["device_kind"].startswith("cpu:") and doc["libraries"]["torch"]
    assert out.with_suffix(".png").stat().st_size > 0
    assert "[1/1]" in result.stderr  # progress

    import mlflow

    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["opt-test"], output_format="list")
    parent = [r for r in runs if r.info.run_id == summary["mlflow_run_id"]]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary["mlflow_run_id"]]
    assert len(parent) == 1 and len(children) == 1
    assert {c.info.run_name for c in children} == {c["id"] for c in doc["candidates"]}

    # The detector applies what it just measured on this machine.
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        det = Detector.load(tiny_ckpt, LoadOptions(device="cpu", profile=str(out)))
    assert det.profile_id == doc["profile_id"] and det.batch_size == 4


def test_registry_versions_resolve_to_a_checkpoint_or_base_plus_adapter(
    tiny_ckpt, tmp_path, mlflow_uri
) -> None:
    import mlflow
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from registry.store import ModelRefError, RegistryStore, resolve_model

    uri = mlflow_uri
    store = RegistryStore(uri, "opt-test-model")
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("opt-registry", artifact_location=str(tmp_path / "art"))
    full = store.register(client.create_run(experiment).info.run_id, tiny_ckpt)  # one run per version
    store.set_alias("champion", full.version)

    base = AutoModelForImageTextToText.from_pretrained(str(tiny_ckpt), dtype=torch.float32)
    adapter_dir = tmp_path / "adapter"
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(adapter_dir)
    lora = store.register(client.create_run(experiment).info.run_id, adapter_dir)

    path, adapter = resolve_model("models:/opt-test-model/champion", uri, tmp_path / "dl")
    assert adapter is None and (tmp_path / "dl").exists() and path.startswith(str(tmp_path / "dl"))
    assert (Path(path) / "config.json").exists()
    path, adapter = resolve_model(f"models:/opt-test-model/{lora.version}", uri, tmp_path / "dl2")
    assert path == str(tiny_ckpt) and (Path(adapter) / "adapter_config.json").exists()
    assert resolve_model(str(tiny_ckpt), None, tmp_path) == (str(tiny_ckpt), None)
    with pytest.raises(ModelRefError, match="no version or alias"):
        resolve_model("models:/opt-test-model/challenger", uri, tmp_path / "dl3")
    with pytest.raises(ModelRefError, match="needs a registry"):
        resolve_model("models:/opt-test-model/1", None, tmp_path)
