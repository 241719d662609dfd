"""Kafka helpers every service shares: topic creation, the group-less replay consumer, the Faust app.

Client libraries are imported inside the functions: a module that only needs a contract or a key
never pays for (or depends on) a Kafka client.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings


@dataclass(frozen=True)
class Topics:
    """The five topic names of one deployment (or of one isolated run)."""

    images: str = "misinfo.images"
    verdicts: str = "misinfo.verdicts"
    feedback: str = "misinfo.feedback"
    dead_letters: str = "misinfo.dead-letters"
    control: str = "misinfo.control"

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        s = settings
        return cls(s.topic_images, s.topic_verdicts, s.topic_feedback, s.topic_dead_letters, s.topic_control)


def project_topics(settings: Settings) -> dict[str, int]:
    """The configured topics and their partition counts. The control topic has one partition: every
    worker reads every model update, in order."""
    t = Topics.from_settings(settings)
    parts = settings.topic_partitions
    return {t.images: parts, t.verdicts: parts, t.feedback: parts, t.dead_letters: parts, t.control: 1}


def create_topics(bootstrap: str, topics: dict[str, int], client_id: str = "misinfo-admin") -> list[str]:
    """Create the topics that do not exist yet (name -> partitions, replication 1); idempotent.
    Returns the names created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(name, parts, 1) for name, parts in topics.items() if name not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another process created them between the listing and the call
        return [t.name for t in new]
    finally:
        admin.close()


def replay_consumer(
    bootstrap: str,
    topics: str | Iterable[str],
    *,
    from_beginning: bool = True,
    idle_s: float | None = None,
    bootstrap_timeout_s: float | None = None,
) -> Any:
    """A kafka-python consumer outside any group (so it reads every partition, commits nothing and
    never disturbs a group's offsets): from the start of the log, or from its end. Iterating it stops
    after ``idle_s`` seconds without a message (None: never). ``bootstrap_timeout_s`` bounds the
    first connection (None: the client's 30 s)."""
    from kafka import KafkaConsumer

    names = [topics] if isinstance(topics, str) else list(topics)
    extra = {"bootstrap_timeout_ms": int(bootstrap_timeout_s * 1000)} if bootstrap_timeout_s else {}
    return KafkaConsumer(
        *names,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(idle_s * 1000) if idle_s else float("inf"),
        **extra,
    )


def async_replay_consumer(bootstrap: str, topic: str) -> Any:
    """The asyncio (aiokafka) form of :func:`replay_consumer`, from the start; call ``start()``."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


def make_faust_app(
    settings: Settings,
    app_id: str,
    *,
    web_enabled: bool,
    web_port: int | None = None,
    web_bind: str | None = None,
    **extra: Any,
) -> Any:
    """A Faust app with the project's broker settings: raw bytes (contracts parse at the edge),
    acks=all, earliest offsets, short group timings, data dir under the state dir. Its web server
    (/metrics) listens on ``web_bind:web_port`` (default: the worker's settings)."""
    import faust

    datadir = Path(settings.state_dir) / "faust" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    bind = web_bind or settings.worker_web_bind
    return faust.App(
        app_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(datadir),  # not the current directory
        web_enabled=web_enabled,
        web_port=web_port or settings.worker_web_port,
        # Faust listens on web_bind (its default is every interface); web_host only names the URL.
        web_bind=bind,
        web_host=bind if bind not in ("0.0.0.0", "::") else "localhost",  # noqa: S104
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.topic_partitions,
        # Short group timings: a first join otherwise waits for the full rebalance timeout.
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        **extra,
    )
