"""Dedup in Redis: each sha256 is published once, every sighting is recorded, near-duplicates are linked.

Keys (``p`` = the Redis prefix):

- ``{p}:ingest:published:{image_id}`` — set *after* the broker acknowledged the event, so a crash in
  between republishes (the workers' sinks are idempotent) rather than losing the image.
- ``{p}:sightings:{image_id}`` — a set of ``source:source_item_id``: every post that showed the image,
  duplicates included; the workers read its size as the image's reach.
- ``{p}:ingest:phash:{d}:{band}:{value}`` — the near-duplicate index (a set of ``phash:image_id``).

The near-duplicate index is a pigeonhole LSH over the 64-bit perceptual hash: with a distance bound
``d``, the hash is cut into ``d + 1`` bands; two hashes within Hamming distance ``d`` differ in at most
``d`` bits, so at least one band is bit-for-bit equal. An image is indexed under each of its bands; a
lookup reads the ``d + 1`` buckets of the new hash, computes the exact distance to each candidate and
keeps the closest within ``d``. No false negatives, and a bucket holds about N / 2^(64/(d+1)) images
(d = 4: 13-bit bands, N / 8192). ``d`` is part of the key, so changing the setting starts a new index
rather than misreading an old one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis as redis_lib

from core.keys import Keys
from ingest.exceptions import StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


def hamming(a: str, b: str) -> int:
    """Bit distance between two hex hashes of the same length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def bands(phash: str, distance: int) -> list[tuple[int, int]]:
    """(band index, band value) pairs: ``distance + 1`` nearly equal slices of the hash's bits."""
    bits = len(phash) * 4
    value = int(phash, 16)
    n = distance + 1
    out = []
    start = 0
    for i in range(n):
        width = bits // n + (1 if i < bits % n else 0)
        out.append((i, (value >> (bits - start - width)) & ((1 << width) - 1)))
        start += width
    return out


class Dedup:
    """Every call waits through a Redis outage (a restart, a failover) for up to ``patience_s``,
    retrying with a capped backoff, the way a paused Redis simply makes it wait; only then does it
    raise :class:`StoreUnavailable`. A collector thus rides out a Redis restart instead of dying."""

    def __init__(
        self,
        redis: Any,
        prefix: str = "misinfo",
        near_distance: int = 4,
        *,
        patience_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.keys = Keys(prefix)
        # -1 turns linking off; more than 15 bands of 4 bits would make buckets useless.
        self.near_distance = min(near_distance, 15)
        self.patience_s = patience_s
        self.sleep = sleep

    def _call(self, what: str, op: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.patience_s
        delay = 0.2
        while True:
            try:
                return op()
            except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(
                        f"Redis did not answer for {self.patience_s:.0f}s ({what}): {exc}; "
                        "check MISINFO_REDIS_URL and that Redis is running"
                    ) from exc
                log.warning("Redis unavailable (%s: %s); retrying in %.1fs", what, exc, delay)
                self.sleep(delay)
                delay = min(5.0, delay * 2)

    def _published(self, image_id: str) -> str:
        return self.keys.published(image_id)

    def sightings_key(self, image_id: str) -> str:
        return self.keys.sightings(image_id)

    def _bucket(self, band: int, value: int) -> str:
        return self.keys.phash_band(self.near_distance, band, value)

    def record_sighting(self, image_id: str, source: str, source_item_id: str) -> int:
        """Record that ``source_item_id`` showed this image; return how many distinct sightings it has."""
        key = self.sightings_key(image_id)

        def op() -> int:
            pipe = self.redis.pipeline()
            pipe.sadd(key, f"{source}:{source_item_id}")
            pipe.scard(key)
            return int(pipe.execute()[1])

        return self._call("record a sighting", op)

    def is_published(self, image_id: str) -> bool:
        return self._call("published?", lambda: bool(self.redis.exists(self._published(image_id))))

    def mark_published(self, image_id: str, phash: str | None = None) -> None:
        """After the broker's ack: remember the image, and index its perceptual hash."""

        def op() -> None:
            pipe = self.redis.pipeline()
            pipe.set(self._published(image_id), 1)
            if phash and self.near_distance >= 0:
                for band, value in bands(phash, self.near_distance):
                    pipe.sadd(self._bucket(band, value), f"{phash}:{image_id}")
            pipe.execute()

        self._call("mark published", op)

    def find_near_duplicate(self, phash: str, image_id: str) -> tuple[int, str] | None:
        """(distance, image_id) of the indexed image closest to ``phash`` within the distance bound
        (never ``image_id`` itself), or None."""
        if self.near_distance < 0:
            return None

        def op() -> list[Any]:
            pipe = self.redis.pipeline()
            for band, value in bands(phash, self.near_distance):
                pipe.smembers(self._bucket(band, value))
            return list(pipe.execute())

        best: tuple[int, str] | None = None
        for members in self._call("near-duplicate lookup", op):
            for raw in members:
                other_hash, _, other_id = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
                if other_id == image_id or len(other_hash) != len(phash):
                    continue
                d = hamming(phash, other_hash)
                if d <= self.near_distance and (best is None or (d, other_id) < best):
                    best = (d, other_id)
        return best
