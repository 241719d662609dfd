"""The review service's token cache against a real Redis, the way an attacker would try it: a token
remembered before Redis lost its data must not log in once users are made again."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from core.keys import Keys
from moderation.auth import UserStore


async def _lost_and_remade(redis_url: str) -> tuple[object, object, object]:
    prefix = f"test-token-cache-{uuid.uuid4().hex[:8]}"
    r = aioredis.Redis.from_url(redis_url)
    try:
        store = UserStore(r, prefix)
        old_token = await store.add("alice", "admin")
        before = await store.by_token(old_token)  # now remembered by this process
        # Redis loses everything (a memory-only Redis restarted): here, every key of this prefix.
        keys = [k async for k in r.scan_iter(Keys(prefix).pattern(), count=500)]
        await r.delete(*keys)
        after_loss = await store.by_token(old_token)
        await store.add("bob", "viewer")  # the admin makes users again
        after_remake = await store.by_token(old_token)
        return before, after_loss, after_remake
    finally:
        keys = [k async for k in r.scan_iter(Keys(prefix).pattern(), count=500)]
        if keys:
            await r.delete(*keys)
        await r.aclose()


def test_a_token_cached_before_redis_lost_its_data_does_not_come_back(settings):
    before, after_loss, after_remake = asyncio.run(_lost_and_remade(settings.redis_url))
    assert getattr(before, "name", None) == "alice" and getattr(before, "role", None) == "admin"
    assert after_loss is None
    assert after_remake is None  # with a counter epoch this was alice, admin, from the cache
