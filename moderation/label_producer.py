"""Publishes moderators' labels to the feedback topic: ``acks=all``, keyed by ``image_id``.

The producer starts on first use, so the review pages work while the broker is down; a label is
only recorded in Redis after the broker acknowledged it (see ``LabelService``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from core.contracts.verdicts import Label

log = logging.getLogger(__name__)


class FeedbackUnavailable(Exception):
    """The broker did not acknowledge the label in time."""


class FeedbackPublisher:
    def __init__(self, bootstrap: str, topic: str, timeout_s: float = 15.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def _get(self) -> Any:
        async with self._lock:
            if self._producer is None:
                from aiokafka import AIOKafkaProducer

                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    acks="all",
                    client_id="misinfo-moderation",
                    request_timeout_ms=int(self.timeout_s * 1000),
                    retry_backoff_ms=200,
                )
                try:
                    await asyncio.wait_for(producer.start(), self.timeout_s)
                except Exception as exc:
                    await producer.stop()
                    raise FeedbackUnavailable(f"cannot reach the broker at {self.bootstrap}: {exc}") from exc
                self._producer = producer
            return self._producer

    async def publish(self, label: Label) -> None:
        """Send one label and wait for the broker's acknowledgement."""
        producer = await self._get()
        try:
            await asyncio.wait_for(
                producer.send_and_wait(self.topic, value=label.to_json(), key=label.image_id.encode()),
                self.timeout_s,
            )
        except Exception as exc:
            log.warning("label for %s not acknowledged: %s", label.image_id, exc)
            raise FeedbackUnavailable(f"the feedback topic did not acknowledge the label: {exc}") from exc

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
