"""Scoring a model on a held-out set: accuracy, macro-F1, per-class recall, one-vs-rest ROC-AUC from
the scores, the confusion matrix and the expected calibration error (ECE).

Candidate and champion are scored by :func:`score_model` on the same examples, through the detector's
own scoring path (:meth:`detector.model.Detector.class_probabilities`), so the numbers are those of
serving. The metrics are plain Python on lists: no scikit-learn needed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from detector import checkpoint
from detector.answer import CLASSES

log = logging.getLogger(__name__)


def confusion(y_true: list[int], y_pred: list[int], k: int = len(CLASSES)) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    m = [[0] * k for _ in range(k)]
    for t, p in zip(y_true, y_pred, strict=True):
        m[t][p] += 1
    return m


def roc_auc(positive: list[float], negative: list[float]) -> float | None:
    """P(score of a positive > score of a negative), ties counting half; None without both kinds."""
    if not positive or not negative:
        return None
    ranked = sorted([(s, 1) for s in positive] + [(s, 0) for s in negative])
    # Mann-Whitney U with average ranks for ties.
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        avg = (i + j + 1) / 2  # ranks are 1-based
        rank_sum += avg * sum(1 for _, pos in ranked[i:j] if pos)
        i = j
    n_pos, n_neg = len(positive), len(negative)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def expected_calibration_error(confidence: list[float], correct: list[bool], bins: int = 10) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| weighted by bin share."""
    n = len(confidence)
    if n == 0:
        return 0.0
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(confidence) if (lo < c <= hi) or (b == 0 and c == 0.0)]
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            conf = sum(confidence[i] for i in idx) / len(idx)
            total += len(idx) / n * abs(acc - conf)
    return total


def metrics(
    y_true: list[str], probs: list[list[float]], classes: tuple[str, ...] = CLASSES
) -> dict[str, Any]:
    """Every figure the gate and the report need, from true labels and per-class probabilities."""
    if len(y_true) != len(probs):
        raise ValueError(f"{len(y_true)} labels but {len(probs)} score rows")
    index = {c: i for i, c in enumerate(classes)}
    t = [index[y] for y in y_true]
    p = [max(range(len(classes)), key=row.__getitem__) for row in probs]
    cm = confusion(t, p, len(classes))
    per_class: dict[str, dict[str, Any]] = {}
    f1s = []
    for i, c in enumerate(classes):
        tp = cm[i][i]
        fn = sum(cm[i]) - tp
        fp = sum(cm[r][i] for r in range(len(classes))) - tp
        support = tp + fn
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / support if support else None
        f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
        auc = roc_auc(
            [probs[j][i] for j in range(len(t)) if t[j] == i],
            [probs[j][i] for j in range(len(t)) if t[j] != i],
        )
        per_class[c] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "roc_auc": auc,
        }
        if support:
            f1s.append(f1)  # macro over the classes present in the held-out set
    aucs = [v["roc_auc"] for v in per_class.values() if v["roc_auc"] is not None]
    n = len(t)
    correct = [a == b for a, b in zip(t, p, strict=True)]
    return {
        "n": n,
        "classes": list(classes),
        "accuracy": sum(correct) / n if n else 0.0,
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        "roc_auc_macro": sum(aucs) / len(aucs) if aucs else None,
        "ece": expected_calibration_error([max(r) for r in probs], correct),
        "per_class": per_class,
        "confusion_matrix": cm,
    }


def score_model(
    model_path: str | Path,
    examples: list[tuple[Path, str]],
    *,
    adapter_path: str | None = None,
    device: str = "auto",
    batch_size: int = 8,
) -> dict[str, Any]:
    """Load a model as the worker would and return :func:`metrics` on ``(image, label)`` examples."""
    return score_sets(
        model_path, {"held_out": examples}, adapter_path=adapter_path, device=device, batch_size=batch_size
    )["held_out"]


def score_sets(
    model_path: str | Path,
    sets: dict[str, list[tuple[Path, str]]],
    *,
    adapter_path: str | None = None,
    device: str = "auto",
    batch_size: int = 8,
) -> dict[str, dict[str, Any]]:
    """:func:`metrics` on each named set of ``(image, label)`` examples, the model loaded once as the
    worker loads it (with the temperature stored beside its weights). Each report also holds the
    ``scores`` and the true ``labels``, so it can be re-scaled (:func:`calibrated`)."""
    from PIL import Image

    from detector.model import Detector
    from detector.options import LoadOptions

    det = Detector.load(str(model_path), LoadOptions(device=device, adapter_path=adapter_path))
    out = {}
    for name, examples in sets.items():
        probs: list[list[float]] = []
        for i in range(0, len(examples), batch_size):
            images = []
            for path, _ in examples[i : i + batch_size]:
                with Image.open(path) as im:
                    images.append(im.convert("RGB"))
            probs += det.class_probabilities(images).tolist()
        labels = [label for _, label in examples]
        report = metrics(labels, probs)
        report["scores"] = probs
        report["labels"] = labels
        report["temperature"] = det.temperature
        out[name] = report
    return out


def calibrated(report: dict[str, Any], temperature: float) -> dict[str, Any]:
    """``report`` (from :func:`score_sets`) with its scores re-scaled by ``temperature``: the same
    verdicts (a temperature keeps the arg-max), other confidences, hence another ECE."""
    from detector.calibration import scale

    scores = scale(report["scores"], temperature)
    out = metrics(report["labels"], scores)
    out.update(
        scores=scores, labels=report["labels"], temperature=report.get("temperature", 1.0) * temperature
    )
    return out


def model_location(model_dir: str | Path, base_model: str) -> tuple[str, str | None]:
    """(checkpoint path, adapter path) for a directory that is either an adapter or a full checkpoint."""
    path, adapter = checkpoint.model_location(model_dir, base_model)
    return str(path), adapter
