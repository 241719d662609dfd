"""A new user's common mistakes, through the real CLI: each ends in one line with its cause and its
remedy and a non-zero exit (no traceback, no client-library noise), or, for a long-running service,
a wait that says so and ends when the service it waits for appears."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from core.config import Settings, load_settings
from misinfo.devstack import DevStack
from misinfo.devstack.stack import wait_for
from tests.conftest import free_port, run_cli, start_cli

pytestmark = pytest.mark.integration

HANG_GUARD_S = 60  # a guard against hangs, not a speed check: a retrying client would take 30 s+


def nowhere(settings: Settings, **changes: object) -> Settings:
    """The test's settings with broker, MLflow and Ray on loopback ports nothing listens on."""
    return load_settings(
        settings.env(),
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        ray_address=f"http://127.0.0.1:{free_port()}",
        **changes,
    )


def one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr and "kafka.net" not in out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_verdicts_tail_with_a_wrong_bootstrap(settings):
    s = nowhere(settings)
    out = run_cli(s, "verdicts", "tail", timeout=HANG_GUARD_S)
    one_line_error(out, s.kafka_bootstrap, "MISINFO_KAFKA_BOOTSTRAP", "misinfo dev up")


def test_collect_once_without_a_broker_is_quiet(settings, tmp_path):
    s = nowhere(settings)
    (tmp_path / "in").mkdir()
    out = run_cli(s, "collect", "folder", str(tmp_path / "in"), "--once", timeout=HANG_GUARD_S)
    one_line_error(out, s.kafka_bootstrap, "MISINFO_KAFKA_BOOTSTRAP")


def test_registry_and_training_commands_without_their_services(settings):
    s = nowhere(settings)
    one_line_error(
        run_cli(s, "registry", "list", timeout=HANG_GUARD_S), s.mlflow_tracking_uri, "MISINFO_MLFLOW"
    )
    one_line_error(run_cli(s, "train", "status", "bogus-id", timeout=HANG_GUARD_S), "MISINFO_RAY_ADDRESS")
    one_line_error(run_cli(s, "train", "submit", timeout=HANG_GUARD_S), s.ray_address)


def test_a_bad_setting_and_a_missing_model(settings):
    out = run_cli(settings, "verdicts", "tail", timeout=HANG_GUARD_S, MISINFO_MAX_BATCH="many")
    one_line_error(out, "MISINFO_MAX_BATCH='many'", "fix or unset it")
    out = run_cli(settings, "worker", timeout=HANG_GUARD_S, MISINFO_MODEL_PATH="/nonexistent/checkpoint")
    one_line_error(out, "MISINFO_MODEL_PATH", "not a directory")


def test_worker_metrics_port_taken(settings):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = run_cli(settings, "worker", "--noop-detector", "--web-port", str(port), timeout=HANG_GUARD_S)
    one_line_error(out, f"127.0.0.1:{port}", "MISINFO_WORKER_WEB_PORT")


def test_worker_started_before_the_broker_waits_then_starts(settings, tmp_path, tiny_model):
    """It says what it waits for once every 10 s, then goes on by itself when the broker appears; its
    metrics are then served on 127.0.0.1 (the default MISINFO_WORKER_WEB_BIND), not on the machine's
    other addresses."""
    s = nowhere(settings, model_path=tiny_model)
    log = tmp_path / "worker.log"
    worker = start_cli(s, "worker", "--noop-detector", log=log)
    stack = DevStack(s)
    try:
        wait_for(lambda: len(_waiting(log)) >= 2, HANG_GUARD_S, 0.2, "two waiting lines")
        first, second = _waiting(log)[:2]
        assert "the Kafka broker at " + s.kafka_bootstrap in first and "misinfo dev up" in first
        assert worker.poll() is None and "Traceback" not in log.read_text()
        a, b = (int(line.rsplit("[", 1)[1].split(" s]")[0]) for line in (first, second))
        assert 10 <= b - a < 20, (first, second)  # the wait's own clock: one line every 10 s
        stack.up(["broker"], progress=lambda *_: None)
        wait_for(lambda: "starting" in log.read_text(), HANG_GUARD_S, 0.2, "the worker to go on")
        wait_for(lambda: _http_ok("127.0.0.1", s.worker_web_port), 120, 0.5, "the worker's metrics")
        assert "Traceback" not in log.read_text()
        outside = _outside_address()
        if outside is not None:
            assert not _http_ok(outside, s.worker_web_port), f"metrics answer on {outside}"
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        stack.down(["broker"], progress=lambda *_: None)


def _waiting(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "waiting for" in line]


def _outside_address() -> str | None:
    """An address of this machine other than loopback, when it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent, the kernel picks a source
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def _http_ok(host: str, port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2):  # noqa: S310
            return True
    except OSError:
        return False
