"""Publish records to Kafka with kafka-python: ``acks=all``, keyed, retried, never dropped silently.

When the broker is down, ``send`` blocks (bounded buffer, ``max_block_ms``) instead of dropping;
a record the broker refuses after all retries is reported back to the caller, which dead-letters it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from ingest.exceptions import PublishError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublisherConfig:
    bootstrap: str
    linger_ms: int = 5
    retries: int = 10
    retry_backoff_ms: int = 200
    max_pending: int = 1000  # bounded buffer: send() flushes (blocks) when this many await acks
    max_block_ms: int = 120_000  # how long send() waits for metadata while the broker is down
    request_timeout_ms: int = 30_000
    delivery_timeout_ms: int = 600_000  # keep retrying through a broker outage this long
    client_id: str = "misinfo-ingest"


class Publisher:
    """A thin, safe wrapper around ``KafkaProducer``; ``flush`` reports every failed record."""

    def __init__(self, config: PublisherConfig, producer: Any | None = None) -> None:
        self.producer = producer or self._connect(config)
        self.max_pending = config.max_pending
        self._pending: list[tuple[Any, Callable[[], None] | None, Callable[[Exception], None] | None]] = []

    @staticmethod
    def _connect(config: PublisherConfig) -> Any:
        try:
            return KafkaProducer(
                bootstrap_servers=config.bootstrap,
                acks="all",
                retries=config.retries,
                retry_backoff_ms=config.retry_backoff_ms,
                linger_ms=config.linger_ms,
                max_block_ms=config.max_block_ms,
                request_timeout_ms=config.request_timeout_ms,
                delivery_timeout_ms=config.delivery_timeout_ms,
                client_id=config.client_id,
            )
        except KafkaError as exc:  # no broker answered the bootstrap
            raise PublishError(f"broker unreachable at {config.bootstrap}: {exc}") from exc

    def send(
        self,
        topic: str,
        key: str,
        value: bytes,
        on_success: Callable[[], None] | None = None,
        on_failure: Callable[[Exception], None] | None = None,
    ) -> None:
        """Queue one record; the callbacks run in :meth:`flush` once its fate is known.

        kafka-python 3 has no bounded ``buffer_memory``; the bound is kept here instead."""
        if len(self._pending) >= self.max_pending:
            self.flush()
        try:
            future = self.producer.send(topic, key=key.encode(), value=value)
        except KafkaTimeoutError as exc:
            # No metadata within max_block_ms: the broker is down. Raise so the collector stops
            # without saving its cursor (a restart redoes the work) instead of dropping the record.
            raise PublishError(f"broker unreachable: {exc}") from exc
        except KafkaError as exc:  # refused before sending, e.g. a record over max_request_size
            log.warning("publish refused: %s", exc)
            if on_failure is None:
                raise PublishError(str(exc)) from exc
            on_failure(exc)
            return
        self._pending.append((future, on_success, on_failure))

    @property
    def pending(self) -> int:
        """Records queued and not yet reported by :meth:`flush`."""
        return len(self._pending)

    def flush(self, timeout_s: float | None = None) -> int:
        """Wait for every queued record; run its callback; return how many failed."""
        self.producer.flush(timeout=timeout_s)
        failed = 0
        pending, self._pending = self._pending, []
        for future, ok, bad in pending:
            try:
                future.get(timeout=0 if future.is_done else timeout_s)
            except KafkaError as exc:
                failed += 1
                log.warning("publish failed permanently: %s", exc)
                if bad is None:
                    raise PublishError(str(exc)) from exc
                bad(exc)
                continue
            if ok is not None:
                ok()
        return failed

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.producer.close()
