"""Uploads go through the same ETL and stream as collected images (``source="upload"``).

The ingest pipeline is synchronous (kafka-python, redis-py), so it runs in a one-thread executor:
the event loop keeps serving while an upload is validated, stored and published.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from core.config import Settings
from ingest.blobs import sha256_hex
from ingest.etl import prepare
from ingest.exceptions import BadInput

log = logging.getLogger(__name__)

# One limit for the API and the upload form alike.
MAX_CAPTION = 5000
MAX_SOURCE_URL = 2000


class UploadRejected(Exception):
    """The bytes are not a usable image (the reason says why)."""


@dataclass(frozen=True)
class UploadResult:
    image_id: str
    outcome: str  # published | duplicate
    upload_id: str


class Uploader:
    def __init__(self, settings: Settings, ingestor: Any | None = None) -> None:
        self.settings = settings
        self._ingestor = ingestor
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload")

    def _ingest(self, data: bytes, user: str, caption: str, source_url: str) -> UploadResult:
        try:
            prepare(data, self.settings.max_image_pixels)  # the reason for a rejection, up front
        except BadInput as exc:
            raise UploadRejected(exc.reason) from None
        if self._ingestor is None:
            from ingest.factory import build_ingestor

            self._ingestor = build_ingestor(self.settings)
        from ingest.pipeline import RawItem

        upload_id = uuid.uuid4().hex
        outcome = self._ingestor.ingest(
            RawItem(
                source="upload",
                source_item_id=f"{user}/{upload_id}",
                source_url=source_url,
                data=data,
                author=user,
                text=caption,
            )
        )
        self._ingestor.flush()  # acks=all: the event is on the broker when this returns
        if outcome == "dead_letter":  # prepare() passed, so the broker refused the event
            raise RuntimeError("the image could not be published; it was dead-lettered")
        log.info("upload %s by %s: %s (%s)", upload_id, user, outcome, sha256_hex(data)[:12])
        return UploadResult(image_id=sha256_hex(data), outcome=outcome, upload_id=upload_id)

    async def upload(self, data: bytes, user: str, caption: str = "", source_url: str = "") -> UploadResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._ingest, data, user, caption, source_url)

    def close(self) -> None:
        if self._ingestor is not None:
            self._ingestor.publisher.close()
        self._executor.shutdown(wait=False)
