"""How the detector is loaded and run: the options a profile fills in, and the device/dtype helpers
that both loading and profiles need (kept apart so neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


class FallbackWarning(UserWarning):
    """An option asked for (by a profile or by the caller) could not be used here; a fallback was."""


@dataclass
class LoadOptions:
    """How to load and run the model; an optimization profile fills these in."""

    device: str = "auto"
    dtype: str = "auto"  # auto, float32, bfloat16, float16
    attn_implementation: str = "sdpa"  # eager, sdpa, flash_attention_2
    adapter_path: str | None = None
    merge_adapter: bool = False
    compile: bool = False
    quantize_int8: bool = False
    num_threads: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    # The vision tower's attention (detector.vision_attention): auto = varlen on a GPU in bf16/fp16,
    # batched elsewhere; varlen, batched, stock (transformers' per-window path) as asked.
    vision_attention: str = "auto"
    # torch.compile(dynamic=True) of vision blocks' MLP/norms and decoder layers; None = on a GPU only.
    compile_blocks: bool | None = None
    # Verdict resolution (detector.resolution): side x side pixels, capped by the processor's bounds;
    # 0 = the processor's own resize; keep_aspect = about side^2 pixels in a few aspect buckets.
    verdict_side: int = 448
    keep_aspect: bool = False
    # Run the processor's torchvision backend on the model's device (a GPU) instead of the CPU.
    preprocess_on_device: bool = False
    # Temperature of the class softmax (detector.calibration): None = the calibration.json stored
    # with the weights (the adapter's when one is loaded, else the checkpoint's), T = 1 without one.
    temperature: float | None = None
    # compile_backend: torch.compile backend ("inductor"; tests use "eager" to stay fast on a CPU).
    extra: dict[str, Any] = field(default_factory=dict)
    # An optimization profile (path or parsed JSON): its choice overrides dtype, attention, compile,
    # int8, merge and threads when it was measured on this device kind (or ``force_profile``).
    profile: str | Path | dict[str, Any] | None = None
    force_profile: bool = False


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}") from None


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_supported(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the ops the model needs (matmul, softmax, norm, conv) run in ``dtype`` on ``device``."""
    try:
        x = torch.randn(2, 3, 4, 4, device=device).to(dtype)
        torch.nn.functional.conv2d(x, torch.ones(2, 3, 2, 2, device=device, dtype=dtype))
        h = x.flatten(1) @ torch.ones(48, 8, device=device, dtype=dtype)
        torch.softmax(torch.nn.functional.layer_norm(h, (8,)), dim=-1)
        return True
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def flash_attention_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True
