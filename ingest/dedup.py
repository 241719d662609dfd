"""Exact dedup and sightings in Redis: each sha256 is published once, every sighting is recorded.

Marking happens *after* the broker acknowledged the event, so a crash in between republishes (the
workers' sinks are idempotent) rather than losing the image.
"""

from __future__ import annotations

from typing import Any


class Dedup:
    def __init__(self, redis: Any, prefix: str = "misinfo") -> None:
        self.redis = redis
        self.prefix = prefix

    def _published(self, image_id: str) -> str:
        return f"{self.prefix}:ingest:published:{image_id}"

    def sightings_key(self, image_id: str) -> str:
        return f"{self.prefix}:sightings:{image_id}"

    def record_sighting(self, image_id: str, source: str, source_item_id: str) -> int:
        """Record that ``source_item_id`` showed this image; return how many distinct sightings it has."""
        key = self.sightings_key(image_id)
        pipe = self.redis.pipeline()
        pipe.sadd(key, f"{source}:{source_item_id}")
        pipe.scard(key)
        return int(pipe.execute()[1])

    def is_published(self, image_id: str) -> bool:
        return bool(self.redis.exists(self._published(image_id)))

    def mark_published(self, image_id: str) -> None:
        self.redis.set(self._published(image_id), 1)
