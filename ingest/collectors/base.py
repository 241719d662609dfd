"""The ``Collector`` base: a run loop over ``poll()``, a persisted cursor, backoff, clean stop, counters.

A subclass implements :meth:`poll`, yielding ``RawItem``s from where the cursor says it stopped, and
updates ``self.cursor`` *after* each item was yielded (the generator resumes only once the item is
queued); the base saves the cursor only after the queued items were flushed to the broker, so a
restart resumes where the broker's acks end. A crash between ack and save re-reads a few items,
which the published marks in Redis turn into duplicates: nothing is published twice, nothing is lost.

When the source says "later" (HTTP 429 / 5xx, a timeout: :class:`TransientFetchError`), the pass
commits what it has, waits (exponential backoff with jitter, and never less than ``Retry-After``)
and resumes; items already handled in this pass are skipped, so counters stay exact.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ingest.exceptions import BadInput, IngestError, PublishError
from ingest.fetcher import Fetcher, FetchError, TransientFetchError
from ingest.pipeline import Ingestor, RawItem

log = logging.getLogger(__name__)


class SourceError(IngestError):
    """The source refused us for good (bad credentials, unknown account, malformed answer)."""


@dataclass
class Backoff:
    """Exponential backoff with jitter: attempt ``n`` waits a random time in [c/2, c], c = base·2ⁿ
    capped at ``max_s``; a server's ``Retry-After`` is a floor (plus up to 10% jitter, so that many
    collectors told the same moment do not all return at once)."""

    base_s: float = 1.0
    max_s: float = 300.0
    rng: random.Random = field(default_factory=random.Random)
    max_retry_after_s: float = 3600.0  # a server asking for more than an hour is capped to an hour

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.max_s, self.base_s * (2 ** min(attempt, 30)))
        wait = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            floor = min(max(retry_after, 0.0), self.max_retry_after_s)
            wait = max(wait, floor + self.rng.uniform(0, 0.1 * floor))
        return wait


class Collector:
    name: str = "collector"
    flush_every: int = 64  # items per broker flush (and cursor save)
    max_poll_retries: int = 8  # consecutive transient failures before a pass gives up
    image_tries: int = 3  # attempts per image URL before it becomes a dead letter
    image_retry_cap_s: float = 30.0  # an image is not worth waiting longer than this between tries
    seen_ids_kept: int = 2000  # per listing, for sources without a monotonic cursor

    def __init__(
        self,
        ingestor: Ingestor,
        cursor_path: str | Path,
        *,
        fetcher: Fetcher | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.cursor_path = Path(cursor_path)
        self.cursor: dict[str, Any] = self._load_cursor()
        self.fetcher = fetcher
        self.backoff = backoff or Backoff()
        self.stats: Counter[str] = Counter()  # passes, retries, rate_limited, source_errors
        self._stop = threading.Event()
        self._handled: set[str] = set()  # source_item_ids handled in the current pass

    # --- for subclasses ------------------------------------------------------------------------------

    def poll(self) -> Iterator[RawItem]:
        raise NotImplementedError

    def image_item(self, url: str, link: str | None = None, **meta: Any) -> RawItem:
        """Fetch one image URL into a ``RawItem``: the bytes, or the reason they could not be had.
        Transient failures are retried (honouring ``Retry-After``) ``image_tries`` times.
        ``link`` (the post a moderator would open) becomes the event's ``source_url`` when the fetch
        worked; a dead letter keeps the image URL that failed."""
        assert self.fetcher is not None, f"{type(self).__name__} needs a fetcher"
        last: TransientFetchError | None = None
        for attempt in range(self.image_tries):
            try:
                body = self.fetcher.image(url).body
                return RawItem(source_url=link or url, data=body, media_url=url, **meta)
            except FetchError as exc:
                return RawItem(source_url=url, error=exc, **meta)
            except TransientFetchError as exc:
                last = exc
                if exc.status == 429:
                    self.stats["rate_limited"] += 1
                if attempt + 1 < self.image_tries:
                    wait = min(self.backoff.delay(attempt, exc.retry_after), self.image_retry_cap_s)
                    if self.wait(wait):
                        break
        reason = f"{last.reason if last else 'stopped'} (gave up after {self.image_tries} tries)"
        return RawItem(source_url=url, error=BadInput("fetch", reason), **meta)

    def api_json(
        self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        """GET a JSON API document; 429/5xx raise :class:`TransientFetchError` (the pass backs off),
        other errors :class:`SourceError`."""
        assert self.fetcher is not None, f"{type(self).__name__} needs a fetcher"
        resp = self.fetcher.get(url, params, headers)
        if resp.status >= 400:
            raise SourceError(f"{self.name} API answered HTTP {resp.status}: {resp.body[:300]!r}")
        return resp.json()

    def remember(self, listing: str, item_id: str) -> None:
        """Add ``item_id`` to the bounded seen list of ``listing`` (for sources without a since_id)."""
        seen: list[str] = self.cursor.setdefault("seen", {}).setdefault(listing, [])
        seen.append(item_id)
        del seen[: -self.seen_ids_kept]

    def was_seen(self, listing: str, item_id: str) -> bool:
        return item_id in self.cursor.get("seen", {}).get(listing, ())

    def handled(self, source_item_id: str) -> bool:
        """True when this pass already ingested the item: a poll resumed after a retry skips it
        before fetching anything."""
        return source_item_id in self._handled

    def wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopped."""
        return self._stop.wait(seconds)

    # --- cursor ----------------------------------------------------------------------------------------

    def _load_cursor(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.cursor_path.read_text()))
        except FileNotFoundError:
            return {}

    def _save_cursor(self) -> None:
        self.cursor_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cursor_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.cursor, default=_json_default))
        os.replace(tmp, self.cursor_path)

    def _commit(self) -> None:
        self.ingestor.flush()
        self._save_cursor()

    # --- running ---------------------------------------------------------------------------------------

    def run_once(self, on_item: Callable[[RawItem, str], None] | None = None) -> dict[str, int]:
        """One pass over the source, resumed after transient failures; returns the counters.

        Raises :class:`PublishError` (broker down past the producer's patience; the cursor is not
        saved, so a restart redoes the work) and :class:`SourceError` / ``TransientFetchError`` when
        the source keeps failing."""
        self.stats["passes"] += 1
        self._handled = set()
        n = 0
        attempt = 0
        while True:
            try:
                for item in self.poll():
                    if item.source_item_id in self._handled:  # re-listed after a retry in this pass
                        continue
                    self._handled.add(item.source_item_id)
                    outcome = self.ingestor.ingest(item)
                    if on_item:
                        on_item(item, outcome)
                    n += 1
                    attempt = 0
                    if n % self.flush_every == 0:
                        self._commit()
                    if self._stop.is_set():
                        break
                self._commit()
                return self.counts()
            except TransientFetchError as exc:
                self._commit()
                self.stats["retries"] += 1
                if exc.status == 429:
                    self.stats["rate_limited"] += 1
                if attempt >= self.max_poll_retries:
                    raise
                wait = self.backoff.delay(attempt, exc.retry_after)
                attempt += 1
                log.warning("%s: %s; retrying in %.1fs (attempt %d)", self.name, exc.reason, wait, attempt)
                if self.wait(wait):
                    return self.counts()

    def run_forever(self, every_s: float, on_item: Callable[[RawItem, str], None] | None = None) -> None:
        """Poll every ``every_s`` seconds until :meth:`stop`. A failing source is logged and retried
        with backoff; only a broker outage (:class:`PublishError`) ends the loop."""
        failures = 0
        while not self._stop.is_set():
            try:
                self.run_once(on_item)
                failures = 0
                log.info("%s: pass done %s", self.name, json.dumps(self.counts()))
                self.wait(every_s)
            except PublishError:
                raise
            except (SourceError, TransientFetchError, BadInput) as exc:
                self.stats["source_errors"] += 1
                wait = max(every_s, self.backoff.delay(failures))
                failures += 1
                log.error("%s: pass failed (%s); next try in %.0fs", self.name, exc, wait)
                self.wait(wait)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def counts(self) -> dict[str, int]:
        c = self.ingestor.counts
        return {k: int(c[k]) for k in ("seen", "published", "duplicates", "dead_letters")}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} in a cursor")
