"""Temperature scaling: the served class probabilities are ``softmax(logits / T)``.

A fine-tuned model is usually over-confident (its top probability exceeds how often it is right);
moderators and subscribers read the scores as probabilities, so each candidate gets one temperature
``T`` fitted on its validation split (the ``T`` that minimizes the negative log-likelihood of the
true classes; one parameter, so it cannot over-fit a few hundred images and it never changes the
arg-max, i.e. the verdict). It is stored beside the weights as ``calibration.json`` (in the adapter
directory for a LoRA version, in the checkpoint directory for a full one), travels with the version
through the registry, and :meth:`detector.model.Detector.load` applies it. A version without the
file keeps ``T = 1``.

Fitting works from probabilities as well as logits: ``log p`` differs from the logits by one
constant per row, which a softmax ignores, so ``softmax(log p / T) == softmax(logits / T)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CALIBRATION_FILE = "calibration.json"
# A held-out split the model gets entirely right pushes the fit to the smallest T (ever sharper
# scores); a few hundred images do not justify sharpening more than 4x.
T_MIN, T_MAX = 0.25, 20.0


@dataclass(frozen=True)
class Calibration:
    """One temperature and what it did on the split it was fitted on."""

    temperature: float = 1.0
    fitted_on: int = 0  # images
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    method: str = "temperature"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _log_softmax(row: list[float], t: float) -> list[float]:
    scaled = [v / t for v in row]
    top = max(scaled)
    lse = top + math.log(sum(math.exp(v - top) for v in scaled))
    return [v - lse for v in scaled]


def as_logits(probs: list[list[float]]) -> list[list[float]]:
    return [[math.log(max(p, 1e-12)) for p in row] for row in probs]


def nll(logits: list[list[float]], labels: list[int], t: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / t)``."""
    if not labels:
        return 0.0
    return -sum(_log_softmax(row, t)[y] for row, y in zip(logits, labels, strict=True)) / len(labels)


def scale(probs: list[list[float]], t: float) -> list[list[float]]:
    """Probabilities re-scaled by temperature ``t`` (rows of ``softmax(log p / t)``)."""
    return [[math.exp(v) for v in _log_softmax(row, t)] for row in as_logits(probs)]


def fit_temperature(probs: list[list[float]], labels: list[int]) -> float:
    """The ``T`` in [T_MIN, T_MAX] minimizing the NLL of ``labels`` (class indices) under
    ``softmax(log probs / T)``. The NLL is convex in 1/T, so a golden-section search over log T
    finds the minimum; no examples (or one class only and a perfect fit) give 1.0 or the bound."""
    if not labels:
        return 1.0
    logits = as_logits(probs)
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    best = math.exp((lo + hi) / 2)
    # Keep 1.0 when scaling does not help (flat or perfectly separated sets).
    return best if nll(logits, labels, best) < nll(logits, labels, 1.0) - 1e-9 else 1.0


def write_calibration(directory: str | Path, calibration: Calibration) -> Path:
    path = Path(directory) / CALIBRATION_FILE
    path.write_text(json.dumps(calibration.to_dict(), indent=1))
    return path


class CalibrationError(ValueError):
    """A ``calibration.json`` that cannot be used (unreadable, or a temperature that is not > 0)."""


def read_calibration(directory: str | Path | None) -> Calibration | None:
    """The calibration stored in ``directory``, or None when it holds none."""
    if not directory:
        return None
    path = Path(directory) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        t = float(raw["temperature"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(
            f"{path}: unreadable calibration ({exc}); delete it to serve uncalibrated scores (T=1)"
        ) from None
    if not math.isfinite(t) or t <= 0:
        raise CalibrationError(f"{path}: temperature must be a positive number, got {t}")
    known = {k: raw[k] for k in Calibration.__dataclass_fields__ if k in raw and k != "temperature"}
    return Calibration(temperature=t, **known)
