"""The worker's verdicts with provenance fused in, and the optional JPEG re-check (``unstable``):
BatchProcessor with fakes around it, as in test_processor.py."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from core.contracts.provenance import C2paEvidence, Provenance
from core.contracts.verdicts import Verdict
from detector.model import Detection
from ingest.blobs import LocalBlobStore
from stream_workers.processor import BatchProcessor
from stream_workers.recheck import Rechecking, reencode_jpeg
from tests.unit.stream_workers.test_processor import TOPICS, FakeDetector, FakeSink, _event

FLAT = (200, 40, 40)
SCORES = {"authentic": 0.9, "manipulated": 0.05, "synthesized": 0.05}
FAKE = {"authentic": 0.1, "manipulated": 0.8, "synthesized": 0.1}


@pytest.fixture
def blobs(tmp_path):  # type: ignore[no-untyped-def]
    return LocalBlobStore(tmp_path / "blobs")


class PixelDetector:
    """Says ``authentic`` for an image whose corner pixel is FLAT (give or take rounding), else
    ``manipulated``: a flat image survives a JPEG round trip, a noisy one does not. Offers
    prepare/score like the real one."""

    name, version, profile_id = "px", "1", "p"

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.explained: list[int] = []

    def prepare(self, images):  # type: ignore[no-untyped-def]
        return list(images)

    def score(self, images, explain=False):  # type: ignore[no-untyped-def]
        self.calls.append(len(images))
        out = []
        for im in images:
            fake = not _near(im.getpixel((0, 0)))
            out.append(Detection("manipulated" if fake else "authentic", FAKE if fake else SCORES, fake))
        return out

    def explain(self, images, labels, max_new_tokens=None):  # type: ignore[no-untyped-def]
        self.explained.append(len(images))
        return [f"because {lb}" for lb in labels]


def _near(pixel: tuple[int, int, int]) -> bool:
    return max(abs(a - b) for a, b in zip(pixel, FLAT, strict=True)) <= 6


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _noisy() -> Image.Image:
    rng = random.Random(3)
    img = Image.new("RGB", (48, 48))
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(48 * 48)])
    img.putpixel((0, 0), FLAT)  # the original says authentic; its JPEG copy will not
    return img


def _processor(detector, sink, sent, **kw):  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    async def send(topic: str, key: str, value: bytes) -> None:
        sent.append((topic, key, value))

    return BatchProcessor(
        lambda: detector, sink, send, TOPICS, ThreadPoolExecutor(1), retry_backoff_s=(0.001, 0.002), **kw
    )


def test_a_jpeg_round_trip_keeps_a_flat_image_and_changes_a_noisy_one():
    assert _near(reencode_jpeg(Image.new("RGB", (32, 32), FLAT), 60).getpixel((0, 0)))
    assert not _near(reencode_jpeg(_noisy(), 60).getpixel((0, 0)))


async def test_the_recheck_marks_unstable_verdicts_in_one_model_call(blobs):
    det, sink, sent = PixelDetector(), FakeSink(), []
    stable = _event(blobs, (32, 32), data=_png(Image.new("RGB", (32, 32), FLAT)))
    shaky = _event(blobs, (48, 48), data=_png(_noisy()))
    await _processor(det, sink, sent, recheck_quality=60, explain="flagged").process(
        [stable.to_json(), shaky.to_json()]
    )
    assert det.calls == [4]  # both images and both re-encoded copies, one batch
    assert det.explained == []  # originals are not flagged: the copies' flags explain nothing
    a, b = sink.records[stable.image_id], sink.records[shaky.image_id]
    assert (a.label, a.unstable, a.recheck_label) == ("authentic", False, "authentic")
    assert (b.label, b.unstable, b.recheck_label) == ("authentic", True, "manipulated")
    assert Verdict.parse(next(v for _, k, v in sent if k == shaky.image_id)).unstable is True


async def test_without_the_recheck_unstable_stays_unknown(blobs):
    det, sink, sent = PixelDetector(), FakeSink(), []
    ev = _event(blobs, (48, 48), data=_png(_noisy()))
    await _processor(det, sink, sent).process([ev.to_json()])
    assert det.calls == [1] and sink.records[ev.image_id].unstable is None


def test_explanations_are_asked_for_the_flagged_originals_only():
    det = PixelDetector()
    wrapped = Rechecking(det, 60)
    results = wrapped.detect([_noisy().crop((1, 1, 40, 40)), Image.new("RGB", (8, 8), FLAT)], explain=True)
    assert det.explained == [1] and results[0].explanation == "because manipulated"
    assert results[1].explanation == "" and wrapped.name == "px"  # the rest is passed through


async def test_a_detector_without_prepare_is_rechecked_through_detect(blobs):
    det, sink, sent = FakeDetector(), FakeSink(), []
    ev = _event(blobs)
    await _processor(det, sink, sent, recheck_quality=80).process([ev.to_json()])
    assert det.calls == [2] and sink.records[ev.image_id].unstable is False


async def test_provenance_on_the_event_decides_the_label_and_the_model_part_is_kept(blobs):
    sink, sent = FakeSink(), []
    pv = Provenance(
        c2pa=C2paEvidence(state="intact", trusted=True, digital_source_types=["trainedAlgorithmicMedia"])
    )
    ev = _event(blobs).model_copy(update={"provenance": pv})
    await _processor(FakeDetector(), sink, sent).process([ev.to_json()])
    v = sink.records[ev.image_id]
    assert (v.label, v.flagged, v.label_source, v.model_label, v.model_flagged) == (
        "synthesized",
        True,
        "provenance",
        "authentic",
        False,
    )
    assert v.scores == SCORES and v.provenance == pv and v.evidence


async def test_a_near_duplicate_gets_the_shared_model_part_and_its_own_evidence(blobs):
    sink, sent = FakeSink(), []
    det = FakeDetector()
    proc = _processor(det, sink, sent)
    pv = Provenance(
        c2pa=C2paEvidence(state="intact", trusted=True, digital_source_types=["trainedAlgorithmicMedia"])
    )
    signed = _event(blobs, (60, 60)).model_copy(update={"provenance": pv})
    await proc.process([signed.to_json()])
    stripped = _event(blobs, (61, 60)).model_copy(
        update={"near_duplicate_of": signed.image_id, "provenance": Provenance(stripped=True)}
    )
    await proc.process([stripped.to_json()])
    assert det.calls == [1]
    copy = sink.records[stripped.image_id]
    assert copy.reused_from == signed.image_id and sink.records[signed.image_id].label == "synthesized"
    assert (copy.label, copy.label_source, copy.provenance) == (
        "authentic",
        "model",
        Provenance(stripped=True),
    )
