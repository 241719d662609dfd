"""Agreement between moderators on the images two or more of them labeled: one count for the review
service's stats page and the training gate's data check, so the two never disagree about it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any


def pairwise_agreement(images: Iterable[Sequence[tuple[str, str]]]) -> dict[str, Any]:
    """``images``: per image, ``(moderator, label)`` for each moderator's one label of it.

    Every pair of moderators on an image is a comparison: pairs, agreeing pairs and their rate,
    overall and per moderator (each against the others), and how many images were labeled by
    several moderators (``images``) and by several who disagree (``disputed``)."""
    pairs = agree = several = disputed = 0
    per_mod: dict[str, list[int]] = {}  # moderator -> [pairs, agreeing pairs]
    for labels in images:
        if len(labels) < 2:
            continue
        several += 1
        disputed += len({label for _, label in labels}) > 1
        for (ma, a), (mb, b) in combinations(labels, 2):
            same = int(a == b)
            pairs += 1
            agree += same
            for m in (ma, mb):
                mine = per_mod.setdefault(m, [0, 0])
                mine[0] += 1
                mine[1] += same
    return {
        "images": several,
        "disputed": disputed,
        "pairs": pairs,
        "agreeing_pairs": agree,
        "rate": round(agree / pairs, 4) if pairs else None,
        "per_moderator": {
            m: {"pairs": n, "agreeing": k, "rate": round(k / n, 4)} for m, (n, k) in sorted(per_mod.items())
        },
    }
