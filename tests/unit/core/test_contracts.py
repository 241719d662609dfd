"""Every contract: JSON round trip, and a clear error for each kind of malformed payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from core.contracts.base import ContractError
from core.contracts.images import DeadLetter, ImageEvent
from core.contracts.models import ModelUpdate
from core.contracts.verdicts import Label, Verdict

SHA = "a" * 64
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

VALID = {
    ImageEvent: dict(
        image_id=SHA,
        blob_uri="file:///blobs/aa/aa/" + SHA,
        source="reddit",
        source_item_id="t3_abc",
        source_url="https://reddit.com/r/pics/abc",
        author="someone",
        posted_at=NOW,
        collected_at=NOW,
        width=640,
        height=480,
        mime="image/jpeg",
        phash="f0f0f0f0f0f0f0f0",
        text="a caption",
    ),
    Verdict: dict(
        image_id=SHA,
        label="manipulated",
        scores={"authentic": 0.1, "manipulated": 0.7, "synthesized": 0.2},
        explanation="",
        model_name="m",
        model_version="3",
        profile_id="p1",
        latency_ms=12.5,
        decided_at=NOW,
        flagged=True,
    ),
    Label: dict(
        image_id=SHA,
        label="authentic",
        moderator_id="alice",
        verdict_model_version="3",
        note="ok",
        labeled_at=NOW,
    ),
    DeadLetter: dict(
        stage="etl", reason="corrupt JPEG", error_type="BadInput", event={"x": 1}, failed_at=NOW
    ),
    ModelUpdate: dict(model_name="m", version="4", alias="champion", profile_uri=None, promoted_at=NOW),
}
REQUIRED = {
    ImageEvent: "blob_uri",
    Verdict: "scores",
    Label: "moderator_id",
    DeadLetter: "reason",
    ModelUpdate: "version",
}
WRONG_TYPE = {
    ImageEvent: ("width", "wide"),
    Verdict: ("flagged", "yes"),
    Label: ("label", 3),
    DeadLetter: ("stage", ["etl"]),
    ModelUpdate: ("alias", 1),
}


@pytest.mark.parametrize("cls", list(VALID))
def test_round_trip_through_json(cls):
    original = cls(**VALID[cls])
    payload = original.to_json()
    assert json.loads(payload)["schema_version"] == cls.SCHEMA_VERSION
    assert cls.parse(payload) == original
    assert cls.parse(original.to_dict()) == original


@pytest.mark.parametrize("cls", list(VALID))
def test_unknown_fields_are_tolerated(cls):
    payload = {**cls(**VALID[cls]).to_dict(), "added_by_a_newer_producer": 1}
    assert cls.parse(json.dumps(payload)) == cls(**VALID[cls])


@pytest.mark.parametrize("cls", list(VALID))
def test_missing_field_is_named(cls):
    payload = cls(**VALID[cls]).to_dict()
    del payload[REQUIRED[cls]]
    with pytest.raises(ContractError, match=f"{REQUIRED[cls]}: missing field"):
        cls.parse(json.dumps(payload))


@pytest.mark.parametrize("cls", list(VALID))
def test_wrong_type_is_named(cls):
    field, bad = WRONG_TYPE[cls]
    payload = {**cls(**VALID[cls]).to_dict(), field: bad}
    with pytest.raises(ContractError, match=f"invalid {cls.__name__}: {field}:"):
        cls.parse(json.dumps(payload))


@pytest.mark.parametrize("cls", list(VALID))
def test_unknown_schema_version_is_refused(cls):
    payload = {**cls(**VALID[cls]).to_dict(), "schema_version": 99}
    with pytest.raises(ContractError, match="unknown schema_version 99"):
        cls.parse(json.dumps(payload))


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b""])
def test_non_json_or_non_object_is_refused(payload):
    with pytest.raises(ContractError, match="invalid ImageEvent"):
        ImageEvent.parse(payload)


def test_image_id_must_be_a_sha256():
    with pytest.raises(ContractError, match="image_id"):
        ImageEvent.parse(json.dumps({**ImageEvent(**VALID[ImageEvent]).to_dict(), "image_id": "abc"}))


def test_scores_must_be_probabilities():
    bad = {**Verdict(**VALID[Verdict]).to_dict(), "scores": {"authentic": 1.5}}
    with pytest.raises(ContractError, match="probabilities"):
        Verdict.parse(json.dumps(bad))


def test_source_must_be_known():
    bad = {**ImageEvent(**VALID[ImageEvent]).to_dict(), "source": "myspace"}
    with pytest.raises(ContractError, match="source"):
        ImageEvent.parse(json.dumps(bad))
