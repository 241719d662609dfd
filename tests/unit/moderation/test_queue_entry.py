"""A queue entry read from the stored JSON by projection says what the full contracts say."""

from __future__ import annotations

from datetime import UTC, datetime

from core.contracts.images import ImageEvent
from core.contracts.provenance import Provenance
from core.contracts.verdicts import Verdict
from moderation.store import _queue_entry

IMAGE_ID = "cd" * 32


def verdict(**extra: object) -> Verdict:
    return Verdict(
        image_id=IMAGE_ID,
        label="manipulated",
        scores={"authentic": 0.2, "manipulated": 0.5, "synthesized": 0.3},
        model_name="m",
        model_version="7",
        profile_id="default",
        latency_ms=3.0,
        decided_at=datetime(2026, 11, 30, 12, 0, 1, 250000, tzinfo=UTC),
        flagged=True,
        **extra,  # type: ignore[arg-type]
    )


def event(text: str) -> ImageEvent:
    return ImageEvent(
        image_id=IMAGE_ID,
        blob_uri="file:///x",
        source="folder",
        source_item_id="1",
        source_url="file:///x.jpg",
        author=None,
        posted_at=None,
        collected_at=datetime(2026, 11, 30, tzinfo=UTC),
        width=10,
        height=10,
        mime="image/jpeg",
        phash="0" * 16,
        text=text,
    )


def test_the_projection_matches_the_parsed_contracts():
    declared = Provenance(declared_source_type="trainedAlgorithmicMedia")
    cases = [
        (verdict(), event("a caption " * 40), None),
        (verdict(provenance=declared, label_source="both", unstable=True), None, declared.state),
        (verdict(provenance=declared), event(""), None),  # a record without the state field
    ]
    for v, e, field in cases:
        entry = _queue_entry(IMAGE_ID, 1.5, v.to_json(), e.to_json() if e else None, field)
        assert entry.label == v.label and entry.model_version == v.model_version
        assert entry.decided_at == v.decided_at.timestamp()
        assert entry.flagged is v.flagged and entry.scores == v.scores
        assert entry.text == (e.text[:200] if e else "")
        assert entry.provenance == (v.provenance.state if v.provenance else "")
        assert entry.label_source == v.label_source and entry.unstable == v.unstable


def test_a_stale_state_field_does_not_outlive_the_verdicts_provenance():
    entry = _queue_entry(IMAGE_ID, 1.0, verdict().to_json(), None, "declared")
    assert entry.provenance == ""
