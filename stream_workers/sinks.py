"""Redis state of each judged image: one record per image, indexes, the review queue.

Every write is idempotent (HSET, ZADD, SET): replaying a batch overwrites, never adds. Keys:

- ``{p}:verdict:{image_id}``    hash: the verdict JSON and the fields the UI filters and sorts on
  (label, flagged, model_version, source, decided_at; model_label, label_source, provenance state
  and unstable when fusion ran)
- ``{p}:index:time``            zset image_id -> decided_at (unix seconds)
- ``{p}:index:source:{source}`` zset image_id -> decided_at
- ``{p}:index:provenance:{state}`` zset image_id -> decided_at (when the event carried provenance)
- ``{p}:review``                zset image_id -> priority, flagged and not yet labeled
- ``{p}:sightings:{image_id}``  set of ``source:item`` (written by ingest; read here for reach)
"""

from __future__ import annotations

import math
from typing import Any

from core.contracts.images import ImageEvent
from core.contracts.verdicts import Verdict
from core.keys import Keys


def review_priority(verdict: Verdict, reach: int) -> float:
    """Higher first: doubtful verdicts and widely seen images. In [0, 1 + log10(1 + reach)]."""
    uncertainty = 1.0 - max(verdict.scores.values()) if verdict.scores else 1.0
    fake = verdict.scores.get("manipulated", 0.0) + verdict.scores.get("synthesized", 0.0)
    return round(max(uncertainty, fake) + math.log10(1 + reach), 6)


def fusion_fields(verdict: Verdict) -> dict[str, str | int]:
    """The record's fields from fusion and the re-check (none for a verdict without them)."""
    out: dict[str, str | int] = {}
    if verdict.model_label is not None:
        out["model_label"] = verdict.model_label
        out["label_source"] = verdict.label_source
    if verdict.provenance is not None:
        out["provenance"] = verdict.provenance.state
    if verdict.unstable is not None:
        out["unstable"] = int(verdict.unstable)
    return out


class RedisSink:
    def __init__(self, redis: Any, prefix: str = "misinfo") -> None:
        self.redis = redis  # a redis.asyncio.Redis
        self.keys = Keys(prefix)

    def verdict_key(self, image_id: str) -> str:
        return self.keys.verdict(image_id)

    @property
    def review_key(self) -> str:
        return self.keys.review()

    async def known(self, image_ids: list[str], model_version: str) -> list[Verdict | None]:
        """For each image, its stored verdict when the same model version decided it (one round trip)."""
        if not image_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for image_id in image_ids:
            pipe.hget(self.verdict_key(image_id), "verdict")
        out: list[Verdict | None] = []
        for raw in await pipe.execute():
            verdict = Verdict.parse(raw) if raw is not None else None
            out.append(verdict if verdict is not None and verdict.model_version == model_version else None)
        return out

    def labels_key(self, image_id: str) -> str:
        return self.keys.labels(image_id)

    async def _reach_and_labeled(self, image_ids: list[str]) -> tuple[list[int], list[bool]]:
        pipe = self.redis.pipeline(transaction=False)
        for image_id in image_ids:
            pipe.scard(self.keys.sightings(image_id))
            pipe.exists(self.labels_key(image_id))
        out = await pipe.execute()
        return [int(n) for n in out[0::2]], [bool(n) for n in out[1::2]]

    async def write(self, pairs: list[tuple[ImageEvent, Verdict]]) -> None:
        """Store the batch in one MULTI/EXEC: all of it or none of it."""
        if not pairs:
            return
        reach, labeled = await self._reach_and_labeled([e.image_id for e, _ in pairs])
        pipe = self.redis.pipeline(transaction=True)
        for (event, verdict), seen, done in zip(pairs, reach, labeled, strict=True):
            ts = verdict.decided_at.timestamp()
            pipe.hset(
                self.verdict_key(event.image_id),
                mapping={
                    "verdict": verdict.to_json(),
                    "event": event.to_json(),
                    "label": verdict.label,
                    "flagged": int(verdict.flagged),
                    "model_version": verdict.model_version,
                    "source": event.source,
                    "decided_at": ts,
                    **fusion_fields(verdict),
                },
            )
            pipe.zadd(self.keys.index_time(), {event.image_id: ts})
            if verdict.provenance is not None:
                pipe.zadd(self.keys.index_provenance(verdict.provenance.state), {event.image_id: ts})
            pipe.zadd(self.keys.index_source(event.source), {event.image_id: ts})
            if verdict.flagged and not done:  # a labeled image never returns to the queue on replay
                pipe.zadd(self.review_key, {event.image_id: review_priority(verdict, seen)})
            else:
                pipe.zrem(self.review_key, event.image_id)
        await pipe.execute()
