"""The model core: Qwen2.5-VL (+ LoRA), the fixed question, verdicts from token logits, explanations.

Knows nothing of Kafka or Redis; usable from a notebook:

    from detector import Detector
    det = Detector.load("/path/to/checkpoint")
    det.detect([PIL.Image.open("x.jpg")])
"""

from typing import Any

from detector.answer import CLASSES, QUESTION

__all__ = ["CLASSES", "QUESTION", "Detection", "Detector", "Thresholds"]


def __getattr__(name: str) -> Any:
    # torch and transformers load only when the model is used, so the contracts and CLI stay light.
    if name in {"Detection", "Detector", "Thresholds"}:
        from detector import model

        return getattr(model, name)
    raise AttributeError(name)
