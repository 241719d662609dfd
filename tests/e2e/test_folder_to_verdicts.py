"""One folder of images → collector → broker → Faust worker → N verdict records in Redis and N
messages on the verdicts topic, read back by a kafka-python consumer in a consumer group."""

from __future__ import annotations

import json
import signal
import uuid

import pytest
import redis
from kafka import KafkaConsumer

from core.contracts.verdicts import Verdict
from core.keys import Keys
from misinfo.devstack.stack import wait_for
from misinfo.samples import write_samples
from tests.conftest import run_cli, start_cli

pytestmark = pytest.mark.e2e


def test_folder_images_become_verdicts_in_redis_and_on_the_topic(settings, tiny_model, tmp_path):
    n = 6
    folder = tmp_path / "images"
    images = write_samples(folder, n=n, seed=7)
    (folder / "not-an-image.jpg").write_bytes(b"<html>this is not a JPEG</html>")

    collected = run_cli(settings, "collect", "folder", str(folder), "--once")
    assert collected.returncode == 0, collected.stderr
    summary = json.loads(collected.stdout.strip().splitlines()[-1])
    assert summary == {"seen": n + 1, "published": n, "duplicates": 0, "dead_letters": 1}

    worker = start_cli(settings, "worker", log=tmp_path / "worker.log", MISINFO_MODEL_PATH=tiny_model)
    try:
        r = redis.Redis.from_url(settings.redis_url)
        pattern = Keys(settings.redis_prefix).pattern("verdict")
        try:
            wait_for(lambda: len(list(r.scan_iter(pattern))) >= n, 180, 0.5, "verdict records in Redis")
        except TimeoutError:
            pytest.fail((tmp_path / "worker.log").read_text()[-4000:])

        consumer = KafkaConsumer(
            settings.topic_verdicts,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=f"subscriber-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            consumer_timeout_ms=20_000,
            max_poll_interval_ms=5_000,
            session_timeout_ms=6_000,
            heartbeat_interval_ms=1_000,
        )
        received: dict[str, Verdict] = {}
        for msg in consumer:
            v = Verdict.parse(msg.value)
            assert msg.key.decode() == v.image_id
            received[v.image_id] = v
            if len(received) == n:
                break
        consumer.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)

    records = {k.decode().rsplit(":", 1)[1] for k in r.scan_iter(pattern)}
    assert len(records) == n
    assert set(received) == records
    for v in received.values():
        assert v.label in {"authentic", "manipulated", "synthesized", "uncertain"}
        assert sum(v.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert v.model_version == settings.model_version
    # Each verdict says what it is about, so a subscriber needs no lookup (issue 18).
    by_file = {p.resolve().as_uri(): p for p in images}
    for v in received.values():
        c = v.context
        assert c is not None and c.source == "folder" and c.post_url in by_file
        assert c.caption == by_file[c.post_url].stem and c.media_url is None and c.account is None
        assert c.collected_at <= v.decided_at and c.posted_at is not None
        assert c.source_item_id.startswith(by_file[c.post_url].name + "@")
    assert len(images) == n
