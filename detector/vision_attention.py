"""Attention for Qwen2.5-VL's vision tower in one call per layer instead of one per window per image.

With ``sdpa``, transformers' vision attention splits the packed sequence by ``cu_seqlens`` and calls
attention once per window per image (a 448² image has 16 windows of 64 patches: a batch of 32 makes
512 small calls per windowed layer). An attention function registered with transformers'
``AttentionInterface`` under a name that contains "flash" is handed ``cu_seq_lens_q``/``max_length_q``
and the whole packed sequence instead; the two functions here use that:

- ``varlen``: :func:`torch.nn.attention.varlen.varlen_attn` (PyTorch's variable-length flash
  attention; CUDA, bfloat16/float16 only): the whole batch in one kernel call.
- ``batched``: one :func:`torch.nn.functional.scaled_dot_product_attention` over the windows laid out
  as a batch. Equal-length windows (every image of one size) are a view, no copy; windows of
  different lengths (mixed sizes, edge windows) are padded to the longest with a key mask, which is
  exact: a masked key gets zero weight.
- ``stock``: what the model was loaded with (transformers' own per-window path).

Only the vision config is switched (:func:`set_vision_attention`); the language model keeps ``sdpa``.
Both functions look the torch functions up at call time (``torch.nn.functional.…``), so a wrapper
put there (the detector benchmark counts calls that way) sees them.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

CHOICES = ("auto", "varlen", "batched", "stock")
KINDS = ("varlen", "batched", "stock")
# Transformers hands cu_seqlens to an implementation only when "flash" is in its name
# (``is_flash_attention_requested``); neither name may contain "sdpa" (that triggers sdpa's own checks).
VARLEN_NAME = "misinfo_flash_varlen"
BATCHED_NAME = "misinfo_flash_batched"
_NAMES = {"varlen": VARLEN_NAME, "batched": BATCHED_NAME}
_STOCK_ATTR = "_misinfo_stock_attn"


def _packed(t: torch.Tensor) -> torch.Tensor:
    """(1, heads, seq, dim) as transformers hands it -> (seq, heads, dim), contiguous for the kernel."""
    return t[0].transpose(0, 1).contiguous()


def varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    max_length_q: int | None = None,
    max_length_k: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Every window of every image in one ``varlen_attn`` call; returns (1, seq, heads, dim)."""
    from torch.nn.attention import varlen

    if cu_seq_lens_q is None:
        raise ValueError("varlen vision attention needs cu_seq_lens_q (is the name missing 'flash'?)")
    cu_k = cu_seq_lens_q if cu_seq_lens_k is None else cu_seq_lens_k
    lengths = cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]
    max_q = int(max_length_q) if max_length_q is not None else int(lengths.max())
    max_k = int(max_length_k) if max_length_k is not None else max_q
    q, k, v = _packed(query), _packed(key), _packed(value)
    head_dim = q.shape[-1]
    extra: dict[str, Any] = {}
    if scaling is not None and not math.isclose(scaling, head_dim**-0.5, rel_tol=1e-6):
        if _varlen_takes_scale():
            extra["scale"] = scaling
        else:  # torch 2.9/2.10 have no ``scale``: fold it into the queries (the kernel uses 1/sqrt(d))
            q = q * (scaling * math.sqrt(head_dim))
    out: torch.Tensor = varlen.varlen_attn(  # type: ignore[assignment]  # no return_aux: one tensor
        q, k, v, cu_seq_lens_q.to(torch.int32), cu_k.to(torch.int32), max_q, max_k, **extra
    )
    return out.unsqueeze(0), None


def batched_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    max_length_q: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Every window as one row of a single SDPA batch; returns (1, seq, heads, dim)."""
    if cu_seq_lens_q is None:
        raise ValueError("batched vision attention needs cu_seq_lens_q (is the name missing 'flash'?)")
    sdpa = torch.nn.functional.scaled_dot_product_attention
    q, k, v = query[0], key[0], value[0]  # (heads, seq, dim)
    heads, seq, dim = q.shape
    lengths = cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]
    n = lengths.numel()
    longest = int(max_length_q) if max_length_q is not None else int(lengths.max())
    p = dropout if module.training else 0.0
    if n * longest == seq:
        # Lengths sum to seq and none exceeds the longest, so they are all equal: windows are a view.
        def rows(t: torch.Tensor) -> torch.Tensor:
            return t.view(heads, n, longest, dim).transpose(0, 1)

        out = sdpa(rows(q), rows(k), rows(v), dropout_p=p, scale=scaling)  # (n, heads, L, dim)
        return out.permute(0, 2, 1, 3).reshape(1, seq, heads, dim), None
    # Windows of different lengths: scatter each token to (window, position) of a padded batch.
    device = q.device
    lengths = lengths.to(device=device, dtype=torch.long)
    window = torch.repeat_interleave(torch.arange(n, device=device), lengths)
    starts = cu_seq_lens_q[:-1].to(device=device, dtype=torch.long)
    slot = window * longest + (torch.arange(seq, device=device) - starts[window])

    def padded(t: torch.Tensor) -> torch.Tensor:
        buf = t.new_zeros(n * longest, heads, dim)
        buf[slot] = t.transpose(0, 1)
        return buf.view(n, longest, heads, dim).transpose(1, 2)

    keep = (torch.arange(longest, device=device)[None, :] < lengths[:, None]).view(n, 1, 1, longest)
    out = sdpa(padded(q), padded(k), padded(v), attn_mask=keep, dropout_p=p, scale=scaling)
    out = out.transpose(1, 2).reshape(n * longest, heads, dim)[slot]
    return out.unsqueeze(0), None


_registered = False


def register() -> None:
    """Make both functions known to transformers (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface

    AttentionInterface.register(VARLEN_NAME, varlen_attention)
    AttentionInterface.register(BATCHED_NAME, batched_attention)
    _registered = True


def _varlen_takes_scale() -> bool:
    from torch.nn.attention import varlen

    return "scale" in inspect.signature(varlen.varlen_attn).parameters


def varlen_unavailable(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why ``varlen`` cannot run here, or None when it can (a tiny call is tried on the device)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return f"varlen vision attention needs a CUDA GPU ({device})"
    if dtype not in (torch.bfloat16, torch.float16):
        return f"varlen vision attention needs bfloat16 or float16 weights, not {str(dtype).removeprefix('torch.')}"
    try:
        from torch.nn.attention import varlen

        q = torch.randn(16, 2, 64, device=device, dtype=dtype)
        cu = torch.tensor([0, 8, 16], device=device, dtype=torch.int32)
        varlen.varlen_attn(q, q, q, cu, cu, 8, 8)
    except Exception as exc:  # noqa: BLE001 - an old torch, an old GPU (flash needs sm80+): any means no
        return f"varlen vision attention does not run here ({type(exc).__name__}: {exc})"
    return None


def resolve(choice: str, device: torch.device, dtype: torch.dtype) -> tuple[str, str | None]:
    """(kind to use, fallback message or None): ``auto`` is varlen where it runs, else batched."""
    if choice not in CHOICES:
        raise ValueError(f"vision_attention must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice in ("batched", "stock"):
        return choice, None
    why = varlen_unavailable(device, dtype)
    if why is None:
        return "varlen", None
    # ``auto`` choosing batched is the plan on a CPU, not a fallback; asking for varlen is.
    return "batched", (f"{why}; using batched" if choice == "varlen" else None)


def vision_tower(model: Any) -> Any | None:
    """The Qwen2.5-VL vision transformer inside ``model`` (PEFT-wrapped or quantized too), or None."""
    modules = getattr(model, "modules", None)
    if modules is None:
        return None
    for m in modules():
        if hasattr(m, "fullatt_block_indexes") and hasattr(
            getattr(m, "config", None), "_attn_implementation"
        ):
            return m
    return None


def _outer(model: Any) -> Any:
    """The outermost transformers model (the one whose config holds ``vision_config``)."""
    from transformers import PreTrainedModel

    for m in model.modules():
        if isinstance(m, PreTrainedModel) and hasattr(m.config, "vision_config"):
            return m
    raise ValueError("no Qwen2.5-VL model with a vision_config in this model")


def set_vision_attention(model: Any, kind: str) -> str:
    """Switch the vision tower's attention to ``kind`` (varlen, batched, stock); returns the previous kind.

    Only the vision config changes: the language model's attention stays what it was loaded with.
    Attention is looked up at every forward, so switching between batches is safe (not during one).
    """
    if kind not in KINDS:
        raise ValueError(f"vision attention kind must be one of {', '.join(KINDS)}, got {kind!r}")
    tower = vision_tower(model)
    if tower is None:
        raise ValueError("no Qwen2.5-VL vision tower in this model")
    register()
    config = tower.config
    if not hasattr(tower, _STOCK_ATTR):
        setattr(tower, _STOCK_ATTR, config._attn_implementation)
    previous = current_vision_attention(model)
    name = getattr(tower, _STOCK_ATTR) if kind == "stock" else _NAMES[kind]
    # Set through the outer model with a per-sub-config dict: transformers then only checks that the
    # name is registered. (Set on the tower itself, a "flash" name is taken for a hub kernel to fetch.)
    _outer(model).set_attn_implementation({"vision_config": name})
    if config._attn_implementation != name:
        raise RuntimeError(f"vision attention stayed {config._attn_implementation!r}, not {name!r}")
    return previous


def current_vision_attention(model: Any) -> str:
    """The vision tower's attention kind now: varlen, batched or stock."""
    tower = vision_tower(model)
    if tower is None:
        return "stock"
    name = tower.config._attn_implementation
    return next((k for k, v in _NAMES.items() if v == name), "stock")
