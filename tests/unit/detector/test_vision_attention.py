"""The vision tower's attention in one call per layer gives transformers' per-window results."""

from __future__ import annotations

import warnings

import pytest
import torch

from detector import vision_attention as va
from detector.model import Detector
from detector.options import FallbackWarning, LoadOptions
from detector.resolution import Resolution


def _cpu(**kw) -> LoadOptions:  # type: ignore[no-untyped-def]
    return LoadOptions(device="cpu", dtype="float32", **kw)


@pytest.fixture(scope="module")
def det448(tiny_ckpt):  # type: ignore[no-untyped-def]
    """The tiny model with its processor opened up to 448² (64 windows of 16 patches per image)."""
    return Detector.load(tiny_ckpt, _cpu(max_pixels=448 * 448, verdict_side=448))


def _probs(det: Detector, kind: str, images) -> torch.Tensor:  # type: ignore[no-untyped-def]
    previous = va.set_vision_attention(det.model, kind)
    try:
        return det.class_probabilities(images)
    finally:
        va.set_vision_attention(det.model, previous)


@pytest.mark.parametrize("n", [1, 8])
@pytest.mark.parametrize(
    "resolution",
    [Resolution(448), Resolution(0), Resolution(448, keep_aspect=True)],
    ids=["uniform-448", "mixed-processor-sizes", "keep-aspect"],
)
def test_batched_matches_stock(det448, images, n, resolution) -> None:  # type: ignore[no-untyped-def]
    det = Detector(det448.model, det448.processor, resolution=resolution)
    batch = (images * 2)[:n]
    if resolution.side == 0 and n > 1:
        sizes = {p.size for p in det.prepare(batch).images}
        assert len(sizes) > 1, "the mixed case must really mix sizes"
    stock = _probs(det, "stock", batch)
    ours = _probs(det, "batched", batch)
    assert (ours - stock).abs().max().item() < 1e-5


def test_batched_attention_pads_windows_of_different_lengths() -> None:
    """Padded windows with a key mask equal one SDPA call per window (what transformers does)."""
    torch.manual_seed(0)
    lengths = [16, 7, 16, 3, 12]
    heads, dim, seq = 2, 8, sum(lengths)
    q, k, v = (torch.randn(1, heads, seq, dim) for _ in range(3))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    module = torch.nn.Module().eval()
    out, _ = va.batched_attention(module, q, k, v, scaling=0.3, cu_seq_lens_q=cu, max_length_q=16)
    parts = [
        torch.nn.functional.scaled_dot_product_attention(
            q[..., a:b, :], k[..., a:b, :], v[..., a:b, :], scale=0.3
        )
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)
    ]
    expected = torch.cat(parts, dim=2).transpose(1, 2)  # (1, seq, heads, dim), as transformers returns
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_only_the_vision_config_changes(tiny_ckpt) -> None:  # type: ignore[no-untyped-def]
    det = Detector.load(tiny_ckpt, _cpu())
    assert det.load_report["vision_attention"] == "batched"  # auto on a CPU
    assert va.vision_tower(det.model).config._attn_implementation == va.BATCHED_NAME
    assert det.model.config.text_config._attn_implementation == "sdpa"
    assert va.set_vision_attention(det.model, "stock") == "batched"
    assert va.vision_tower(det.model).config._attn_implementation == "sdpa"
    assert va.current_vision_attention(det.model) == "stock"


def test_varlen_on_a_cpu_falls_back_to_batched(tiny_ckpt) -> None:  # type: ignore[no-untyped-def]
    with pytest.warns(FallbackWarning, match="varlen vision attention needs a CUDA GPU"):
        det = Detector.load(tiny_ckpt, _cpu(vision_attention="varlen"))
    assert det.load_report["vision_attention"] == "batched"
    assert det.load_report["options"].vision_attention == "batched"
    assert any("varlen" in f for f in det.load_report["fallbacks"])


def test_a_failing_batched_attention_falls_back_to_stock(tiny_ckpt, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = torch.nn.functional.scaled_dot_product_attention

    def refuses_batches_of_windows(q, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Stock and the language model call with a batch of one here; the batched path with one row per window.
        if q.dim() == 4 and q.shape[0] > 1:
            raise RuntimeError("no kernel for this")
        return real(q, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", refuses_batches_of_windows)
    with pytest.warns(FallbackWarning, match="batched vision attention failed its first forward pass"):
        det = Detector.load(tiny_ckpt, _cpu(vision_attention="batched"))
    assert det.load_report["vision_attention"] == "stock"
    assert va.current_vision_attention(det.model) == "stock"


def test_unknown_choice_is_refused(tiny_ckpt) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="vision_attention must be one of"):
        Detector.load(tiny_ckpt, _cpu(vision_attention="fast"))


def test_profile_records_and_applies_the_vision_attention(tiny_ckpt, make_profile) -> None:  # type: ignore[no-untyped-def]
    from detector.profile import validate_profile

    doc = make_profile(attn_implementation="sdpa", vision_attention="stock", compile_blocks=False)
    validate_profile(doc)
    det = Detector.load(tiny_ckpt, _cpu(profile=doc))
    assert det.load_report["profile"]["vision_attention"] == "stock"
    assert det.load_report["vision_attention"] == "stock"
    # A profile written before the field existed still reads; the loader's default applies.
    old = make_profile(attn_implementation="sdpa")
    assert "vision_attention" not in old["choice"]["options"]
    validate_profile(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        det = Detector.load(tiny_ckpt, _cpu(profile=old))
    assert det.load_report["vision_attention"] == "batched"


def test_compiled_blocks_give_the_same_probabilities(tiny_ckpt, images) -> None:  # type: ignore[no-untyped-def]
    """Off by default on a CPU; asked for, each block compiles (the eager backend keeps this fast)."""
    from detector.compile_blocks import compiled_count

    plain = Detector.load(tiny_ckpt, _cpu())
    assert plain.load_report["compile_blocks"] is False and compiled_count(plain.model) == 0
    det = Detector.load(tiny_ckpt, _cpu(compile_blocks=True, extra={"compile_backend": "eager"}))
    assert det.load_report["compile_blocks"] is True and det.load_report["warmup_s"] is not None
    assert compiled_count(det.model) == 2 * 3 + 2  # 2 vision blocks (mlp, norm1, norm2), 2 decoder layers
    diff = (det.class_probabilities(images) - plain.class_probabilities(images)).abs().max().item()
    assert diff < 1e-5


def test_settings_reach_the_loaded_detector(tiny_ckpt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.config import load_settings
    from detector.loading import compile_blocks_option, load_detector

    env = {
        "MISINFO_MODEL_PATH": str(tiny_ckpt),
        "MISINFO_STATE_DIR": str(tmp_path),
        "MISINFO_DEVICE": "cpu",
        "MISINFO_VERDICT_SIDE": "0",
        "MISINFO_VISION_ATTENTION": "stock",
        "MISINFO_COMPILE_BLOCKS": "off",
    }
    det = load_detector(load_settings(env))
    assert det.resolution == Resolution(0)
    assert det.load_report["vision_attention"] == "stock" and det.load_report["compile_blocks"] is False
    assert [compile_blocks_option(v) for v in ("auto", "on", "OFF")] == [None, True, False]
    with pytest.raises(ValueError, match="MISINFO_COMPILE_BLOCKS='sometimes'"):
        compile_blocks_option("sometimes")
