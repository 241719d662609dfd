"""``misinfo bench learning``: does the training actually teach the detector something?

Builds a forensic data set from images the project generates (procedural scenes from
:mod:`misinfo.samples`): authentic crops, and composites made from them by splicing (a patch of
another JPEG-compressed scene) and copy-move (a patch of the same image moved), every image JPEG
re-encoded at a random quality so the traces are not trivial. Then, on CPU, per seed:

1. scores the tiny random checkpoint on the held-out split (``macro_f1_before``);
2. fully fine-tunes it (LoRA alone on a random base learns nothing in minutes: the frozen random
   features carry no forensic signal), giving a trained detector (``macro_f1_full``);
3. runs the feedback loop's LoRA on top of that detector, with fresh "moderator-labeled" images
   (``macro_f1_after``): the realistic case, a trained detector adapting to what moderators teach it.

Prints progress on stderr and, last, one JSON line with the means, the per-seed values and the spread.
"""

from __future__ import annotations

import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
from PIL import Image

from detector.answer import format_answer
from misinfo.samples import scene

SIZE = 112


def _jpeg(img: Image.Image, q: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def forensic_image(index: int, manipulated: bool, rng: np.random.Generator) -> Image.Image:
    """A 112x112 crop of a scene; manipulated ones get a spliced or copy-moved patch; all re-encoded."""
    big = scene(int(rng.integers(0, 1 << 30)), (160, 160))
    x, y = (int(v) for v in rng.integers(0, 160 - SIZE, 2))
    img = _jpeg(big.crop((x, y, x + SIZE, y + SIZE)), int(rng.integers(70, 96)))
    if manipulated:
        side = int(rng.integers(28, 56))
        px, py = (int(v) for v in rng.integers(0, SIZE - side, 2))
        if rng.random() < 0.5:  # splice: a patch of another scene, compressed differently
            donor = _jpeg(scene(int(rng.integers(0, 1 << 30)), (SIZE, SIZE)), int(rng.integers(30, 60)))
            sx, sy = (int(v) for v in rng.integers(0, SIZE - side, 2))
            patch = donor.crop((sx, sy, sx + side, sy + side))
        else:  # copy-move: a patch of the same image, moved
            sx, sy = (int(v) for v in rng.integers(0, SIZE - side, 2))
            patch = img.crop((sx, sy, sx + side, sy + side))
        img.paste(patch, (px, py))
    return _jpeg(img, int(rng.integers(60, 96)))


def write_split(root: Path, name: str, n: int, rng: np.random.Generator) -> Path:
    """``n`` images, half authentic and half manipulated, as conversation JSON records."""
    from trainer.data import conversation_record

    (root / name).mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        manipulated = i % 2 == 1
        label = "manipulated" if manipulated else "authentic"
        path = root / name / f"{i:05d}.png"
        forensic_image(i, manipulated, rng).save(path)
        records.append(conversation_record(str(path), format_answer(label), id=f"{name}-{i}"))
    out = root / f"{name}.json"
    out.write_text(json.dumps(records))
    return out


def _score(model: str, adapter: str | None, val: Path) -> float:
    from trainer.data import read_records
    from trainer.evaluate import score_model

    examples = [(ex.image, ex.label) for ex in read_records(val)]
    return float(score_model(model, examples, adapter_path=adapter, device="cpu", batch_size=32)["macro_f1"])


def _train(overrides: list[str]) -> dict[str, Any]:
    from trainer.config import load_config
    from trainer.train import run_training

    return run_training(load_config(None, overrides))


COMMON = [
    "tracking.mlflow_uri=off",
    "train.deepspeed=",
    "data.augment=false",
    "train.gradient_checkpointing=false",
    "train.save_steps=100000",
    "train.logging_steps=50",
    "train.gradient_accumulation_steps=1",
    "train.lr_scheduler_type=linear",
]


def full_finetune(
    base: str | Path,
    train_file: Path,
    out: Path,
    steps: int,
    seed: int,
    lr: float = 1e-3,
    batch: int = 8,
) -> dict[str, Any]:
    """Fine-tune every weight of ``base`` (vision tower included) on ``train_file``, on CPU, without
    DeepSpeed or MLflow; returns the trainer's summary (``model_dir``, ``train_seconds`` ...)."""
    return _train(
        [
            *COMMON,
            f"train.seed={seed}",
            f"model.base_model={base}",
            "model.mode=full",
            "model.train_vision=true",
            f"data.train_file={train_file}",
            f"train.output_dir={out}",
            f"train.max_steps={steps}",
            f"train.per_device_train_batch_size={batch}",
            f"train.learning_rate={lr}",
            "train.warmup_ratio=0.02",
        ]
    )


def one_seed(
    seed: int,
    work: Path,
    n_train: int,
    n_feedback: int,
    n_val: int,
    full_steps: int,
    lora_steps: int,
    say: Any,
) -> dict[str, Any]:
    from detector.tiny import build_tiny_checkpoint

    rng = np.random.default_rng(seed)
    base = build_tiny_checkpoint(work / "tiny", seed=seed)
    train = write_split(work, "train", n_train, rng)
    feedback = write_split(work, "feedback", n_feedback, rng)
    val = write_split(work, "val", n_val, rng)
    before = _score(str(base), None, val)
    say(f"seed {seed}: macro-F1 before {before:.3f}; full fine-tune, {full_steps} steps")
    full = full_finetune(base, train, work / "full", full_steps, seed)
    full_f1 = _score(full["model_dir"], None, val)
    say(
        f"seed {seed}: macro-F1 after full fine-tune {full_f1:.3f} ({full['train_seconds']:.0f}s); LoRA, {lora_steps} steps"
    )
    lora = _train(
        [
            *COMMON,
            f"train.seed={seed}",
            f"model.base_model={full['model_dir']}",
            "model.mode=lora",
            "model.train_vision=true",
            "lora.r=16",
            "lora.alpha=32",
            "lora.dropout=0.0",
            f"data.train_file={feedback}",
            f"train.output_dir={work / 'lora'}",
            f"train.max_steps={lora_steps}",
            "train.per_device_train_batch_size=8",
            "train.learning_rate=5e-4",
            "train.warmup_ratio=0.05",
        ]
    )
    after = _score(full["model_dir"], lora["model_dir"], val)
    say(f"seed {seed}: macro-F1 after LoRA on top {after:.3f} ({lora['train_seconds']:.0f}s)")
    return {
        "seed": seed,
        "macro_f1_before": before,
        "macro_f1_full": full_f1,
        "macro_f1_after": after,
        "full_train_s": full["train_seconds"],
        "lora_train_s": lora["train_seconds"],
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


@click.command("learning")
@click.option("--seeds", default="0,1,2", show_default=True, help="comma list of seeds (one full run each)")
@click.option("--train-images", default=800, show_default=True, help="images for the full fine-tune")
@click.option("--feedback-images", default=200, show_default=True, help="'moderator-labeled' images for LoRA")
@click.option("--val-images", default=200, show_default=True, help="held-out images")
@click.option("--full-steps", default=1500, show_default=True, help="optimizer steps of the full fine-tune")
@click.option("--lora-steps", default=300, show_default=True, help="optimizer steps of the LoRA on top")
@click.option("--work-dir", default=None, help="keep data and models here (default: a temp dir)")
@click.option(
    "--shift",
    is_flag=True,
    help="the feedback loop's own gain instead: a new manipulation family and a generator appear in "
    "the stream, moderators label them, the real loop retrains (misinfo/bench/shift.py)",
)
@click.option("--stream-images", default=450, show_default=True, help="--shift: labeled stream images")
@click.option("--champion-steps", default=600, show_default=True, help="--shift: the champion's steps")
@click.option("--loop-steps", default=600, show_default=True, help="--shift: the loop's training steps")
@click.option(
    "--loop-mode", type=click.Choice(["full", "lora"]), default="full", show_default=True, help="--shift"
)
def bench_learning(
    seeds: str,
    train_images: int,
    feedback_images: int,
    val_images: int,
    full_steps: int,
    lora_steps: int,
    work_dir: str | None,
    shift: bool = False,
    stream_images: int = 450,
    champion_steps: int = 600,
    loop_steps: int = 600,
    loop_mode: str = "full",
) -> None:
    """Fine-tune the tiny checkpoint on a generated forensic set on CPU; macro-F1 before and after.
    With --shift, the feedback loop's gain on a new family through the real loop."""
    if shift:
        from misinfo.bench.shift import ShiftConfig, run

        cfg = ShiftConfig(
            stream_images=stream_images,
            champion_steps=champion_steps,
            loop_steps=loop_steps,
            mode=loop_mode,
        )
        click.echo(json.dumps(run([int(s) for s in seeds.split(",") if s.strip()], cfg, work_dir)))
        return
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    started = time.perf_counter()
    rows = []
    for seed in [int(s) for s in seeds.split(",") if s.strip()]:
        with tempfile.TemporaryDirectory(prefix="misinfo-learn-") as tmp:
            work = Path(work_dir) / f"seed{seed}" if work_dir else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            rows.append(
                one_seed(seed, work, train_images, feedback_images, val_images, full_steps, lora_steps, say)
            )
    before = [r["macro_f1_before"] for r in rows]
    full = [r["macro_f1_full"] for r in rows]
    after = [r["macro_f1_after"] for r in rows]
    train_s = [r["full_train_s"] + r["lora_train_s"] for r in rows]
    click.echo(
        json.dumps(
            {
                "bench": "learning",
                "macro_f1_before": round(statistics.fmean(before), 4),
                "macro_f1_full": round(statistics.fmean(full), 4),
                "macro_f1_after": round(statistics.fmean(after), 4),
                "training_seconds": round(statistics.fmean(train_s), 1),
                "spread": {"before": _spread(before), "full": _spread(full), "after": _spread(after)},
                "per_seed": rows,
                "config": {
                    "train_images": train_images,
                    "feedback_images": feedback_images,
                    "val_images": val_images,
                    "full_steps": full_steps,
                    "lora_steps": lora_steps,
                    "image_size": SIZE,
                    "device": "cpu",
                    "threads": torch.get_num_threads(),
                },
                "wall_seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
