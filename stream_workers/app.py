"""The Faust app: the detect agent wires the image stream to :class:`BatchProcessor`.

Kept thin on purpose: decoding, detection and sinks live in ``processor``/``sinks``; the detector
knows nothing of Kafka. One model per worker process, run in one dedicated executor thread.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from misinfo.config import Settings
from stream_workers.processor import BatchProcessor, Topics

log = logging.getLogger(__name__)


class ModelSlot:
    """Holds the detector serving now; a hot swap replaces it between batches."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector

    def __call__(self) -> Any:
        return self.detector


def create_app(settings: Settings, detector: Any, *, web_enabled: bool = True) -> faust.App:
    """Build the worker app around an already loaded detector."""
    app = faust.App(
        settings.worker_group,
        broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=web_enabled,
        web_port=settings.worker_web_port,
        web_host="127.0.0.1" if "127.0.0.1" in settings.kafka_bootstrap else "0.0.0.0",  # noqa: S104
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.topic_partitions,
        # Short group timings: a first join otherwise waits for the full rebalance timeout.
        broker_rebalance_timeout=float(os.environ.get("MISINFO_REBALANCE_TIMEOUT_S", "6")),
        broker_session_timeout=float(os.environ.get("MISINFO_SESSION_TIMEOUT_S", "10")),
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        # A batch may hold the model for a while; the poll loop must not think the worker died.
        broker_max_poll_interval=600.0,
        stream_buffer_maxsize=max(4 * settings.max_batch, 64),
    )
    images = app.topic(settings.topic_images, value_type=bytes, key_type=bytes)
    slot = ModelSlot(detector)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector")

    import redis.asyncio as aioredis

    from stream_workers.sinks import RedisSink

    sink = RedisSink(aioredis.Redis.from_url(settings.redis_url), settings.redis_prefix)

    async def send(topic: str, key: str, value: bytes) -> None:
        fut = await app.producer.send(
            topic=topic, key=key.encode(), value=value, partition=None, timestamp=None, headers=None
        )
        await fut  # wait for the broker's acknowledgement, not just the buffer

    processor = BatchProcessor(
        slot,
        sink,
        send,
        Topics(settings.topic_verdicts, settings.topic_dead_letters),
        executor,
        max_pixels=settings.max_image_pixels,
        explain=settings.explain,
    )
    app.misinfo_slot = slot  # type: ignore[attr-defined]
    app.misinfo_processor = processor  # type: ignore[attr-defined]

    @app.agent(images, concurrency=1)  # concurrency > 1 can commit past unfinished work (faust #606)
    async def detect(stream: Any) -> None:
        async for batch in stream.take(settings.max_batch, within=settings.max_wait_s):
            try:
                stats = await processor.process(list(batch))
            except Exception:
                # take() would ack this batch on the way out; exit hard so nothing is committed and
                # the batch is redelivered after restart (crash-only, at-least-once).
                log.exception("unexpected error in a batch of %d; exiting without commit", len(batch))
                logging.shutdown()
                os._exit(70)
            log.info(
                "batch size=%d verdicts=%d reused=%d flagged=%d dead=%d model_ms=%.1f version=%s",
                stats.received,
                stats.verdicts,
                stats.reused,
                stats.flagged,
                stats.dead_letters,
                stats.model_s * 1000,
                slot().version,
            )

    return app
