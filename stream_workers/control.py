"""Live model swap: every worker follows the control topic and swaps to each new champion.

The control topic is read by every worker *outside* the consumer group (a broadcast: each worker
must see every ``ModelUpdate``, whatever the partition assignment). On start the worker replays the
topic and serves the latest champion. A new version is loaded in a background thread while the
current one keeps serving; the swap is one reference assignment that the next batch picks up, so
nothing is held up longer than one batch.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.contracts.base import ContractError
from core.contracts.models import ModelUpdate
from core.kafka import async_replay_consumer
from detector.checkpoint import model_location

log = logging.getLogger(__name__)


def fetch(uri: str, tracking_uri: str, dest: Path) -> Path:
    """A local path for ``uri``: a directory or file as is, ``file://`` URIs, or any MLflow artifact
    URI (``runs:/``, ``models:/``, ``mlflow-artifacts:/``, ``s3://`` through MLflow)."""
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if "://" not in uri and ":/" not in uri:
        return Path(uri)
    import mlflow

    dest.mkdir(parents=True, exist_ok=True)
    return Path(
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest), tracking_uri=tracking_uri)
    )


def resolve_update(update: ModelUpdate, base_model: str, tracking_uri: str, cache: Path) -> dict[str, Any]:
    """Where the new version's weights are: a full checkpoint, or the base model plus an adapter."""
    target = cache / f"{update.model_name}-{update.version}"
    out: dict[str, Any] = {"model_path": base_model, "adapter_path": None, "profile": None}
    if update.model_uri:
        path = fetch(update.model_uri, tracking_uri, target / "model")
        model_path, out["adapter_path"] = model_location(path, base_model)
        out["model_path"] = model_path or base_model
    if update.profile_uri:
        out["profile"] = str(fetch(update.profile_uri, tracking_uri, target / "profile"))
    return out


class ModelSwapper:
    """Loads announced versions in the background and swaps the worker's model slot."""

    def __init__(
        self,
        slot: Any,
        load: Callable[[ModelUpdate, dict[str, Any]], Any],
        *,
        model_name: str,
        base_model: str,
        tracking_uri: str,
        cache_dir: Path | None = None,
        on_swap: Callable[[ModelUpdate], None] | None = None,
    ) -> None:
        self.slot = slot
        self.load = load  # (update, resolved paths) -> detector; runs in a thread
        self.model_name = model_name
        self.base_model = base_model
        self.tracking_uri = tracking_uri
        self.cache = cache_dir or Path(tempfile.gettempdir()) / "misinfo-models"
        self.on_swap = on_swap
        self._lock = asyncio.Lock()

    def wanted(self, update: ModelUpdate) -> bool:
        return (
            update.model_name == self.model_name
            and update.alias == "champion"
            and str(update.version) != str(self.slot().version)
        )

    async def apply(self, update: ModelUpdate) -> bool:
        """Load ``update`` off the event loop and swap to it; False when it is not for us or failed."""
        async with self._lock:  # one load at a time; later updates queue behind it
            if not self.wanted(update):
                return False
            log.info("loading %s version %s in the background", update.model_name, update.version)
            try:
                detector = await asyncio.to_thread(self._load, update)
            except Exception:  # a broken version must not take the worker down: keep serving
                log.exception(
                    "could not load %s version %s; still serving %s",
                    update.model_name,
                    update.version,
                    self.slot().version,
                )
                return False
            old = self.slot().version
            self.slot.detector = detector
            log.info("swapped model %s -> %s", old, update.version)
            if self.on_swap:
                self.on_swap(update)
            return True

    def _load(self, update: ModelUpdate) -> Any:
        return self.load(update, resolve_update(update, self.base_model, self.tracking_uri, self.cache))


async def follow_control_topic(bootstrap: str, topic: str, swapper: ModelSwapper) -> None:
    """Replay the control topic (serve the latest champion), then apply each new update as it comes."""
    consumer = async_replay_consumer(bootstrap, topic)
    await consumer.start()
    try:
        while True:  # until the worker stops and cancels the task
            batches = await consumer.getmany(timeout_ms=500, max_records=100)
            latest: ModelUpdate | None = None
            for records in batches.values():
                for record in records:
                    try:
                        update = ModelUpdate.parse(record.value)
                    except ContractError as exc:
                        log.warning("ignoring a malformed model update: %s", exc)
                        continue
                    if swapper.wanted(update):
                        latest = update  # while replaying, only the last champion matters
            if latest is not None:
                await swapper.apply(latest)
    finally:
        await consumer.stop()
