"""Live model swap: a ModelUpdate on the control topic makes a running worker load the new version in
the background and serve it from the next batch on; no image is lost on the way."""

from __future__ import annotations

import dataclasses
import signal

import pytest
import redis
from kafka import KafkaProducer

from core.contracts.models import ModelUpdate
from core.contracts.verdicts import Verdict
from core.keys import Keys
from detector.tiny import build_tiny_checkpoint
from misinfo.devstack.stack import wait_for
from tests.conftest import start_cli
from tests.integration.worker_support import metric, publish_samples, verdict_ids

pytestmark = pytest.mark.integration


def _versions(settings, ids) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = redis.Redis.from_url(settings.redis_url)
    out = {}
    for image_id in ids:
        raw = r.hget(Keys(settings.redis_prefix).verdict(image_id), "verdict")
        out[image_id] = Verdict.parse(raw).model_version
    return out


def test_model_update_swaps_the_serving_version_without_losing_images(settings, tiny_model, tmp_path):
    settings = dataclasses.replace(settings, model_path=tiny_model, model_version="0", max_batch=4)
    worker = start_cli(settings, "worker", log=tmp_path / "worker.log")
    try:
        publish_samples(settings, tmp_path / "before", 8, seed=31)
        wait_for(lambda: len(verdict_ids(settings)) >= 8, 180, 0.5, "verdicts of version 0")
        before = verdict_ids(settings)
        assert set(_versions(settings, before).values()) == {"0"}

        new_version = build_tiny_checkpoint(tmp_path / "v7", seed=1)
        update = ModelUpdate(
            model_name=settings.model_name,
            version="7",
            alias="champion",
            model_uri=str(new_version),
            profile_uri=None,
        )
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        producer.send(settings.topic_control, key=update.model_name.encode(), value=update.to_json()).get(30)
        producer.close()
        wait_for(lambda: metric(settings.worker_web_port, "misinfo_model_swaps_total") >= 1, 180, 0.5, "swap")

        publish_samples(settings, tmp_path / "after", 8, seed=32)
        wait_for(lambda: len(verdict_ids(settings)) >= 16, 180, 0.5, "verdicts after the swap")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    after = verdict_ids(settings) - before
    assert len(after) == 8
    assert set(_versions(settings, after).values()) == {"7"}
    assert set(_versions(settings, before).values()) == {"0"}  # earlier verdicts untouched
