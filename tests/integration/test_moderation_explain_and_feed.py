"""Explanations generated on demand by the real detector (tiny checkpoint) and stored in the verdict
record; the verdict feed as a subscriber sees it (`misinfo verdicts tail`)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
import redis
from kafka import KafkaProducer

from core.keys import Keys
from tests.conftest import run_cli
from tests.integration.test_moderation_api import add_user, app_client, bearer, make_pair, seed

pytestmark = pytest.mark.integration


async def test_a_missing_explanation_is_generated_once_and_stored(settings, tiny_model):
    settings = dataclasses.replace(settings, model_path=tiny_model, explain_max_tokens=6, device="cpu")
    (image_id,) = await seed(settings, [make_pair(settings, 91, label="uncertain", fake=0.45)])
    viewer, moderator = add_user(settings, "ivy", "viewer"), add_user(settings, "max", "moderator")
    async with app_client(settings) as client:
        url = f"/api/items/{image_id}/explain"
        assert (await client.post(url, headers=bearer(viewer))).status_code == 403
        # Two at once share one generation.
        first, second = await asyncio.gather(
            client.post(url, headers=bearer(moderator)), client.post(url, headers=bearer(moderator))
        )
        assert first.status_code == 200, first.text
        text = first.json()["explanation"]
        assert text and second.json()["explanation"] == text

        item = (await client.get(f"/api/items/{image_id}", headers=bearer(viewer))).json()
        assert item["explanation"] == text and item["verdict"]["explanation"] == text
        assert item["explanation_model_version"] == settings.model_version
        assert item["verdict"]["label"] == "uncertain"  # explaining never changes the verdict

    r = redis.Redis.from_url(settings.redis_url)
    record = r.hgetall(Keys(settings.redis_prefix).verdict(image_id))
    assert json.loads(record[b"verdict"])["explanation"] == text
    explains = [e for _, e in r.xrange(Keys(settings.redis_prefix).audit()) if e[b"action"] == b"explain"]
    assert len(explains) == 1  # generated once


def test_verdicts_tail_prints_json_lines_flagged_only_from_the_beginning(settings):
    pairs = [make_pair(settings, 95, label="authentic"), make_pair(settings, 96), make_pair(settings, 97)]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for _, verdict in pairs:
        producer.send(settings.topic_verdicts, key=verdict.image_id.encode(), value=verdict.to_json())
    producer.send(settings.topic_verdicts, key=b"junk", value=b"not a verdict")
    producer.flush()
    producer.close()

    out = run_cli(settings, "verdicts", "tail", "--json", "--from-beginning", "--timeout", "5")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(v["image_id"] for v in lines) == sorted(v.image_id for _, v in pairs)
    assert "skipped a message that is not a Verdict" in out.stderr

    flagged = run_cli(
        settings,
        "verdicts",
        "tail",
        "--json",
        "--flagged",
        "--from-beginning",
        "--max",
        "2",
        "--timeout",
        "5",
    )
    assert flagged.returncode == 0, flagged.stderr
    got = [json.loads(line) for line in flagged.stdout.splitlines()]
    assert sorted(v["image_id"] for v in got) == sorted(v.image_id for _, v in pairs[1:])
    assert all(v["flagged"] for v in got)
