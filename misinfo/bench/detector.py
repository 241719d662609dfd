"""``misinfo bench detector``: the seed's generate-and-parse detector against ours, same model and images;
ours against transformers' own vision attention; on a GPU, the detector's ceiling.

Seed: one image at a time, greedy generation of up to 128 tokens (stopping early only at end of
turn), then a keyword search of the text. Ours: batched class probabilities from one prefill
(:meth:`Detector.detect`, no generation). Stock: the same model and images with the vision tower's
attention switched back to transformers' per-window path, in passes interleaved with ours. The
attention calls are counted by wrapping torch's own functions (``scaled_dot_product_attention``,
``varlen_attn``) while the vision tower runs one forward of a batch.

``--real-size`` (or ``--stream``) measures a stream of batches through the prepare/score overlap
(:func:`detector.stream.score_stream`): images/s per batch size, peak GPU memory, FLOP per image
(counted on one forward) and the share of a bf16 matmul rate measured in the same run.

Runs from a plain checkout with torch, transformers, pillow, numpy and click only:
``python -m misinfo.bench.detector --real-size --device cuda``. Progress goes to stderr; the last
line on stdout is one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterator
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


# --- what runs in the vision tower ------------------------------------------------------------------


@contextlib.contextmanager
def counting_vision_attention(model: Any) -> Iterator[dict[str, int]]:
    """Count calls into torch's attention functions made while the vision tower runs.

    Wraps ``torch.nn.functional.scaled_dot_product_attention`` and
    ``torch.nn.attention.varlen.varlen_attn`` (both looked up at call time by transformers and by
    :mod:`detector.vision_attention`); a forward hook pair marks when the vision tower is running.
    Compiled code runs eagerly meanwhile, so the wrappers are seen and nothing recompiles.
    ``attention_flop`` adds up 4·heads·len_q·len_k·dim over every call, in the vision tower or not
    (QKᵀ and AV), for :func:`flop_per_image`.
    """
    import torch

    from detector.vision_attention import vision_tower

    tower = vision_tower(model)
    if tower is None:
        raise ValueError("no Qwen2.5-VL vision tower in this model")
    counts = {"scaled_dot_product_attention": 0, "varlen_attn": 0, "attention_flop": 0}
    inside = [False]
    nn_f = torch.nn.functional
    real_sdpa = nn_f.scaled_dot_product_attention
    varlen_mod: Any = None
    with contextlib.suppress(ImportError):
        from torch.nn.attention import varlen as varlen_mod
    real_varlen: Any = getattr(varlen_mod, "varlen_attn", None)

    def sdpa(q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> Any:
        counts["attention_flop"] += 4 * math.prod(q.shape[:-1]) * k.shape[-2] * q.shape[-1]
        if inside[0]:
            counts["scaled_dot_product_attention"] += 1
        return real_sdpa(q, k, v, *args, **kwargs)

    def varlen(q: Any, k: Any, v: Any, cu_q: Any, *args: Any, **kwargs: Any) -> Any:
        lengths = (cu_q[1:] - cu_q[:-1]).double()
        counts["attention_flop"] += int(4 * q.shape[1] * q.shape[2] * float((lengths**2).sum()))
        if inside[0]:
            counts["varlen_attn"] += 1
        return real_varlen(q, k, v, cu_q, *args, **kwargs)

    def enter(*_: Any) -> None:
        inside[0] = True

    def leave(*_: Any) -> None:
        inside[0] = False

    hooks = [tower.register_forward_pre_hook(enter), tower.register_forward_hook(leave)]
    stance = getattr(torch.compiler, "set_stance", None)
    eager = stance("force_eager") if stance is not None else contextlib.nullcontext()
    nn_f.scaled_dot_product_attention = sdpa  # type: ignore[assignment]
    if real_varlen is not None:
        varlen_mod.varlen_attn = varlen
    try:
        with eager:
            yield counts
    finally:
        nn_f.scaled_dot_product_attention = real_sdpa
        if real_varlen is not None:
            varlen_mod.varlen_attn = real_varlen
        for h in hooks:
            h.remove()


def vision_attention_calls(det: Any, images: list[Any], kind: str | None = None) -> int:
    """Attention calls from the vision tower during one forward of ``images`` (as one batch), with
    the vision attention switched to ``kind`` for that forward (default: as loaded)."""
    from detector.vision_attention import set_vision_attention

    prepared = det.prepare(images)
    previous = set_vision_attention(det.model, kind) if kind else None
    try:
        with counting_vision_attention(det.model) as counts:
            det.probabilities(prepared)
    finally:
        if previous is not None:
            set_vision_attention(det.model, previous)
    return counts["scaled_dot_product_attention"] + counts["varlen_attn"]


def vision_layers(model: Any) -> int:
    from detector.vision_attention import vision_tower

    tower = vision_tower(model)
    return len(tower.blocks) if tower is not None else 0


def flop_per_image(det: Any, image: Any) -> float:
    """FLOP of one forward of one image: torch's counter for everything but attention, plus the
    attention counted from its calls (torch's counter misses SDPA on a CPU and the varlen op, so its
    own attention figures, where it has them, are replaced rather than added)."""
    from torch.utils.flop_counter import FlopCounterMode

    prepared = det.prepare([image])
    with counting_vision_attention(det.model) as counts, FlopCounterMode(display=False) as counter:
        det.probabilities(prepared)
    by_op = counter.get_flop_counts().get("Global", {})
    counted_attention = sum(n for op, n in by_op.items() if "attention" in str(op))
    return float(counter.get_total_flops() - counted_attention + counts["attention_flop"])


def matmul_flop_per_s(device: Any, seconds: float = 1.0) -> tuple[float, str]:
    """The dense matmul rate measured here: bfloat16 on a GPU, float32 on a CPU (FLOP/s, dtype)."""
    import torch

    dev = torch.device(device)
    dtype, n = (torch.bfloat16, 8192) if dev.type == "cuda" else (torch.float32, 1024)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(3):
        a @ b
    sync()
    iters, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(10):
            a @ b
        iters += 10
        sync()
    return 2 * n**3 * iters / (time.perf_counter() - started), str(dtype).removeprefix("torch.")


# --- the benchmark ---------------------------------------------------------------------------------


def _real_size_model(device: str, dtype: str) -> tuple[Any, Any]:
    """A random-weight model with the real Qwen2.5-VL-3B configuration, built in memory (no 15 GB write)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from detector.options import resolve_device, resolve_dtype
    from detector.processor import build_processor
    from detector.tiny import CHAT_TEMPLATE, REAL_MAX_PIXELS, REAL_MIN_PIXELS, build_tokenizer, tiny_config

    processor = build_processor(build_tokenizer(), CHAT_TEMPLATE, REAL_MIN_PIXELS, REAL_MAX_PIXELS)
    dev = resolve_device(device)
    config = tiny_config(processor.tokenizer, real_size=True)
    torch.manual_seed(0)
    with torch.device(dev):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=resolve_dtype(dtype, dev), attn_implementation="sdpa"
        )
    return model.eval(), processor


def _interleaved(det: Any, images: list[Any], batch_size: int, passes: int) -> dict[str, Any]:
    """Ours and stock vision attention, pass by pass in turn on the same model, alternating which goes
    first (so a machine's drift or a neighbour's load hits both alike)."""
    from detector.vision_attention import set_vision_attention

    ours_kind = det.load_report.get("vision_attention", "stock")
    spent = {"ours": 0.0, "stock": 0.0}
    flagged = 0
    for p in range(1, passes + 1):
        for who in ("ours", "stock") if p % 2 else ("stock", "ours"):  # alternate who goes first
            previous = set_vision_attention(det.model, "stock") if who == "stock" else None
            try:
                started = time.perf_counter()
                for b in range(0, len(images), batch_size):
                    found = det.detect(images[b : b + batch_size])
                    flagged += sum(d.flagged for d in found) if who == "ours" else 0
                spent[who] += time.perf_counter() - started
            finally:
                if previous is not None:
                    set_vision_attention(det.model, previous)
        n = p * len(images)
        _say(
            f"  pass {p}/{passes}: ours ({ours_kind}) {n / spent['ours']:.1f} images/s, "
            f"stock {n / spent['stock']:.1f} images/s"
        )
    n = passes * len(images)
    return {
        "ours_images_per_s": n / spent["ours"],
        "stock_images_per_s": n / spent["stock"],
        "ours_flagged": flagged / n,
    }


def _seed(det: Any, images: list[Any], max_new_tokens: int) -> dict[str, Any]:
    import torch

    @torch.inference_mode()
    def seed_one(image: Any) -> tuple[str | None, int]:
        inputs = det._inputs([image], [""])  # the seed asked the question and let the model talk
        out = det.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=det.tokenizer.pad_token_id,
        )
        new = out[0, inputs["input_ids"].shape[1] :]
        n_new = int((new != det.tokenizer.pad_token_id).sum())
        return seed_keyword_label(det.tokenizer.decode(new, skip_special_tokens=True)), n_new

    seed_one(images[0])  # warm-up
    _say(f"seed: 1 image at a time, generate up to {max_new_tokens} tokens, keyword parse")
    tokens = parsed = 0
    started = time.perf_counter()
    for i, im in enumerate(images, 1):
        label, n_new = seed_one(im)
        tokens += n_new
        parsed += label is not None
        if i % max(1, len(images) // 8) == 0 or i == len(images):
            _say(f"  seed {i}/{len(images)} ({i / (time.perf_counter() - started):.2f} images/s)")
    n = len(images)
    return {
        "seed_images_per_s": n / (time.perf_counter() - started),
        "seed_mean_new_tokens": round(tokens / n, 1),
        "seed_keyword_parsed": round(parsed / n, 3),
    }


def stream_figures(
    det: Any,
    images: list[Any],
    batch_sizes: list[int],
    n_batches: int,
    workers: int,
    flop: float | None,
    matmul_rate: float | None,
) -> dict[str, Any]:
    """Images/s (and peak GPU memory) per batch size through the prepare/score overlap."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from detector.stream import score_stream

    cuda = det.device.type == "cuda"
    out: dict[str, Any] = {"stream_images_per_s": {}, "peak_memory_mb": {}, "flop_utilization": {}}
    with ThreadPoolExecutor(workers, thread_name_prefix="prepare") as pool:
        for bs in batch_sizes:
            batches = [[images[(k * bs + i) % len(images)] for i in range(bs)] for k in range(n_batches + 1)]
            det.score(det.prepare(batches[0]))  # warm-up at this size (allocator, shapes)
            if cuda:
                torch.cuda.synchronize(det.device)
                torch.cuda.reset_peak_memory_stats(det.device)
            started = time.perf_counter()
            done = sum(
                len(found) for found in score_stream(det, batches[1:], pool, ahead=max(2, workers // 2))
            )
            ips = done / (time.perf_counter() - started)
            out["stream_images_per_s"][str(bs)] = round(ips, 2)
            out["peak_memory_mb"][str(bs)] = (
                round(torch.cuda.max_memory_allocated(det.device) / 2**20, 1) if cuda else None
            )
            util = ips * flop / matmul_rate if flop and matmul_rate else None
            out["flop_utilization"][str(bs)] = round(util, 4) if util is not None else None
            _say(
                f"  stream batch {bs}: {ips:.1f} images/s"
                + (f", {util:.1%} of the matmul rate" if util else "")
            )
    return out


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
    resolution: int | None = None,
    vision_attention: str = "auto",
    compile_blocks: bool | None = None,
    seed: bool | None = None,
    stream: bool = False,
    stream_batch_sizes: tuple[int, ...] = (8, 32, 64),
    stream_batches: int = 8,
    prepare_workers: int | None = None,
    preprocess_on_device: bool = False,
) -> dict[str, Any]:
    """Run the detectors on the same images with the same model; returns the figures."""
    import torch
    import transformers

    from detector.model import Detector
    from detector.options import LoadOptions, dtype_name
    from misinfo.samples import bench_images

    run_seed = (not real_size) if seed is None else seed
    run_stream = stream or real_size
    side = resolution if resolution is not None else 448
    options = LoadOptions(
        device=device,
        dtype=dtype,
        profile=profile,
        vision_attention=vision_attention,
        compile_blocks=compile_blocks,
        verdict_side=side,
        # the tiny checkpoint's processor stops at 112x112: open it up to the resolution asked for
        max_pixels=side * side if resolution else None,
        preprocess_on_device=preprocess_on_device,
    )
    figures: dict[str, Any] = {"benchmark": "detector"}
    with tempfile.TemporaryDirectory(prefix="misinfo-bench-") as tmp:
        if real_size:
            _say("building a random-weight model of the real 3B configuration ...")
            model, processor = _real_size_model(device, dtype)
            model_name = "qwen2.5-vl-3b-config-random"
            sides = (320, 640)
            flop = flop_per_image(
                Detector(model, processor, resolution=options_resolution(options)), _one(sides)
            )
            _say("vision attention, compiled blocks and warm-up ...")
            det = Detector.from_model(model, processor, options, name=model_name)
        else:
            if model_path is None:
                from detector.tiny import build_tiny_checkpoint

                _say("building the tiny random checkpoint (seed 0) ...")
                model_path = str(build_tiny_checkpoint(Path(tmp) / "tiny", seed=0))
                model_name = "tiny-random-qwen2.5-vl(seed=0)"
            else:
                model_name = model_path
            det = Detector.load(model_path, options)
            sides = (48, 160)
            flop = None
        images = bench_images(n_images, seed=image_seed, min_side=sides[0], max_side=sides[1])
        kind = det.load_report.get("vision_attention", "stock")
        _say(
            f"model {model_name} on {det.device}; {n_images} images at {det.resolution.side}px; "
            f"batch {batch_size}; vision attention {kind}; compiled blocks {det.load_report.get('compile_blocks')}"
        )
        count_batch = images[:batch_size]
        figures["vision_attention_calls"] = vision_attention_calls(det, count_batch)
        figures["stock_vision_attention_calls"] = vision_attention_calls(det, count_batch, "stock")
        figures["vision_layers"] = vision_layers(det.model)
        det.detect(images[:batch_size])  # warm-up

        if run_seed:
            figures.update(_seed(det, images, seed_max_new_tokens))
        _say(f"ours vs stock vision attention: batches of {batch_size}, {ours_passes} passes each, in turn")
        figures.update(_interleaved(det, images, batch_size, ours_passes))

        if run_stream:
            if flop is None:
                flop = flop_per_image(det, images[0])
            rate, rate_dtype = matmul_flop_per_s(det.device)
            workers = prepare_workers or min(8, os.cpu_count() or 1)
            _say(
                f"stream: {stream_batches} batches per size, prepare on {workers} threads while the model scores"
            )
            figures.update(
                stream_figures(det, images, list(stream_batch_sizes), stream_batches, workers, flop, rate)
            )
            figures.update(
                flop_per_image=flop,
                matmul_flop_per_s=rate,
                matmul_dtype=rate_dtype,
                prepare_workers=workers,
            )

    ours, stock = figures["ours_images_per_s"], figures["stock_images_per_s"]
    figures.update(
        ours_images_per_s=round(ours, 3),
        stock_images_per_s=round(stock, 3),
        ours_vs_stock=round(ours / stock, 3),
        ours_flagged=round(figures["ours_flagged"], 3),
    )
    if run_seed:
        figures["seed_images_per_s"] = round(figures["seed_images_per_s"], 3)
        figures["ratio"] = round(ours / figures["seed_images_per_s"], 2)
        figures["seed_max_new_tokens"] = seed_max_new_tokens
    gpu = torch.cuda.get_device_name(det.device) if det.device.type == "cuda" else None
    figures.update(
        vision_attention=det.load_report.get("vision_attention", "stock"),
        compile_blocks=det.load_report.get("compile_blocks"),
        fallbacks=det.load_report.get("fallbacks", []),
        resolution=det.resolution.side,
        batch_size=batch_size,
        model=model_name,
        device=str(det.device),
        gpu=gpu,
        dtype=dtype_name(next(det.model.parameters()).dtype),
        profile_id=det.profile_id,
        images=n_images,
        ours_passes=ours_passes,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        machine=platform.machine(),
    )
    return figures


def options_resolution(options: Any) -> Any:
    from detector.resolution import Resolution

    return Resolution(options.verdict_side, options.keep_aspect)


def _one(sides: tuple[int, int]) -> Any:
    from misinfo.samples import bench_images

    return bench_images(1, seed=0, min_side=sides[0], max_side=sides[1])[0]


def _sizes(value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated batch sizes, got {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"batch sizes must be at least 1, got {value!r}")
    return sizes


@click.command("detector")
@click.option("--model", "model_path", default=None, help="checkpoint directory; default: build the tiny one")
@click.option("--batch-size", default=8, show_default=True, help="our batch size")
@click.option("--images", "n_images", default=32, show_default=True, help="how many generated images")
@click.option("--seed-max-new-tokens", default=128, show_default=True, help="the seed's generation cap")
@click.option(
    "--ours-passes", default=5, show_default=True, help="passes of ours (and of stock) over the images"
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("--dtype", default="auto", show_default=True, help="auto, float32, bfloat16, float16")
@click.option("--profile", default=None, help="optimization profile JSON to load the model with")
@click.option(
    "--real-size",
    is_flag=True,
    help="random weights in the real 3B configuration (for a GPU); implies --stream",
)
@click.option(
    "--resolution",
    type=int,
    default=None,
    help="verdict side in px (a multiple of 28); default: 448 capped by the checkpoint (tiny: 112)",
)
@click.option(
    "--vision-attention",
    type=click.Choice(["auto", "varlen", "batched", "stock"]),
    default="auto",
    show_default=True,
    help="the vision tower's attention for ours",
)
@click.option("--compile-blocks/--no-compile-blocks", default=None, help="default: on a GPU only")
@click.option(
    "--seed/--no-seed", "seed", default=None, help="run the seed's path (default: not with --real-size)"
)
@click.option("--stream", is_flag=True, help="also measure a stream of batches through prepare/score overlap")
@click.option("--stream-batch-sizes", default="8,32,64", show_default=True, help="batch sizes for --stream")
@click.option("--stream-batches", default=8, show_default=True, help="batches per size for --stream")
@click.option("--prepare-workers", type=int, default=None, help="prepare threads (default: min(8, cores))")
@click.option("--preprocess-on-device", is_flag=True, help="the processor's torchvision backend on the GPU")
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
    resolution: int | None,
    vision_attention: str,
    compile_blocks: bool | None,
    seed: bool | None,
    stream: bool,
    stream_batch_sizes: str,
    stream_batches: int,
    prepare_workers: int | None,
    preprocess_on_device: bool,
) -> None:
    """Seed (batch 1, generate, keyword parse) vs ours (batched logit verdict) vs stock vision
    attention; with --real-size/--stream, a stream of batches: one JSON line last."""
    if batch_size < 1 or n_images < 1 or ours_passes < 1 or stream_batches < 1:
        raise click.BadParameter(
            "--batch-size, --images, --ours-passes and --stream-batches must be at least 1"
        )
    if resolution is not None and (resolution < 28 or resolution % 28):
        raise click.BadParameter(f"--resolution must be a positive multiple of 28, got {resolution}")
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
        resolution=resolution,
        vision_attention=vision_attention,
        compile_blocks=compile_blocks,
        seed=seed,
        stream=stream,
        stream_batch_sizes=_sizes(stream_batch_sizes),
        stream_batches=stream_batches,
        prepare_workers=prepare_workers,
        preprocess_on_device=preprocess_on_device,
    )
    sys.stderr.flush()
    click.echo(json.dumps(result))


if __name__ == "__main__":  # a plain checkout: python -m misinfo.bench.detector ...
    bench_detector()
