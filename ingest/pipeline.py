"""From raw bytes and their metadata to a published ``ImageEvent`` (or a duplicate, or a dead letter).

Order matters: validate → store the blob (claim check) → dedup → publish → mark published.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from core.contracts.images import DeadLetter, ImageEvent
from core.kafka import Topics
from ingest.blobs import BlobStore
from ingest.dedup import Dedup, hamming
from ingest.etl import PreparedImage, prepare
from ingest.exceptions import BadInput
from ingest.provenance import ProvenanceConfig
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
    text: str | bytes = ""  # bytes when the source's encoding is unknown; cleaned in ingest
    media_url: str | None = None  # the image's own URL when source_url is the post around it


class Ingestor:
    """Runs the ETL steps for each item and counts outcomes (``seen``, ``published``, ...)."""

    def __init__(
        self,
        blobs: BlobStore,
        publisher: Publisher,
        dedup: Dedup,
        topics: Topics,
        max_pixels: int,
        provenance: ProvenanceConfig | None = None,
    ) -> None:
        self.blobs = blobs
        self.publisher = publisher
        self.dedup = dedup
        self.topics = topics
        self.max_pixels = max_pixels
        self.provenance = provenance or ProvenanceConfig()  # every published event carries its record
        self.counts: Counter[str] = Counter()
        # image_id -> phash of events queued in this flush window (not yet acked, so not in Redis)
        self._in_flight: dict[str, str] = {}

    def ingest(self, item: RawItem, prepared: PreparedImage | None = None) -> Outcome:
        """Validate, store, dedup and queue one item; every item ends as exactly one outcome.

        ``prepared``: ``item.data`` already prepared with this ingestor's ``max_pixels`` and
        ``provenance`` (an upload does it first, for the rejection reason): decoding and hashing
        are most of the ETL's cost, so they are not done twice."""
        self.counts["seen"] += 1
        try:
            if item.error is not None:
                raise item.error
            if item.data is None:
                raise BadInput("fetch", "the collector produced no bytes and no error")
            if prepared is None:
                prepared = prepare(item.data, self.max_pixels, self.provenance)
        except BadInput as exc:
            self.dead_letter(exc.stage, exc.reason, type(exc).__name__, item)
            return "dead_letter"
        except Exception as exc:  # a decoder bug on hostile bytes must not stop the collector
            log.exception("unexpected error preparing %s %s", item.source, item.source_item_id)
            self.dead_letter("etl", f"unexpected {type(exc).__name__}: {exc}", type(exc).__name__, item)
            return "dead_letter"
        self.dedup.record_sighting(prepared.image_id, item.source, item.source_item_id)
        if prepared.image_id in self._in_flight or self.dedup.is_published(prepared.image_id):
            self.counts["duplicates"] += 1
            return "duplicate"
        near = self._near_duplicate(prepared.phash, prepared.image_id)
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
            text=clean_text(item.text),
            near_duplicate_of=near,
            provenance=prepared.provenance,
            media_url=item.media_url if item.media_url != item.source_url else None,
        )
        self._in_flight[event.image_id] = event.phash

        def on_ok(image_id: str = event.image_id, phash: str = event.phash) -> None:
            self.dedup.mark_published(image_id, phash)
            self.counts["published"] += 1

        def on_fail(exc: Exception, ev: ImageEvent = event) -> None:
            self.dead_letter("publish", f"broker refused the event: {exc}", type(exc).__name__, item, ev)

        self.publisher.send(self.topics.images, event.image_id, event.to_json(), on_ok, on_fail)
        return "published"

    def _near_duplicate(self, phash: str, image_id: str) -> str | None:
        """The closest earlier image within the distance bound: acked ones (Redis index) or ones
        queued in this flush window (not in Redis until their ack)."""
        limit = self.dedup.near_distance
        if limit < 0:
            return None
        candidates = [(hamming(phash, h), i) for i, h in self._in_flight.items() if i != image_id]
        found = self.dedup.find_near_duplicate(phash, image_id)
        if found is not None:
            candidates.append(found)
        close = [c for c in candidates if c[0] <= limit]
        return min(close)[1] if close else None

    def flush(self) -> None:
        """Wait for every queued event's ack; dead letters queued by failures are flushed too."""
        while self.publisher.pending:
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


MAX_TEXT_CHARS = 10_000  # captions are context, not payload: keep events far below the broker's limit


def clean_text(text: Any) -> str:
    """Captions arrive in any encoding: invalid UTF-8 (bytes, or str carrying surrogate escapes from
    file names) is replaced with U+FFFD, control characters other than whitespace are dropped, and the
    text is capped at ``MAX_TEXT_CHARS``. Never fatal."""
    if not isinstance(text, bytes):
        text = str(text or "")
        try:
            text = text.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:  # lone surrogates outside the escape range
            text = text.encode("utf-8", errors="surrogatepass")
    out = text.decode("utf-8", errors="replace")
    out = "".join(c for c in out if c >= " " or c in "\t\n\r")
    return out[:MAX_TEXT_CHARS]
