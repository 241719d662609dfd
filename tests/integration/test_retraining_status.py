"""Retraining you can watch, on the embedded stack: the retrain watcher (its own process) counts
labels and says so in one log line per batch and in its metrics; `misinfo train status` and the
review service's stats page show the trigger state, the last cycles and the gate's last decision (one
line when MLflow does not answer); an unknown job id exits non-zero."""

from __future__ import annotations

import json
import urllib.request

import pytest
import redis
from kafka import KafkaProducer

from core.config import load_settings
from core.contracts.verdicts import Label
from core.keys import Keys
from misinfo.devstack.stack import wait_for
from tests.conftest import free_port, run_cli, start_cli
from tests.integration.test_moderation_api import add_user, app_client
from tests.integration.test_moderation_pages import login

pytestmark = pytest.mark.integration


def labels(n: int) -> list[Label]:
    return [
        Label(image_id=f"{i:064x}", label="manipulated", moderator_id="mod-1", verdict_model_version="0")
        for i in range(1, n + 1)
    ]


def metric(port: int, name: str, **labels: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


@pytest.fixture
def counting(settings, tmp_path):  # type: ignore[no-untyped-def]
    """A retrain watcher that counts but never trains (no Ray needed), with 3 labels (one replayed)."""
    s = load_settings(
        settings.env(),
        train_trigger=False,
        watcher_web_port=free_port(),
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",  # nothing there: the gate is unknown
    )
    log = tmp_path / "watcher.log"
    watcher = start_cli(s, "train", "watch", log=log)
    try:
        producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
        sent = labels(3)
        for label in [*sent, sent[0]]:
            producer.send(s.topic_feedback, key=label.image_id.encode(), value=label.to_json()).get(
                timeout=30
            )
        producer.close()
        r = redis.Redis.from_url(s.redis_url)
        total = Keys(s.redis_prefix).training("labels_total")
        wait_for(lambda: r.get(total) == b"3", 120, 0.3, "the watcher to count 3 labels")
        wait_for(lambda: "labels: " in log.read_text(), 60, 0.3, "the watcher's batch line")
        yield s, log
    finally:
        watcher.terminate()
        watcher.wait(timeout=60)


async def test_train_status_and_the_stats_page_show_the_trigger_state(counting):
    s, log = counting
    out = run_cli(s, "train", "status")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "the retrain watcher (its own service" in text
    assert "labels: 3 counted (authentic 0, manipulated 3, synthesized 0)" in text
    assert "3/50 new labels" in text and "progress 6%" in text
    assert "cooldown: none" in text and "in flight: no training" in text and "last cycles: none yet" in text
    gate = [line for line in text.splitlines() if line.startswith("gate:")]
    assert gate == [
        f"gate: unknown, MLflow at {s.mlflow_tracking_uri} is not reachable "
        "(`misinfo dev up mlflow`, or set MISINFO_MLFLOW_TRACKING_URI)"
    ]
    doc = json.loads(run_cli(s, "train", "status", "--json").stdout)
    assert (doc["labels_total"], doc["new_labels"], doc["min_new_labels"]) == (3, 3, 50)
    assert doc["outcomes"]["promoted"] == 0 and doc["watcher"]["group"] == s.watcher_group
    # One line per batch of labels, and the metrics.
    batch_lines = [line for line in log.read_text().splitlines() if "labels: " in line and " read (" in line]
    assert batch_lines and all("new since the last training" in line for line in batch_lines)
    assert metric(s.watcher_web_port, "misinfo_watcher_labels_received_total", result="counted") == 3
    assert metric(s.watcher_web_port, "misinfo_watcher_labels_received_total", result="replayed") == 1
    assert metric(s.watcher_web_port, "misinfo_watcher_new_labels") == 3
    assert metric(s.watcher_web_port, "misinfo_watcher_trigger_progress") == pytest.approx(0.06)
    # The review service's stats page tells the same story.
    async with app_client(s) as client:
        await login(client, "rita", add_user(s, "rita", "viewer"), next_url="/stats")
        page = await client.get("/stats")
    assert page.status_code == 200
    panel = page.text.split('id="retraining"', 1)[1].split("Throughput", 1)[0]
    assert "labels: 3 counted" in panel and "3/50 new labels" in panel and "no training yet" in panel
    assert "MLflow at" in panel and "is not reachable" in panel


def test_an_unknown_job_id_exits_non_zero(settings, ray_address):
    out = run_cli(settings, "train", "status", "bogus-id", RAY_AUTH_MODE="disabled")
    assert out.returncode == 1, out.stdout
    assert out.stderr.strip().splitlines() == [
        f"misinfo train: no training job 'bogus-id' on the Ray cluster at {ray_address} "
        "(`misinfo train status` lists the recent cycles and their ids)"
    ]
