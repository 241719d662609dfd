"""The demo's detector and the demo's images.

The detector is the tests' tiny random Qwen2.5-VL (:mod:`detector.tiny`) fully fine-tuned once, on
CPU, on the project's generated forensic families (:mod:`misinfo.bench.families`: procedural
"photos" carrying a camera's row pattern; splices pasted one row off; inpainting-like fills with a
decoder's column stripes; wholly generated pictures with a transposed convolution's checkerboard).
Its flag threshold is chosen on held-out generated images, and it is cached in the state directory
under a name derived from its recipe: the first ``make demo`` builds it (about a minute or two on
a CPU), later ones load it. Same recipe, same model (fixed seeds, one thread).

It has learned to tell those generated traces apart, and nothing else: it is not a detector of real
photographs or real edits (that is the 3B model with a LoRA adapter trained on moderators' labels).

The demo's images come from the same generator with another seed, so the model never saw them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from misinfo.bench import families


@dataclass(frozen=True)
class Recipe:
    """Everything the demo detector depends on; its hash names the cache directory."""

    base_seed: int = 0  # the random checkpoint
    data_seed: int = 0  # the training images
    train_images: int = 1600  # an equal share of each family
    steps: int = 900
    batch: int = 8
    learning_rate: float = 1e-3
    calibration_images: int = 200  # held out (another seed) to choose the flag threshold
    version: int = 2  # bump when the generator or the training changes meaning

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


RECIPE = Recipe()
IMAGE_SEED = 1_000_003  # the demo's images: a seed neither training nor calibration used
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(4, 17))  # 0.20 .. 0.80
CARD = "demo-detector.json"  # beside the weights: the recipe, the held-out figures, the threshold
MANIPULATED = ("A", "B")  # the demo's manipulated images: splices and inpainting-like fills


def cached_model(state_dir: str | Path, recipe: Recipe = RECIPE) -> Path:
    return Path(state_dir) / "models" / f"demo-{recipe.key()}"


def card(model: str | Path) -> dict[str, Any]:
    """What the demo detector is: its recipe, training time, held-out figures and flag threshold."""
    return json.loads((Path(model) / CARD).read_text())  # type: ignore[no-any-return]


def demo_detector(state_dir: str | Path, say: Callable[[str], None], recipe: Recipe = RECIPE) -> Path:
    """The fine-tuned checkpoint's directory: from the cache, or built now (a minute or two on a CPU)."""
    import torch

    from detector.answer import format_answer
    from detector.tiny import build_tiny_checkpoint
    from misinfo.bench.learning import full_finetune
    from trainer.data import conversation_record

    target = cached_model(state_dir, recipe)
    if (target / CARD).exists():
        say(f"demo detector: cached at {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    say(
        f"demo detector: fine-tuning the tiny Qwen2.5-VL on {recipe.train_images} generated images "
        f"({', '.join(families.FAMILIES)}), {recipe.steps} steps on CPU; once, then cached"
    )
    started = time.perf_counter()
    threads = torch.get_num_threads()
    # One thread: this model's operations are tiny, and on a shared 2-core machine a second thread
    # made training several times slower (measured), never faster; it also makes the run repeatable.
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="demo-model-", dir=target.parent) as tmp:
            work = Path(tmp)
            base = build_tiny_checkpoint(work / "base", seed=recipe.base_seed)
            rng = np.random.default_rng(recipe.data_seed)
            train = families.write(work / "train", families.FAMILIES, recipe.train_images, rng)
            records = [
                conversation_record(str(p), format_answer(c), id=f"train-{i}")
                for i, (p, c, _) in enumerate(train)
            ]
            (work / "train.json").write_text(json.dumps(records))
            say(f"demo detector: {len(train)} training images written; training")
            with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints; stdout carries verdicts
                result = full_finetune(
                    base,
                    work / "train.json",
                    work / "full",
                    recipe.steps,
                    recipe.data_seed,
                    recipe.learning_rate,
                    recipe.batch,
                )
            built = Path(result["model_dir"])
            held_out = families.write(
                work / "calibration",
                ("authentic", *MANIPULATED),
                recipe.calibration_images,
                np.random.default_rng(recipe.data_seed + 1),
            )
            figures = calibrate(built, [(p, c) for p, c, _ in held_out])
            (built / CARD).write_text(
                json.dumps(
                    {"recipe": asdict(recipe), "train_seconds": round(result["train_seconds"], 1), **figures},
                    indent=1,
                )
            )
            shutil.move(str(built), target)  # whole or not at all: a half-built model is never cached
    finally:
        torch.set_num_threads(threads)
    facts = card(target)
    say(
        f"demo detector: built in {time.perf_counter() - started:.0f} s, cached at {target}; on "
        f"{facts['held_out_images']} held-out generated images: ROC-AUC {facts['held_out_roc_auc']:.2f}, "
        f"flag threshold {facts['flag_threshold']:.2f} flags {facts['held_out_flagged']['manipulated']:.0%} "
        f"of manipulated and {facts['held_out_flagged']['authentic']:.0%} of authentic"
    )
    return target


def calibrate(model: Path, examples: list[tuple[Path, str]]) -> dict[str, Any]:
    """Score held-out images through the serving path and choose the flag threshold (on P(manipulated)
    + P(synthesized), as the worker flags) that best separates the two classes."""
    from trainer.evaluate import roc_auc, score_model

    scores = score_model(model, examples, device="cpu", batch_size=32)["scores"]
    fake: dict[str, list[float]] = {"manipulated": [], "authentic": []}
    for (_, label), row in zip(examples, scores, strict=True):
        fake[label].append(row[1] + row[2])

    def share(cls: str, t: float) -> float:
        return sum(f >= t for f in fake[cls]) / len(fake[cls])

    # Youden's J over a coarse grid; ties go to the threshold nearest 0.5 (the worker's default).
    best = max(THRESHOLDS, key=lambda t: (share("manipulated", t) - share("authentic", t), -abs(t - 0.5)))
    return {
        "flag_threshold": best,
        "held_out_images": len(examples),
        "held_out_roc_auc": roc_auc(fake["manipulated"], fake["authentic"]),
        "held_out_flagged": {cls: share(cls, best) for cls in ("manipulated", "authentic")},
    }


def write_demo_images(folder: str | Path, n: int, seed: int = IMAGE_SEED) -> dict[str, str]:
    """``n`` unseen images (half authentic; half manipulated, splices and fills in turn) as JPEG files
    in ``folder``; returns image id (sha256 of the file's bytes, as ingest computes it) -> true class."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(n):
        fam = MANIPULATED[(i // 2) % len(MANIPULATED)] if i % 2 else "authentic"
        data = families.make(fam, rng)
        path = out / f"image-{i:03d}.jpg"  # a neutral name: the class is in the returned map only
        path.write_bytes(data)
        truth[hashlib.sha256(data).hexdigest()] = families.LABEL_OF[fam]
    return truth
