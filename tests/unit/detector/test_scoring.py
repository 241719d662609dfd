"""Verdicts come from the class-token logits at the last prompt position, one forward pass per batch."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from detector.answer import CLASSES, VERDICT_PREFIX
from detector.model import Detection, Detector, Thresholds


class LogitStub(torch.nn.Module):
    """Stands in for Qwen2.5-VL: returns chosen class logits at the last position, decoys elsewhere."""

    def __init__(self, vocab: int, class_ids: dict[str, int], rows: list[list[float]]) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.vocab, self.class_ids, self.rows = vocab, class_ids, rows
        self.calls: list[dict] = []

    def forward(self, input_ids, logits_to_keep=0, use_cache=None, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append({"input_ids": input_ids, "logits_to_keep": logits_to_keep, "use_cache": use_cache})
        b = input_ids.shape[0]
        logits = torch.zeros(b, 2, self.vocab)
        logits[:, :, 7] = 50.0  # a non-class token the model "prefers": must not matter
        for i in range(b):
            for c, value in zip(CLASSES, self.rows[i], strict=True):
                logits[i, -1, self.class_ids[c]] = value
                logits[i, 0, self.class_ids[c]] = -value  # an earlier position: must not be read
        return SimpleNamespace(logits=logits)

    def generate(self, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("no generation on the verdict path")


def _stub_detector(tiny_detector: Detector, rows: list[list[float]], **kwargs) -> tuple[Detector, LogitStub]:
    stub = LogitStub(len(tiny_detector.tokenizer), tiny_detector.class_ids, rows)
    return Detector(stub, tiny_detector.processor, **kwargs), stub


def test_scores_are_softmax_of_class_token_logits(tiny_detector, images) -> None:
    rows = [[2.0, 0.0, -1.0], [0.0, 3.0, 1.0], [-2.0, -2.0, 4.0], [1.0, 1.0, 1.0]]
    det, stub = _stub_detector(tiny_detector, rows)
    probs = det.class_probabilities(images[:4])
    expected = torch.softmax(torch.tensor(rows), dim=-1)
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4))
    assert len(stub.calls) == 1, "one forward pass for the whole batch"
    call = stub.calls[0]
    assert call["logits_to_keep"] == 1 and call["use_cache"] is False
    # Every row, left-padded, ends with the forced prefix "Verdict:" (the class word comes next).
    prefix = tiny_detector.tokenizer.encode(VERDICT_PREFIX, add_special_tokens=False)
    assert call["input_ids"][:, -len(prefix) :].tolist() == [prefix] * 4


def test_class_order_maps_to_labels(tiny_detector, images) -> None:
    det, _ = _stub_detector(tiny_detector, [[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 9.0]])
    results = det.detect(images[:3])
    assert [r.label for r in results] == list(CLASSES)
    for r in results:
        assert set(r.scores) == set(CLASSES)
        assert math.isclose(sum(r.scores.values()), 1.0, rel_tol=1e-6)
        assert r.explanation == ""


def test_uncertain_and_flagged_follow_thresholds(tiny_detector, images) -> None:
    # P = (0.6, 0.3, 0.1), (0.2, 0.45, 0.35), (0.4, 0.35, 0.25) via log-probabilities as logits.
    ps = [[0.6, 0.3, 0.1], [0.2, 0.45, 0.35], [0.4, 0.35, 0.25]]
    rows = [[math.log(p) for p in r] for r in ps]
    det, _ = _stub_detector(
        tiny_detector, rows, thresholds=Thresholds(uncertain_below=0.5, flag_threshold=0.5)
    )
    got = [(r.label, r.flagged) for r in det.detect(images[:3])]
    # 1: authentic, fake 0.4 < 0.5; 2: top 0.45 < 0.5 -> uncertain (flagged); 3: uncertain, fake 0.6.
    assert got == [("authentic", False), ("uncertain", True), ("uncertain", True)]

    det.thresholds = Thresholds(uncertain_below=0.39, flag_threshold=0.79)
    got = [(r.label, r.flagged) for r in det.detect(images[:3])]
    # 2: manipulated (0.45 >= 0.39), fake 0.8 >= 0.79 -> flagged; 3: authentic 0.4, fake 0.6 -> not flagged.
    assert got == [("authentic", False), ("manipulated", True), ("authentic", False)]


def test_thresholds_reject_out_of_range() -> None:
    with pytest.raises(ValueError):
        Thresholds(uncertain_below=1.5)
    with pytest.raises(ValueError):
        Thresholds(flag_threshold=-0.1)


def test_real_model_scores_sum_to_one(tiny_detector, images) -> None:
    probs = tiny_detector.class_probabilities(images)
    assert probs.shape == (len(images), len(CLASSES))
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(images)))
    assert (probs > 0).all()


def test_batch_and_single_agree_across_sizes(tiny_detector, images) -> None:
    batch = tiny_detector.class_probabilities(images)
    single = torch.cat([tiny_detector.class_probabilities([im]) for im in images])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-4)
    reordered = tiny_detector.class_probabilities(images[::-1])
    torch.testing.assert_close(reordered, batch.flip(0), atol=1e-5, rtol=1e-4)


def test_empty_batch(tiny_detector) -> None:
    assert tiny_detector.class_probabilities([]).shape == (0, len(CLASSES))
    assert tiny_detector.detect([]) == []
    assert tiny_detector.explain([], []) == []


def _detector_with(tiny_detector: Detector, thresholds: Thresholds) -> Detector:
    return Detector(tiny_detector.model, tiny_detector.processor, thresholds=thresholds, explain_max_tokens=6)


def test_explanations_only_when_asked_and_only_for_flagged(tiny_detector, images, monkeypatch) -> None:
    probs = tiny_detector.class_probabilities(images)
    fake = (probs[:, 1] + probs[:, 2]).tolist()
    cut = sorted(fake)[len(fake) // 2]  # about half the images reach it
    det = _detector_with(tiny_detector, Thresholds(uncertain_below=0.0, flag_threshold=cut))

    generate_calls: list[int] = []
    real_generate = det.model.generate

    def counting_generate(**kwargs):  # type: ignore[no-untyped-def]
        generate_calls.append(kwargs["input_ids"].shape[0])
        return real_generate(**kwargs)

    monkeypatch.setattr(det.model, "generate", counting_generate)

    plain = det.detect(images)
    assert generate_calls == [], "no generation unless asked"
    assert all(r.explanation == "" for r in plain)
    flagged = [i for i, r in enumerate(plain) if r.flagged]
    assert 0 < len(flagged) < len(images)

    explained = det.detect(images, explain=True)
    assert generate_calls == [len(flagged)], "one batched generation over the flagged images only"
    for i, r in enumerate(explained):
        assert (r.label, r.flagged) == (plain[i].label, plain[i].flagged)
        assert r.scores == pytest.approx(plain[i].scores, abs=1e-6)
        if not r.flagged:
            assert r.explanation == ""
    assert all(isinstance(r, Detection) for r in explained)


def test_explain_is_capped_and_on_demand(tiny_detector, images) -> None:
    det = _detector_with(tiny_detector, Thresholds())
    texts = det.explain(images[:2], ["manipulated", "uncertain"], max_new_tokens=3)
    assert len(texts) == 2
    for t in texts:
        assert len(det.tokenizer.encode(t, add_special_tokens=False)) <= 6  # 3 tokens, maybe re-split
    with pytest.raises(ValueError):
        det.explain(images[:2], ["manipulated"])
