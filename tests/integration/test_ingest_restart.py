"""A continuous collector (``misinfo collect folder --every``) is stopped and restarted, cleanly and by
SIGKILL, while new files arrive: every image is published exactly once."""

from __future__ import annotations

import signal

import pytest

from core.contracts.images import ImageEvent
from misinfo.devstack.stack import wait_for
from misinfo.samples import write_samples
from tests.conftest import start_cli
from tests.integration.ingest_support.topics import read_topic

pytestmark = pytest.mark.integration


def test_restarted_continuous_collector_publishes_nothing_twice(settings, tmp_path):
    inbox = tmp_path / "inbox"
    write_samples(inbox, n=5, seed=101)
    log = tmp_path / "collector.log"

    def passes() -> int:
        return log.read_text(errors="replace").count("folder: pass done") if log.exists() else 0

    def run_until(n_passes: int, how: signal.Signals) -> None:
        proc = start_cli(settings, "collect", "folder", str(inbox), "--every", "0.2s", log=log)
        try:
            wait_for(lambda: passes() >= n_passes or proc.poll() is not None, 120, 0.1, "a collector pass")
            assert proc.poll() is None, log.read_text()[-3000:]
        finally:
            proc.send_signal(how)
            code = proc.wait(timeout=60)
        assert code == (0 if how == signal.SIGTERM else -signal.SIGKILL), log.read_text()[-3000:]

    run_until(1, signal.SIGTERM)
    write_samples(inbox, n=3, seed=202)
    run_until(passes() + 1, signal.SIGKILL)  # killed without a chance to save anything after its pass
    write_samples(inbox, n=2, seed=303)
    run_until(passes() + 2, signal.SIGTERM)

    records = read_topic(settings.kafka_bootstrap, settings.topic_images, 10)
    ids = [ImageEvent.parse(r.value).image_id for r in records]
    assert len(ids) == 10 and len(set(ids)) == 10
