"""The stability re-check: each image is judged a second time after one JPEG re-encode, in the same
batch, and the verdict is marked ``unstable`` when the label changes (``MISINFO_RECHECK_JPEG_QUALITY``,
off by default: it doubles the model's work).

A re-shared image is re-compressed by every platform it passes through; a verdict that flips under
one re-encode deserves less trust, and the review queue can sort by it. :class:`Rechecking` wraps
whatever detector serves now (hot swaps included) and keeps its interface: ``prepare`` adds the
re-encoded copies to the batch (off the model thread, with the rest of the preprocessing),
``score`` runs one forward pass over both halves and returns the originals' results, each
carrying ``recheck_label``. Explanations are generated for the originals only.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image


def reencode_jpeg(image: Image.Image, quality: int) -> Image.Image:
    """``image`` after one JPEG round trip at ``quality`` (4:2:0, what platforms use)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")


@dataclass(frozen=True)
class Rechecked:
    """A detection with the label its re-encoded copy got."""

    label: str
    scores: dict[str, float]
    flagged: bool
    explanation: str = ""
    recheck_label: str | None = None


@dataclass
class _Both:
    n: int  # originals first, then their re-encoded copies
    inputs: Any  # the inner detector's prepared inputs, or the images when it has no prepare()


class Rechecking:
    """``detector`` with the re-check added; everything else is passed through."""

    def __init__(self, detector: Any, quality: int) -> None:
        self.inner = detector
        self.quality = quality

    def __getattr__(self, name: str) -> Any:  # name, version, profile_id, explain ...
        return getattr(self.inner, name)

    def prepare(self, images: Sequence[Image.Image]) -> _Both:
        both = list(images) + [reencode_jpeg(im, self.quality) for im in images]
        inner_prepare = getattr(self.inner, "prepare", None)
        return _Both(len(images), inner_prepare(both) if inner_prepare is not None else both)

    def score(self, prepared: _Both, explain: bool = False, **kwargs: Any) -> list[Rechecked]:
        if hasattr(self.inner, "prepare"):
            results = list(self.inner.score(prepared.inputs, explain=False, **kwargs))
        else:
            results = list(self.inner.detect(prepared.inputs, explain=False))
        return self._pair(results, prepared, explain)

    def detect(self, images: list[Image.Image], explain: bool = False, **kwargs: Any) -> list[Rechecked]:
        return self.score(self.prepare(images), explain=explain, **kwargs)

    def _pair(self, results: list[Any], prepared: _Both, explain: bool) -> list[Rechecked]:
        n = prepared.n
        originals, copies = results[:n], results[n:]
        texts = [""] * n
        wanted = [i for i, r in enumerate(originals) if r.flagged]
        if explain and wanted and hasattr(self.inner, "explain"):
            images = getattr(prepared.inputs, "images", prepared.inputs)
            shown = [_explainable(originals[i]) for i in wanted]
            for i, text in zip(wanted, self.inner.explain([images[i] for i in wanted], shown), strict=True):
                texts[i] = text
        return [
            Rechecked(r.label, r.scores, r.flagged, texts[i] or getattr(r, "explanation", ""), c.label)
            for i, (r, c) in enumerate(zip(originals, copies, strict=True))
        ]


def _explainable(result: Any) -> str:
    """An ``uncertain`` verdict is explained for its most probable class (as the detector does)."""
    if result.label != "uncertain":
        return str(result.label)
    return max(result.scores, key=result.scores.get)


def with_recheck(detector_ref: Callable[[], Any], quality: int) -> Callable[[], Any]:
    """A detector reference whose detector re-checks (``quality`` 0: the reference unchanged)."""
    if quality <= 0:
        return detector_ref
    return lambda: Rechecking(detector_ref(), quality)
