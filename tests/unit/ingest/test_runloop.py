"""The collector base (backoff, Retry-After, resume without double counting, stop) and the publisher's
failure paths, with in-memory fakes."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from ingest.collectors.base import Backoff, Collector
from ingest.exceptions import PublishError
from ingest.fetcher import TransientFetchError
from ingest.pipeline import RawItem
from ingest.publisher import Publisher, PublisherConfig


def test_backoff_grows_with_jitter_and_honours_retry_after():
    b = Backoff(base_s=1, max_s=60, rng=random.Random(0))
    delays = [b.delay(n) for n in range(10)]
    for n, wait in enumerate(delays):
        ceiling = min(60, 2**n)
        assert ceiling / 2 <= wait <= ceiling
    assert len(set(delays)) == len(delays)  # jittered
    assert 30 <= b.delay(0, retry_after=30) <= 33
    assert b.delay(0, retry_after=10**6) <= b.max_retry_after_s * 1.1


class FakeIngestor:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.items: list[str] = []
        self.flushes = 0

    def ingest(self, item: RawItem) -> str:
        self.counts["seen"] += 1
        self.counts["published"] += 1
        self.items.append(item.source_item_id)
        return "published"

    def flush(self) -> None:
        self.flushes += 1


class Flaky(Collector):
    """Three items; the listing fails with 429 after the second, twice."""

    name = "flaky"

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.failures = 2
        self.waits: list[float] = []

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.stopped

    def poll(self):  # type: ignore[no-untyped-def]
        for i in range(3):
            if i == 2 and self.failures:
                self.failures -= 1
                raise TransientFetchError("HTTP 429", retry_after=5, status=429)
            yield RawItem("rss", f"item{i}", "u", data=b"x")
            self.cursor["last"] = i


def test_transient_failures_resume_without_counting_twice(tmp_path):
    ing = FakeIngestor()
    c = Flaky(ing, tmp_path / "c.json", backoff=Backoff(rng=random.Random(1)))  # type: ignore[arg-type]
    counts = c.run_once()
    assert ing.items == ["item0", "item1", "item2"] and counts["seen"] == 3
    assert len(c.waits) == 2 and all(w >= 5 for w in c.waits)  # Retry-After is the floor
    assert c.stats["rate_limited"] == 2
    assert (tmp_path / "c.json").read_text() == '{"last": 2}'


def test_gives_up_after_max_retries(tmp_path):
    c = Flaky(FakeIngestor(), tmp_path / "c.json")  # type: ignore[arg-type]
    c.failures = 100
    c.max_poll_retries = 3
    with pytest.raises(TransientFetchError):
        c.run_once()
    assert len(c.waits) == 3


def test_stop_ends_the_pass_and_saves_the_cursor(tmp_path):
    ing = FakeIngestor()
    c = Flaky(ing, tmp_path / "c.json")  # type: ignore[arg-type]
    c.stop()
    c.run_once()
    assert ing.items == ["item0"]
    assert (tmp_path / "c.json").exists()


class FakeFuture:
    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.is_done = error, True

    def get(self, timeout=None):  # type: ignore[no-untyped-def]
        if self.error:
            raise self.error
        return "meta"


class FakeProducer:
    def __init__(self, fail_with: Exception | None = None, send_raises: Exception | None = None) -> None:
        self.sent: list[bytes] = []
        self.flushes = 0
        self.fail_with, self.send_raises = fail_with, send_raises

    def send(self, topic, key, value):  # type: ignore[no-untyped-def]
        if self.send_raises:
            raise self.send_raises
        self.sent.append(value)
        return FakeFuture(self.fail_with)

    def flush(self, timeout=None):  # type: ignore[no-untyped-def]
        self.flushes += 1

    def close(self) -> None:
        pass


def test_publisher_bounds_its_buffer_and_reports_each_record():
    prod = FakeProducer()
    pub = Publisher(PublisherConfig("x", max_pending=3), producer=prod)
    acked: list[int] = []
    for i in range(7):
        pub.send("t", "k", b"v", on_success=lambda i=i: acked.append(i))
        assert pub.pending <= 3
    assert prod.flushes == 2 and acked == list(range(6))
    pub.flush()
    assert acked == list(range(7))


def test_publisher_failures_go_to_the_callback_or_raise():
    failed: list[Exception] = []
    pub = Publisher(PublisherConfig("x"), producer=FakeProducer(fail_with=MessageSizeTooLargeError("big")))
    pub.send("t", "k", b"v", on_failure=failed.append)
    assert pub.flush() == 1 and isinstance(failed[0], MessageSizeTooLargeError)
    pub.send("t", "k", b"v")  # no callback: a dead letter that cannot be published is an outage
    with pytest.raises(PublishError):
        pub.flush()
    refused = Publisher(
        PublisherConfig("x"), producer=FakeProducer(send_raises=MessageSizeTooLargeError("big"))
    )
    refused.send("t", "k", b"v", on_failure=failed.append)
    assert len(failed) == 2
    down = Publisher(
        PublisherConfig("x"), producer=FakeProducer(send_raises=KafkaTimeoutError("no metadata"))
    )
    with pytest.raises(PublishError, match="broker unreachable"):
        down.send("t", "k", b"v", on_failure=failed.append)


def test_a_folder_cursor_forgets_files_that_are_gone(tmp_path):
    from ingest.collectors.folder import FolderCollector

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (inbox / name).write_bytes(b"x")
    collector = FolderCollector(
        FakeIngestor(), cursor_path=tmp_path / "cursor.json", root=inbox, max_bytes=10
    )
    collector.run_once()
    assert sorted(collector.cursor["files"]) == ["a.jpg", "b.jpg"]
    (inbox / "a.jpg").unlink()  # collected, then cleared away
    collector.run_once()
    assert sorted(collector.cursor["files"]) == ["b.jpg"]
    assert len(collector.ingestor.items) == 2  # b.jpg, unchanged, was not read again


def test_a_redis_outage_past_the_collectors_patience_ends_it_with_one_line_and_status_2(caplog):
    from types import SimpleNamespace

    from ingest.cli import run_collector
    from ingest.exceptions import StoreUnavailable

    class Gone:
        name = "folder"
        ingestor = SimpleNamespace(publisher=SimpleNamespace(close=lambda: None))

        def run_forever(self, every_s: float) -> None:
            raise StoreUnavailable("Redis did not answer for 120s (dedup): refused; check MISINFO_REDIS_URL")

        def stop(self) -> None:
            pass

    with pytest.raises(SystemExit) as exit_info:
        run_collector(Gone(), once=False, every="1m")
    assert exit_info.value.code == 2
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "check MISINFO_REDIS_URL" in record.getMessage() and "\n" not in record.getMessage()
    assert record.exc_info is None  # no traceback
