import pytest

from trainer.evaluate import expected_calibration_error, metrics, roc_auc


def test_perfect_predictions():
    m = metrics(
        ["authentic", "manipulated", "synthesized"], [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]
    )
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["roc_auc_macro"] == 1.0
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert m["ece"] == pytest.approx((0.1 + 0.2 + 0.2) / 3)


def test_a_constant_predictor_scores_a_third_on_two_balanced_classes():
    y = ["authentic", "manipulated"] * 5
    m = metrics(y, [[0.6, 0.3, 0.1]] * 10)
    assert m["accuracy"] == 0.5
    assert m["macro_f1"] == pytest.approx(1 / 3)  # F1 2/3 for one class, 0 for the other; synthesized absent
    assert m["per_class"]["synthesized"]["support"] == 0 and m["per_class"]["manipulated"]["recall"] == 0.0
    assert m["roc_auc_macro"] == 0.5  # all ties


def test_roc_auc_counts_ties_as_half():
    assert roc_auc([0.9, 0.4], [0.4, 0.1]) == pytest.approx(0.875)
    assert roc_auc([0.5], []) is None


def test_ece_of_a_calibrated_set_is_zero():
    assert expected_calibration_error([0.75] * 4, [True, True, True, False]) == pytest.approx(0.0)
    assert expected_calibration_error([], []) == 0.0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        metrics(["authentic"], [])
