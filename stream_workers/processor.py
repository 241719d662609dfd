"""One batch of image events → verdicts in Redis and on the verdicts topic, or dead letters.

Framework-free (the Faust agent only hands payloads in), so it is unit-testable. Guarantees:

- Bad input (schema violation, missing blob, undecodable image, a model error on one image) becomes
  a dead letter with stage and reason; the rest of the batch still gets verdicts.
- The model runs in one dedicated executor thread: the event loop keeps acking, committing and
  flushing while the model works.
- A batch goes through three steps, so batches can overlap (``stream_workers/overlap.py``):
  ``prepare`` (parse, known verdicts, blob reads and decodes, the detector's own preprocessing, all
  off the model thread), ``score`` (the model thread), ``finish`` (Redis and the produced records).
  While batch k is in the model, batch k+1 is prepared and batch k-1 finished.
- ``process`` returns only after every sink write and every produced record is acknowledged; infra
  errors (Redis or broker down) are retried with backoff rather than raised, because Faust's
  ``stream.take()`` would ack a batch whose body raised. Offsets therefore move only past work
  that is done: at-least-once, with idempotent sinks.
- ``finish`` publishes a batch's verdicts *before* it writes their records, so a record in Redis
  proves its verdict is on the topic: a redelivered batch whose records exist is not published
  again (fewer repeats for subscribers), and a Redis that lost its records can be rebuilt from the
  topic alone (``stream_workers/recovery.py``).
- An event payload over ``MAX_EVENT_BYTES`` is a dead letter before any parsing: images travel by
  reference, so a giant record on the images topic is a foreign producer's mistake, not an image.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from core.contracts.base import ContractError
from core.contracts.images import DeadLetter, ImageEvent
from core.contracts.verdicts import PostContext, Verdict
from core.kafka import Topics
from detector.fusion import fuse, refuse
from ingest.blobs import BlobNotFound, read_blob
from ingest.etl import decode_rgb
from ingest.exceptions import BadInput
from stream_workers.recheck import with_recheck
from stream_workers.sinks import RedisSink

log = logging.getLogger(__name__)

Send = Callable[[str, str, bytes], Awaitable[None]]  # (topic, key, value), returns once acknowledged

# An ImageEvent is about 1 KB (a caption is capped at 10,000 characters by ingest); anything near the
# broker's 1 MB message limit is not an image event. Tansu accepts far larger records.
MAX_EVENT_BYTES = 256 * 1024


@dataclass
class PreparedBatch:
    """A batch between its steps: what is decided already and what the model still has to judge."""

    stats: BatchStats
    detector: Any  # one model version for the whole batch (a hot swap affects the next batch)
    done: list[tuple[ImageEvent, Verdict]]
    dead: list[DeadLetter]
    ready: list[tuple[ImageEvent, Image.Image]]
    inputs: Any = None  # the detector's prepared model inputs; None: score() runs detect() itself
    recorded: set[str] = field(default_factory=set)  # image ids whose record (so verdict) exists


@dataclass
class BatchStats:
    received: int = 0
    verdicts: int = 0
    reused: int = 0
    dead_letters: int = 0
    flagged: int = 0
    model_s: float = 0.0
    dead_reasons: list[str] = field(default_factory=list)
    e2e_s: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


class BatchProcessor:
    def __init__(
        self,
        detector_ref: Callable[[], Any],
        sink: RedisSink,
        send: Send,
        topics: Topics,
        executor: Executor,
        *,
        max_pixels: int = 50_000_000,
        explain: str = "none",
        retry_backoff_s: tuple[float, float] = (0.2, 10.0),
        decode_executor: Executor | None = None,
        prepare_executor: Executor | None = None,
        recheck_quality: int = 0,
    ) -> None:
        # Returns the detector serving now (hot swaps replace it); with a re-check quality, that
        # detector also judges a JPEG re-encode of each image in the same batch (stream_workers/recheck.py).
        self.detector_ref = with_recheck(detector_ref, recheck_quality)
        self.sink = sink
        self.send = send
        self.topics = topics
        self.executor = executor
        # Blob reads and decodes run image by image on their own pool (Pillow releases the GIL), so
        # they overlap each other and the event loop instead of queueing in the model's one thread.
        self.decode_executor = decode_executor or executor
        # The detector's preprocessing (resize, patches) of batch k+1 runs here while batch k is in
        # the model; one thread, so two batches never share the processor at once.
        self.prepare_executor = prepare_executor or self.decode_executor
        self.max_pixels = max_pixels
        self.explain = explain
        self.retry_backoff_s = retry_backoff_s

    async def process(self, payloads: list[bytes]) -> BatchStats:
        """The three steps in a row: returns once every write and record of the batch is acknowledged."""
        return await self.finish(await self.score(await self.prepare(payloads)))

    async def prepare(self, payloads: list[bytes]) -> PreparedBatch:
        """Parse, reuse known verdicts, read and decode blobs, and run the detector's preprocessing."""
        stats = BatchStats(received=len(payloads))
        detector = self.detector_ref()  # one model version for the whole batch
        version = str(detector.version)
        dead: list[DeadLetter] = []
        events: list[ImageEvent] = []
        for raw in payloads:
            if len(raw) > MAX_EVENT_BYTES:
                reason = f"an event of {len(raw)} bytes is over the {MAX_EVENT_BYTES}-byte limit"
                dead.append(_letter("schema", reason + " (images travel by blob_uri)", "TooLarge", raw=raw))
                continue
            try:
                events.append(ImageEvent.parse(raw))
            except ContractError as exc:
                dead.append(_letter("schema", str(exc), "ContractError", raw=raw))
        events = _unique(events)  # a replayed duplicate inside one batch is judged once

        done: list[tuple[ImageEvent, Verdict]] = []
        todo: list[ImageEvent] = []
        ids = [ev.image_id for ev in events]
        known = await self._retry("redis read", lambda: self.sink.known(ids, version))
        recorded = {ev.image_id for ev, k in zip(events, known, strict=True) if k is not None}
        # Ingest links near-duplicates: the earlier image's verdict by the same version stands for them.
        linked = [
            ev.near_duplicate_of
            for ev, k in zip(events, known, strict=True)
            if k is None and ev.near_duplicate_of
        ]
        earlier_list = await self._retry("redis read", lambda: self.sink.known(linked, version))
        earlier = {v.image_id: v for v in earlier_list if v is not None}
        for ev, verdict in zip(events, known, strict=True):
            if verdict is None and ev.near_duplicate_of in earlier:
                verdict = earlier[ev.near_duplicate_of].model_copy(
                    update={
                        "image_id": ev.image_id,
                        "reused_from": ev.near_duplicate_of,
                        "decided_at": _now(),
                        "context": PostContext.of(ev),  # this image's post, not the earlier one's
                    }
                )
                verdict = refuse(verdict, ev.provenance)  # the shared model part, this image's own evidence
            if verdict is not None:
                done.append((ev, verdict))
                stats.reused += 1
            else:
                todo.append(ev)

        loop = asyncio.get_running_loop()
        loaded = await asyncio.gather(
            *(loop.run_in_executor(self.decode_executor, self._load_image, ev) for ev in todo)
        )
        ready: list[tuple[ImageEvent, Image.Image]] = []
        for ev, img_or_letter in zip(todo, loaded, strict=True):
            if isinstance(img_or_letter, DeadLetter):
                dead.append(img_or_letter)
            else:
                ready.append((ev, img_or_letter))

        batch = PreparedBatch(stats, detector, done, dead, ready, recorded=recorded)
        prepare = getattr(detector, "prepare", None)
        if ready and prepare is not None:
            try:
                batch.inputs = await loop.run_in_executor(
                    self.prepare_executor, prepare, [img for _, img in ready]
                )
            except Exception as exc:  # noqa: BLE001 - score() isolates the bad image, image by image
                log.warning("preparing a batch of %d failed (%s); scoring image by image", len(ready), exc)
        return batch

    async def score(self, batch: PreparedBatch) -> PreparedBatch:
        """Run the model (its one thread) on what is left to judge; verdicts or dead letters."""
        if not batch.ready:
            return batch
        detector = batch.detector
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        results = await loop.run_in_executor(self.executor, self._detect_isolating, detector, batch)
        batch.stats.model_s = time.perf_counter() - started
        per_image_ms = batch.stats.model_s * 1000.0
        for (ev, _), res in zip(batch.ready, results, strict=True):
            if isinstance(res, DeadLetter):
                batch.dead.append(res)
                continue
            # The model's scores stay as they are; label and flag are final after the fusion policy.
            recheck_label = getattr(res, "recheck_label", None)
            fused = fuse(res.label, res.flagged, ev.provenance)
            batch.done.append(
                (
                    ev,
                    Verdict(
                        image_id=ev.image_id,
                        scores=res.scores,
                        explanation=res.explanation,
                        model_name=detector.name,
                        model_version=str(detector.version),
                        profile_id=detector.profile_id,
                        latency_ms=per_image_ms,
                        context=PostContext.of(ev),
                        **fused.verdict_fields(res.label, res.flagged, ev.provenance, recheck_label),
                    ),
                )
            )
        return batch

    async def finish(self, batch: PreparedBatch) -> BatchStats:
        """Produce the verdicts and dead letters, then write the records; returns once all are acked."""
        done, dead, stats = batch.done, batch.dead, batch.stats
        # Publish first: a record then always means its verdict is on the topic (see the module doc).
        news = [(ev, v) for ev, v in done if ev.image_id not in batch.recorded]
        await self._retry("produce", lambda: self._publish(news, dead))
        await self._retry("redis write", lambda: self.sink.write(done))
        now = datetime.now(UTC)
        stats.verdicts = len(done)
        stats.flagged = sum(v.flagged for _, v in done)
        stats.dead_letters = len(dead)
        stats.dead_reasons = [d.stage for d in dead]
        stats.labels = [v.label for _, v in done]
        stats.e2e_s = [(now - ev.collected_at).total_seconds() for ev, _ in done]
        return stats

    async def _publish(self, done: list[tuple[ImageEvent, Verdict]], dead: list[DeadLetter]) -> None:
        sends = [self.send(self.topics.verdicts, ev.image_id, v.to_json()) for ev, v in done]
        sends += [
            self.send(self.topics.dead_letters, (d.event or {}).get("image_id", "") or "unknown", d.to_json())
            for d in dead
        ]
        await asyncio.gather(*sends)

    def _load_image(self, ev: ImageEvent) -> Image.Image | DeadLetter:
        try:
            return decode_rgb(read_blob(ev.blob_uri), self.max_pixels)[1]
        except BlobNotFound:
            return _letter("blob", f"blob not found: {ev.blob_uri}", "BlobNotFound", event=ev)
        except BadInput as exc:
            return _letter("decode", exc.reason, "BadInput", event=ev)

    def _detect_isolating(self, detector: Any, batch: PreparedBatch) -> list[Any]:
        """Run the batch; if it fails, run each image alone so one bad image costs only itself."""
        ready = batch.ready
        images = [img for _, img in ready]
        explain = self.explain == "flagged"
        try:
            if batch.inputs is not None:
                return list(detector.score(batch.inputs, explain=explain))
            return list(detector.detect(images, explain=explain))
        except Exception as batch_exc:  # noqa: BLE001 - isolate, then report per image
            log.warning("batch of %d failed (%s); isolating image by image", len(images), batch_exc)
        out: list[Any] = []
        for ev, img in ready:
            try:
                out.extend(detector.detect([img], explain=explain))
            except Exception as exc:  # noqa: BLE001 - becomes a dead letter with its reason
                out.append(_letter("detect", f"model error: {exc}", type(exc).__name__, event=ev))
        return out

    async def _retry(self, what: str, op: Callable[[], Awaitable[Any]]) -> Any:
        delay, cap = self.retry_backoff_s
        while True:
            try:
                return await op()
            except (ConnectionError, OSError, TimeoutError) as exc:
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(cap, delay * 2)


def _now() -> datetime:
    return datetime.now(UTC)


def _is_transient(exc: Exception) -> bool:
    import redis
    from aiokafka.errors import KafkaError

    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | KafkaError)


def _unique(events: list[ImageEvent]) -> list[ImageEvent]:
    seen: dict[str, ImageEvent] = {}
    for ev in events:
        seen.setdefault(ev.image_id, ev)
    return list(seen.values())


def _letter(
    stage: str, reason: str, error_type: str, *, event: ImageEvent | None = None, raw: bytes | None = None
) -> DeadLetter:
    return DeadLetter(
        stage=stage,
        reason=reason,
        error_type=error_type,
        event=event.to_dict() if event else None,
        raw=raw[:10_000].decode("utf-8", errors="replace") if raw is not None else None,
        blob_uri=event.blob_uri if event else None,
        source_url=event.source_url if event else None,
    )
