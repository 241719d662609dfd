"""Search over every judged image (not only the queue): by id, source, account, caption, date, the
model's label and the moderators' labels.

The worker keeps two indexes a search can start from, ``{p}:index:time`` and
``{p}:index:source:{source}`` (image id -> decided_at). A search walks the one that fits, newest
first, between the dates asked for (``ZREVRANGEBYSCORE``, in chunks), reads each candidate's record
fields in one pipelined round trip per chunk, and matches the rest (account, caption, free text,
labels) in Python. There is no full-text index: a walk stops after ``MAX_SCAN`` candidates and says
so (``truncated``), and narrower dates or a source reach further back. A full 64-digit id is looked
up directly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from core.keys import Keys

MAX_SCAN = 20_000
CHUNK = 500
HEX = re.compile(r"^[0-9a-f]{4,64}$")
HumanFilter = Literal["none", "any", "authentic", "manipulated", "synthesized"]
HUMAN_FILTERS: tuple[str, ...] = get_args(HumanFilter)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(frozen=True)
class SearchQuery:
    """What to look for; empty strings and None match everything."""

    q: str = ""  # image id prefix (4+ hex digits), or words in the caption, account or post URL
    source: str = ""
    account: str = ""  # part of the author's name, any case
    caption: str = ""  # part of the caption, any case
    label: str = ""  # the verdict's (final) label
    human_label: str = ""  # none: unlabeled; any: labeled; or a moderator's label
    since: float | None = None  # decided at or after (unix seconds)
    until: float | None = None  # decided at or before


@dataclass
class Hit:
    image_id: str
    decided_at: float
    label: str
    flagged: bool
    source: str
    author: str
    text: str
    source_url: str
    in_queue: bool = False
    human_labels: list[str] = field(default_factory=list)  # one per moderator, oldest first
    locked_by: str | None = None


@dataclass
class SearchPage:
    hits: list[Hit]
    total: int  # matches among the scanned candidates
    scanned: int
    truncated: bool  # the walk stopped at MAX_SCAN: older matches may exist
    offset: int
    limit: int


def _matches(query: SearchQuery, image_id: str, event: dict[str, Any], label: str) -> bool:
    if query.label and label != query.label:
        return False
    author = str(event.get("author") or "").lower()
    text = str(event.get("text") or "").lower()
    if query.account and query.account.lower() not in author:
        return False
    if query.caption and query.caption.lower() not in text:
        return False
    if query.q:
        needle = query.q.lower().strip()
        by_id = bool(HEX.match(needle)) and image_id.startswith(needle)
        words = needle.split()
        url = str(event.get("source_url") or "").lower()
        if not by_id and not all(w in text or w in author or w in url for w in words):
            return False
    return True


def _human_ok(query: SearchQuery, labels: list[str]) -> bool:
    wanted = query.human_label
    if not wanted:
        return True
    if wanted == "none":
        return not labels
    if wanted == "any":
        return bool(labels)
    return wanted in labels


def _human_labels(raw: dict[Any, Any]) -> list[str]:
    parsed = [json.loads(v) for v in raw.values()]
    return [p["label"] for p in sorted(parsed, key=lambda p: str(p.get("labeled_at", "")))]


async def search(
    redis: Any,
    prefix: str,
    query: SearchQuery,
    *,
    offset: int = 0,
    limit: int = 25,
    max_scan: int = MAX_SCAN,
) -> SearchPage:
    """One page of matches, newest verdict first (see the module docstring for how far it looks)."""
    keys = Keys(prefix)
    wants_human = bool(query.human_label)
    exact = query.q.strip().lower()
    if len(exact) == 64 and HEX.match(exact):
        score = await redis.zscore(keys.index_time(), exact)
        candidates: list[tuple[str, float]] = [(exact, float(score))] if score is not None else []
        index = None
    else:
        candidates = []
        index = keys.index_source(query.source) if query.source else keys.index_time()
    high = "+inf" if query.until is None else query.until
    low = "-inf" if query.since is None else query.since

    matched: list[tuple[str, float, dict[str, Any], str, bool, list[str]]] = []
    scanned = 0
    truncated = False
    start = 0
    while True:
        if index is not None:
            take = min(CHUNK, max_scan - scanned)
            if take <= 0:
                truncated = bool(await redis.zrevrangebyscore(index, high, low, start=start, num=1))
                break
            pairs = await redis.zrevrangebyscore(index, high, low, start=start, num=take, withscores=True)
            batch = [(_s(m), float(s)) for m, s in pairs]
            start += len(batch)
        else:
            batch, candidates = candidates, []
        if not batch:
            break
        scanned += len(batch)
        pipe = redis.pipeline(transaction=False)
        for image_id, _ in batch:
            pipe.hmget(keys.verdict(image_id), "event", "label", "flagged", "source")
            if wants_human:
                pipe.hgetall(keys.labels(image_id))
        out = await pipe.execute()
        step = 2 if wants_human else 1
        for i, (image_id, decided) in enumerate(batch):
            raw_event, label, flagged, source = out[i * step]
            if raw_event is None:
                continue  # indexed, but the record is gone
            if query.source and (source is None or _s(source) != query.source):
                continue
            if query.since is not None and decided < query.since:
                continue
            if query.until is not None and decided > query.until:
                continue
            event = json.loads(raw_event)
            label_s = _s(label) if label is not None else ""
            if not _matches(query, image_id, event, label_s):
                continue
            human = _human_labels(out[i * step + 1]) if wants_human else []
            if not _human_ok(query, human):
                continue
            matched.append((image_id, decided, event, label_s, _s(flagged) == "1", human))
        if index is None:
            break

    page = matched[offset : offset + limit]
    hits = [
        Hit(
            image_id=image_id,
            decided_at=decided,
            label=label,
            flagged=flagged,
            source=str(event.get("source") or ""),
            author=str(event.get("author") or ""),
            text=str(event.get("text") or "")[:200],
            source_url=str(event.get("source_url") or ""),
            human_labels=human,
        )
        for image_id, decided, event, label, flagged, human in page
    ]
    if hits:
        pipe = redis.pipeline(transaction=False)
        for h in hits:
            pipe.zscore(keys.review(), h.image_id)
            pipe.hgetall(keys.labels(h.image_id))
        out = await pipe.execute()
        for h, in_queue, labels in zip(hits, out[0::2], out[1::2], strict=True):
            h.in_queue = in_queue is not None
            h.human_labels = _human_labels(labels)
    return SearchPage(hits, len(matched), scanned, truncated, offset, limit)
