"""From raw bytes and their metadata to a published ``ImageEvent`` (or a duplicate, or a dead letter).

Order matters: validate → store the blob (claim check) → dedup → publish → mark published.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ingest.blobstore import BlobStore
from ingest.contracts import DeadLetter, ImageEvent
from ingest.dedup import Dedup
from ingest.etl import prepare
from ingest.exceptions import BadInput
from ingest.publisher import Publisher

log = logging.getLogger(__name__)

Outcome = Literal["published", "duplicate", "dead_letter"]


@dataclass(frozen=True)
class RawItem:
    """One image as a collector found it: the bytes (or the reason they could not be had) and context."""

    source: str
    source_item_id: str
    source_url: str
    data: bytes | None = None
    error: BadInput | None = None  # set when fetching failed
    author: str | None = None
    posted_at: datetime | None = None
    text: str = ""


@dataclass(frozen=True)
class Topics:
    images: str
    dead_letters: str


class Ingestor:
    """Runs the ETL steps for each item and counts outcomes (``seen``, ``published``, ...)."""

    def __init__(
        self, blobs: BlobStore, publisher: Publisher, dedup: Dedup, topics: Topics, max_pixels: int
    ) -> None:
        self.blobs = blobs
        self.publisher = publisher
        self.dedup = dedup
        self.topics = topics
        self.max_pixels = max_pixels
        self.counts: Counter[str] = Counter()
        self._in_flight: set[str] = set()  # image_ids queued in this flush window

    def ingest(self, item: RawItem) -> Outcome:
        self.counts["seen"] += 1
        try:
            if item.error is not None:
                raise item.error
            assert item.data is not None
            prepared = prepare(item.data, self.max_pixels)
        except BadInput as exc:
            self.dead_letter(exc.stage, exc.reason, type(exc).__name__, item)
            return "dead_letter"
        self.dedup.record_sighting(prepared.image_id, item.source, item.source_item_id)
        if prepared.image_id in self._in_flight or self.dedup.is_published(prepared.image_id):
            self.counts["duplicates"] += 1
            return "duplicate"
        uri = self.blobs.put(item.data)
        event = ImageEvent(
            image_id=prepared.image_id,
            blob_uri=uri,
            source=item.source,  # type: ignore[arg-type]
            source_item_id=item.source_item_id,
            source_url=item.source_url,
            author=item.author,
            posted_at=item.posted_at,
            collected_at=datetime.now(UTC),
            width=prepared.width,
            height=prepared.height,
            mime=prepared.mime,
            phash=prepared.phash,
            text=_clean_text(item.text),
        )
        self._in_flight.add(event.image_id)

        def on_ok(image_id: str = event.image_id) -> None:
            self.dedup.mark_published(image_id)
            self.counts["published"] += 1

        def on_fail(exc: Exception, ev: ImageEvent = event) -> None:
            self.dead_letter("publish", f"broker refused the event: {exc}", type(exc).__name__, item, ev)

        self.publisher.send(self.topics.images, event.image_id, event.to_json(), on_ok, on_fail)
        return "published"

    def flush(self) -> None:
        self.publisher.flush()
        self._in_flight.clear()

    def dead_letter(
        self, stage: str, reason: str, error_type: str, item: RawItem, event: ImageEvent | None = None
    ) -> None:
        self.counts["dead_letters"] += 1
        log.info("dead letter from %s %s: %s: %s", item.source, item.source_item_id, stage, reason)
        letter = DeadLetter(
            stage=stage,
            reason=reason,
            error_type=error_type,
            event=event.to_dict()
            if event
            else {
                "source": item.source,
                "source_item_id": item.source_item_id,
                "source_url": item.source_url,
            },
            source_url=item.source_url,
        )
        # A dead letter that cannot be published either is an outage: raise rather than lose it.
        self.publisher.send(self.topics.dead_letters, item.source_item_id, letter.to_json())


def _clean_text(text: Any) -> str:
    """Captions arrive in any encoding; undecodable bytes are replaced, never fatal."""
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="replace")
    return str(text or "")
