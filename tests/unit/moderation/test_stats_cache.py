"""The stats cache: figures at most ``ttl_s`` old, one recount at a time (a fake clock, no Redis)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from moderation.stats_cache import StatsCache


class Counting:
    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        await self.gate.wait()
        return {"n": self.calls}


async def test_figures_are_reused_until_they_are_ttl_old():
    now = [100.0]
    compute = Counting()
    cache = StatsCache(compute, ttl_s=2.0, clock=lambda: now[0])
    assert await cache.get() == {"n": 1}
    now[0] += 1.9
    assert await cache.get() == {"n": 1}
    now[0] += 0.1
    assert await cache.get() == {"n": 2}
    assert compute.calls == 2


async def test_concurrent_readers_of_stale_figures_share_one_recount():
    compute = Counting()
    compute.gate.clear()
    cache = StatsCache(compute, ttl_s=2.0, clock=lambda: 0.0)
    readers = [asyncio.create_task(cache.get()) for _ in range(5)]
    await asyncio.sleep(0)
    compute.gate.set()
    assert [await r for r in readers] == [{"n": 1}] * 5
    assert compute.calls == 1


async def test_a_zero_ttl_counts_on_every_read():
    compute = Counting()
    cache = StatsCache(compute, ttl_s=0.0, clock=lambda: 5.0)
    assert [await cache.get() for _ in range(3)] == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_a_failed_recount_is_not_cached():
    calls = 0

    async def flaky() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("redis went away")
        return {"ok": True}

    cache = StatsCache(flaky, ttl_s=2.0, clock=lambda: 0.0)
    with pytest.raises(ConnectionError):
        await cache.get()
    assert await cache.get() == {"ok": True}
