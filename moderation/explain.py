"""Explanations on demand: the detector is loaded on first use and runs in one executor thread.

Concurrent requests for the same image share one generation; the text is stored back into the
verdict record so that it is generated once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ingest.blobs import read_blob
from ingest.etl import decode_rgb
from moderation.store import ReviewStore

log = logging.getLogger(__name__)

CLASSES = ("authentic", "manipulated", "synthesized")


class ExplainUnavailable(Exception):
    """No explanation can be made for this item (its image is gone, or the model cannot load)."""


class Explainer:
    def __init__(
        self,
        store: ReviewStore,
        load_detector: Callable[[], Any],
        max_new_tokens: int,
        max_pixels: int,
    ) -> None:
        self.store = store
        self._load = load_detector
        self._detector: Any = None
        self.max_new_tokens = max_new_tokens
        self.max_pixels = max_pixels
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain")
        self._running: dict[str, asyncio.Future[str]] = {}

    def _generate(self, blob_uri: str, label: str, scores: dict[str, float]) -> tuple[str, str]:
        if self._detector is None:
            log.info("loading the detector for explanations")
            self._detector = self._load()
        _, image = decode_rgb(read_blob(blob_uri), self.max_pixels)
        # An uncertain verdict is explained for its most probable class, as the worker does.
        shown = label if label in CLASSES else max(CLASSES, key=lambda c: scores.get(c, 0.0))
        text = self._detector.explain([image], [shown], self.max_new_tokens)[0]
        return text, str(self._detector.version)

    async def explain(self, image_id: str) -> str:
        """The stored explanation, or a new one (generated, stored, returned)."""
        if image_id in self._running:
            return await asyncio.shield(self._running[image_id])
        item = await self.store.item(image_id)
        if item is None:
            raise KeyError(image_id)
        if item.explanation:
            return item.explanation
        if item.event is None:
            raise ExplainUnavailable("the record has no image event (no blob to look at)")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        self._running[image_id] = fut
        try:
            try:
                text, version = await loop.run_in_executor(
                    self._executor,
                    self._generate,
                    item.event.blob_uri,
                    item.verdict.label,
                    item.verdict.scores,
                )
            except Exception as exc:
                log.warning("explanation for %s failed: %s: %s", image_id, type(exc).__name__, exc)
                raise ExplainUnavailable(f"{type(exc).__name__}: {exc}") from exc
            await self.store.save_explanation(image_id, text, version)
            fut.set_result(text)
            return text
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            self._running.pop(image_id, None)

    def close(self) -> None:
        self._executor.shutdown(wait=False)
