"""Shared fixtures. The embedded stack (real broker, Redis, MLflow, Ray head) is started once per
test session, lazily, on free loopback ports; each test gets fresh topics, group and Redis prefix."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings, load_settings
from core.keys import Keys
from misinfo.procs import MISINFO, run_misinfo, start_misinfo  # noqa: F401 - MISINFO for tests

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for this test session's own stack: its state dir and free ports."""
    state = tmp_path_factory.mktemp("state")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MISINFO_")}
    return load_settings(
        environ,
        state_dir=str(state),
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        ray_address=f"http://127.0.0.1:{free_port()}",
        ray_gcs_port=free_port(),
        redis_url=os.environ.get("MISINFO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        topic_partitions=2,
    )


@pytest.fixture(scope="session")
def dev_stack(base_settings: Settings) -> Iterator[object]:
    """The broker and Redis, started for the session; MLflow and Ray join on first use."""
    from misinfo.devstack import DevStack

    stack = DevStack(base_settings)
    stack.up(["broker", "redis"], progress=lambda *_: None)
    yield stack
    stack.down(progress=lambda *_: None)


@pytest.fixture(scope="session")
def mlflow_uri(dev_stack) -> str:  # type: ignore[no-untyped-def]
    dev_stack.up(["mlflow"], progress=lambda *_: None)
    return dev_stack.settings.mlflow_tracking_uri


@pytest.fixture(scope="session")
def ray_address(dev_stack) -> str:  # type: ignore[no-untyped-def]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    dev_stack.up(["ray"], progress=lambda *_: None)
    return dev_stack.settings.ray_address


@pytest.fixture
def settings(dev_stack, tmp_path: Path) -> Settings:  # type: ignore[no-untyped-def]
    """Per-test settings on the session's stack: fresh topics, consumer group and Redis prefix."""
    tag = uuid.uuid4().hex[:10]
    s = dev_stack.settings.isolated(
        f"t{tag}",
        state_dir=str(tmp_path / "state"),
        worker_web_port=free_port(),
    )
    from misinfo.devstack import DevStack

    DevStack(s).create_topics()
    yield s
    import redis

    r = redis.Redis.from_url(s.redis_url)
    keys = list(r.scan_iter(Keys(s.redis_prefix).pattern(), count=1000))
    if keys:
        r.delete(*keys)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from detector.tiny import build_tiny_checkpoint

    return str(build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-model"), seed=0))


def run_cli(
    settings: Settings, *args: str, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``misinfo ARGS`` as a real process with the test's settings in its environment."""
    return run_misinfo(settings, *args, timeout=timeout, **env)


def start_cli(settings: Settings, *args: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start ``misinfo ARGS`` in the background (a worker, a continuous collector), logging to ``log``."""
    return start_misinfo(settings, *args, log=log, **env)


def judged(
    settings: Settings, items: list[tuple[bytes, str]], mime: str = "image/jpeg"
) -> list[tuple[str, str]]:
    """Blobs and verdict records as the worker leaves them (label ``uncertain``), for ``(image
    bytes, true class)`` items of 112x112 pixels; returns ``(image_id, true class)``."""
    from datetime import UTC, datetime

    import redis

    from core.contracts.images import ImageEvent
    from ingest.blobs import LocalBlobStore, sha256_hex

    store = LocalBlobStore(settings.blob_root)
    r = redis.Redis.from_url(settings.redis_url)
    out = []
    for i, (data, cls) in enumerate(items):
        image_id = sha256_hex(data)
        event = ImageEvent(
            image_id=image_id,
            blob_uri=store.put(data),
            source="folder",
            source_item_id=str(i),
            source_url=f"file:///{i}.{mime.split('/')[1]}",
            author=None,
            posted_at=None,
            collected_at=datetime.now(UTC),
            width=112,
            height=112,
            mime=mime,
            phash=f"{(i * 0x9E3779B97F4A7C15) % (1 << 64):016x}",  # distinct: no near-duplicate groups
            text="",
        )
        r.hset(
            Keys(settings.redis_prefix).verdict(image_id),
            mapping={"event": event.to_json(), "label": "uncertain"},
        )
        out.append((image_id, cls))
    return out
