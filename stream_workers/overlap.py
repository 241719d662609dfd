"""Batches in flight at once, acknowledged in order.

Faust's ``stream.take()`` acks a batch as soon as the loop body returns, so with it a worker can only
run one batch at a time: while the model judges batch k, nothing prepares k+1 and nothing writes k-1.
The worker takes batches with ``noack_take()`` instead and hands each one here: up to ``depth``
batches run through ``process`` concurrently (their steps interleave: one is prepared on the CPU
pools while another is in the model thread and a third is being written to Redis and the broker),
and each batch's events are acked only after the batch itself *and every batch before it* are done.
Offsets therefore still move only past finished work: a crash or a rebalance redelivers every batch
that was in flight, and the idempotent sinks absorb the repeat (at-least-once, as before).
After a batch's acks, ``commit`` (when given) commits them at once instead of at the next commit
interval, so a crash redelivers only the batches in flight, not a second's worth of finished ones.

Framework-free: ``process`` takes the payloads, ``ack`` one event; the Faust agent supplies both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)


class InOrderOverlap:
    def __init__(
        self,
        process: Callable[[list[Any]], Awaitable[Any]],
        ack: Callable[[Any], Awaitable[Any]],
        *,
        depth: int = 2,
        value: Callable[[Any], Any] = lambda event: event.value,
        on_done: Callable[[Any], None] | None = None,
        on_crash: Callable[[BaseException, int], None] | None = None,
        commit: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.process = process
        self.ack = ack
        self.value = value
        self.on_done = on_done
        self.on_crash = on_crash
        self.commit = commit
        self.depth = depth
        self._slots = asyncio.Semaphore(depth)
        self._last: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self.broken = False  # a batch failed: nothing after it may be acked

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def submit(self, events: Sequence[Any]) -> None:
        """Start a batch; waits first while ``depth`` batches are already in flight."""
        await self._slots.acquire()
        task = asyncio.ensure_future(self._run(list(events), self._last))
        self._last = task
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _run(self, events: list[Any], previous: asyncio.Task[None] | None) -> None:
        try:
            result = await self.process([self.value(e) for e in events])
            if previous is not None:
                await asyncio.shield(previous)  # acks go out in batch order
            if self.broken:
                return
            for event in events:
                await self.ack(event)
            if self.commit is not None:
                await self._commit()
            if self.on_done is not None:
                self.on_done(result)
        except asyncio.CancelledError:
            raise  # the worker is stopping: nothing acked, the batch is redelivered
        except Exception as exc:
            self.broken = True
            if self.on_crash is None:
                raise
            self.on_crash(exc, len(events))
        finally:
            self._slots.release()

    async def _commit(self) -> None:
        try:
            await self.commit()  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a rebalance: the periodic commit catches up
            log.warning("committing after a batch failed (%s); the next commit covers it", exc)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait for the batches in flight (a clean stop); True when all finished in time."""
        if not self._in_flight:
            return True
        _, pending = await asyncio.wait(set(self._in_flight), timeout=timeout)
        return not pending
