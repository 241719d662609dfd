"""Verdict records rebuilt from the topics after Redis lost them.

The embedded Redis keeps nothing on disk, so a restart empties it; a production Redis without its
append-only file, or one restored from an old snapshot, does the same. The records are not the
source of truth: every verdict is on the verdicts topic, and the worker publishes a verdict *before*
it writes the record (``processor.finish``), so any record that existed was on the topic first.

How a loss is noticed: a marker key (``Keys.records_marker``) is present exactly while the records
are whole. Every worker checks it every few seconds (and at start). When it is gone, one worker takes
a lease on it (``rebuilding:<id>``, SET NX with a TTL it keeps refreshing), replays the verdicts topic
to its end (the last verdict per image wins) and the images topic for the events those verdicts
judged, writes each record that is missing or older than the topic's verdict through the worker's
own sink (so indexes and the review queue come back too), then marks the records whole
(``complete:<id>``), but only if its lease is still there: a second loss during the rebuild clears
the lease and the next check rebuilds again. A worker that dies mid-rebuild leaves a lease that
expires, and another worker takes over. ``misinfo verdicts rebuild`` runs the same rebuild by hand.

Lost with the memory, and not rebuilt here: moderators' labels (they are on the feedback topic),
users and sessions, ingest's dedup marks (an image seen again is published again and judged again
by nobody: its record is back), the retrain trigger's counters. Memory: the rebuild holds the last
verdict per image and the matching events, about 2 KB an image.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from core.contracts.base import ContractError
from core.contracts.images import ImageEvent
from core.contracts.verdicts import Verdict
from core.kafka import Topics
from stream_workers.sinks import RedisSink

log = logging.getLogger(__name__)

LEASE_S = 60  # a rebuilding worker refreshes it with every chunk; a dead one's lease runs out

# Mark the records whole only if our lease still holds (a second loss would have removed it).
_COMPLETE_IF_LEASED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


@dataclass
class RebuildStats:
    verdict_messages: int = 0  # read from the verdicts topic
    images: int = 0  # distinct images with a verdict there
    restored: int = 0  # records written (missing, or older than the topic's last verdict)
    present: int = 0  # records already there and up to date
    without_event: int = 0  # verdicts whose event is no longer on the images topic
    unreadable: int = 0  # messages that are not a Verdict / an ImageEvent
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def read_topic(bootstrap: str, topic: str) -> AsyncIterator[Any]:
    """Every record of ``topic`` from the start until it has caught up with the topic's end, outside
    any group. The end is the high watermark that fetch responses carry: Tansu's ListOffsets
    (``end_offsets``, ``seek_to_end``) answers the last *batch's* first offset + 1, short of the end
    whenever the last produce request held several records."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fills the metadata
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        left = set(partitions)
        while left:
            batches = await consumer.getmany(*left, timeout_ms=1000, max_records=2000)
            for records in batches.values():
                for rec in records:
                    yield rec
            for tp in list(left):
                end = consumer.highwater(tp)  # None until a fetch for it came back
                if end is not None and await consumer.position(tp) >= end:
                    left.discard(tp)
    finally:
        await consumer.stop()


async def rebuild_records(
    bootstrap: str,
    topics: Topics,
    sink: RedisSink,
    *,
    chunk: int = 500,
    keep_alive: Callable[[], Awaitable[Any]] | None = None,
) -> RebuildStats:
    """Write every record the verdicts topic implies and Redis lacks (or holds an older verdict of).
    ``keep_alive`` is awaited once per chunk (the lease refresh)."""
    started = time.perf_counter()
    stats = RebuildStats()
    latest: dict[str, Verdict] = {}
    async for rec in read_topic(bootstrap, topics.verdicts):
        stats.verdict_messages += 1
        try:
            verdict = Verdict.parse(rec.value)
        except ContractError:
            stats.unreadable += 1
            continue
        seen = latest.get(verdict.image_id)
        if seen is None or verdict.decided_at >= seen.decided_at:
            latest[verdict.image_id] = verdict
        if stats.verdict_messages % 5000 == 0:
            await asyncio.sleep(0)  # parsing runs on the worker's loop: let batches and commits through
    stats.images = len(latest)
    if not latest:
        stats.seconds = time.perf_counter() - started
        return stats

    events: dict[str, ImageEvent] = {}
    n = 0
    async for rec in read_topic(bootstrap, topics.images):
        n += 1
        key = rec.key.decode(errors="replace") if rec.key else ""
        if key not in latest and rec.key is not None:
            continue  # ingest keys events by image id: skip the unneeded without parsing them
        try:
            event = ImageEvent.parse(rec.value)
        except ContractError:
            stats.unreadable += 1
            continue
        if event.image_id in latest:
            events[event.image_id] = event
        if n % 5000 == 0:
            await asyncio.sleep(0)

    ids = list(latest)
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        stored = await _decided_at(sink, part)
        pairs = []
        for image_id, have in zip(part, stored, strict=True):
            verdict = latest[image_id]
            if have is not None and have >= verdict.decided_at.timestamp():
                stats.present += 1
            elif image_id not in events:
                stats.without_event += 1
            else:
                pairs.append((events[image_id], verdict))
        await sink.write(pairs)
        stats.restored += len(pairs)
        if keep_alive is not None:
            await keep_alive()
    stats.seconds = time.perf_counter() - started
    return stats


async def _decided_at(sink: RedisSink, image_ids: list[str]) -> list[float | None]:
    pipe = sink.redis.pipeline(transaction=False)
    for image_id in image_ids:
        pipe.hget(sink.verdict_key(image_id), "decided_at")
    return [float(v) if v is not None else None for v in await pipe.execute()]


class RecordsWatch:
    """Notices that Redis lost the verdict records (the marker is gone) and rebuilds them once."""

    def __init__(self, bootstrap: str, topics: Topics, sink: RedisSink, *, lease_s: int = LEASE_S) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.sink = sink
        self.marker = sink.keys.records_marker()
        self.lease_s = lease_s
        self.rebuilds = 0

    async def check(self, *, force: bool = False) -> RebuildStats | None:
        """Rebuild when the marker is gone (or always, with ``force``) and no other worker is at it;
        returns the rebuild's figures, or None when nothing was done."""
        redis = self.sink.redis
        while True:
            if not force and await redis.get(self.marker) is not None:
                return None
            lease = f"rebuilding:{uuid.uuid4().hex}"
            if not await redis.set(self.marker, lease, nx=not force, ex=self.lease_s):
                return None  # another worker holds the lease
            log.warning(
                "verdict records: rebuilding from %s (Redis lost its data or is new)", self.topics.verdicts
            )

            async def keep_alive(lease: str = lease) -> None:
                await redis.expire(self.marker, self.lease_s)

            stats = await rebuild_records(self.bootstrap, self.topics, self.sink, keep_alive=keep_alive)
            done = f"complete:{lease.split(':', 1)[1]}"
            if await redis.eval(_COMPLETE_IF_LEASED, 1, self.marker, lease, done):
                self.rebuilds += 1
                log.warning("verdict records: rebuilt %s", stats.to_dict())
                return stats
            log.warning("verdict records: Redis lost its data again during the rebuild; starting over")
            force = False
