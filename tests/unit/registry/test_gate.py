import pytest

from registry.gate import GatePolicy, decide

POLICY = GatePolicy(min_improvement=0.02, max_recall_drop=0.1, min_macro_f1=0.5)


def report(f1: float, recalls: dict[str, float], n: int = 30) -> dict:
    return {"n": n, "macro_f1": f1, "per_class": {c: {"recall": r} for c, r in recalls.items()}}


def test_first_model_passes_on_the_floor_alone():
    assert decide(report(0.6, {"authentic": 0.5}), None, POLICY).promote
    refused = decide(report(0.4, {"authentic": 0.5}), None, POLICY)
    assert not refused.promote and "below the floor" in refused.reasons[0]


def test_must_beat_the_champion_by_the_margin():
    champ = report(0.70, {"authentic": 0.7, "manipulated": 0.7})
    assert decide(report(0.73, {"authentic": 0.7, "manipulated": 0.7}), champ, POLICY).promote
    close = decide(report(0.71, {"authentic": 0.7, "manipulated": 0.7}), champ, POLICY)
    assert not close.promote and "does not beat" in close.reasons[0]


def test_a_class_recall_drop_beyond_the_bound_refuses():
    champ = report(0.70, {"authentic": 0.9, "manipulated": 0.5})
    d = decide(report(0.80, {"authentic": 0.75, "manipulated": 0.9}), champ, POLICY)
    assert not d.promote and d.recall_drops["authentic"] == pytest.approx(0.15)
    assert any("recall of authentic" in r for r in d.reasons)


def test_reports_from_different_sets_cannot_be_compared():
    with pytest.raises(ValueError):
        decide(report(0.8, {}, n=30), report(0.7, {}, n=31), POLICY)
