"""One training cycle, as the Ray job runs it: dataset → training → evaluation against the champion →
registration (alias ``challenger``) → optimization profile → gate → promotion.

Training runs in a child process under ``torch.distributed.run`` (``train.nproc_per_node``
processes; one per GPU), so DeepSpeed's process group is its own and a crash there is reported here
as a failed step. Everything after training runs in this process. The result is written to
``<work>/result.json`` and returned.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.config import Settings
from core.contracts.training import TrainingRequest

log = logging.getLogger(__name__)


class CycleError(RuntimeError):
    """A step of the cycle failed (no labeled data, training crashed, no held-out examples)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def work_dir(settings: Settings, request: TrainingRequest) -> Path:
    root = Path(settings.train_work_dir or Path(settings.state_dir) / "training")
    return root / request.request_id


def build_training_data(settings: Settings, out: Path) -> dict[str, Any]:
    import redis

    from trainer.dataset import build_dataset, labels_from_redis, seed_items

    r = redis.Redis.from_url(settings.redis_url)
    items = labels_from_redis(r, settings.redis_prefix)
    sources: dict[str, Any] = {"redis_prefix": settings.redis_prefix, "labeled_images": len(items)}
    if settings.train_seed_data:
        seeds = seed_items(settings.train_seed_data)
        items += seeds
        sources.update(seed_file=settings.train_seed_data, seed_images=len(seeds))
    if not items:
        raise CycleError("no labeled images to train on")
    return build_dataset(items, out, val_fraction=settings.train_val_fraction, sources=sources)


def launch_training(config_path: Path, nproc: int, log_path: Path) -> None:
    """``python -m torch.distributed.run --nproc_per_node N -m trainer.cli run --config FILE``."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(max(1, nproc)),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "trainer.cli",
        "run",
        "--config",
        str(config_path),
    ]
    log.info("training: %s", " ".join(cmd))
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        for line in proc.stdout:  # shown in the Ray job's logs and kept beside the run
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            fh.write(line)
        rc = proc.wait()
    if rc != 0:
        raise CycleError(f"training exited with {rc}; see {log_path}")


def run_profile(settings: Settings, base: str, adapter: str | None, images: Path, out: Path) -> Path | None:
    """``misinfo optimize`` for the candidate through the Python API of registry.optimize."""
    if settings.train_optimize == "off":
        return None
    from detector.profile import write_profile
    from registry.optimize.candidates import Candidate, default_grid
    from registry.optimize.choose import optimize

    device = settings.device
    if settings.train_optimize == "quick":
        cands = [Candidate("float32", "eager", batch_size=4), Candidate("float32", "sdpa", batch_size=4)]
        if adapter:
            cands.append(Candidate("float32", "sdpa", merge_adapter=True, batch_size=4))
        doc = optimize(
            base, images, candidates=cands, adapter_path=adapter, device=device, max_images=8, min_batches=2
        )
    else:
        doc = optimize(
            base,
            images,
            candidates=default_grid(device, adapter=bool(adapter)),
            adapter_path=adapter,
            device=device,
        )
    return write_profile(doc, out)


def run_cycle(
    settings: Settings, request: TrainingRequest, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    import mlflow

    from registry.gate import GatePolicy, decide
    from registry.promotion import kafka_publisher, promote
    from registry.store import CHALLENGER, CHAMPION, RegistryStore
    from trainer.config import load_config
    from trainer.data import read_records
    from trainer.evaluate import model_location, score_model

    say = progress or (lambda m: log.info("%s", m))
    work = work_dir(settings, request)
    work.mkdir(parents=True, exist_ok=True)
    base = settings.model_path
    if not base:
        raise CycleError("MISINFO_MODEL_PATH (the base model) must be set for training")
    result: dict[str, Any] = {"request": json.loads(request.to_json()), "work_dir": str(work)}

    say(f"[1/6] dataset from labels under {settings.redis_prefix}")
    manifest = build_training_data(settings, work / "dataset")
    result["dataset"] = {"version": manifest["version"], "counts": manifest["counts"]}
    val = read_records(work / "dataset" / "val.json")
    if not val:
        raise CycleError("the held-out split is empty: not enough labeled images to evaluate")

    say("[2/6] training")
    overrides = [o.strip() for o in settings.train_overrides.split(";") if o.strip()]
    cfg = load_config(settings.train_config or None, overrides)
    cfg.model.base_model = cfg.model.base_model or base
    cfg.data.train_file = str(work / "dataset" / "train.json")
    cfg.train.output_dir = str(work / "train")
    cfg.tracking.mlflow_uri = cfg.tracking.mlflow_uri or settings.mlflow_tracking_uri
    cfg.tracking.manifest = str(work / "dataset" / "manifest.json")
    cfg.tracking.run_name = cfg.tracking.run_name or f"train {request.request_id}"
    cfg.tracking.tags = {
        **cfg.tracking.tags,
        "misinfo.request_id": request.request_id,
        "misinfo.reason": request.reason[:250],
    }
    cfg_path = cfg.dump(work / "train_config.yaml")
    launch_training(cfg_path, cfg.train.nproc_per_node, work / "train.log")
    trained = json.loads((work / "train" / "train_result.json").read_text())
    run_id = trained["mlflow_run_id"]
    model_dir = Path(trained["model_dir"])
    result["training"] = trained

    say("[3/6] evaluation: candidate and champion on the same held-out set")
    examples = [(ex.image, ex.label) for ex in val]
    ckpt, adapter = model_location(model_dir, cfg.model.base_model)
    candidate = score_model(ckpt, examples, adapter_path=adapter, device=settings.device)
    store = RegistryStore(settings.mlflow_tracking_uri, settings.model_name)
    champ_info = store.get_by_alias(CHAMPION)
    champion = None
    if champ_info is not None:
        champ_dir = store.download(champ_info.source, work / "champion")
        c_ckpt, c_adapter = model_location(champ_dir, base)
        champion = score_model(c_ckpt, examples, adapter_path=c_adapter, device=settings.device)
    policy = GatePolicy(
        settings.gate_min_improvement, settings.gate_max_recall_drop, settings.gate_min_macro_f1
    )
    decision = decide(candidate, champion, policy)
    report = {
        "dataset_version": manifest["version"],
        "held_out": len(examples),
        "candidate": candidate,
        "champion": champion,
        "champion_version": champ_info.version if champ_info else None,
        "gate": decision.to_dict(),
    }
    (work / "eval").mkdir(exist_ok=True)
    report_path = work / "eval" / "eval_report.json"
    report_path.write_text(json.dumps(report, indent=1))
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    for key in ("accuracy", "macro_f1", "roc_auc_macro", "ece"):
        if candidate.get(key) is not None:
            client.log_metric(run_id, f"eval_{key}", float(candidate[key]))
        if champion and champion.get(key) is not None:
            client.log_metric(run_id, f"champion_{key}", float(champion[key]))
    say(
        f"candidate macro-F1 {candidate['macro_f1']:.3f}, champion {champion['macro_f1'] if champion else None}"
    )

    say("[4/6] registration")
    val_images = work / "eval" / "images"
    val_images.mkdir(exist_ok=True)
    for path, _ in examples:
        shutil.copy(path, val_images / Path(path).name)
    info = store.register(
        run_id,
        model_dir,
        artifacts={"eval": report_path, "dataset": work / "dataset" / "manifest.json"},
        tags={
            "eval.macro_f1": f"{candidate['macro_f1']:.4f}",
            "eval.accuracy": f"{candidate['accuracy']:.4f}",
            "dataset.version": manifest["version"],
            "request_id": request.request_id,
            "mode": trained["mode"],
            "base_model": cfg.model.base_model,
        },
        description=request.reason,
    )
    store.set_alias(CHALLENGER, info.version)
    result["version"] = info.version

    say(f"[5/6] optimization profile for version {info.version} ({settings.train_optimize})")
    try:
        profile = run_profile(settings, ckpt, adapter, val_images, work / "profile.json")
    except Exception as exc:  # noqa: BLE001 - a profile is an optimization: serving works without one
        log.exception("optimization failed for version %s", info.version)
        store.tag(info.version, "profile_error", f"{type(exc).__name__}: {exc}"[:500])
        profile = None
    if profile is not None:
        client.log_artifact(run_id, str(profile), "profile")
        root = client.get_run(run_id).info.artifact_uri.rstrip("/")
        store.tag(info.version, "profile_uri", f"{root}/profile/{profile.name}")
        result["profile"] = str(profile)

    say(f"[6/6] gate: {'PASS' if decision.promote else 'REFUSE'}: {'; '.join(decision.reasons)}")
    store.tag(info.version, "gate", "passed" if decision.promote else "refused")
    store.tag(info.version, "gate.reasons", "; ".join(decision.reasons)[:4000])
    result["gate"] = decision.to_dict()
    result["promoted"] = False
    if decision.promote and settings.train_auto_promote:
        update = promote(
            store, info.version, kafka_publisher(settings.kafka_bootstrap, settings.topic_control)
        )
        result["promoted"] = True
        result["model_update"] = update.to_dict()
    (work / "result.json").write_text(json.dumps(result, indent=1, default=str))
    record_result(settings, request, info.version, decision, result["promoted"])
    return result


def record_result(
    settings: Settings, request: TrainingRequest, version: str, decision: Any, promoted: bool
) -> None:
    """Add the cycle's outcome to the trigger's history (``misinfo train status``, the watcher's
    cycles-by-outcome metric, the stats page). Best effort: the registry already holds the truth."""
    import time

    import redis

    from core.retraining import record_event

    try:
        record_event(
            redis.Redis.from_url(settings.redis_url),
            request.redis_prefix or settings.redis_prefix,
            {
                "event": "result",
                "submission_id": request.submission_id,
                "version": version,
                "gate": "passed" if decision.promote else "refused",
                "promoted": promoted,
                "reasons": "; ".join(decision.reasons)[:1000],
                "at": time.time(),
            },
        )
    except Exception as exc:  # noqa: BLE001 - Redis down: the status then shows the job's status only
        log.warning("cycle result not recorded in the trigger's history (%s)", exc)
