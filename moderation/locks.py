"""Item locks: while a moderator has an item open, others see who, and cannot label it.

A lock is a lease, ``{p}:lock:{image_id}`` = the holder's name and a token on two lines, with a TTL
(``LOCK_TTL_S``).
Opening the item page takes it (or renews it, for its holder) under a token of that page view; the
page renews it every ``RENEW_S`` while it stays open and gives it back when it closes, naming its
token, so a page that closes after its successor opened (a reload, an undo) cannot free the
successor's lease. A label or a skip gives it back too (any token of the holder). A page that dies
without saying so (a closed laptop, a lost network) frees the item when the TTL runs out. Taking,
renewing and giving back are compare-and-set scripts: one holder never overwrites another's lease.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from core.keys import Keys

LOCK_TTL_S = 90
RENEW_S = 30  # the page's heartbeat: three chances before the lease runs out

# Take the lock when it is free, renew it when it is ours (ARGV: user, ttl ms, token);
# answer [holder, milliseconds left].
_ACQUIRE = """
local value = redis.call('GET', KEYS[1])
local holder = value and string.match(value, '^([^\\n]*)')
if not value or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. '\\n' .. ARGV[3], 'PX', ARGV[2])
  return {ARGV[1], tonumber(ARGV[2])}
end
return {holder, redis.call('PTTL', KEYS[1])}
"""
# Give the lock back only when it is ours, and (with a token) still that page view's.
_RELEASE = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local holder, token = string.match(value, '^([^\\n]*)\\n?(.*)$')
if holder == ARGV[1] and (ARGV[2] == '' or token == ARGV[2]) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _holder(v: Any) -> str:
    return (v.decode() if isinstance(v, bytes) else str(v)).split("\n", 1)[0]


@dataclass(frozen=True)
class Lock:
    image_id: str
    holder: str
    expires_at: float  # unix seconds

    def held_by(self, user: str) -> bool:
        return self.holder == user


class ItemLocks:
    def __init__(self, redis: Any, prefix: str, ttl_s: float = LOCK_TTL_S) -> None:
        self.redis = redis  # redis.asyncio.Redis
        self.keys = Keys(prefix)
        self.ttl_ms = int(ttl_s * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, image_id: str, user: str, token: str = "") -> Lock:
        """Take or renew the lock for ``user`` (``token``: the page view's); the answer names
        whoever holds it now."""
        holder, left_ms = await self._acquire(
            keys=[self.keys.lock(image_id)], args=[user, self.ttl_ms, token]
        )
        return Lock(image_id, _holder(holder), time.time() + max(int(left_ms), 0) / 1000)

    async def release(self, image_id: str, user: str, token: str = "") -> bool:
        """Give the lock back if ``user`` holds it (under ``token``, when one is given); True when it did."""
        return bool(await self._release(keys=[self.keys.lock(image_id)], args=[user, token]))

    def release_in(self, pipe: Any, image_id: str, user: str, token: str = "") -> None:
        """Queue :meth:`release` on ``pipe`` (a MULTI of the caller's): plain EVAL, as a pipeline
        with a registered script would first ask Redis whether it knows it (one more round trip)."""
        pipe.eval(_RELEASE, 1, self.keys.lock(image_id), user, token)

    async def holder(self, image_id: str) -> Lock | None:
        return (await self.holders([image_id])).get(image_id)

    async def holders(self, image_ids: list[str]) -> dict[str, Lock]:
        """The locks held on these items (one round trip, two when some are held)."""
        if not image_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        self.read_holders(pipe, image_ids)
        (names,) = await pipe.execute()
        return await self.parse_holders(image_ids, names)

    def read_holders(self, pipe: Any, image_ids: list[str]) -> None:
        """Queue the read of :meth:`holders` on ``pipe`` (one reply: an MGET of the lock keys), so
        that a caller reading other keys of the same items shares its round trip."""
        pipe.mget([self.keys.lock(image_id) for image_id in image_ids])

    async def parse_holders(self, image_ids: list[str], names: list[Any]) -> dict[str, Lock]:
        """:meth:`holders` from the reply of :meth:`read_holders`; the expiry of the few items that
        are held is read then (most pages hold none, so most pay no second round trip)."""
        held = [(image_id, name) for image_id, name in zip(image_ids, names, strict=True) if name is not None]
        if not held:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for image_id, _ in held:
            pipe.pttl(self.keys.lock(image_id))
        lefts = await pipe.execute()
        now = time.time()
        return {
            image_id: Lock(image_id, _holder(name), now + max(int(left), 0) / 1000)
            for (image_id, name), left in zip(held, lefts, strict=True)
            if int(left) != -2  # expired between the two reads: not held any more
        }
