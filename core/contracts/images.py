"""Contracts that ingest publishes: ``ImageEvent`` and ``DeadLetter``.

``DeadLetter`` lives here, not in stream_workers as the first design drew it, because ingest produces
dead letters too and may import no other package; the workers reuse it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from core.contracts.base import Contract, Timestamp, utcnow
from core.contracts.provenance import Provenance

Source = Literal["reddit", "x", "instagram", "rss", "web", "folder", "upload"]


class ImageEvent(Contract):
    """One image seen in a feed; the bytes travel by reference (claim check) in ``blob_uri``."""

    image_id: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the original bytes")
    blob_uri: str
    source: Source
    source_item_id: str
    source_url: str
    author: str | None
    posted_at: Timestamp | None
    collected_at: Timestamp
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    mime: str
    phash: str
    text: str
    near_duplicate_of: str | None = None  # set by dedup: an earlier image whose verdict may be reused
    # The image file's own URL when ``source_url`` is the post around it (None: the same, or unknown).
    media_url: str | None = None
    # What the image's own metadata says (C2PA, IPTC, generator hints); None: not read (older producers).
    provenance: Provenance | None = None


class DeadLetter(Contract):
    """Input that could not be processed, with the reason; the stream goes on without it."""

    stage: str  # e.g. fetch, etl, publish, decode, detect, sink
    reason: str
    error_type: str
    event: dict[str, Any] | None = None  # the original event, when it parsed as JSON
    raw: str | None = None  # the original payload as text, when it did not
    blob_uri: str | None = None
    source_url: str | None = None
    failed_at: Timestamp = Field(default_factory=utcnow)
