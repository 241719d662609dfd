"""Verdict resolution, and detection split into prepare (threads, no model lock) and score (the model)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from PIL import Image

from detector.model import Detector, Prepared
from detector.resolution import UNIT, Resolution, encode, for_processor, resize_for_verdict


def test_default_is_448_capped_to_the_tiny_checkpoints_112(tiny_detector) -> None:  # type: ignore[no-untyped-def]
    assert Resolution().side == 448
    assert tiny_detector.resolution == Resolution(112)
    assert tiny_detector.load_report["resolution"] == {"side": 112, "keep_aspect": False}
    assert for_processor(Resolution(0), tiny_detector.processor) == Resolution(0)


def test_resolution_shapes() -> None:
    im = Image.new("L", (300, 40), 9)
    square = resize_for_verdict(im, Resolution(448))
    assert square.size == (448, 448) and square.mode == "RGB"
    assert resize_for_verdict(im, Resolution(0)).size == (300, 40)
    aspect = Resolution(448, keep_aspect=True)
    wide = resize_for_verdict(im, aspect)
    assert wide.size in aspect.shapes() and wide.size[0] > wide.size[1]
    assert resize_for_verdict(wide, aspect) is wide  # already there: unchanged
    for w, h in aspect.shapes():
        assert w % UNIT == 0 and h % UNIT == 0 and w * h <= 448 * 448
    with pytest.raises(ValueError, match="multiple of 28"):
        Resolution(450)


def test_detect_is_score_of_prepare(tiny_detector, images) -> None:  # type: ignore[no-untyped-def]
    prepared = tiny_detector.prepare(images)
    assert isinstance(prepared, Prepared) and len(prepared) == len(images)
    assert len(prepared.parts) == 1, "a uniform batch is one forward pass"
    assert {im.size for im in prepared.images} == {(112, 112)}
    assert tiny_detector.score(prepared) == tiny_detector.detect(images)
    assert tiny_detector.score(tiny_detector.prepare([])) == []


def test_prepare_on_many_threads_matches_one_thread(tiny_detector, images) -> None:  # type: ignore[no-untyped-def]
    batches = [images[i:] + images[:i] for i in range(6)]
    serial = [tiny_detector.prepare(b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(tiny_detector.prepare, batches))
    for a, b in zip(serial, parallel, strict=True):
        for (ia, ea), (ib, eb) in zip(a.parts, b.parts, strict=True):
            assert ia == ib
            for key in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw"):
                assert torch.equal(ea[key], eb[key])


def test_keep_aspect_scores_each_grid_apart(tiny_detector, images) -> None:  # type: ignore[no-untyped-def]
    det = Detector(tiny_detector.model, tiny_detector.processor, resolution=Resolution(112, keep_aspect=True))
    prepared = det.prepare(images)
    assert len(prepared.parts) > 1
    assert sorted(i for idx, _ in prepared.parts for i in idx) == list(range(len(images)))
    for _, enc in prepared.parts:
        assert len({tuple(g) for g in enc["image_grid_thw"].tolist()}) == 1
    together = det.class_probabilities(images)
    alone = torch.cat([det.class_probabilities([im]) for im in images])
    assert (together - alone).abs().max().item() < 1e-5


def test_training_encodes_the_pixels_serving_judges(tiny_detector, images) -> None:  # type: ignore[no-untyped-def]
    from trainer.data import Collator

    collator = Collator(tiny_detector.processor)
    assert collator.resolution == tiny_detector.resolution
    batch = collator([{"image": im, "answer": "Verdict: authentic\nReasons: x"} for im in images[:3]])
    served = tiny_detector.prepare(images[:3]).parts[0][1]
    assert torch.equal(batch["pixel_values"], served["pixel_values"])
    assert torch.equal(batch["image_grid_thw"], served["image_grid_thw"])
    direct = encode(tiny_detector.processor, images[:3], ["x"] * 3, tiny_detector.resolution)
    assert torch.equal(direct["pixel_values"], served["pixel_values"])
