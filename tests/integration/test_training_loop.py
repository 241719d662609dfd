"""The closed loop on the embedded stack with the tiny checkpoint: labels on the feedback topic →
the feedback agent's trigger → a Ray job (DeepSpeed LoRA on CPU) → an MLflow run and a new registered
version → the gate → a ModelUpdate on the control topic (or, refused, nothing changes)."""

from __future__ import annotations

import dataclasses
import io
import json
import signal
import subprocess
import urllib.request
import uuid
from pathlib import Path

import mlflow
import pytest
import redis
from kafka import KafkaProducer

from core.contracts.models import ModelUpdate
from core.contracts.verdicts import Label, Verdict
from core.kafka import replay_consumer
from core.keys import Keys
from detector.answer import CLASSES
from misinfo.devstack.stack import wait_for
from misinfo.samples import scene, write_samples
from registry.store import CHALLENGER, CHAMPION, RegistryStore
from tests.conftest import judged, run_cli, start_cli

pytestmark = pytest.mark.integration

# A few optimizer steps on a handful of tiny images: the point is the loop, not the learning.
QUICK_TRAINING = (
    "train.max_steps=2;train.per_device_train_batch_size=3;train.gradient_accumulation_steps=1;"
    "lora.r=4;lora.alpha=8;train.save_steps=1000;train.gradient_checkpointing=false"
)


def loop_settings(settings, tiny_model, mlflow_uri, **kw):  # type: ignore[no-untyped-def]
    # Two steps on six images agree with few labels: the label-agreement check is for the gate test.
    kw.setdefault("gate_min_label_agreement", 0.0)
    return dataclasses.replace(
        settings,
        model_path=tiny_model,
        model_name=f"detector-{uuid.uuid4().hex[:8]}",
        mlflow_tracking_uri=mlflow_uri,
        device="cpu",
        train_min_new_labels=6,
        train_cooldown_s=0.0,
        train_val_fraction=0.5,
        train_gpus=0,
        train_overrides=QUICK_TRAINING,
        **kw,
    )


def judged_images(s, n: int = 6) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Images in the blob store with verdict records, as the worker leaves them: (image_id, class)."""
    items = []
    for i in range(n):
        buf = io.BytesIO()
        scene(900 + i, (112, 112)).save(buf, "PNG")
        items.append((buf.getvalue(), CLASSES[i % len(CLASSES)]))
    return judged(s, items, mime="image/png")


def post_labels(s, items) -> None:  # type: ignore[no-untyped-def]
    """What the moderation service does: the label in Redis, then on the feedback topic."""
    r = redis.Redis.from_url(s.redis_url)
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    for image_id, cls in items:
        label = Label(
            image_id=image_id,
            label=cls,
            moderator_id="mod-1",
            verdict_model_version="0",
            note=f"moderator says {cls}",
        )
        r.hset(Keys(s.redis_prefix).labels(image_id), "mod-1", label.to_json())
        producer.send(s.topic_feedback, key=image_id.encode(), value=label.to_json()).get(timeout=30)
    producer.close()


def start_watcher(s, log: Path) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    """The retrain watcher as its own process, as compose runs it (``misinfo train watch``)."""
    return start_cli(s, "train", "watch", log=log, RAY_AUTH_MODE="disabled")


def run_loop(s, tmp_path: Path, ray_address: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Post labels with the retrain watcher running; wait for the Ray job it submits to end.
    Returns (submission id, status)."""
    from ray.job_submission import JobSubmissionClient

    log = tmp_path / "watcher.log"
    agent = start_watcher(s, log)
    try:
        post_labels(s, judged_images(s))
        r = redis.Redis.from_url(s.redis_url)
        history = Keys(s.redis_prefix).training("history")  # written once Ray has accepted the job
        try:
            wait_for(lambda: r.llen(history) > 0, 120, 0.5, "the trigger to submit a training")
        except TimeoutError:
            pytest.fail(log.read_text()[-4000:])
        submitted = json.loads(r.lindex(history, 0))
        assert submitted["event"] == "submitted" and submitted["labels_total"] == 6
        sid = r.get(Keys(s.redis_prefix).training("in_flight")).decode()
        client = JobSubmissionClient(ray_address)
        terminal = {"SUCCEEDED", "FAILED", "STOPPED"}
        wait_for(lambda: str(client.get_job_status(sid).value) in terminal, 480, 1.0, f"Ray job {sid}")
        status = str(client.get_job_status(sid).value)
        if status != "SUCCEEDED":
            pytest.fail(client.get_job_logs(sid)[-6000:])
        return sid, status
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)


def swaps(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("misinfo_model_swaps_total")
    )


def verdict_versions(s) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = redis.Redis.from_url(s.redis_url)
    out = {}
    for key in r.scan_iter(Keys(s.redis_prefix).pattern("verdict")):
        raw = r.hget(key, "verdict")
        if raw is not None:
            out[key.decode().rsplit(":", 1)[1]] = Verdict.parse(raw).model_version
    return out


def control_updates(s, idle_s: float = 8.0) -> list[ModelUpdate]:  # type: ignore[no-untyped-def]
    consumer = replay_consumer(s.kafka_bootstrap, s.topic_control, idle_s=idle_s)
    try:
        return [ModelUpdate.parse(m.value) for m in consumer]
    finally:
        consumer.close()


def test_labels_trigger_a_ray_training_that_is_registered_gated_and_promoted(
    settings, tiny_model, mlflow_uri, ray_address, tmp_path
):
    s = loop_settings(settings, tiny_model, mlflow_uri, gate_min_macro_f1=0.0, train_optimize="quick")
    # A real worker serves the base model as version "0" and follows the control topic for hot swaps;
    # the retrain watcher runs as its own process.
    worker = start_cli(s, "worker", log=tmp_path / "worker.log")
    try:
        sid, _ = run_loop(s, tmp_path, ray_address)
        try:
            wait_for(lambda: swaps(s.worker_web_port) >= 1, 180, 0.5, "the worker's hot swap")
        except TimeoutError:
            pytest.fail((tmp_path / "worker.log").read_text()[-4000:])
        before = set(verdict_versions(s))
        write_samples(tmp_path / "new", n=2, seed=41)
        collected = run_cli(s, "collect", "folder", str(tmp_path / "new"), "--once")
        assert collected.returncode == 0, collected.stderr
        wait_for(
            lambda: len(set(verdict_versions(s)) - before) >= 2, 180, 0.5, "verdicts after the promotion"
        )
        fresh = {k: v for k, v in verdict_versions(s).items() if k not in before}
        assert set(fresh.values()) == {"1"}  # the worker's next verdicts carry the new version
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)

    store = RegistryStore(mlflow_uri, s.model_name)
    versions = store.list_versions()
    assert [v.version for v in versions] == ["1"]
    v1 = versions[0]
    assert store.get_by_alias(CHAMPION).version == "1"
    assert store.get_by_alias(CHALLENGER) is None  # promoted: the challenger alias moved on
    assert v1.tags["gate"] == "passed" and v1.tags["request_id"] in sid
    assert v1.profile_uri, v1.tags.get("profile_error")

    run = mlflow.MlflowClient(mlflow_uri).get_run(v1.run_id)
    assert run.data.metrics["train_loss"] > 0 and "eval_macro_f1" in run.data.metrics
    assert run.data.params["train.deepspeed"] == "zero2"
    assert run.inputs.dataset_inputs[0].dataset.name == v1.tags["dataset.version"]
    artifacts = {a.path for a in mlflow.MlflowClient(mlflow_uri).list_artifacts(v1.run_id)}
    assert {"model", "eval", "dataset", "profile", "loss_curve.png"} <= artifacts

    updates = control_updates(s)
    assert [(u.model_name, u.version, u.alias) for u in updates] == [(s.model_name, "1", CHAMPION)]
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=updates[0].model_uri, dst_path=str(tmp_path / "dl"), tracking_uri=mlflow_uri
        )
    )
    assert (local / "adapter_config.json").exists()
    assert updates[0].profile_uri == v1.profile_uri

    report = store.read_json(v1.tags["eval_uri"], tmp_path / "report")
    assert report["champion"] is None and report["gate"]["promote"] is True
    assert set(report["candidate"]) >= {"accuracy", "macro_f1", "roc_auc_macro", "ece", "confusion_matrix"}


def test_the_gate_refuses_a_worse_candidate_and_serving_does_not_change(
    settings, tiny_model, mlflow_uri, ray_address, tmp_path
):
    # The floor sits above anything a two-step fine-tune of a random model reaches: the candidate is worse
    # than what serving demands, so it must stay a challenger.
    s = loop_settings(settings, tiny_model, mlflow_uri, gate_min_macro_f1=0.95, train_optimize="off")
    store = RegistryStore(mlflow_uri, s.model_name)
    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("misinfo-train") or client.get_experiment(
        client.create_experiment("misinfo-train")
    )
    seed_run = client.create_run(exp.experiment_id, run_name="the serving champion")
    champion = store.register(seed_run.info.run_id, tiny_model, tags={"gate": "passed"})
    store.set_alias(CHAMPION, champion.version)

    run_loop(s, tmp_path, ray_address)

    assert store.get_by_alias(CHAMPION).version == champion.version
    candidate = store.get_by_alias(CHALLENGER)
    assert candidate is not None and candidate.version != champion.version
    assert candidate.tags["gate"] == "refused" and "below the floor" in candidate.tags["gate.reasons"]
    report = store.read_json(candidate.tags["eval_uri"], tmp_path / "report")
    assert report["champion_version"] == champion.version
    assert report["champion"]["n"] == report["candidate"]["n"] == report["held_out"]
    assert control_updates(s) == []
    assert (
        json.loads(
            redis.Redis.from_url(s.redis_url).lrange(Keys(s.redis_prefix).training("history"), 0, 0)[0]
        )["event"]
        == "submitted"
    )
