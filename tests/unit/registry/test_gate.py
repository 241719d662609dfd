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


def report_acc(f1: float, recalls: dict[str, float], accuracy: float, n: int = 30) -> dict:
    return {**report(f1, recalls, n), "accuracy": accuracy}


def test_forgetting_an_old_family_on_its_regression_set_refuses():
    champ = report(0.60, {"authentic": 0.7, "manipulated": 0.5})
    cand = report(0.80, {"authentic": 0.8, "manipulated": 0.9})
    kept = {"candidate": report(0.9, {"authentic": 0.9, "manipulated": 0.85}, n=20)}
    lost = {"candidate": report(0.6, {"authentic": 0.9, "manipulated": 0.6}, n=20)}
    old = report(0.9, {"authentic": 0.9, "manipulated": 0.9}, n=20)
    ok = decide(cand, champ, POLICY, regression={"A": {**kept, "champion": old}})
    assert ok.promote and ok.regression_drops["A"]["manipulated"] == pytest.approx(0.05)
    d = decide(cand, champ, POLICY, regression={"A": {**lost, "champion": old}})
    assert not d.promote and any(r.startswith("regression set A: recall of manipulated") for r in d.reasons)
    first = decide(cand, None, POLICY, regression={"A": {**lost, "champion": None}})
    assert first.promote  # nothing to compare with: the first model passes on the floor


def test_labels_the_candidate_cannot_agree_with_are_refused_and_the_refusal_says_why():
    policy = GatePolicy(0.02, 0.1, 0.5, min_label_agreement=0.7)
    champ = report_acc(0.40, {"authentic": 0.5}, 0.45)
    clean = decide(report_acc(0.85, {"authentic": 0.9}, 0.86), champ, policy)
    assert clean.promote and clean.label_agreement == 0.86
    regression = {"A": {"candidate": report_acc(0.9, {"authentic": 0.9}, 0.92, n=20), "champion": None}}
    poisoned = decide(report_acc(0.58, {"authentic": 0.6}, 0.58), champ, policy, regression=regression)
    assert not poisoned.promote
    why = " ".join(poisoned.reasons)
    assert "agrees with only 58% of the held-out new labels" in why and "92% on the frozen regression" in why
    assert "poisoned" in why


def test_moderators_who_disagree_on_double_labeled_images_refuse_once_there_are_enough():
    policy = GatePolicy(0.0, 1.0, 0.0, min_moderator_agreement=0.7, min_double_labeled=10)
    cand = report_acc(0.9, {"authentic": 0.9}, 0.9)
    few = decide(cand, None, policy, moderators={"images": 4, "rate": 0.25})
    assert few.promote and few.moderator_agreement == 0.25
    many = decide(cand, None, policy, moderators={"images": 30, "rate": 0.5})
    assert not many.promote and "moderators agree on only 50% of the 30 images" in many.reasons[0]
