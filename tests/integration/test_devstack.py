"""`misinfo dev up|status|down` on a stack of its own: up twice is harmless, status shows health,
down leaves no process behind."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from core.config import load_settings
from misinfo.devstack.stack import _group_alive
from tests.conftest import MISINFO, free_port

pytestmark = pytest.mark.integration


def _dev(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MISINFO, "dev", *args], env=env, capture_output=True, text=True, timeout=300)


def test_up_twice_status_and_down_leave_nothing_running(tmp_path):
    settings = load_settings(
        {},
        state_dir=str(tmp_path / "state"),
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        ray_address=f"http://127.0.0.1:{free_port()}",
        ray_gcs_port=free_port(),
    )
    env = {**os.environ, **settings.env()}
    try:
        first = _dev(env, "up")
        assert first.returncode == 0, first.stderr
        second = _dev(env, "up")
        assert second.returncode == 0, second.stderr
        assert second.stderr.count("already running") == 4, second.stderr
        # The machine's Redis is used, and said to be someone else's.
        assert "redis: already running at" in second.stderr and "NOT started by this stack" in second.stderr

        status = _dev(env, "status", "--json")
        assert status.returncode == 0, status.stdout
        doc = json.loads(status.stdout)
        assert doc["kafka_bootstrap"] == settings.kafka_bootstrap and doc["healthy"]
        assert doc["topics"]["verdicts"] == settings.topic_verdicts
        rows = {r["name"]: r for r in doc["components"]}
        assert set(rows) == {"broker", "redis", "mlflow", "ray"}
        assert all(r["healthy"] for r in rows.values())
        pids = [r["pid"] for r in rows.values() if r["managed"]]
        assert len(pids) == 3  # broker, MLflow, Ray; Redis is the machine's own
    finally:
        down = _dev(env, "down")  # also when an assertion above failed: leave nothing running
    assert down.returncode == 0, down.stderr
    assert not any(_group_alive(pid) for pid in pids)
    after = _dev(env, "status", "--json")
    assert after.returncode == 1
    rows = {r["name"]: r for r in json.loads(after.stdout)["components"]}
    assert not any(rows[n]["healthy"] for n in ("broker", "mlflow", "ray"))
    assert not list((tmp_path / "state" / "run").glob("*.pid"))


def test_two_state_directories_get_two_private_brokers(tmp_path):
    """No address given: each state directory's stack gets ports of its own (derived from its path,
    or a free block recorded there), `dev status --json` names them, and a message produced on one
    broker is not on the other."""
    from kafka import KafkaProducer

    from core.kafka import replay_consumer

    base = {k: v for k, v in os.environ.items() if not k.startswith("MISINFO_")}
    if "MISINFO_TEST_REDIS_URL" in os.environ:
        base["MISINFO_REDIS_URL"] = os.environ["MISINFO_TEST_REDIS_URL"]
    envs = [{**base, "MISINFO_STATE_DIR": str(tmp_path / name)} for name in ("alice", "bob")]
    docs = []
    try:
        for env in envs:
            up = _dev(env, "up", "broker")
            assert up.returncode == 0, up.stderr
            assert "recorded in" in up.stderr and "NOT started by this stack" not in up.stderr
            doc = json.loads(_dev(env, "status", "--json").stdout)
            assert next(c for c in doc["components"] if c["name"] == "broker")["managed"]
            docs.append(doc)
        alice, bob = (d["kafka_bootstrap"] for d in docs)
        assert alice != bob
        # Every later command of the same state directory finds the same stack.
        assert load_settings({"MISINFO_STATE_DIR": envs[0]["MISINFO_STATE_DIR"]}).kafka_bootstrap == alice

        topic = "private-check"
        producer = KafkaProducer(bootstrap_servers=alice, acks="all")
        producer.send(topic, b"alice's verdict").get(timeout=30)
        producer.close()
        seen_by = {}
        for name, bootstrap in (("alice", alice), ("bob", bob)):
            consumer = replay_consumer(bootstrap, topic, idle_s=3)
            seen_by[name] = [m.value for m in consumer]
            consumer.close()
        assert seen_by == {"alice": [b"alice's verdict"], "bob": []}
    finally:
        for env in envs:
            _dev(env, "down")
