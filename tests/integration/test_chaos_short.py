"""The short chaos run: `misinfo bench chaos` over 100 images with one worker SIGKILL and one broker
pause, on a stack of its own (real broker, a Redis the run starts, two real workers, a real
collector): no image without its record, repeats within the bound, every process alive."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def test_a_worker_kill_and_a_broker_pause_lose_nothing(base_settings, tiny_model):
    out = run_cli(
        base_settings,
        *("bench", "chaos", "--images", "100", "--faults", "worker-kill,broker-pause"),
        *("--broker-pause-s", "5", "--deadline-s", "400"),
        timeout=600,
        MISINFO_MODEL_PATH=tiny_model,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert [f["fault"] for f in figures["faults"]] == ["worker-kill", "broker-pause"]
    assert all(f["backlog_reached"] for f in figures["faults"]), figures["faults"]  # struck under load
    assert figures["lost"] == 0 and figures["records"] == 100
    assert figures["images_without_verdict_message"] == 0  # every record's verdict is on the topic
    assert figures["repeated_verdict_messages"] <= 2 * 8 * 2
    assert figures["dead_letters"] == 0
    assert figures["all_alive"], figures["alive"]
    assert all(f["recovered_s"] is not None for f in figures["faults"])
