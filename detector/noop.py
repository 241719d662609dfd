"""A detector that judges nothing: fixed scores, no model. ``misinfo worker --noop-detector`` uses
it to measure what the stream machinery alone costs (``misinfo bench pipeline``)."""

from __future__ import annotations

from typing import Any

from detector.model import Detection


class NoopDetector:
    name = "noop"
    version = "noop"
    profile_id = "noop"

    def detect(self, images: list[Any], explain: bool = False) -> list[Detection]:
        scores = {"authentic": 1.0, "manipulated": 0.0, "synthesized": 0.0}
        return [Detection("authentic", dict(scores), False) for _ in images]
