"""The ``Collector`` base: a run loop over ``poll()``, a persisted cursor, clean stop, counters.

A subclass implements :meth:`poll`, yielding ``RawItem``s from where the cursor says it stopped, and
updates ``self.cursor``; the base saves the cursor only after the items were flushed to the broker,
so a restart publishes nothing twice and loses nothing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ingest.pipeline import Ingestor, RawItem

log = logging.getLogger(__name__)


class Collector:
    name: str = "collector"
    flush_every: int = 64  # items per broker flush (and cursor save)

    def __init__(self, ingestor: Ingestor, cursor_path: str | Path) -> None:
        self.ingestor = ingestor
        self.cursor_path = Path(cursor_path)
        self.cursor: dict[str, Any] = self._load_cursor()
        self._stop = threading.Event()

    def poll(self) -> Iterator[RawItem]:
        raise NotImplementedError

    def _load_cursor(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.cursor_path.read_text()))
        except FileNotFoundError:
            return {}

    def _save_cursor(self) -> None:
        self.cursor_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cursor_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.cursor))
        os.replace(tmp, self.cursor_path)

    def _commit(self) -> None:
        self.ingestor.flush()
        self._save_cursor()

    def run_once(self, on_item: Callable[[RawItem, str], None] | None = None) -> dict[str, int]:
        """One pass over the source; returns the counters."""
        n = 0
        for item in self.poll():
            outcome = self.ingestor.ingest(item)
            if on_item:
                on_item(item, outcome)
            n += 1
            if n % self.flush_every == 0:
                self._commit()
            if self._stop.is_set():
                break
        self._commit()
        return self.counts()

    def run_forever(self, every_s: float, on_item: Callable[[RawItem, str], None] | None = None) -> None:
        """Poll every ``every_s`` seconds until :meth:`stop`."""
        while not self._stop.is_set():
            self.run_once(on_item)
            self._stop.wait(every_s)

    def stop(self) -> None:
        self._stop.set()

    def counts(self) -> dict[str, int]:
        c = self.ingestor.counts
        return {k: int(c[k]) for k in ("seen", "published", "duplicates", "dead_letters")}
