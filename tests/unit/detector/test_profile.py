"""Profiles: schema, applying at load, fallbacks that warn instead of crashing, other device kinds."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch

from detector.model import Detector
from detector.options import LoadOptions
from detector.profile import (
    PROFILE_SCHEMA,
    SCHEMA_VERSION,
    FallbackWarning,
    ProfileError,
    apply_profile,
    read_profile,
    validate_profile,
    write_profile,
)


def test_schema_accepts_a_good_profile_and_names_what_is_wrong(tmp_path, make_profile) -> None:
    doc = make_profile()
    validate_profile(doc)
    path = write_profile(doc, tmp_path / "p.json")
    assert read_profile(path) == doc
    assert PROFILE_SCHEMA["properties"]["schema_version"]["const"] == SCHEMA_VERSION

    for mutate, where in [
        (lambda d: d.pop("machine"), "machine"),
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d["choice"]["options"].update(dtype="float8"), "choice"),
        (lambda d: d["candidates"][0]["metrics"].update(label_agreement=1.5), "candidates"),
        (lambda d: d["candidates"][0]["options"].pop("batch_size"), "candidates"),
    ]:
        bad = copy.deepcopy(doc)
        mutate(bad)
        with pytest.raises(ProfileError) as info:
            validate_profile(bad)
        assert where in str(info.value)
    with pytest.raises(ProfileError):
        write_profile({"schema_version": 1}, tmp_path / "bad.json")


def test_profile_applies_at_load(tiny_ckpt, tmp_path, make_profile) -> None:
    path = write_profile(
        make_profile(dtype="bfloat16", attn_implementation="eager", batch_size=4), tmp_path / "p.json"
    )
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FallbackWarning)  # nothing may fall back here
            det = Detector.load(tiny_ckpt, LoadOptions(device="cpu", profile=str(path)))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)  # the thread count is process-wide
    assert next(det.model.parameters()).dtype == torch.bfloat16
    assert det.model.config._attn_implementation == "eager"
    assert det.profile_id == "prof-test" and det.batch_size == 4
    assert det.load_report["profile"]["candidate"] == "b" and det.load_report["fallbacks"] == []
    assert det.load_report["options"].num_threads == 1
    probs = det.class_probabilities([__import__("PIL.Image").Image.new("RGB", (64, 64))])
    torch.testing.assert_close(probs.sum(-1), torch.ones(1))


def test_profile_from_another_device_kind_is_not_applied(tiny_ckpt, make_profile) -> None:
    doc = make_profile(kind="cuda:NVIDIA H100 80GB HBM3", dtype="bfloat16")
    opts = LoadOptions(device="cpu", dtype="float32")
    with pytest.warns(FallbackWarning, match="measured on 'cuda:NVIDIA H100"):
        same, summary = apply_profile(opts, doc)
    assert summary is None and same.dtype == "float32"
    with pytest.warns(FallbackWarning, match="not applied"):
        det = Detector.load(tiny_ckpt, LoadOptions(device="cpu", profile=doc))
    assert det.profile_id == "default"
    assert next(det.model.parameters()).dtype == torch.float32
    with pytest.warns(FallbackWarning, match="forced"):
        forced, summary = apply_profile(opts, doc, force=True)
    assert summary is not None and forced.dtype == "bfloat16"


def test_unreadable_or_choiceless_profile_warns_and_loads_defaults(tiny_ckpt, tmp_path, make_profile) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.warns(FallbackWarning, match="cannot read profile"):
        _, summary = apply_profile(LoadOptions(device="cpu"), broken)
    assert summary is None
    doc = make_profile()
    doc["choice"] = None
    with pytest.warns(FallbackWarning, match="no choice"):
        _, summary = apply_profile(LoadOptions(device="cpu"), doc)
    assert summary is None
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"schema_version": 1}))
    with pytest.warns(FallbackWarning, match="does not match schema"):
        det = Detector.load(tiny_ckpt, LoadOptions(device="cpu", profile=invalid))
    assert det.profile_id == "default"


def test_options_unsupported_here_fall_back_with_warnings(tiny_ckpt, tiny_detector, make_profile) -> None:
    # flash-attention is not installed and there is no GPU on a unit-test machine.
    assert not torch.cuda.is_available()
    doc = make_profile(attn_implementation="flash_attention_2", num_threads=10_000)
    with pytest.warns(FallbackWarning) as record:
        det = Detector.load(tiny_ckpt, LoadOptions(device="cpu", profile=doc))
    messages = " | ".join(str(w.message) for w in record)
    assert "flash_attention_2" in messages and "num_threads" in messages
    assert det.model.config._attn_implementation == "sdpa"
    assert len(det.load_report["fallbacks"]) == 2

    with pytest.warns(FallbackWarning, match="not available here; using cpu"):
        det = Detector.load(tiny_ckpt, LoadOptions(device="cuda", dtype="float32"))
    assert det.device.type == "cpu"

    with pytest.warns(FallbackWarning, match="needs float32 weights"):
        det = Detector.load(tiny_ckpt, LoadOptions(device="cpu", dtype="bfloat16", quantize_int8=True))
    assert det.load_report["options"].quantize_int8 is False


def test_failing_compile_falls_back_to_eager_with_same_scores(
    tiny_ckpt, tiny_detector, images, monkeypatch
) -> None:
    def broken_compile(fn, **kwargs):  # type: ignore[no-untyped-def]
        def run(*a, **k):  # type: ignore[no-untyped-def]
            raise RuntimeError("no C compiler on this machine")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(FallbackWarning, match="torch.compile failed"):
        det = Detector.load(tiny_ckpt, LoadOptions(device="cpu", dtype="float32", compile=True))
    assert det.load_report["options"].compile is False
    torch.testing.assert_close(det.class_probabilities(images), tiny_detector.class_probabilities(images))


def test_int8_quantization_runs_and_stays_close(tiny_ckpt, tiny_detector, images) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's deprecation notice for quantized tensors
        det = Detector.load(tiny_ckpt, LoadOptions(device="cpu", dtype="float32", quantize_int8=True))
    assert det.load_report["options"].quantize_int8 is True
    assert any(
        "Quantized" in type(m).__name__ or "quantized" in type(m).__module__ for m in det.model.modules()
    )
    diff = (det.class_probabilities(images) - tiny_detector.class_probabilities(images)).abs().max()
    assert diff < 0.05
