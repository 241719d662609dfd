"""One upload through ingest's ETL (decode, perceptual hash, provenance, blob, dedup, publish), as
the upload worker process runs it (see :mod:`moderation.uploads` for why it is a process of its own).

Everything here is synchronous (PIL, kafka-python, redis-py) and knows nothing of the event loop.
In a worker process, :func:`start_worker` builds the ingest chain once and :func:`ingest_in_worker`
uses it for every upload; :func:`ingest_upload` is the same work on an ingest chain the caller owns.
"""

from __future__ import annotations

import signal
import uuid
from dataclasses import dataclass
from typing import Any

from core.config import Settings
from ingest.blobs import sha256_hex
from ingest.etl import prepare
from ingest.exceptions import BadInput


class UploadRejected(Exception):
    """The bytes are not a usable image (the reason says why)."""


@dataclass(frozen=True)
class UploadResult:
    image_id: str
    outcome: str  # published | duplicate
    upload_id: str


def ingest_upload(ingestor: Any, data: bytes, user: str, caption: str, source_url: str) -> UploadResult:
    """Validate, store, dedup and publish one upload; return once the broker acknowledged it.

    Raises UploadRejected (with the reason) for bytes that are not a usable image: an upload is
    refused to its sender, never dead-lettered."""
    from ingest.pipeline import RawItem

    try:
        prepared = prepare(data, ingestor.max_pixels, ingestor.provenance)
    except BadInput as exc:
        raise UploadRejected(exc.reason) from None
    upload_id = uuid.uuid4().hex
    item = RawItem(
        source="upload",
        source_item_id=f"{user}/{upload_id}",
        source_url=source_url,
        data=data,
        author=user,
        text=caption,
    )
    outcome = ingestor.ingest(item, prepared)
    ingestor.flush()  # acks=all: the event is on the broker when this returns
    if outcome == "dead_letter":  # prepare() passed, so the broker refused the event
        raise RuntimeError("the image could not be published; it was dead-lettered")
    return UploadResult(image_id=sha256_hex(data), outcome=outcome, upload_id=upload_id)


# -- in the worker process ------------------------------------------------------------------------
_ingestor: Any = None


def start_worker(settings: Settings) -> None:
    """Initializer of an upload worker process: build its own ingest chain (its own Redis and
    Kafka clients: connections do not cross processes)."""
    global _ingestor
    # Ctrl-C reaches the whole process group; the service shuts the pool down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ingest.factory import build_ingestor

    _ingestor = build_ingestor(settings)


def ingest_in_worker(data: bytes, user: str, caption: str, source_url: str) -> UploadResult:
    return ingest_upload(_ingestor, data, user, caption, source_url)


def ready() -> bool:
    """A no-op that the service submits at start, so the first upload finds the worker up."""
    return _ingestor is not None
