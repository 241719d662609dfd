"""One training cycle, as the Ray job runs it: dataset (new labels + replayed earlier images) →
training → evaluation against the champion (held-out new labels and every frozen regression set) →
calibration (a temperature fitted on the held-out split, stored beside the weights) → registration
(alias ``challenger``) → optimization profile → gate → promotion.

Training runs in a child process under ``torch.distributed.run`` (``train.nproc_per_node``
processes; one per GPU), so DeepSpeed's process group is its own and a crash there is reported here
as a failed step. Everything after training runs in this process. The result is written to
``<work>/result.json`` and returned.

A LoRA cycle trains a fresh adapter on the base model (``MISINFO_MODEL_PATH``); a full fine-tune
(``model.mode=full``) continues from the champion's weights when the champion is a full checkpoint,
so each promoted model builds on the last one, and replay plus the regression sets keep it from
forgetting. MLflow holds one parent run per cycle (``cycle <request id>``: the dataset manifest,
per-family metrics before and after, the gate's decision, the promoted version) with the training
and evaluation runs nested under it.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.config import Settings
from core.contracts.training import TrainingRequest
from detector.answer import CLASSES

CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}

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


def build_training_data(
    settings: Settings, out: Path, champion_manifest: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The dataset: moderators' labels from Redis plus replayed earlier images (the champion's
    training split and the seed set, ``train_replay_ratio`` per new label). Without any label yet,
    the seed set alone (a first model). The manifest's ``sources`` say what came from where and
    how far the moderators agree on double-labeled images."""
    import math

    import redis

    from trainer.dataset import (
        build_dataset,
        items_from_labels,
        moderator_agreement,
        raw_labels_from_redis,
        replay_pool,
        sample_replay,
        seed_items,
    )

    r = redis.Redis.from_url(settings.redis_url)
    raw = raw_labels_from_redis(r, settings.redis_prefix)
    items = items_from_labels(r, settings.redis_prefix, raw)
    sources: dict[str, Any] = {
        "redis_prefix": settings.redis_prefix,
        "labeled_images": len(items),
        "moderators": moderator_agreement(raw),
    }
    seeds = seed_items(settings.train_seed_data) if settings.train_seed_data else []
    if seeds:
        sources.update(seed_file=settings.train_seed_data, seed_images=len(seeds))
    if not items:
        items = seeds  # a first model from the seed set alone: it is split like labels
    else:
        pool = replay_pool(champion_manifest) if champion_manifest else []
        from_champion = len(pool)
        pool += seeds
        ratio = settings.train_replay_ratio
        want = -1 if ratio < 0 else math.ceil(ratio * len(items))
        replayed = sample_replay(pool, want, seed=0) if pool and want != 0 else []
        items = items + replayed
        sources["replay"] = {
            "ratio": ratio,
            "pool": len(pool),
            "pool_from_champion": from_champion,
            "pool_from_seed": len(seeds),
            "champion_dataset": (champion_manifest or {}).get("version"),
            "replayed": len(replayed),
        }
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


def _experiment_id(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # noqa: BLE001 - created concurrently by the training process
        return str(client.get_experiment_by_name(name).experiment_id)


def _family_metrics(prefix: str, family: str, report: dict[str, Any] | None) -> dict[str, float]:
    """MLflow metrics of one report: ``<prefix>.<family>.macro_f1``, accuracy, ece, recall per class."""
    if report is None:
        return {}
    out = {
        f"{prefix}.{family}.{k}": float(report[k])
        for k in ("macro_f1", "accuracy", "ece")
        if report.get(k) is not None
    }
    for cls, stats in report.get("per_class", {}).items():
        if stats.get("recall") is not None:
            out[f"{prefix}.{family}.recall.{cls}"] = float(stats["recall"])
    return out


def _brief(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """A report without its per-image scores (for the result and the parent run)."""
    return None if report is None else {k: v for k, v in report.items() if k not in ("scores", "labels")}


def train_at_serving_resolution(cfg: Any, settings: Settings, overrides: list[str]) -> None:
    """Train at the resolution the workers serve at (``MISINFO_VERDICT_SIDE`` and
    ``MISINFO_VERDICT_KEEP_ASPECT``): a model fine-tuned on other pixels than it is shown in serving
    loses accuracy without anyone noticing. An explicit ``model.verdict_side`` or
    ``model.keep_aspect`` in ``MISINFO_TRAIN_OVERRIDES`` still wins (an experiment's choice)."""
    chosen = {o.split("=", 1)[0].strip() for o in overrides}
    if "model.verdict_side" not in chosen:
        cfg.model.verdict_side = settings.verdict_side
    if "model.keep_aspect" not in chosen:
        cfg.model.keep_aspect = settings.verdict_keep_aspect


def run_cycle(
    settings: Settings, request: TrainingRequest, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    import mlflow

    from registry.store import RegistryStore
    from trainer.config import load_config

    say = progress or (lambda m: log.info("%s", m))
    work = work_dir(settings, request)
    work.mkdir(parents=True, exist_ok=True)
    base = settings.model_path
    if not base:
        raise CycleError("MISINFO_MODEL_PATH (the base model) must be set for training")
    result: dict[str, Any] = {"request": json.loads(request.to_json()), "work_dir": str(work)}
    overrides = [o.strip() for o in settings.train_overrides.split(";") if o.strip()]
    cfg = load_config(settings.train_config or None, overrides)
    train_at_serving_resolution(cfg, settings, overrides)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    store = RegistryStore(settings.mlflow_tracking_uri, settings.model_name)
    parent = client.create_run(
        _experiment_id(client, cfg.tracking.experiment),
        run_name=f"cycle {request.request_id}",
        tags={
            "misinfo.role": "cycle",
            "misinfo.request_id": request.request_id,
            "misinfo.reason": request.reason[:250],
            "misinfo.model_name": settings.model_name,
        },
    )
    parent_id = parent.info.run_id
    result["mlflow_parent_run_id"] = parent_id
    try:
        _cycle(settings, request, cfg, store, client, parent_id, work, base, result, say)
    except BaseException:
        client.set_terminated(parent_id, "FAILED")
        raise
    client.set_terminated(parent_id, "FINISHED")
    return result


def _cycle(  # noqa: PLR0915 - one step after the other, as the module docstring lists them
    settings: Settings,
    request: TrainingRequest,
    cfg: Any,
    store: Any,
    client: Any,
    parent_id: str,
    work: Path,
    base: str,
    result: dict[str, Any],
    say: Callable[[str], None],
) -> None:
    from detector.calibration import Calibration, fit_temperature, write_calibration
    from detector.checkpoint import checkpoint_kind
    from registry.gate import GatePolicy, decide
    from registry.promotion import kafka_publisher, promote
    from registry.store import CHALLENGER, CHAMPION
    from trainer.data import read_records
    from trainer.evaluate import calibrated, model_location, score_sets
    from trainer.regression import freeze, load_sets

    timer = _Stages()
    result["stage_seconds"] = timer.seconds
    champ_info = store.get_by_alias(CHAMPION)
    champ_dir = store.download(champ_info.source, work / "champion") if champ_info is not None else None
    champ_manifest = None
    if champ_info is not None and champ_info.tags.get("dataset_uri"):
        try:
            champ_manifest = store.read_json(champ_info.tags["dataset_uri"], work / "champion-dataset")
        except Exception as exc:  # noqa: BLE001 - replay is a safeguard; the cycle goes on without it
            log.warning("the champion's dataset manifest could not be read (%s): no replay from it", exc)

    timer.start("dataset")
    say(
        f"[1/7] dataset from labels under {settings.redis_prefix} (replay ratio {settings.train_replay_ratio})"
    )
    manifest = build_training_data(settings, work / "dataset", champ_manifest)
    result["dataset"] = {"version": manifest["version"], "counts": manifest["counts"]}
    val = read_records(work / "dataset" / "val.json")
    if not val:
        raise CycleError("the held-out split is empty: not enough labeled images to evaluate")
    client.log_artifact(parent_id, str(work / "dataset" / "manifest.json"), "dataset")
    client.set_tag(parent_id, "dataset.version", manifest["version"])
    client.log_param(parent_id, "replay_ratio", settings.train_replay_ratio)
    for key, n in manifest["counts"].get("by_source", {}).items():
        client.log_metric(parent_id, f"dataset.{key}", float(n))

    timer.start("training")
    say("[2/7] training")
    start_from = base
    if cfg.model.mode == "full" and champ_dir is not None and checkpoint_kind(champ_dir) == "full":
        start_from = str(champ_dir)  # continue from the champion: it already knows the old families
    cfg.model.base_model = cfg.model.base_model or start_from
    cfg.data.train_file = str(work / "dataset" / "train.json")
    cfg.train.output_dir = str(work / "train")
    cfg.tracking.mlflow_uri = cfg.tracking.mlflow_uri or settings.mlflow_tracking_uri
    cfg.tracking.manifest = str(work / "dataset" / "manifest.json")
    cfg.tracking.run_name = cfg.tracking.run_name or f"train {request.request_id}"
    cfg.tracking.tags = {
        **cfg.tracking.tags,
        "misinfo.request_id": request.request_id,
        "misinfo.reason": request.reason[:250],
        "mlflow.parentRunId": parent_id,  # nested under the cycle's run
    }
    client.log_param(parent_id, "train.mode", cfg.model.mode)
    client.set_tag(parent_id, "train.start_from", "champion" if start_from != base else "base")
    cfg_path = cfg.dump(work / "train_config.yaml")
    launch_training(cfg_path, cfg.train.nproc_per_node, work / "train.log")
    trained = json.loads((work / "train" / "train_result.json").read_text())
    run_id = trained["mlflow_run_id"]
    model_dir = Path(trained["model_dir"])
    result["training"] = trained

    timer.start("evaluation")
    say("[3/7] evaluation: candidate and champion on the held-out new labels and the regression sets")
    examples = [(ex.image, ex.label) for ex in val]
    ckpt, adapter = model_location(model_dir, cfg.model.base_model)
    regression_dir = settings.train_regression_dir or str(Path(settings.state_dir) / "regression")
    frozen = load_sets(regression_dir)
    sets = {"new_labels": examples, **{rs.name: rs.examples() for rs in frozen}}
    raw = score_sets(ckpt, {"new_labels": examples}, adapter_path=adapter, device=settings.device)
    labels_idx = [CLASS_INDEX[y] for _, y in examples]
    temperature = fit_temperature(raw["new_labels"]["scores"], labels_idx)
    candidate = calibrated(raw["new_labels"], temperature)
    calibration = Calibration(
        temperature=temperature,
        fitted_on=len(examples),
        nll_before=_nll(raw["new_labels"], 1.0),
        nll_after=_nll(raw["new_labels"], temperature),
        ece_before=raw["new_labels"]["ece"],
        ece_after=candidate["ece"],
    )
    write_calibration(model_dir, calibration)  # travels with the version; the detector applies it
    say(
        f"calibration: T={temperature:.3f}, ECE {calibration.ece_before:.3f} -> {calibration.ece_after:.3f} "
        f"on {len(examples)} held-out images"
    )
    cand_sets = {"new_labels": candidate}
    if frozen:
        cand_sets.update(
            score_sets(
                ckpt,
                {k: v for k, v in sets.items() if k != "new_labels"},
                adapter_path=adapter,
                device=settings.device,
            )
        )
    champ_sets: dict[str, Any] = {}
    if champ_dir is not None:
        c_ckpt, c_adapter = model_location(champ_dir, base)
        champ_sets = score_sets(c_ckpt, sets, adapter_path=c_adapter, device=settings.device)
    champion = champ_sets.get("new_labels")
    policy = GatePolicy(
        settings.gate_min_improvement,
        settings.gate_max_recall_drop,
        settings.gate_min_macro_f1,
        settings.gate_min_label_agreement,
        settings.gate_min_moderator_agreement,
        settings.gate_min_double_labeled,
    )
    regression = {
        rs.name: {"candidate": cand_sets[rs.name], "champion": champ_sets.get(rs.name)} for rs in frozen
    }
    decision = decide(
        candidate, champion, policy, regression=regression, moderators=manifest["sources"].get("moderators")
    )
    report = {
        "dataset_version": manifest["version"],
        "held_out": len(examples),
        "candidate": candidate,
        "champion": champion,
        "champion_version": champ_info.version if champ_info else None,
        "calibration": calibration.to_dict(),
        "regression_sets": {
            rs.name: {
                **rs.to_dict(),
                "candidate": _brief(cand_sets[rs.name]),
                "champion": _brief(champ_sets.get(rs.name)),
            }
            for rs in frozen
        },
        "moderators": manifest["sources"].get("moderators"),
        "gate": decision.to_dict(),
    }
    (work / "eval").mkdir(exist_ok=True)
    report_path = work / "eval" / "eval_report.json"
    report_path.write_text(json.dumps(report, indent=1))
    for key in ("accuracy", "macro_f1", "roc_auc_macro", "ece"):
        if candidate.get(key) is not None:
            client.log_metric(run_id, f"eval_{key}", float(candidate[key]))
        if champion and champion.get(key) is not None:
            client.log_metric(run_id, f"champion_{key}", float(champion[key]))
    client.log_metric(run_id, "eval_ece_uncalibrated", float(calibration.ece_before or 0.0))
    client.log_metric(run_id, "calibration_temperature", temperature)
    family_metrics: dict[str, float] = {}
    for family in sets:
        family_metrics.update(_family_metrics("before", family, champ_sets.get(family)))
        family_metrics.update(_family_metrics("after", family, cand_sets[family]))
    family_metrics.update(
        {
            "calibration.temperature": temperature,
            "calibration.ece_before": float(calibration.ece_before or 0.0),
            "calibration.ece_after": float(calibration.ece_after or 0.0),
        }
    )
    evaluation = client.create_run(
        client.get_run(parent_id).info.experiment_id,
        run_name=f"evaluation {request.request_id}",
        tags={"misinfo.role": "evaluation", "mlflow.parentRunId": parent_id},
    )
    for name, value in family_metrics.items():
        client.log_metric(evaluation.info.run_id, name, value)
        client.log_metric(parent_id, name, value)
    client.log_artifact(evaluation.info.run_id, str(report_path), "eval")
    client.set_terminated(evaluation.info.run_id, "FINISHED")
    client.log_artifact(parent_id, str(report_path), "eval")
    say(
        f"candidate macro-F1 {candidate['macro_f1']:.3f}, champion {champion['macro_f1'] if champion else None}; "
        + ", ".join(
            f"{rs.name} {cand_sets[rs.name]['macro_f1']:.3f}"
            + (f" (champion {champ_sets[rs.name]['macro_f1']:.3f})" if rs.name in champ_sets else "")
            for rs in frozen
        )
    )

    timer.start("registration")
    say("[4/7] registration")
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
            "eval.ece": f"{candidate['ece']:.4f}",
            "calibration.temperature": f"{temperature:.4f}",
            "dataset.version": manifest["version"],
            "regression_sets": ",".join(f"{rs.name}@{rs.version}" for rs in frozen)[:4000],
            "request_id": request.request_id,
            "mode": trained["mode"],
            "base_model": cfg.model.base_model,
            "cycle_run_id": parent_id,
        },
        description=request.reason,
    )
    store.set_alias(CHALLENGER, info.version)
    result["version"] = info.version
    client.set_tag(parent_id, "candidate.version", info.version)

    timer.start("profile")
    say(f"[5/7] optimization profile for version {info.version} ({settings.train_optimize})")
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

    timer.start("gate_and_promotion")
    say(f"[6/7] gate: {'PASS' if decision.promote else 'REFUSE'}: {'; '.join(decision.reasons)}")
    store.tag(info.version, "gate", "passed" if decision.promote else "refused")
    store.tag(info.version, "gate.reasons", "; ".join(decision.reasons)[:4000])
    client.set_tag(parent_id, "gate", "passed" if decision.promote else "refused")
    client.set_tag(parent_id, "gate.reasons", "; ".join(decision.reasons)[:4000])
    result["gate"] = decision.to_dict()
    result["evaluation"] = {
        "calibration": calibration.to_dict(),
        "families": {f: {"before": _brief(champ_sets.get(f)), "after": _brief(cand_sets[f])} for f in sets},
    }
    result["promoted"] = False
    if decision.promote and settings.train_auto_promote:
        update = promote(
            store, info.version, kafka_publisher(settings.kafka_bootstrap, settings.topic_control)
        )
        result["promoted"] = True
        result["model_update"] = update.to_dict()
        client.set_tag(parent_id, "promoted.version", info.version)

    timer.start("regression_set")
    if result["promoted"] and settings.train_freeze_regression:
        say("[7/7] the new labels' held-out split frozen as a regression set")
        rs = freeze(regression_dir, f"feedback-{manifest['version']}", examples)
        result["regression_set"] = rs.to_dict()
        client.set_tag(parent_id, "regression_set.frozen", f"{rs.name}@{rs.version}")
    else:
        say("[7/7] no regression set frozen (nothing promoted, or MISINFO_TRAIN_FREEZE_REGRESSION off)")
    timer.start(None)
    (work / "result.json").write_text(json.dumps(result, indent=1, default=str))
    client.log_artifact(parent_id, str(work / "result.json"), "cycle")
    record_result(settings, request, info.version, decision, result["promoted"])


class _Stages:
    """Wall seconds of each step of the cycle (``result["stage_seconds"]``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._name: str | None = None
        self._t0 = time.perf_counter()

    def start(self, name: str | None) -> None:
        now = time.perf_counter()
        if self._name is not None:
            self.seconds[self._name] = round(now - self._t0, 2)
        self._name, self._t0 = name, now


def _nll(report: dict[str, Any], temperature: float) -> float:
    from detector.calibration import as_logits, nll

    return nll(as_logits(report["scores"]), [CLASS_INDEX[y] for y in report["labels"]], temperature)


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
