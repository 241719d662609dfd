"""The Faust app: the detect agent wires the image stream to :class:`BatchProcessor`.

Kept thin on purpose: decoding, detection and sinks live in ``processor``/``sinks``; the detector
knows nothing of Kafka. One model per worker process, run in one dedicated executor thread.
Besides the detect agent: a task that follows the control topic (hot swap), a timer for consumer
lag, a timer that rebuilds the verdict records when Redis lost them (``recovery``), and ``/metrics``
on Faust's own web server.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust

from core.config import Settings
from core.kafka import Topics, make_faust_app
from detector.loading import ensure_model, load_detector
from stream_workers.control import ModelSwapper, follow_control_topic
from stream_workers.metrics import WorkerMetrics
from stream_workers.overlap import InOrderOverlap
from stream_workers.processor import BatchProcessor
from stream_workers.recovery import RecordsWatch

log = logging.getLogger(__name__)


class ModelSlot:
    """Holds the detector serving now; a hot swap replaces it between batches."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector

    def __call__(self) -> Any:
        return self.detector


def create_app(settings: Settings, detector: Any, *, web_enabled: bool = True) -> faust.App:
    """Build the worker app around an already loaded detector."""
    app = make_faust_app(
        settings,
        settings.worker_group,
        web_enabled=web_enabled,
        # A batch may hold the model for a while; the poll loop must not think the worker died.
        broker_max_poll_interval=600.0,
        stream_buffer_maxsize=max(4 * settings.max_batch, 64),
    )
    images = app.topic(settings.topic_images, value_type=bytes, key_type=bytes)
    slot = ModelSlot(detector)
    metrics = WorkerMetrics()
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
        Topics.from_settings(settings),
        executor,
        max_pixels=settings.max_image_pixels,
        explain=settings.explain,
        decode_executor=ThreadPoolExecutor(
            max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="decode"
        ),
        prepare_executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare"),
        recheck_quality=settings.recheck_jpeg_quality,
    )

    def load_version(update: Any, resolved: dict[str, Any]) -> Any:
        return load_detector(
            settings,
            model_path=resolved["model_path"],
            adapter_path=resolved["adapter_path"] or "",
            profile=resolved["profile"] or "",
            version=str(update.version),
            model_name=update.model_name,
        )

    swapper = ModelSwapper(
        slot,
        load_version,
        model_name=settings.model_name,
        base_model=ensure_model(settings),
        tracking_uri=settings.mlflow_tracking_uri,
        cache_dir=Path(settings.state_dir) / "models" / "registry",
        on_swap=lambda _u: metrics.swapped(),
    )
    app.misinfo = {"slot": slot, "processor": processor, "metrics": metrics, "swapper": swapper}  # type: ignore[attr-defined]

    def batch_done(stats: Any) -> None:
        metrics.observe_batch(stats)
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

    def batch_crashed(exc: BaseException, size: int) -> None:
        # Nothing of this batch (or any later one) is acked; exit hard so no commit moves past it and
        # every batch in flight is redelivered after restart (crash-only, at-least-once).
        log.error("unexpected error in a batch of %d; exiting without commit", size, exc_info=exc)
        logging.shutdown()
        os._exit(70)

    @app.agent(images, concurrency=1)  # concurrency > 1 can commit past unfinished work (faust #606)
    async def detect(stream: Any) -> None:
        # Batches overlap (prepare k+1 | score k | finish k-1) and are acked in order, only when done.
        overlap = InOrderOverlap(
            processor.process,
            stream.ack,
            depth=settings.worker_pipeline_depth,
            on_done=batch_done,
            on_crash=batch_crashed,
            # Commit as soon as a batch is acked: a crash then repeats only the batches in flight.
            commit=lambda: app.consumer.commit(),
        )
        try:
            async for events in stream.noack_take(settings.max_batch, within=settings.max_wait_s):
                await overlap.submit(events)
        finally:
            # A clean stop finishes (and acks) what is in flight; what does not finish is redelivered.
            await overlap.drain(timeout=settings.worker_stop_grace_s)

    @app.task
    async def follow_control() -> None:
        # Faust crashes the app when a task raises; a broker hiccup here must only delay swaps.
        while True:
            try:
                await follow_control_topic(settings.kafka_bootstrap, settings.topic_control, swapper)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.warning("control topic reader failed; reconnecting in 5 s", exc_info=True)
                await asyncio.sleep(5)

    @app.timer(interval=2.0)
    async def consumer_lag() -> None:
        # A metrics timer must never take the worker down: Faust crashes the app when a timer raises.
        try:
            consumer = app.consumer
            lags = {}
            for tp in consumer.assignment():
                if tp.topic != settings.topic_images:
                    continue
                position, highwater = await consumer.position(tp), consumer.highwater(tp)
                if position is not None and highwater is not None:  # unknown during a rebalance
                    lags[tp.partition] = highwater - position
            metrics.set_lags(lags)
        except Exception:  # noqa: BLE001
            log.warning("consumer lag not measured this time", exc_info=True)

    records = RecordsWatch(settings.kafka_bootstrap, Topics.from_settings(settings), sink)

    @app.timer(interval=2.0)
    async def records_watch() -> None:
        # Redis lost its data (a memory-only Redis restarted): rebuild the records from the topics.
        try:
            await records.check()
        except Exception as exc:  # noqa: BLE001 - Redis or the broker down: the next tick tries again
            log.warning("verdict records not checked this time (%s)", exc)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type="text/plain")

    return app
