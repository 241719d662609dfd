"""Batches overlap, yet each is acked only after it and every earlier batch are done."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream_workers.overlap import InOrderOverlap


class Gated:
    """A fake ``process``: each batch (named by its first payload) waits for its own gate."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.finished: list[str] = []

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def __call__(self, payloads: list[Any]) -> str:
        name = payloads[0]
        self.started.append(name)
        await self.gate(name).wait()
        if name.startswith("boom"):
            raise RuntimeError(name)
        self.finished.append(name)
        return name


async def settle() -> None:
    for _ in range(20):  # let every ready task run a step; no wall-clock wait involved
        await asyncio.sleep(0)


async def test_a_later_batch_that_finishes_first_is_acked_after_the_earlier_one() -> None:
    process, acked = Gated(), []

    async def ack(event: str) -> None:
        acked.append(event)

    overlap = InOrderOverlap(process, ack, depth=2, value=lambda e: e)
    await overlap.submit(["a", "a2"])
    await overlap.submit(["b", "b2"])
    await settle()
    assert process.started == ["a", "b"]  # both in flight at once

    process.gate("b").set()
    await settle()
    assert process.finished == ["b"] and acked == []  # b is done but may not pass a

    process.gate("a").set()
    assert await overlap.drain(timeout=5)
    assert acked == ["a", "a2", "b", "b2"]


async def test_no_more_than_depth_batches_are_in_flight() -> None:
    process, acked = Gated(), []

    async def ack(event: str) -> None:
        acked.append(event)

    overlap = InOrderOverlap(process, ack, depth=2, value=lambda e: e)
    await overlap.submit(["a"])
    await overlap.submit(["b"])
    third = asyncio.ensure_future(overlap.submit(["c"]))
    await settle()
    assert not third.done() and process.started == ["a", "b"]

    process.gate("a").set()
    await settle()
    assert third.done() and process.started == ["a", "b", "c"]
    process.gate("b").set()
    process.gate("c").set()
    assert await overlap.drain(timeout=5)
    assert acked == ["a", "b", "c"]


async def test_a_failed_batch_is_reported_and_nothing_after_it_is_acked() -> None:
    process, acked, crashes = Gated(), [], []

    async def ack(event: str) -> None:
        acked.append(event)

    overlap = InOrderOverlap(
        process, ack, depth=3, value=lambda e: e, on_crash=lambda exc, n: crashes.append((str(exc), n))
    )
    await overlap.submit(["a"])
    await overlap.submit(["boom", "x"])
    await overlap.submit(["c"])
    for name in ("c", "boom", "a"):
        process.gate(name).set()
    assert await overlap.drain(timeout=5)
    assert crashes == [("boom", 2)]
    assert acked == ["a"]  # c finished, but acking it would commit past the failed batch


async def test_a_stop_leaves_unfinished_batches_unacked() -> None:
    process, acked = Gated(), []

    async def ack(event: str) -> None:
        acked.append(event)

    overlap = InOrderOverlap(process, ack, depth=2, value=lambda e: e)
    await overlap.submit(["a"])
    assert not await overlap.drain(timeout=0.05)  # still waiting on its gate
    for task in list(overlap._in_flight):
        task.cancel()
    await settle()
    assert acked == [] and overlap.in_flight == 0


def test_depth_must_be_positive() -> None:
    async def noop(_: Any) -> None:
        return None

    with pytest.raises(ValueError, match="depth"):
        InOrderOverlap(noop, noop, depth=0)


async def test_each_batch_is_committed_right_after_its_acks_and_a_failed_commit_is_not_fatal() -> None:
    process, log = Gated(), []

    async def ack(event: str) -> None:
        log.append(event)

    commits = iter([RuntimeError("rebalance in progress"), None, None])

    async def commit() -> None:
        log.append("commit")
        outcome = next(commits)
        if outcome is not None:
            raise outcome

    overlap = InOrderOverlap(process, ack, depth=2, value=lambda e: e, commit=commit)
    await overlap.submit(["a", "a2"])
    await overlap.submit(["b"])
    process.gate("b").set()
    process.gate("a").set()
    assert await overlap.drain(timeout=5)
    await overlap.submit(["c"])
    process.gate("c").set()
    assert await overlap.drain(timeout=5)
    # The first commit failed; later batches were still acked and committed in order.
    assert log == ["a", "a2", "commit", "b", "commit", "c", "commit"]
    assert not overlap.broken
