"""``misinfo bench learning --shift``: the feedback loop's own gain, through the real loop.

Per seed, on an embedded stack started for the run (broker, Redis, MLflow, a Ray head):

1. **Data** (:mod:`misinfo.bench.families`): the champion's set (authentic + family A, splices),
   the stream (authentic + family B, inpainting-like blends + ``synthesized`` from a procedural
   generator) and held-out sets per family (half authentic), all 112×112 JPEGs of one quality range.
2. **The starting state** (set up, not the loop): the tiny random checkpoint fully fine-tuned on the
   champion's set, registered with its dataset manifest and a fitted temperature, its held-out split
   frozen as regression set ``A``, promoted (a ``ModelUpdate`` on the control topic).
3. **The loop**, which the benchmark only feeds: a ``misinfo worker`` (serving the champion from the
   control topic) and a ``misinfo train watch`` run as processes; the stream is collected
   (``misinfo collect folder``) and judged by the worker; then the benchmark, standing in for the
   moderators, writes each stream image's label as the review service does (Redis, then a ``Label``
   on the feedback topic). From there the watcher counts, the trigger fires, the Ray job builds the
   dataset (new labels + replay of the champion's training split), trains, evaluates (held-out new
   labels, regression set A), calibrates, registers, gates and promotes, and the worker swaps —
   the benchmark waits for each of these and times it.
4. **Scores**: the served model before (the champion) and after (the champion alias once the cycle
   ended) on the held-out sets, through the detector's own scoring path (calibration applied):
   macro-F1 over the three classes (arg-max; classes absent from a set do not count in its mean) on
   held-out A and B, and the F1 of ``synthesized`` on the synthesized set. The trivial-cue baseline
   (file size, JPEG quality, image size; the better of a k-NN and a Gaussian naive Bayes, fitted on
   the labeled stream) is scored on held-out B + synthesized + authentic.

Prints progress on stderr and, last, one JSON line (means over the seeds, per-seed rows, stage
wall times, the loop's training mode).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Settings, load_settings
from misinfo.bench import families
from misinfo.bench.support import free_port, machine, recorded_ids, say, stop, stop_on_sigterm, wait
from misinfo.procs import run_misinfo, start_misinfo


@dataclass(frozen=True)
class ShiftConfig:
    champion_images: int = 1200  # authentic + A, for the starting champion (80% train, 20% regression A)
    stream_images: int = 450  # authentic + B + synthesized arriving in the feed, all labeled
    eval_images: int = 200  # per held-out family set, half authentic
    champion_steps: int = 600
    loop_steps: int = 600
    champion_lr: float = 1e-3
    loop_lr: float = 1e-3
    batch: int = 8
    mode: str = "full"  # the loop's training mode (model.mode)
    deepspeed: str = ""  # the loop's DeepSpeed preset ('' = off: one CPU process)
    cycle_timeout_s: float = 1500.0

    def loop_overrides(self) -> str:
        return ";".join(
            [
                f"model.mode={self.mode}",
                "model.train_vision=true",
                f"train.deepspeed={self.deepspeed}",
                "data.augment=false",
                f"train.max_steps={self.loop_steps}",
                f"train.per_device_train_batch_size={self.batch}",
                "train.gradient_accumulation_steps=1",
                f"train.learning_rate={self.loop_lr}",
                "train.warmup_ratio=0.02",
                "train.lr_scheduler_type=linear",
                "train.gradient_checkpointing=false",
                "train.save_steps=100000",
                "train.logging_steps=100",
            ]
        )


# ----------------------------------------------------------------------------------------- data


@dataclass
class Data:
    champion: list[tuple[Path, str]]  # (file, class)
    stream: list[tuple[Path, str, str]]  # (file, class, family)
    held_out: dict[str, list[tuple[Path, str]]]  # family -> examples


def generate(work: Path, seed: int, cfg: ShiftConfig) -> Data:
    rng = np.random.default_rng(seed)
    champion = families.write(work / "champion", ["authentic", "A"], cfg.champion_images, rng)
    stream = families.write(work / "stream", ["authentic", "B", "synthesized"], cfg.stream_images, rng)
    held = {
        fam: [
            (p, c)
            for p, c, _ in families.write(work / "held-out" / fam, ["authentic", fam], cfg.eval_images, rng)
        ]
        for fam in ("A", "B", "synthesized")
    }
    return Data([(p, c) for p, c, _ in champion], stream, held)


# ------------------------------------------------------------------------------ trivial cues


def _macro_f1(y_true: list[str], y_pred: list[str]) -> float:
    from trainer.evaluate import metrics

    classes = ("authentic", "manipulated", "synthesized")
    onehot = [[1.0 if c == p else 0.0 for c in classes] for p in y_pred]
    return float(metrics(y_true, onehot)["macro_f1"])


def trivial_cue_f1(train: list[tuple[Path, str]], test: list[tuple[Path, str]]) -> dict[str, float]:
    """Macro-F1 of classifiers that see only file size, JPEG quality and image size: a k-NN (k=15,
    standardized features) and a Gaussian naive Bayes, fitted on ``train``, scored on ``test``."""
    xtr = np.array([families.cue_features(p.read_bytes()) for p, _ in train])
    xte = np.array([families.cue_features(p.read_bytes()) for p, _ in test])
    ytr = [c for _, c in train]
    yte = [c for _, c in test]
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9
    a, b = (xtr - mu) / sd, (xte - mu) / sd
    knn = []
    for row in b:
        near = np.argsort(((a - row) ** 2).sum(1))[:15]
        votes: dict[str, int] = {}
        for j in near:
            votes[ytr[j]] = votes.get(ytr[j], 0) + 1
        knn.append(max(sorted(votes), key=lambda c: votes[c]))
    classes = sorted(set(ytr))
    stats = {}
    for c in classes:
        rows = a[[i for i, y in enumerate(ytr) if y == c]]
        stats[c] = (rows.mean(0), rows.var(0) + 1e-3, math.log(len(rows) / len(ytr)))

    def loglik(row: np.ndarray, c: str) -> float:
        m, v, prior = stats[c]
        return float(prior - 0.5 * (np.log(2 * np.pi * v) + (row - m) ** 2 / v).sum())

    gnb = [max(classes, key=lambda c: loglik(row, c)) for row in b]
    return {"knn": _macro_f1(yte, knn), "naive_bayes": _macro_f1(yte, gnb)}


# ------------------------------------------------------------------------------- the champion


def build_champion(
    s: Settings, data: Data, base: str, work: Path, cfg: ShiftConfig, seed: int
) -> tuple[str, Path]:
    """Train, register (with the dataset manifest replay reads), calibrate, freeze regression set A
    and promote the starting champion; returns its version and its local checkpoint."""
    import torch

    from detector.answer import CLASSES
    from detector.calibration import Calibration, fit_temperature, write_calibration
    from registry.promotion import kafka_publisher, promote
    from registry.store import RegistryStore
    from trainer.config import load_config
    from trainer.data import read_records
    from trainer.dataset import LabeledImage, build_dataset
    from trainer.evaluate import calibrated, score_sets
    from trainer.regression import freeze
    from trainer.train import run_training

    items = [
        LabeledImage(f"{seed}-{i}-{p.stem}", c, source="seed", path=str(p))
        for i, (p, c) in enumerate(data.champion)
    ]
    manifest = build_dataset(items, work / "champion-dataset", val_fraction=0.2, seed=seed)
    # One thread, as torch.distributed.run gives the loop's training process; the Trainer's prints
    # go to stderr, stdout carries the JSON line only.
    torch.set_num_threads(1)
    with contextlib.redirect_stdout(sys.stderr):
        trained = run_training(
            load_config(
                None,
                [
                    f"model.base_model={base}",
                    "model.mode=full",
                    "model.train_vision=true",
                    "train.deepspeed=",
                    "data.augment=false",
                    f"data.train_file={work / 'champion-dataset' / 'train.json'}",
                    f"train.output_dir={work / 'champion-train'}",
                    f"train.max_steps={cfg.champion_steps}",
                    f"train.per_device_train_batch_size={cfg.batch}",
                    "train.gradient_accumulation_steps=1",
                    f"train.learning_rate={cfg.champion_lr}",
                    "train.warmup_ratio=0.02",
                    "train.lr_scheduler_type=linear",
                    "train.gradient_checkpointing=false",
                    "train.save_steps=100000",
                    "train.logging_steps=100",
                    f"train.seed={seed}",
                    f"tracking.mlflow_uri={s.mlflow_tracking_uri}",
                    "tracking.run_name=the starting champion (authentic + family A)",
                    f"tracking.manifest={work / 'champion-dataset' / 'manifest.json'}",
                ],
            )
        )
    model_dir = Path(trained["model_dir"])
    val = [(ex.image, ex.label) for ex in read_records(work / "champion-dataset" / "val.json")]
    raw = score_sets(model_dir, {"val": val}, device="cpu")["val"]
    index = {c: i for i, c in enumerate(CLASSES)}
    t = fit_temperature(raw["scores"], [index[y] for y in raw["labels"]])
    after = calibrated(raw, t)
    write_calibration(model_dir, Calibration(t, len(val), ece_before=raw["ece"], ece_after=after["ece"]))
    freeze(s.train_regression_dir, "A", val)
    store = RegistryStore(s.mlflow_tracking_uri, s.model_name)
    info = store.register(
        trained["mlflow_run_id"],
        model_dir,
        artifacts={"dataset": work / "champion-dataset" / "manifest.json"},
        tags={
            "eval.macro_f1": f"{raw['macro_f1']:.4f}",
            "calibration.temperature": f"{t:.4f}",
            "dataset.version": manifest["version"],
            "mode": "full",
            "base_model": base,
            "gate": "passed",
        },
        description="starting champion: authentic + family A (splices)",
    )
    promote(store, info.version, kafka_publisher(s.kafka_bootstrap, s.topic_control))
    return info.version, model_dir


# ------------------------------------------------------------------------------------ the loop


def swaps(port: int) -> float:
    from misinfo.bench.support import scrape

    return sum(
        float(line.split()[-1])
        for line in scrape(port).splitlines()
        if line.startswith("misinfo_model_swaps_total")
    )


def publish_labels(s: Settings, labeled: list[tuple[str, str]], version: str) -> None:
    """What the review service does for each label: the moderator's label in Redis, then the
    ``Label`` on the feedback topic (acknowledged)."""
    import redis
    from kafka import KafkaProducer

    from core.contracts.verdicts import Label
    from core.keys import Keys

    r = redis.Redis.from_url(s.redis_url)
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    try:
        for k, (image_id, cls) in enumerate(labeled):
            moderator = f"bench-moderator-{k % 3}"
            label = Label.model_validate(
                {
                    "image_id": image_id,
                    "label": cls,
                    "moderator_id": moderator,
                    "verdict_model_version": version,
                }
            )
            r.hset(Keys(s.redis_prefix).labels(image_id), moderator, label.to_json())
            producer.send(s.topic_feedback, key=image_id.encode(), value=label.to_json())
        producer.flush(timeout=60)
    finally:
        producer.close()


def history(s: Settings) -> list[dict[str, Any]]:
    import redis

    from core.keys import Keys

    r = redis.Redis.from_url(s.redis_url)
    return [json.loads(x) for x in r.lrange(Keys(s.redis_prefix).training("history"), 0, -1)]


def served_versions(s: Settings, ids: list[str]) -> dict[str, str]:
    import redis

    from core.contracts.verdicts import Verdict
    from core.keys import Keys

    r = redis.Redis.from_url(s.redis_url)
    out = {}
    for image_id in ids:
        raw = r.hget(Keys(s.redis_prefix).verdict(image_id), "verdict")
        if raw is not None:
            out[image_id] = Verdict.parse(raw).model_version
    return out


def score_version(s: Settings, version: str, base: str, sets: dict[str, Any], work: Path) -> dict[str, Any]:
    from registry.store import RegistryStore
    from trainer.evaluate import model_location, score_sets

    store = RegistryStore(s.mlflow_tracking_uri, s.model_name)
    local = store.download(store.get(version).source, work / f"v{version}")
    ckpt, adapter = model_location(local, base)
    return score_sets(ckpt, sets, adapter_path=adapter, device="cpu", batch_size=32)


def family_figures(reports: dict[str, Any]) -> dict[str, float]:
    return {
        "A": float(reports["A"]["macro_f1"]),
        "B": float(reports["B"]["macro_f1"]),
        "synthesized": float(reports["synthesized"]["per_class"]["synthesized"]["f1"]),
        "synthesized_set_macro_f1": float(reports["synthesized"]["macro_f1"]),
    }


def one_seed(stack_settings: Settings, seed: int, cfg: ShiftConfig, work: Path) -> dict[str, Any]:
    from detector.tiny import build_tiny_checkpoint
    from registry.store import CHAMPION, RegistryStore

    stages: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        stages[name] = round(now - since, 1)
        return now

    tag = f"shift{seed}-{uuid.uuid4().hex[:6]}"
    s = stack_settings.isolated(
        tag,
        state_dir=str(work / "state"),
        model_name=f"shift-detector-{tag}",
        device="cpu",
        worker_web_port=free_port(),
        watcher_web_port=free_port(),
        near_duplicate_distance=-1,  # every generated image is its own item
        train_trigger=True,
        train_min_new_labels=cfg.stream_images,
        train_disagreement_threshold=1.0,  # the count alone starts the training (all labels, once)
        train_cooldown_s=0.0,
        train_gpus=0,
        train_optimize="off",
        train_val_fraction=0.2,
        train_regression_dir=str(work / "regression"),
        train_overrides=cfg.loop_overrides(),
        explain="none",
    )
    say(f"seed {seed}: generating images")
    data = generate(work / "images", seed, cfg)
    base = str(build_tiny_checkpoint(work / "tiny", seed=seed))
    s = dataclasses.replace(s, model_path=base)
    t = lap("data", t0)

    say(f"seed {seed}: the starting champion ({cfg.champion_steps} steps on authentic + A)")
    before_version, champion_dir = build_champion(s, data, base, work, cfg, seed)
    if cfg.mode == "lora":
        # A LoRA cycle adapts the base model: here the champion's weights are that base (as a
        # fine-tuned detector is in production), for the worker's adapters too.
        s = dataclasses.replace(s, model_path=str(champion_dir))
        base = str(champion_dir)
    t = lap("champion", t)

    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    worker = start_misinfo(s, "worker", log=logs / "worker.log")
    watcher = start_misinfo(s, "train", "watch", log=logs / "watcher.log", RAY_AUTH_MODE="disabled")
    try:
        wait(lambda: swaps(s.worker_web_port) >= 1, 300, "the worker to serve the champion", worker)
        t = lap("worker_start", t)
        say(f"seed {seed}: the stream ({cfg.stream_images} images) through the worker")
        import hashlib

        ids = {hashlib.sha256(p.read_bytes()).hexdigest(): (p, c, f) for p, c, f in data.stream}
        done = run_misinfo(s, "collect", "folder", str(work / "images" / "stream"), "--once", timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"collect failed: {done.stderr[-2000:]}")
        wait(lambda: len(recorded_ids(s, list(ids))) == len(ids), 600, "the worker's verdicts", worker)
        t = lap("judged", t)

        say(f"seed {seed}: {len(ids)} moderator labels on the feedback topic")
        publish_labels(s, [(i, c) for i, (_, c, _) in ids.items()], before_version)
        t = lap("labels_published", t)
        wait(lambda: any(e.get("event") == "submitted" for e in history(s)), 300, "the trigger", watcher)
        t = lap("trigger", t)
        say(f"seed {seed}: the Ray job runs the cycle (dataset, {cfg.mode} training, gate)")
        wait(
            lambda: any(e.get("event") in ("result", "finished", "failed") for e in history(s)),
            cfg.cycle_timeout_s,
            "the cycle's result",
            watcher,
        )
        events = history(s)
        result = next((e for e in events if e.get("event") == "result"), None)
        if result is None:
            raise RuntimeError(
                f"the cycle ended without a result; the Ray job's log ends:\n{_job_log(s, events)}"
            )
        t = lap("cycle", t)
        store = RegistryStore(s.mlflow_tracking_uri, s.model_name)
        champion = store.get_by_alias(CHAMPION)
        after_version = champion.version if champion is not None else before_version
        if result.get("promoted"):
            wait(lambda: swaps(s.worker_web_port) >= 2, 300, "the worker's hot swap", worker)
            t = lap("swap", t)
            probe = families.write(
                work / "images" / "probe", ["authentic"], 4, np.random.default_rng(10_000 + seed)
            )
            probe_ids = [hashlib.sha256(p.read_bytes()).hexdigest() for p, _, _ in probe]
            run_misinfo(s, "collect", "folder", str(work / "images" / "probe"), "--once", timeout=300)
            wait(lambda: len(served_versions(s, probe_ids)) == len(probe_ids), 300, "verdicts after the swap")
            served = set(served_versions(s, probe_ids).values())
            t = lap("probe_after_swap", t)
        else:
            served = {before_version}
    finally:
        stop(watcher)
        stop(worker)

    say(f"seed {seed}: scoring versions {before_version} (before) and {after_version} (after)")
    cycle = _cycle_result(s, result["version"], work)
    before = family_figures(score_version(s, before_version, base, data.held_out, work / "score"))
    after = family_figures(score_version(s, after_version, base, data.held_out, work / "score"))
    cues = trivial_cue_f1(
        [(p, c) for p, c, _ in data.stream],
        data.held_out["B"] + [(p, c) for p, c in data.held_out["synthesized"] if c == "synthesized"],
    )
    lap("score", t)
    row = {
        "seed": seed,
        "labels": len(ids),
        "version_before": before_version,
        "candidate_version": result["version"],
        "version_after": after_version,
        "promoted": bool(result.get("promoted")),
        "gate": result.get("gate"),
        "gate_reasons": result.get("reasons"),
        "served_after": sorted(served),
        "before": before,
        "after": after,
        "trivial_cue_macro_f1": max(cues.values()),
        "trivial_cues": cues,
        "calibration": cycle.get("evaluation", {}).get("calibration"),
        "dataset": cycle.get("dataset"),
        "stage_seconds": stages,
        "cycle_stage_seconds": cycle.get("stage_seconds"),
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    say(
        f"seed {seed}: B {before['B']:.3f} -> {after['B']:.3f}, A {before['A']:.3f} -> {after['A']:.3f}, "
        f"synthesized F1 {before['synthesized']:.3f} -> {after['synthesized']:.3f}, "
        f"trivial cues {row['trivial_cue_macro_f1']:.3f}, promoted {row['promoted']} ({row['wall_seconds']:.0f}s)"
    )
    return row


def _job_log(s: Settings, events: list[dict[str, Any]]) -> str:
    from core.retraining import cycles
    from trainer.submit import RaySubmitter

    try:
        sid = cycles(events)[-1].submission_id
        return RaySubmitter(s).logs(sid)[-4000:]
    except Exception as exc:  # noqa: BLE001 - the error above is the news; the log is a courtesy
        return f"(no log: {exc})"


def _cycle_result(s: Settings, version: str, work: Path) -> dict[str, Any]:
    """The cycle's result.json, from its MLflow parent run (best effort)."""
    from registry.store import RegistryStore

    store = RegistryStore(s.mlflow_tracking_uri, s.model_name)
    run_id = store.get(version).tags.get("cycle_run_id")
    if not run_id:
        return {}
    try:
        return store.read_json(f"runs:/{run_id}/cycle/result.json", work / "cycle-result")
    except Exception:  # noqa: BLE001 - the figures above stand without it
        return {}


def _mean(rows: list[dict[str, Any]], side: str, key: str) -> float:
    return round(statistics.fmean(r[side][key] for r in rows), 4)


def run(seeds: list[int], cfg: ShiftConfig, work_dir: str | None) -> dict[str, Any]:
    """The whole benchmark: one stack, one run per seed; returns the JSON figures."""
    import torch

    from misinfo.devstack import DevStack

    stop_on_sigterm()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the loopback-only head runs without tokens
    started = time.perf_counter()
    root = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="misinfo-shift-"))
    root.mkdir(parents=True, exist_ok=True)
    state = root / "stack"
    base = load_settings(
        {},
        state_dir=str(state),
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        ray_address=f"http://127.0.0.1:{free_port()}",
        ray_gcs_port=free_port(),
        topic_partitions=2,
    )
    stack = DevStack(base)
    say("starting the stack: broker, Redis, MLflow, Ray head")
    stack.up(["broker", "redis", "mlflow", "ray"], progress=lambda m: say("  " + m))
    rows = []
    try:
        for seed in seeds:
            rows.append(one_seed(base, seed, cfg, root / f"seed{seed}"))
    finally:
        stack.down(progress=lambda m: say("  " + m))
    return {
        "bench": "learning-shift",
        "new_family_macro_f1_before": _mean(rows, "before", "B"),
        "new_family_macro_f1_after": _mean(rows, "after", "B"),
        "old_family_macro_f1_before": _mean(rows, "before", "A"),
        "old_family_macro_f1_after": _mean(rows, "after", "A"),
        "synthesized_f1_before": _mean(rows, "before", "synthesized"),
        "synthesized_f1_after": _mean(rows, "after", "synthesized"),
        "trivial_cue_macro_f1": round(statistics.fmean(r["trivial_cue_macro_f1"] for r in rows), 4),
        "labels": [r["labels"] for r in rows],
        "promoted": [r["promoted"] for r in rows],
        "loop_training_mode": cfg.mode,
        "per_seed": rows,
        "config": {**dataclasses.asdict(cfg), "device": "cpu", "threads": torch.get_num_threads()},
        "machine": machine(),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
