"""What ``misinfo optimize`` measures: the candidate configurations and the eval images."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

RANK_BY = "images_per_s_median"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class OptimizeError(RuntimeError):
    """Optimization cannot run or cannot conclude (no eval images, baseline failed, ...)."""


@dataclass(frozen=True)
class Candidate:
    """One configuration to measure; ``options()`` is the profile's ``options`` object."""

    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    compile: bool = False
    quantize_int8: bool = False
    merge_adapter: bool = False
    batch_size: int = 8
    num_threads: int | None = None
    # The vision tower's attention (detector.vision_attention) and compiled blocks; the defaults are
    # transformers' own path and no compile, so the baseline stays the unoptimized model.
    vision_attention: str = "stock"
    compile_blocks: bool = False

    @property
    def id(self) -> str:
        short = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(self.dtype, self.dtype)
        attn = {"flash_attention_2": "fa2"}.get(self.attn_implementation, self.attn_implementation)
        parts = [short, attn, f"b{self.batch_size}"]
        if self.num_threads:
            parts.append(f"t{self.num_threads}")
        if self.compile:
            parts.append("compile")
        if self.quantize_int8:
            parts.append("int8")
        if self.merge_adapter:
            parts.append("merged")
        if self.vision_attention != "stock":
            parts.append(self.vision_attention)
        if self.compile_blocks:
            parts.append("blocks")
        return "-".join(parts)

    def options(self) -> dict[str, Any]:
        return asdict(self)


def eval_images(eval_set: str | Path | None, max_images: int | None = None) -> list[Path]:
    """The image files of an eval-set directory (recursive, sorted); refuses a missing or empty one."""
    if not eval_set:
        raise OptimizeError("an eval set is required: --eval-set DIR, a directory of images to measure on")
    root = Path(eval_set)
    if not root.is_dir():
        raise OptimizeError(f"eval set {root} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise OptimizeError(f"eval set {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files[:max_images] if max_images else files


def default_grid(
    device: str = "cpu",
    *,
    batch_size: int = 8,
    batch_sizes: Iterable[int] = (1, 16),
    dtypes: Iterable[str] | None = None,
    attns: Iterable[str] | None = None,
    threads: Iterable[int] | None = None,
    compile: bool | None = None,
    int8: bool = True,
    vision: Iterable[str] | None = None,
    adapter: bool = False,
    full: bool = False,
) -> list[Candidate]:
    """The candidates for ``device``; the baseline (float32, eager, ``batch_size``) comes first.

    By default one factor varies at a time around the reference (float32, sdpa, ``batch_size``, all
    cores); ``full`` takes the cartesian product instead. Options this machine cannot run are left out
    (fp16/bf16 where unsupported, flash-attention without a GPU and the package, int8 off CPU);
    ``compile=None`` means on for a GPU, off on a CPU, where compiling Qwen2.5-VL takes minutes.
    ``vision`` names the vision attentions to try beside the stock one (batched, varlen; default both
    where they run); with compile, each also with compiled blocks.
    """
    import torch

    from detector.options import dtype_supported, flash_attention_available, resolve_device

    dev = resolve_device(device)
    cores = os.cpu_count() or 1
    all_threads = cores if dev.type == "cpu" else None
    want_dtypes = list(dtypes or ("float32", "bfloat16", "float16"))
    ok_dtypes = [
        d
        for d in want_dtypes
        if d == "float32" or dtype_supported({"bfloat16": torch.bfloat16, "float16": torch.float16}[d], dev)
    ]
    want_attns = list(attns or ("eager", "sdpa", "flash_attention_2"))
    ok_attns = [a for a in want_attns if a != "flash_attention_2" or flash_attention_available(dev)]
    thread_list = sorted({t for t in (threads or ([cores, 1] if cores > 1 else [cores])) if 1 <= t <= cores})
    if dev.type != "cpu":
        thread_list = []
    do_compile = dev.type == "cuda" if compile is None else compile
    do_int8 = int8 and dev.type == "cpu"

    baseline = Candidate("float32", "eager", batch_size=batch_size, num_threads=all_threads)
    ref = Candidate(
        "float32", "sdpa" if "sdpa" in ok_attns else "eager", batch_size=batch_size, num_threads=all_threads
    )
    grid: list[Candidate] = [baseline]
    if full:
        for d in ok_dtypes:
            for a in ok_attns:
                for b in sorted({batch_size, *batch_sizes}):
                    for t in thread_list or [None]:  # type: ignore[list-item]
                        for c in sorted({False, do_compile}):
                            for q in sorted({False, do_int8 and d == "float32"}):
                                for m in sorted({False, adapter}):
                                    grid.append(Candidate(d, a, c, q, m, b, t))
    else:
        # One factor at a time: each candidate is the reference with one field changed (an option
        # added to Candidate gets its row here as one more ``replace(ref, ...)``).
        grid.append(ref)
        grid += [replace(ref, dtype=d) for d in ok_dtypes]
        grid += [replace(ref, attn_implementation=a) for a in ok_attns]
        grid += [replace(ref, batch_size=b) for b in batch_sizes]
        grid += [replace(ref, num_threads=t) for t in thread_list]
        if do_compile:
            grid.append(replace(ref, compile=True))
        if do_int8:
            grid.append(replace(ref, quantize_int8=True))
        if adapter:
            grid.append(replace(ref, merge_adapter=True))
            if "bfloat16" in ok_dtypes:
                grid.append(replace(ref, dtype="bfloat16", merge_adapter=True))
    grid += _vision_rows(
        ref, dev, ok_dtypes, do_compile, set(vision if vision is not None else ("batched", "varlen"))
    )
    unique: dict[str, Candidate] = {}
    for cand in grid:
        unique.setdefault(cand.id, cand)
    return list(unique.values())


def _vision_rows(
    ref: Candidate, dev: Any, ok_dtypes: list[str], do_compile: bool, wanted: set[str]
) -> list[Candidate]:
    """The vision attention in one call per layer, and compiled blocks (with ``do_compile``): batched
    everywhere; on a GPU also varlen in bf16/fp16, and varlen with compiled blocks (issue 11's best)."""
    from detector.vision_attention import varlen_unavailable

    unknown = wanted - {"stock", "batched", "varlen"}
    if unknown:
        raise OptimizeError(f"vision attention must be among stock, batched, varlen; got {sorted(unknown)}")
    rows: list[Candidate] = []
    if "batched" in wanted:
        rows.append(replace(ref, vision_attention="batched"))
    half = next((d for d in ("bfloat16", "float16") if d in ok_dtypes), None)
    if "varlen" in wanted and dev.type == "cuda" and half:
        import torch

        if varlen_unavailable(dev, getattr(torch, half)) is None:
            rows.append(replace(ref, dtype=half, vision_attention="varlen"))
    if do_compile:
        rows += [replace(r, compile_blocks=True) for r in list(rows)]
    return rows
