"""Base model plus a PEFT LoRA adapter, served merged or unmerged, with the same scores."""

from __future__ import annotations

import pytest
import torch

from detector.model import Detector
from detector.options import LoadOptions


@pytest.fixture(scope="module")
def adapter_dir(tiny_ckpt, tmp_path_factory):  # type: ignore[no-untyped-def]
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(1)
    base = AutoModelForImageTextToText.from_pretrained(str(tiny_ckpt), dtype=torch.float32)
    # init_lora_weights=False: a non-zero update, so the adapter visibly changes the scores.
    cfg = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    get_peft_model(base, cfg).save_pretrained(out)
    return out


def test_adapter_merged_and_unmerged_agree(tiny_ckpt, tiny_detector, adapter_dir, images) -> None:
    unmerged = Detector.load(
        tiny_ckpt, LoadOptions(device="cpu", dtype="float32", adapter_path=str(adapter_dir))
    )
    merged = Detector.load(
        tiny_ckpt,
        LoadOptions(device="cpu", dtype="float32", adapter_path=str(adapter_dir), merge_adapter=True),
    )
    assert type(unmerged.model).__name__ == "PeftModel"
    assert type(merged.model).__name__ != "PeftModel" and merged.load_report["options"].merge_adapter
    p_un, p_m = unmerged.class_probabilities(images), merged.class_probabilities(images)
    torch.testing.assert_close(p_un, p_m, atol=1e-4, rtol=1e-3)
    base = tiny_detector.class_probabilities(images)
    assert (p_un - base).abs().max() > 1e-3, "the adapter must change the scores"


def test_profile_decides_merge_only_when_an_adapter_is_given(tiny_ckpt, adapter_dir, make_profile) -> None:
    from detector.profile import apply_profile

    doc = make_profile(merge_adapter=True)
    with_adapter, _ = apply_profile(LoadOptions(device="cpu", adapter_path=str(adapter_dir)), doc)
    without, _ = apply_profile(LoadOptions(device="cpu"), doc)
    assert with_adapter.merge_adapter is True and without.merge_adapter is False
