"""Is a service there? Quick probes for the broker, Redis, MLflow and Ray, the one-line errors a
user sees when one is missing, and the wait of the long-running services.

A command that needs a service checks it first (:func:`require`) and stops within seconds with one
line naming the address, the setting and the remedy, instead of a client library's retries and
traceback. A long-running service (the worker, the retrain watcher, the review service, a
continuous collector) :func:`wait_until_reachable` instead: started before the stack, it says what
it waits for once every 10 s and starts when everything answers.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

START_HINT = "start the embedded stack with `misinfo dev up`"


class Unreachable(RuntimeError):
    """A service a command needs does not answer. The message is one line: what, where, the fix."""

    def __init__(self, service: str, address: str, setting: str) -> None:
        self.service, self.address, self.setting = service, address, setting
        super().__init__(
            f"cannot reach {service} at {address}: {START_HINT}, or set {setting} to where it runs"
        )


class PortTaken(OSError):
    """A port a service must listen on is held by another process."""

    def __init__(self, what: str, host: str, port: int, setting: str) -> None:
        self.host, self.port = host, port
        super().__init__(
            errno.EADDRINUSE,
            f"{what} cannot listen on {host}:{port}: another process holds that port; "
            f"stop it, or set {setting} to a free port",
        )

    def __str__(self) -> str:
        return str(self.strerror)


def host_port(address: str, default_port: int) -> tuple[str, int]:
    """(host, port) of ``host:port``, ``scheme://host:port/...`` or a Redis URL."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def broker_answers(bootstrap: str, timeout: float = 1.0) -> bool:
    """Whether any bootstrap server accepts a connection (the client takes it from there)."""
    return any(tcp_open(*host_port(hp.strip(), 9092), timeout) for hp in bootstrap.split(",") if hp.strip())


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def http_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether an HTTP server answers at ``url`` at all (any status: it is there)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - configured service URLs
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class Service:
    """One dependency: its name for people, its address, the setting that names it, a probe."""

    name: str
    address: str
    setting: str
    probe: Callable[[], bool]

    def error(self) -> Unreachable:
        return Unreachable(self.name, self.address, self.setting)


def services(settings: Any, *names: str) -> list[Service]:
    """The named dependencies (``broker``, ``redis``, ``mlflow``, ``ray``) of these settings."""
    s = settings
    known = {
        "broker": lambda: Service(
            "the Kafka broker",
            s.kafka_bootstrap,
            "MISINFO_KAFKA_BOOTSTRAP",
            lambda: broker_answers(s.kafka_bootstrap),
        ),
        "redis": lambda: Service(
            "Redis", _safe_url(s.redis_url), "MISINFO_REDIS_URL", lambda: redis_answers(s.redis_url)
        ),
        "mlflow": lambda: Service(
            "the MLflow server",
            s.mlflow_tracking_uri,
            "MISINFO_MLFLOW_TRACKING_URI",
            lambda: mlflow_answers(s.mlflow_tracking_uri),
        ),
        "ray": lambda: Service(
            "the Ray cluster (Jobs API)",
            s.ray_address,
            "MISINFO_RAY_ADDRESS",
            lambda: http_answers(s.ray_address.rstrip("/") + "/api/version"),
        ),
    }
    return [known[n]() for n in names]


def mlflow_answers(uri: str) -> bool:
    """A file or database store is always there; a server must answer its health check."""
    if not uri.startswith(("http://", "https://")):
        return True
    return http_answers(uri.rstrip("/") + "/health")


def _safe_url(url: str) -> str:
    """The URL without its password (a Redis URL may carry one)."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = f"{parsed.username or ''}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
        return parsed._replace(netloc=netloc).geturl()
    return url


def require(settings: Any, *names: str) -> None:
    """Raise :class:`Unreachable` for the first named service that does not answer (within seconds)."""
    for svc in services(settings, *names):
        if not svc.probe():
            raise svc.error()


def wait_until_reachable(
    settings: Any,
    names: Iterable[str],
    *,
    who: str,
    say: Callable[[str], None],
    interval_s: float = 10.0,
    poll_s: float = 1.0,
) -> float:
    """Block until every named service answers; ``say`` one line when the wait starts and then every
    ``interval_s`` while it lasts. Returns the seconds waited."""
    pending = services(settings, *names)
    started = time.monotonic()
    next_line = started
    while True:
        pending = [svc for svc in pending if not svc.probe()]
        if not pending:
            waited = time.monotonic() - started
            if waited > 0.5:
                say(f"{who}: every service answers after {waited:.0f} s; starting")
            return waited
        now = time.monotonic()
        if now >= next_line:
            missing = "; ".join(f"{svc.name} at {svc.address} ({svc.setting})" for svc in pending)
            say(f"{who}: waiting for {missing} [{now - started:.0f} s]: {START_HINT}, or fix the setting")
            next_line = now + interval_s
        time.sleep(poll_s)


def require_port(what: str, host: str, port: int, setting: str) -> None:
    """Raise :class:`PortTaken` when ``host:port`` cannot be bound now (SO_REUSEADDR, as servers do)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(what, host, port, setting) from exc
            raise
