"""One real worker (tiny model) for the module, on the session's broker and Redis, and what the
outside world sees of it:

- third-party subscribers: confluent-kafka (librdkafka) and kafka-python, each in a consumer group,
  get every verdict; the README's subscriber snippet, run as it stands with only the stack's
  settings in its environment (it asks `misinfo dev status --json` for the address and topic),
  prints every flagged one;
- poison and giant messages on the images topic become dead letters with their reason, and the
  worker keeps judging what follows; our own producer refuses a 10 MB record before sending it;
- Redis lost the records (what a restart of the memory-only dev Redis does): the worker notices and
  rebuilds them from the topics without judging anything again; `misinfo verdicts rebuild` by hand.

Topics, group and Redis prefix are the module's own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from core.config import Settings
from core.contracts.base import ContractError
from core.contracts.images import DeadLetter
from core.contracts.verdicts import Verdict
from core.kafka import replay_consumer
from core.keys import Keys
from misinfo.bench.support import read_keys
from misinfo.devstack import DevStack
from misinfo.devstack.stack import wait_for
from tests.conftest import MISINFO, REPO, free_port, run_cli, start_cli
from tests.integration.worker_support import publish_samples, verdict_ids

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def feed(dev_stack, tiny_model, tmp_path_factory) -> Iterator[tuple[Settings, Any, Path]]:  # type: ignore[no-untyped-def]
    state = tmp_path_factory.mktemp("feed")
    s = dev_stack.settings.isolated(
        f"feed{uuid.uuid4().hex[:8]}",
        state_dir=str(state / "state"),
        worker_web_port=free_port(),
        model_path=tiny_model,
        max_batch=4,
        max_wait_s=0.2,
        flag_threshold=0.0,  # every verdict flagged: the snippet prints each, the review queue fills
    )
    DevStack(s).create_topics()
    log = state / "worker.log"
    worker = start_cli(s, "worker", log=log)
    try:
        yield s, worker, log
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        r = redis.Redis.from_url(s.redis_url)
        doomed = list(r.scan_iter(Keys(s.redis_prefix).pattern(), count=1000))
        if doomed:
            r.delete(*doomed)


def _ids(folder: Path) -> set[str]:
    import hashlib

    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _verdict_id(value: bytes) -> str | None:
    try:
        return Verdict.parse(value).image_id
    except ContractError:
        return None


class Subscriber(threading.Thread):
    """Collects the image ids of valid verdicts a consumer reads, until stopped."""

    def __init__(self, poll: Any, close: Any) -> None:
        super().__init__(daemon=True)
        self.poll, self.close, self.seen, self.halt = poll, close, set(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                for value in self.poll():
                    image_id = _verdict_id(value)
                    if image_id:
                        self.seen.add(image_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.close()


def confluent_subscriber(bootstrap: str, topic: str) -> Subscriber:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"confluent-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            # Tansu makes a group's first join wait for the rebalance timeout (this): keep it short.
            "max.poll.interval.ms": 6000,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])

    def poll() -> list[bytes]:
        msg = consumer.poll(0.5)
        if msg is None:
            return []
        if msg.error():
            raise RuntimeError(str(msg.error()))
        return [msg.value()]

    return Subscriber(poll, consumer.close)


def kafka_python_subscriber(bootstrap: str, topic: str) -> Subscriber:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"kafka-python-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        max_poll_interval_ms=5000,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )

    def poll() -> list[bytes]:
        return [rec.value for recs in consumer.poll(timeout_ms=500).values() for rec in recs]

    return Subscriber(poll, consumer.close)


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Subscribing to verdicts", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


def test_confluent_kafka_kafka_python_and_the_readme_snippet_get_every_verdict(feed, tmp_path):
    settings, worker, _ = feed
    bootstrap, topic = settings.kafka_bootstrap, settings.topic_verdicts
    env = {**os.environ, **settings.env(), "PATH": f"{Path(MISINFO).parent}{os.pathsep}{os.environ['PATH']}"}
    snippet = subprocess.Popen(
        [sys.executable, "-u", "-c", readme_snippet()],  # the README's code, unchanged
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    printed: list[str] = []

    def read() -> None:
        for line in snippet.stdout:  # type: ignore[union-attr]
            printed.append(line)

    threading.Thread(target=read, daemon=True).start()
    subscribers = [confluent_subscriber(bootstrap, topic), kafka_python_subscriber(bootstrap, topic)]
    for sub in subscribers:
        sub.start()
    try:
        # The snippet starts at the end of the feed: it must have joined before the verdicts come.
        # Until it prints one, feed it flagged sentinels (not Verdicts: every other reader skips them).
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        sentinel = {"flagged": True, "label": "-", "scores": {}, "context": {"caption": "sentinel"}}
        deadline = time.monotonic() + 120
        while not any(line.split()[-1:] == ["sentinel"] for line in printed):
            assert time.monotonic() < deadline, "the README snippet never printed a verdict"
            assert snippet.poll() is None, "the README snippet exited"
            producer.send(topic, key=b"sentinel", value=json.dumps(sentinel).encode()).get(timeout=30)
            time.sleep(0.5)
        producer.close()

        folder = tmp_path / "images"
        publish_samples(settings, folder, 10, seed=41)
        ours, captions = _ids(folder), {p.stem for p in folder.iterdir()}  # folder captions: file stems
        wait_for(lambda: ours <= verdict_ids(settings), 180, 0.2, "the 10 records")

        def everyone_has_them() -> bool:
            shown = {line.split()[-1] for line in printed if line.strip()}
            return captions <= shown and all(ours <= sub.seen for sub in subscribers)

        wait_for(everyone_has_them, 90, 0.2, "every subscriber to see every verdict")
    finally:
        snippet.kill()
        snippet.wait(timeout=10)
        for sub in subscribers:
            sub.halt.set()
            sub.join(timeout=15)
    assert [sub.error for sub in subscribers] == [None, None]
    assert worker.poll() is None


def _event(image_id: str, blob_uri: str, **extra: Any) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "blob_uri": blob_uri,
        "source": "folder",
        "source_item_id": "poison",
        "source_url": "file:///poison",
        "author": None,
        "posted_at": None,
        "collected_at": datetime.now(UTC).isoformat(),
        "width": 10,
        "height": 10,
        "mime": "image/png",
        "phash": "0" * 16,
        "text": "",
        **extra,
    }


def test_poison_and_giant_messages_become_dead_letters_and_the_worker_keeps_going(feed, tmp_path):
    from kafka import KafkaProducer
    from kafka.errors import MessageSizeTooLargeError

    from ingest.publisher import Publisher, PublisherConfig

    settings, worker, log = feed
    missing = (tmp_path / "no-such-blob").as_uri()
    poison = {
        "not-json": b"\xff\xfe this is not JSON",
        "wrong-schema": json.dumps({"hello": "world"}).encode(),
        "wrong-version": json.dumps(_event("a" * 64, missing, schema_version=99)).encode(),
        "missing-blob": json.dumps(_event("b" * 64, missing)).encode(),
        "giant": b"{" + b" " * (10 * 1024 * 1024) + b"}",  # Tansu takes 10 MB records; Kafka would not
    }
    # A foreign producer that raised its own size limit: the broker (Tansu) accepts the 10 MB record.
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=16 << 20
    )
    for name, value in poison.items():
        producer.send(settings.topic_images, key=name.encode(), value=value).get(timeout=60)
    producer.close()

    # What follows the poison is judged as usual.
    folder = tmp_path / "images"
    publish_samples(settings, folder, 8, seed=42)
    ours = _ids(folder)
    wait_for(lambda: ours <= verdict_ids(settings), 180, 0.2, "the records of the images after the poison")

    def letters() -> dict[str, DeadLetter]:
        got = {}
        for msg in replay_consumer(settings.kafka_bootstrap, settings.topic_dead_letters, idle_s=2):
            letter = DeadLetter.parse(msg.value)
            got[letter.event["image_id"] if letter.event else (letter.raw or "")[:20]] = letter
        return got

    wait_for(lambda: len(letters()) >= 5, 60, 0.5, "five dead letters")
    by = letters()
    assert len(by) == 5, sorted(by)
    stages = sorted((d.stage, d.error_type) for d in by.values())
    assert stages == [
        ("blob", "BlobNotFound"),
        ("schema", "ContractError"),
        ("schema", "ContractError"),
        ("schema", "ContractError"),
        ("schema", "TooLarge"),
    ]
    reasons = " | ".join(d.reason for d in by.values())
    assert "not valid JSON" in reasons and "missing field" in reasons
    assert "unknown schema_version 99" in reasons and "over the 262144-byte limit" in reasons
    assert all(len(d.to_json()) < 64_000 for d in by.values())  # a letter never carries the giant
    assert worker.poll() is None
    assert "exiting without commit" not in log.read_text()

    # Our own producers refuse such a record before it leaves the process.
    refused: list[Exception] = []
    ours_producer = Publisher(PublisherConfig(bootstrap=settings.kafka_bootstrap))
    ours_producer.send(settings.topic_images, "x", poison["giant"], on_failure=refused.append)
    ours_producer.close()
    assert len(refused) == 1 and isinstance(refused[0], MessageSizeTooLargeError)


def test_lost_records_come_back_from_the_topics_without_judging_again(feed, tmp_path):
    settings, worker, log = feed
    r, keys = redis.Redis.from_url(settings.redis_url), Keys(settings.redis_prefix)
    folder = tmp_path / "images"
    publish_samples(settings, folder, 8, seed=43)
    ours = _ids(folder)
    wait_for(lambda: ours <= verdict_ids(settings), 180, 0.2, "the records")
    wait_for(lambda: r.get(keys.records_marker()) is not None, 30, 0.2, "the records marker")

    def state() -> dict[str, object]:
        # Review priorities are left out: they count sightings, which ingest keeps in Redis (lost too).
        return {
            "time": r.zrange(keys.index_time(), 0, -1, withscores=True),
            "folder": r.zcard(keys.index_source("folder")),
            "review": sorted(r.zrange(keys.review(), 0, -1)),
            "records": sorted(verdict_ids(settings)),
        }

    def lose_everything() -> None:
        """What a Redis restart does to this module's keys (the prefix is its own)."""
        r.delete(*r.scan_iter(keys.pattern(), count=1000))

    before = state()
    assert {i.encode() for i in ours} <= set(before["review"])  # type: ignore[arg-type]
    lose_everything()
    wait_for(lambda: state() == before, 60, 0.2, "records, indexes and review queue as before")
    assert r.get(keys.records_marker()).startswith(b"complete:")
    assert "verdict records: rebuilt" in log.read_text()
    assert worker.poll() is None
    per_image = read_keys(settings.kafka_bootstrap, settings.topic_verdicts)
    assert all(per_image[i] == 1 for i in ours)  # rebuilt, not judged again

    # By hand (a worker running beside it changes nothing: the rebuild writes only what is missing).
    lose_everything()
    out = run_cli(settings, "verdicts", "rebuild")
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["without_event"] == 0 and figures["restored"] + figures["present"] == figures["images"]
    wait_for(lambda: state() == before, 30, 0.2, "the records rebuilt by hand")
    assert r.get(keys.records_marker()).startswith(b"complete:")
