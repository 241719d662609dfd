"""The review stats, computed at most once every few seconds per service process.

:meth:`~moderation.store.ReviewStore.stats` reads the labels of the 5,000 most recently labeled
images and recounts the agreement figures: tens of milliseconds of the event loop, and more as
labels accumulate. Every reader of the stats page or ``GET /api/stats`` used to pay that. Now the
figures are at most ``ttl_s`` old (their ``generated_at`` says when they were counted), and
concurrent readers of stale figures wait for one recount instead of each starting their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

STATS_TTL_S = 2.0


class StatsCache:
    def __init__(
        self,
        compute: Callable[[], Awaitable[dict[str, Any]]],
        ttl_s: float = STATS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.compute = compute
        self.ttl_s = ttl_s
        self.clock = clock
        self._value: dict[str, Any] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> dict[str, Any] | None:
        if self._value is not None and self.clock() - self._at < self.ttl_s:
            return self._value
        return None

    async def get(self) -> dict[str, Any]:
        """The figures, counted at most ``ttl_s`` ago (a shared dict: do not change it)."""
        found = self._fresh()
        if found is not None:
            return found
        async with self._lock:  # one recount at a time; who waited finds it done
            found = self._fresh()
            if found is not None:
                return found
            started = self.clock()
            value = await self.compute()
            self._value, self._at = value, started
            return value
