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

        status = _dev(env, "status", "--json")
        assert status.returncode == 0, status.stdout
        rows = {r["name"]: r for r in map(json.loads, status.stdout.splitlines())}
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
    rows = {r["name"]: r for r in map(json.loads, after.stdout.splitlines())}
    assert not any(rows[n]["healthy"] for n in ("broker", "mlflow", "ray"))
    assert not list((tmp_path / "state" / "run").glob("*.pid"))
