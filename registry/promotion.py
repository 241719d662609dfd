"""Promotion and rollback: move the ``champion`` alias and publish ``ModelUpdate`` on the control topic.

The registered model keeps a tag with the list of past champions, so ``rollback`` returns to the one
before. Each move publishes a :class:`~core.contracts.models.ModelUpdate` keyed by the model name: workers
load ``model_uri`` (adapter or full checkpoint) on top of their base model and tag verdicts with
``version``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.contracts.models import ModelUpdate
from registry.store import CHALLENGER, CHAMPION, RegistryStore

log = logging.getLogger(__name__)

Publish = Callable[[ModelUpdate], None]


class PromotionError(RuntimeError):
    """A promotion or rollback that cannot happen (no such version, nothing to roll back to)."""


def kafka_publisher(bootstrap: str, topic: str) -> Publish:
    """A publisher that sends each update to ``topic`` (key = model name) and waits for the ack."""

    def publish(update: ModelUpdate) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
        try:
            producer.send(topic, key=update.model_name.encode(), value=update.to_json()).get(timeout=30)
            producer.flush()
        finally:
            producer.close()
        log.info(
            "published ModelUpdate %s v%s (%s) on %s", update.model_name, update.version, update.alias, topic
        )

    return publish


def _update(store: RegistryStore, version: str) -> ModelUpdate:
    info = store.get(version)
    return ModelUpdate(
        model_name=store.name,
        version=info.version,
        alias=CHAMPION,
        model_uri=info.source,
        profile_uri=info.profile_uri,
    )


def promote(store: RegistryStore, version: str | int, publish: Publish) -> ModelUpdate:
    """Make ``version`` the champion, remember the previous one, publish the update."""
    version = str(version)
    store.get(version)  # raises for an unknown version
    previous = store.get_by_alias(CHAMPION)
    if previous is not None and previous.version == version:
        log.info("version %s is already the champion; publishing the update again", version)
    else:
        history = store.champion_history()
        if previous is not None:
            history.append(previous.version)
        store.set_champion_history(history)
        store.set_alias(CHAMPION, version)
    challenger = store.get_by_alias(CHALLENGER)
    if challenger is not None and challenger.version == version:
        store.delete_alias(CHALLENGER)
    store.tag(version, "promoted", "true")
    update = _update(store, version)
    publish(update)
    return update


def rollback(store: RegistryStore, publish: Publish, to_version: str | int | None = None) -> ModelUpdate:
    """Return the champion alias to the previous champion (or ``to_version``) and publish the update."""
    current = store.get_by_alias(CHAMPION)
    history = store.champion_history()
    if to_version is None:
        while history and current is not None and history[-1] == current.version:
            history.pop()
        if not history:
            raise PromotionError("no earlier champion to roll back to")
        target = history.pop()
    else:
        target = str(to_version)
        store.get(target)
        if target in history:
            history = history[: history.index(target)]
    store.set_champion_history(history)
    store.set_alias(CHAMPION, target)
    if current is not None:
        store.tag(current.version, "rolled_back", "true")
    update = _update(store, target)
    publish(update)
    return update
