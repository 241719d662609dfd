"""Uploads go through the same ETL and stream as collected images (``source="upload"``).

The ETL (decode, perceptual hash, provenance, dedup, publish: :mod:`moderation.upload_etl`) is
CPU-bound Python that holds the GIL. Run on a thread of the service, it took the event loop's
time from every other request: under 50 moderators and 10 uploaders it was 29% of the service's
samples, and the queue's p99 was 2.7 s. So it runs in a worker process of its own (a one-process
pool, started with ``spawn``: no fork of a process that has threads and open connections). One
process keeps today's order: uploads to one service are ingested one at a time, so two uploads of
the same bytes are one ``published`` and one ``duplicate``. The upload still answers once the event
is on the broker, with the image id and the dedup result, as before.

A worker that dies (a decoder crash on hostile bytes) breaks only that upload: it gets 503, the
pool is started afresh, and the service itself lives on (a crash on a thread took it down).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from core.config import Settings
from moderation import upload_etl
from moderation.upload_etl import UploadRejected, UploadResult

log = logging.getLogger(__name__)

# One limit for the API and the upload form alike.
MAX_CAPTION = 5000
MAX_SOURCE_URL = 2000


class UploadUnavailable(Exception):
    """The upload worker died while ingesting; nothing was published (the client may retry)."""


class Uploader:
    """``await upload(...)``; ``ingestor``: run the ETL on a thread of this process with that
    ingest chain instead of a worker process (for callers that own one)."""

    def __init__(self, settings: Settings, ingestor: Any | None = None) -> None:
        self.settings = settings
        self._ingestor = ingestor
        self._executor: Executor | None = None

    def _pool(self) -> Executor:
        if self._executor is None:
            if self._ingestor is not None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload")
            else:
                self._executor = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=upload_etl.start_worker,
                    initargs=(self.settings,),
                )
        return self._executor

    async def start(self) -> None:
        """Start the worker now (importing PIL, Kafka and Redis clients takes a second or two),
        so the first upload does not wait for it."""
        if self._ingestor is None:
            await asyncio.get_running_loop().run_in_executor(self._pool(), upload_etl.ready)

    async def upload(self, data: bytes, user: str, caption: str = "", source_url: str = "") -> UploadResult:
        """Ingest one upload; raises UploadRejected (not an image: the reason says why) or
        UploadUnavailable (the worker died)."""
        loop = asyncio.get_running_loop()
        pool = self._pool()
        try:
            if self._ingestor is not None:
                result = await loop.run_in_executor(
                    pool, upload_etl.ingest_upload, self._ingestor, data, user, caption, source_url
                )
            else:
                result = await loop.run_in_executor(
                    pool, upload_etl.ingest_in_worker, data, user, caption, source_url
                )
        except BrokenProcessPool:
            log.error("the upload worker died during an upload by %s; starting a new one", user)
            if self._executor is pool:
                self._executor = None
                pool.shutdown(wait=False)
            raise UploadUnavailable("the upload worker stopped; nothing was published, try again") from None
        log.info("upload %s by %s: %s (%s)", result.upload_id, user, result.outcome, result.image_id[:12])
        return result

    def worker_pids(self) -> list[int]:
        """The upload worker processes running now (none before the first upload or start())."""
        if isinstance(self._executor, ProcessPoolExecutor):
            return [p.pid for p in (self._executor._processes or {}).values() if p.pid is not None]
        return []

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._ingestor is not None:
            self._ingestor.publisher.close()


__all__ = ["MAX_CAPTION", "MAX_SOURCE_URL", "UploadRejected", "UploadResult", "UploadUnavailable", "Uploader"]
