"""The gate against poisoned labels, on the session's Redis, MLflow and broker with real training:
from the same champion and seed, a candidate trained on clean feedback is promoted, and one trained
on the same feedback with 40% of the labels flipped is refused (the champion keeps serving, and the
refusal says why). Each cycle also leaves its parent run in MLflow (manifest, per-family metrics
before and after, the gate's decision) and a calibration with the version."""

from __future__ import annotations

import dataclasses
import io
import uuid

import mlflow
import numpy as np
import pytest
import redis
from PIL import Image

from core.contracts.training import TrainingRequest
from core.contracts.verdicts import Label
from core.keys import Keys
from misinfo.samples import bench_images, scene
from registry.store import CHALLENGER, CHAMPION, RegistryStore
from tests.conftest import judged
from tests.integration.test_training_loop import control_updates
from trainer.cycle import run_cycle
from trainer.regression import freeze

pytestmark = pytest.mark.integration

# Two classes the tiny model tells apart within a hundred steps (scenes against noisy gradients):
# the point is the gate's judgement of the labels, not forensic skill.
TRAINING = (
    "model.mode=full;model.train_vision=true;train.deepspeed=;data.augment=false;train.max_steps=80;"
    "train.per_device_train_batch_size=8;train.gradient_accumulation_steps=1;train.learning_rate=3e-3;"
    "train.warmup_ratio=0.05;train.lr_scheduler_type=linear;train.save_steps=100000;"
    "train.gradient_checkpointing=false;train.logging_steps=20"
)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").resize((112, 112)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def pictures(n: int, seed: int) -> list[tuple[bytes, str]]:
    """``n`` images, alternately authentic (a scene) and synthesized (a noisy gradient)."""
    noisy = iter(bench_images(n, seed=seed, min_side=112, max_side=112))
    return [
        (_jpeg(scene(seed * 1000 + i, (112, 112))), "authentic")
        if i % 2 == 0
        else (_jpeg(next(noisy)), "synthesized")
        for i in range(n)
    ]


def cycle(s, reason: str, requested_by: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """One retraining cycle on the 80 labels, in this process."""
    request = TrainingRequest(
        model_name=s.model_name,
        redis_prefix=s.redis_prefix,
        labels_total=80,
        reason=reason,
        requested_by=requested_by,
    )
    return run_cycle(s, request)


def label(s, items: list[tuple[str, str]]) -> None:  # type: ignore[no-untyped-def]
    r = redis.Redis.from_url(s.redis_url)
    for image_id, cls in items:
        lb = Label(image_id=image_id, label=cls, moderator_id="mod-1", verdict_model_version="1")
        r.hset(Keys(s.redis_prefix).labels(image_id), "mod-1", lb.to_json())


def flip(items: list[tuple[str, str]], share: float) -> list[tuple[str, str]]:
    """The same labels with ``share`` of them (every k-th, deterministically) turned to the other class."""
    other = {"authentic": "synthesized", "synthesized": "authentic"}
    n = round(len(items) * share)
    chosen = set(np.linspace(0, len(items) - 1, n).round().astype(int).tolist())
    return [(i_d, other[c] if k in chosen else c) for k, (i_d, c) in enumerate(items)]


@pytest.fixture
def gate_settings(settings, tiny_model, mlflow_uri, tmp_path):  # type: ignore[no-untyped-def]
    s = dataclasses.replace(
        settings,
        model_path=tiny_model,
        model_name=f"detector-{uuid.uuid4().hex[:8]}",
        mlflow_tracking_uri=mlflow_uri,
        device="cpu",
        train_val_fraction=0.4,
        train_replay_ratio=0.0,
        train_regression_dir=str(tmp_path / "regression"),
        train_freeze_regression=False,  # both cycles judged against the same frozen sets
        train_optimize="off",
        train_overrides=TRAINING,
        gate_min_macro_f1=0.6,
        gate_min_improvement=0.05,
        gate_max_recall_drop=1.0,  # the random champion's recalls are noise: the label checks decide
        gate_min_label_agreement=0.75,
    )
    # The frozen regression set: clean images of the same two classes, never trained on.
    folder = tmp_path / "regression-src"
    folder.mkdir()
    files = []
    for k, (data, cls) in enumerate(pictures(24, seed=7)):
        (folder / f"{k}.jpg").write_bytes(data)
        files.append((folder / f"{k}.jpg", cls))
    freeze(s.train_regression_dir, "gradients", files)
    return s


@pytest.mark.timeout(1200)  # two trainings: minutes when the machine is shared
def test_clean_feedback_is_promoted_and_the_same_feedback_with_40_percent_flipped_is_refused(
    gate_settings, tiny_model, tmp_path
):
    s = gate_settings
    store = RegistryStore(s.mlflow_tracking_uri, s.model_name)
    client = mlflow.MlflowClient(s.mlflow_tracking_uri)
    exp = client.get_experiment_by_name("misinfo-train") or client.get_experiment(
        client.create_experiment("misinfo-train")
    )
    seed_run = client.create_run(exp.experiment_id, run_name="the serving champion")
    champion = store.register(seed_run.info.run_id, tiny_model, tags={"gate": "passed"})
    store.set_alias(CHAMPION, champion.version)
    feedback = judged(s, pictures(80, seed=3))

    label(s, feedback)
    clean = cycle(s, "clean feedback", "clean")
    assert clean["promoted"], clean["gate"]["reasons"]
    promoted = store.get_by_alias(CHAMPION)
    assert promoted.version == clean["version"] != champion.version
    assert float(promoted.tags["calibration.temperature"]) > 0
    updates = control_updates(s, idle_s=3.0)
    assert [u.version for u in updates] == [clean["version"]]

    # The same champion and seed again, the same images, 40% of their labels flipped.
    store.set_alias(CHAMPION, champion.version)
    label(s, flip(feedback, 0.4))
    poisoned = cycle(s, "40% flipped", "poisoned")
    assert not poisoned["promoted"]
    why = " ".join(poisoned["gate"]["reasons"])
    assert "of the held-out new labels" in why and "poisoned" in why, why
    assert store.get_by_alias(CHAMPION).version == champion.version  # the champion keeps serving
    refused = store.get_by_alias(CHALLENGER)
    assert refused.version == poisoned["version"] and refused.tags["gate"] == "refused"
    assert [u.version for u in control_updates(s, idle_s=3.0)] == [clean["version"]]  # nothing new announced

    # MLflow: one parent run per cycle, with the training and evaluation runs nested under it.
    for result, gate in ((clean, "passed"), (poisoned, "refused")):
        parent = client.get_run(result["mlflow_parent_run_id"])
        assert parent.data.tags["gate"] == gate and parent.info.status == "FINISHED"
        assert parent.data.tags["dataset.version"] == result["dataset"]["version"]
        metrics = parent.data.metrics
        for family in ("new_labels", "gradients"):
            assert {f"before.{family}.macro_f1", f"after.{family}.macro_f1"} <= set(metrics)
        assert {"calibration.temperature", "calibration.ece_before", "calibration.ece_after"} <= set(metrics)
        children = client.search_runs(
            [exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )
        assert {c.data.tags.get("misinfo.role") for c in children} >= {"train", "evaluation"}
        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert {"dataset", "eval", "cycle"} <= artifacts
    assert client.get_run(clean["mlflow_parent_run_id"]).data.tags["promoted.version"] == clean["version"]
    assert "promoted.version" not in client.get_run(poisoned["mlflow_parent_run_id"]).data.tags
