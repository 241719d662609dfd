"""``misinfo bench detector``: the seed's generate-and-parse detector against ours, same model and images.

Seed: one image at a time, greedy generation of up to 128 tokens (stopping early only at end of
turn), then a keyword search of the text. Ours: batched class probabilities from one prefill
(:meth:`Detector.detect`, no generation). Both run in this process on the same loaded model and the
same generated images, after one warm-up call each. Progress goes to stderr; the last line on stdout
is one JSON object.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

# The seed's parse: the first keyword found decides; "fake" words win over "real" ones when both occur.
_FAKE_WORDS = re.compile(r"\b(fake|manipulated|edited|photoshopped|synthesized|generated|ai)\b", re.I)
_REAL_WORDS = re.compile(r"\b(real|authentic|genuine|original)\b", re.I)


def seed_keyword_label(text: str) -> str | None:
    """The seed system's label from free text: ``fake``, ``real`` or None (no keyword found).

    Kept only to reproduce the seed in the benchmark; it reads "not real" as real, as the seed did.
    """
    if _FAKE_WORDS.search(text):
        return "fake"
    if _REAL_WORDS.search(text):
        return "real"
    return None


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _real_size_detector(device: str, dtype: str, workdir: Path) -> Any:
    """A random-weight model with the real Qwen2.5-VL-3B configuration, built in memory (no 15 GB write)."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from detector.model import Detector
    from detector.options import resolve_device, resolve_dtype
    from detector.tiny import REAL_MAX_PIXELS, REAL_MIN_PIXELS, build_tiny_checkpoint, tiny_config

    ckpt = build_tiny_checkpoint(workdir / "tiny")  # for the tokenizer and processor files only
    processor = AutoProcessor.from_pretrained(
        str(ckpt), min_pixels=REAL_MIN_PIXELS, max_pixels=REAL_MAX_PIXELS
    )
    dev = resolve_device(device)
    config = tiny_config(processor.tokenizer, real_size=True)
    torch.manual_seed(0)
    with torch.device(dev):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=resolve_dtype(dtype, dev))
    return Detector(model.eval(), processor, name="qwen2.5-vl-3b-random")


def run_bench(
    model_path: str | None,
    *,
    batch_size: int = 8,
    n_images: int = 32,
    seed_max_new_tokens: int = 128,
    ours_passes: int = 5,
    device: str = "auto",
    dtype: str = "auto",
    profile: str | None = None,
    real_size: bool = False,
    image_seed: int = 0,
) -> dict[str, Any]:
    """Run both detectors on the same images with the same model; returns the figures."""
    import torch

    from detector.model import Detector
    from detector.options import LoadOptions, dtype_name
    from misinfo.samples import bench_images

    with tempfile.TemporaryDirectory(prefix="misinfo-bench-") as tmp:
        if real_size:
            _say("building a random-weight model of the real 3B configuration ...")
            det = _real_size_detector(device, dtype, Path(tmp))
            model_name = "qwen2.5-vl-3b-config-random"
            sides = (320, 640)
        else:
            if model_path is None:
                from detector.tiny import build_tiny_checkpoint

                _say("building the tiny random checkpoint (seed 0) ...")
                model_path = str(build_tiny_checkpoint(Path(tmp) / "tiny", seed=0))
                model_name = "tiny-random-qwen2.5-vl(seed=0)"
            else:
                model_name = model_path
            det = Detector.load(model_path, LoadOptions(device=device, dtype=dtype, profile=profile))
            sides = (48, 160)
        images = bench_images(n_images, seed=image_seed, min_side=sides[0], max_side=sides[1])
        _say(f"model {model_name} on {det.device}; {n_images} images; batch {batch_size}")

        @torch.inference_mode()
        def seed_one(image: Any) -> tuple[str | None, int]:
            inputs = det._inputs([image], [""])  # the seed asked the question and let the model talk
            out = det.model.generate(
                **inputs,
                max_new_tokens=seed_max_new_tokens,
                do_sample=False,
                pad_token_id=det.tokenizer.pad_token_id,
            )
            new = out[0, inputs["input_ids"].shape[1] :]
            n_new = int((new != det.tokenizer.pad_token_id).sum())
            return seed_keyword_label(det.tokenizer.decode(new, skip_special_tokens=True)), n_new

        seed_one(images[0])  # warm-up
        det.detect(images[:batch_size])
        _say(f"seed: 1 image at a time, generate up to {seed_max_new_tokens} tokens, keyword parse")
        tokens = parsed = 0
        started = time.perf_counter()
        for i, im in enumerate(images, 1):
            label, n_new = seed_one(im)
            tokens += n_new
            parsed += label is not None
            if i % max(1, n_images // 8) == 0 or i == n_images:
                _say(f"  seed {i}/{n_images} ({i / (time.perf_counter() - started):.2f} images/s)")
        seed_s = time.perf_counter() - started

        _say(f"ours: batches of {batch_size}, one prefill each, {ours_passes} passes over the images")
        started = time.perf_counter()
        flagged = 0
        for p in range(1, ours_passes + 1):
            for b in range(0, n_images, batch_size):
                flagged += sum(d.flagged for d in det.detect(images[b : b + batch_size]))
            rate = p * n_images / (time.perf_counter() - started)
            _say(f"  ours pass {p}/{ours_passes} ({rate:.1f} images/s)")
        ours_s = time.perf_counter() - started

    seed_ips = n_images / seed_s
    ours_ips = ours_passes * n_images / ours_s
    import transformers

    return {
        "benchmark": "detector",
        "seed_images_per_s": round(seed_ips, 3),
        "ours_images_per_s": round(ours_ips, 3),
        "ratio": round(ours_ips / seed_ips, 2),
        "batch_size": batch_size,
        "model": model_name,
        "device": str(det.device),
        "dtype": dtype_name(next(det.model.parameters()).dtype),
        "profile_id": det.profile_id,
        "images": n_images,
        "ours_passes": ours_passes,
        "seed_max_new_tokens": seed_max_new_tokens,
        "seed_mean_new_tokens": round(tokens / n_images, 1),
        "seed_keyword_parsed": round(parsed / n_images, 3),
        "ours_flagged": round(flagged / (ours_passes * n_images), 3),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
    }


@click.command("detector")
@click.option("--model", "model_path", default=None, help="checkpoint directory; default: build the tiny one")
@click.option("--batch-size", default=8, show_default=True, help="our batch size")
@click.option("--images", "n_images", default=32, show_default=True, help="how many generated images")
@click.option("--seed-max-new-tokens", default=128, show_default=True, help="the seed's generation cap")
@click.option("--ours-passes", default=5, show_default=True, help="passes of our detector over the images")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("--dtype", default="auto", show_default=True, help="auto, float32, bfloat16, float16")
@click.option("--profile", default=None, help="optimization profile JSON to load the model with")
@click.option("--real-size", is_flag=True, help="random weights in the real 3B configuration (for a GPU)")
def bench_detector(
    model_path: str | None,
    batch_size: int,
    n_images: int,
    seed_max_new_tokens: int,
    ours_passes: int,
    device: str,
    dtype: str,
    profile: str | None,
    real_size: bool,
) -> None:
    """Seed (batch 1, generate, keyword parse) vs ours (batched logit verdict): one JSON line last."""
    if batch_size < 1 or n_images < 1 or ours_passes < 1:
        raise click.BadParameter("--batch-size, --images and --ours-passes must be at least 1")
    result = run_bench(
        model_path,
        batch_size=batch_size,
        n_images=n_images,
        seed_max_new_tokens=seed_max_new_tokens,
        ours_passes=ours_passes,
        device=device,
        dtype=dtype,
        profile=profile,
        real_size=real_size,
    )
    sys.stderr.flush()
    click.echo(json.dumps(result))
