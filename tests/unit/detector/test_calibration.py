"""Temperature scaling: fitted on labeled scores, stored beside the weights, applied at load."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from detector.calibration import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationError,
    fit_temperature,
    nll,
    read_calibration,
    scale,
    write_calibration,
)
from trainer.evaluate import expected_calibration_error


def _ece(probs, labels):  # type: ignore[no-untyped-def]
    top = [max(range(3), key=row.__getitem__) for row in probs]
    return expected_calibration_error(
        [max(r) for r in probs], [t == y for t, y in zip(top, labels, strict=True)]
    )


def test_an_over_confident_scorer_gets_a_temperature_above_one_and_a_lower_ece():
    # Right 70% of the time, but always ~99% sure: the textbook over-confident model.
    probs, labels = [], []
    for i in range(200):
        top = i % 3
        probs.append([0.98 if c == top else 0.01 for c in range(3)])
        labels.append(top if i % 10 < 7 else (top + 1) % 3)
    t = fit_temperature(probs, labels)
    assert t > 1.5
    scaled = scale(probs, t)
    assert _ece(scaled, labels) < 0.05 < 0.2 < _ece(probs, labels)
    assert [max(range(3), key=r.__getitem__) for r in scaled] == [i % 3 for i in range(200)]  # same verdicts
    logits = [[math.log(p) for p in r] for r in probs]
    assert nll(logits, labels, t) < nll(logits, labels, 1.0)


def test_an_under_confident_scorer_gets_a_temperature_below_one():
    probs = [[0.4 if c == i % 3 else 0.3 for c in range(3)] for i in range(90)]
    labels = [i % 3 for i in range(90)]  # always right, never sure
    assert fit_temperature(probs, labels) < 0.5


def test_no_examples_keep_the_scores_as_they_are():
    assert fit_temperature([], []) == 1.0


def test_the_file_round_trips_and_a_broken_one_is_an_error_that_says_what_to_do(tmp_path):
    assert read_calibration(tmp_path) is None
    write_calibration(tmp_path, Calibration(temperature=2.5, fitted_on=40, ece_before=0.3, ece_after=0.05))
    cal = read_calibration(tmp_path)
    assert cal is not None and cal.temperature == 2.5 and cal.fitted_on == 40
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"temperature": -1}))
    with pytest.raises(CalibrationError, match="positive"):
        read_calibration(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text("{")
    with pytest.raises(CalibrationError, match="delete it"):
        read_calibration(tmp_path)


def test_temperature_scaling_lowers_the_ece_of_a_miscalibrated_model(tiny_ckpt, tmp_path):
    """A real checkpoint made over-confident (its final norm scaled up: logits x300), scored by the
    detector, calibrated on one half of a labeled set; the stored temperature, applied at load, gives
    the other half a lower ECE and the same verdicts."""
    from safetensors.torch import load_file, save_file

    from detector.model import Detector
    from detector.options import LoadOptions
    from misinfo.samples import bench_images

    ckpt = tmp_path / "overconfident"
    shutil.copytree(tiny_ckpt, ckpt)
    weights = ckpt / "model.safetensors"
    state = load_file(weights)
    norm = next(k for k in state if k.endswith("norm.weight") and "layers" not in k and "blocks" not in k)
    state[norm] = state[norm] * 300.0
    save_file(state, weights, metadata={"format": "pt"})

    opts = LoadOptions(device="cpu", dtype="float32")
    det = Detector.load(ckpt, opts)
    assert det.load_report["calibration"] == {"temperature": 1.0, "source": "none"}
    images = bench_images(80, seed=5, min_side=64, max_side=140)
    probs = det.class_probabilities(images).tolist()
    top = [max(range(3), key=r.__getitem__) for r in probs]
    # Labels the model gets right 60% of the time.
    labels = [t if i % 5 < 3 else (t + 1) % 3 for i, t in enumerate(top)]
    fit, held = slice(0, 40), slice(40, 80)
    t = fit_temperature(probs[fit], labels[fit])
    assert t > 1.0
    write_calibration(ckpt, Calibration(temperature=t, fitted_on=40))

    calibrated = Detector.load(ckpt, opts)
    assert calibrated.temperature == pytest.approx(t)
    assert calibrated.load_report["calibration"]["source"].endswith(CALIBRATION_FILE)
    after = calibrated.class_probabilities(images[held]).tolist()
    assert _ece(after, labels[held]) < _ece(probs[held], labels[held]) - 0.1
    assert [max(range(3), key=r.__getitem__) for r in after] == top[held]
    # An explicit option wins over the file.
    assert Detector.load(ckpt, LoadOptions(device="cpu", temperature=1.0)).temperature == 1.0
