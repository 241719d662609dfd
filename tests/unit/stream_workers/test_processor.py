"""BatchProcessor with fakes around it: dead letters per kind of bad input, isolation of a model
error to its image, reuse of known verdicts, retries through an outage instead of raising, and the
order of a batch's effects (published before recorded; a recorded verdict is not published again)."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from PIL import Image

from core.contracts.images import DeadLetter, ImageEvent
from core.contracts.verdicts import Verdict
from core.kafka import Topics
from detector.model import Detection
from ingest.blobs import LocalBlobStore, sha256_hex
from stream_workers.processor import BatchProcessor

TOPICS = Topics(verdicts="v", dead_letters="dl")


class FakeDetector:
    name, version, profile_id = "m", "1", "p"

    def __init__(self, poison: set[tuple[int, int]] = frozenset()) -> None:  # type: ignore[assignment]
        self.poison = poison  # image sizes that make the model fail
        self.calls: list[int] = []

    def detect(self, images, explain=False):  # type: ignore[no-untyped-def]
        self.calls.append(len(images))
        if any(im.size in self.poison for im in images):
            raise RuntimeError("CUDA error: device-side assert")
        return [
            Detection("authentic", {"authentic": 0.9, "manipulated": 0.05, "synthesized": 0.05}, False)
            for _ in images
        ]


class FakeSink:
    def __init__(self, fail_writes: int = 0) -> None:
        self.records: dict[str, Verdict] = {}
        self.fail_writes = fail_writes

    async def known(self, image_ids: list[str], version: str) -> list[Verdict | None]:
        found = [self.records.get(i) for i in image_ids]
        return [v if v is not None and v.model_version == version else None for v in found]

    async def write(self, pairs) -> None:  # type: ignore[no-untyped-def]
        if self.fail_writes:
            self.fail_writes -= 1
            raise ConnectionError("Redis is down")
        for ev, v in pairs:
            self.records[ev.image_id] = v


@pytest.fixture
def blobs(tmp_path):  # type: ignore[no-untyped-def]
    return LocalBlobStore(tmp_path / "blobs")


def _event(blobs, size=(64, 48), data: bytes | None = None, store=True) -> ImageEvent:  # type: ignore[no-untyped-def]
    if data is None:
        buf = io.BytesIO()
        Image.new("RGB", size, (size[0] % 255, 10, 20)).save(buf, "PNG")
        data = buf.getvalue()
    uri = blobs.put(data) if store else blobs.root.joinpath("missing").as_uri()
    now = datetime.now(UTC)
    return ImageEvent(
        image_id=sha256_hex(data),
        blob_uri=uri,
        source="folder",
        source_item_id="x",
        source_url="file:///x",
        author=None,
        posted_at=None,
        collected_at=now,
        width=size[0],
        height=size[1],
        mime="image/png",
        phash="0" * 16,
        text="",
    )


def _processor(detector, sink, sent):  # type: ignore[no-untyped-def]
    async def send(topic: str, key: str, value: bytes) -> None:
        sent.append((topic, key, value))

    return BatchProcessor(
        lambda: detector, sink, send, TOPICS, ThreadPoolExecutor(1), retry_backoff_s=(0.001, 0.002)
    )


async def test_good_images_get_verdicts_in_the_sink_and_on_the_topic(blobs):
    sink, sent = FakeSink(), []
    events = [_event(blobs, (40 + i, 40)) for i in range(3)]
    stats = await _processor(FakeDetector(), sink, sent).process([e.to_json() for e in events])
    assert stats.verdicts == 3 and stats.dead_letters == 0
    assert set(sink.records) == {e.image_id for e in events}
    assert sorted(k for t, k, _ in sent if t == "v") == sorted(e.image_id for e in events)


async def test_each_kind_of_bad_input_becomes_a_dead_letter_and_the_rest_still_gets_verdicts(blobs):
    sink, sent = FakeSink(), []
    good = _event(blobs, (50, 50))
    missing_blob = _event(blobs, (51, 50), store=False)
    undecodable = _event(blobs, data=b"\x89PNG\r\n\x1a\n truncated")
    poisoned = _event(blobs, (13, 13))
    payloads = [
        good.to_json(),
        b'{"image_id": "nope"}',
        missing_blob.to_json(),
        undecodable.to_json(),
        poisoned.to_json(),
    ]
    det = FakeDetector(poison={(13, 13)})
    stats = await _processor(det, sink, sent).process(payloads)

    letters = [DeadLetter.parse(v) for t, _, v in sent if t == "dl"]
    assert sorted(d.stage for d in letters) == ["blob", "decode", "detect", "schema"]
    by_stage = {d.stage: d for d in letters}
    assert "missing field" in by_stage["schema"].reason
    assert by_stage["blob"].blob_uri == missing_blob.blob_uri
    assert by_stage["detect"].event["image_id"] == poisoned.image_id
    assert "device-side assert" in by_stage["detect"].reason
    assert set(sink.records) == {good.image_id}
    assert det.calls == [2, 1, 1]  # the failing batch, then each image alone
    assert stats.verdicts == 1 and stats.dead_letters == 4


async def test_a_verdict_of_the_serving_version_is_reused_without_a_model_call(blobs):
    sink, sent = FakeSink(), []
    ev = _event(blobs)
    det = FakeDetector()
    proc = _processor(det, sink, sent)
    await proc.process([ev.to_json()])
    stats = await proc.process([ev.to_json()])  # a replay
    assert det.calls == [1]
    assert stats.reused == 1 and len(sink.records) == 1
    det.version = "2"  # a new version judges it again
    await proc.process([ev.to_json()])
    assert det.calls == [1, 1]
    assert sink.records[ev.image_id].model_version == "2"


async def test_a_sink_outage_is_retried_not_raised(blobs):
    sink, sent = FakeSink(fail_writes=3), []
    ev = _event(blobs)
    stats = await _processor(FakeDetector(), sink, sent).process([ev.to_json()])
    assert stats.verdicts == 1 and ev.image_id in sink.records


async def test_the_same_image_twice_in_a_batch_is_judged_once(blobs):
    sink, sent = FakeSink(), []
    ev = _event(blobs)
    det = FakeDetector()
    await _processor(det, sink, sent).process([ev.to_json(), ev.to_json()])
    assert det.calls == [1]
    assert len([1 for t, _, _ in sent if t == "v"]) == 1


async def test_verdict_payloads_are_valid_contracts(blobs):
    sink, sent = FakeSink(), []
    ev = _event(blobs)
    await _processor(FakeDetector(), sink, sent).process([ev.to_json()])
    ((topic, key, value),) = sent
    v = Verdict.parse(value)
    assert (topic, key, v.image_id, v.model_version, v.profile_id) == (
        "v",
        ev.image_id,
        ev.image_id,
        "1",
        "p",
    )
    assert json.loads(value)["schema_version"] == 1


async def test_a_near_duplicate_reuses_the_earlier_verdict_with_a_reference(blobs):
    sink, sent = FakeSink(), []
    det = FakeDetector()
    proc = _processor(det, sink, sent)
    first = _event(blobs, (60, 60))
    await proc.process([first.to_json()])
    resized = _event(blobs, (61, 60)).model_copy(update={"near_duplicate_of": first.image_id})
    stats = await proc.process([resized.to_json()])
    assert det.calls == [1] and stats.reused == 1
    reused = sink.records[resized.image_id]
    assert reused.reused_from == first.image_id and reused.image_id == resized.image_id
    assert reused.scores == sink.records[first.image_id].scores


async def test_a_batch_is_published_before_its_records_are_written(blobs):
    sink, sent = FakeSink(), []
    events = [_event(blobs, (70 + i, 40)) for i in range(2)]
    recorded_at_send: list[bool] = []

    async def send(topic: str, key: str, value: bytes) -> None:
        recorded_at_send.append(key in sink.records)
        sent.append((topic, key, value))

    proc = BatchProcessor(
        lambda: FakeDetector(), sink, send, TOPICS, ThreadPoolExecutor(1), retry_backoff_s=(0.001, 0.002)
    )
    await proc.process([e.to_json() for e in events])
    assert recorded_at_send == [False, False] and set(sink.records) == {e.image_id for e in events}


async def test_a_redelivered_batch_whose_records_exist_is_not_published_again(blobs):
    sink, sent = FakeSink(), []
    det = FakeDetector()
    proc = _processor(det, sink, sent)
    old, new = _event(blobs, (80, 40)), _event(blobs, (81, 40))
    await proc.process([old.to_json()])
    stats = await proc.process([old.to_json(), new.to_json()])  # a replay after a crash, plus a new one
    assert [k for t, k, _ in sent if t == "v"] == [old.image_id, new.image_id]  # old once, new once
    assert stats.verdicts == 2 and stats.reused == 1
    # A near duplicate is a new image: its reused verdict is published.
    twin = _event(blobs, (82, 40)).model_copy(update={"near_duplicate_of": new.image_id})
    await proc.process([twin.to_json()])
    assert [k for t, k, _ in sent if t == "v"][-1] == twin.image_id


async def test_a_giant_payload_is_a_dead_letter_without_being_parsed(blobs):
    from stream_workers.processor import MAX_EVENT_BYTES

    sink, sent = FakeSink(), []
    good = _event(blobs, (90, 40))
    giant = b'{"image_id": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    stats = await _processor(FakeDetector(), sink, sent).process([giant, good.to_json()])
    (letter,) = [DeadLetter.parse(v) for t, _, v in sent if t == "dl"]
    assert letter.stage == "schema" and letter.error_type == "TooLarge"
    assert f"{len(giant)} bytes" in letter.reason and str(MAX_EVENT_BYTES) in letter.reason
    assert len(letter.raw or "") <= 10_000  # the letter stays small
    assert stats.verdicts == 1 and set(sink.records) == {good.image_id}
