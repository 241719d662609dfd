"""At-least-once with idempotent sinks, against real worker processes, the real broker and Redis:
a SIGKILL mid-stream loses nothing, two workers share the partitions and hand them over."""

from __future__ import annotations

import dataclasses
import signal

import pytest
import redis

from core.keys import Keys
from misinfo.devstack.stack import wait_for
from tests.conftest import free_port, start_cli
from tests.integration.worker_support import metric, publish_samples, verdict_ids

pytestmark = pytest.mark.integration


def _stop(proc, sig=signal.SIGTERM) -> None:  # type: ignore[no-untyped-def]
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(timeout=60)


def test_worker_killed_mid_stream_and_restarted_loses_nothing(settings, tiny_model, tmp_path):
    n = 96
    settings = dataclasses.replace(settings, model_path=tiny_model, max_batch=4, max_wait_s=0.2)
    publish_samples(settings, tmp_path / "images", n, seed=11)
    log = tmp_path / "worker.log"
    first = start_cli(settings, "worker", log=log)
    try:
        wait_for(lambda: len(verdict_ids(settings)) >= 4, 180, 0.02, "first verdicts")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        _stop(first, signal.SIGKILL)
    at_kill = len(verdict_ids(settings))
    assert at_kill < n, "the worker finished before it could be killed; the test proves nothing"

    second = start_cli(settings, "worker", log=log)
    try:
        wait_for(lambda: len(verdict_ids(settings)) >= n, 240, 0.5, f"{n} verdict records")
    finally:
        _stop(second)
    r = redis.Redis.from_url(settings.redis_url)
    assert len(verdict_ids(settings)) == n
    assert r.zcard(Keys(settings.redis_prefix).index_time()) == n  # one entry per image, never two


def test_two_workers_share_partitions_and_hand_over_without_loss(settings, tiny_model, tmp_path):
    settings = dataclasses.replace(settings, model_path=tiny_model, max_batch=4, max_wait_s=0.2)
    ports = [free_port(), free_port()]
    workers = [
        start_cli(dataclasses.replace(settings, worker_web_port=p), "worker", log=tmp_path / f"w{i}.log")
        for i, p in enumerate(ports)
    ]
    try:
        # Both joined the group and own one partition each (the topic has 2).
        wait_for(lambda: [_partitions(p) for p in ports] == [1, 1], 120, 0.5, "one partition per worker")
        publish_samples(settings, tmp_path / "a", 40, seed=21)
        wait_for(lambda: len(verdict_ids(settings)) >= 40, 180, 0.5, "first 40 verdicts")
        per_worker = [metric(p, "misinfo_images_total") for p in ports]
        assert all(v > 0 for v in per_worker), per_worker  # the work was shared
        assert sum(per_worker) >= 40

        _stop(workers[0])  # its partitions move to the other worker
        publish_samples(settings, tmp_path / "b", 30, seed=22)
        wait_for(lambda: len(verdict_ids(settings)) >= 70, 180, 0.5, "all 70 verdicts after hand-over")
    finally:
        for w in workers:
            _stop(w)
    assert len(verdict_ids(settings)) == 70


def _partitions(port: int) -> int:
    """How many images partitions the worker reports lag for (= owns now)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return resp.read().decode().count("misinfo_consumer_lag{")
    except OSError:
        return -1
