"""The review state in Redis as the moderation service reads and writes it.

Reads what the worker's :class:`~stream_workers.sinks.RedisSink` writes (verdict records, indexes,
the review queue, sightings). Owns these keys (``p`` = the Redis prefix):

- ``{p}:labels:{image_id}``   hash moderator -> ``Label`` JSON (the latest label of each moderator);
  its existence also keeps the worker from putting the image back into the queue on a replay
- ``{p}:labeled``             zset image_id -> time of its latest label
- ``{p}:label-events``        zset ``{image_id}:{moderator}:{n}`` -> time, for throughput
- ``{p}:audit``               stream: one entry per label (and per explanation), never rewritten
- ``{p}:skipped:{user}``      zset image_id -> time, what a moderator skipped (kept an hour)
- ``{p}:undo:{user}``         the user's last label while it may be undone (:class:`UndoTicket`, TTL)
- ``{p}:lock:{image_id}``     who has the item open (see :mod:`moderation.locks`)
- ``{p}:second-review``       set of images picked for a second moderator: after the first label
  they stay in the queue (for the others: :meth:`ReviewStore.next_for` skips what a user labeled),
  and leave it with the second
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.agreement import pairwise_agreement
from core.contracts.images import ImageEvent
from core.contracts.provenance import PROVENANCE_STATES, Provenance
from core.contracts.verdicts import Label, Verdict
from core.keys import Keys
from moderation.locks import ItemLocks, Lock

SKIP_TTL_S = 3600
AUDIT_MAXLEN = 1_000_000  # approximate trim: the feedback topic is the durable log


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _who_and_what(raw: str | bytes) -> tuple[str, str]:
    """The moderator and the label of a stored ``Label`` JSON."""
    d = json.loads(raw)
    return str(d["moderator_id"]), str(d["label"])


@dataclass
class Item:
    """Everything the item page and ``GET /api/items/{id}`` show about one image."""

    image_id: str
    verdict: Verdict
    event: ImageEvent | None
    in_queue: bool
    priority: float | None
    labels: list[Label]
    sightings: list[str]
    explanation: str
    explanation_model_version: str | None

    @property
    def disagreement(self) -> bool:
        """Moderators gave different labels to this image."""
        return len({lb.label for lb in self.labels}) > 1


@dataclass(frozen=True)
class UndoTicket:
    """What undoing a label needs: the label, the one of the same moderator it replaced, the image's
    queue priority before it, and the stats entry it added; valid until ``until`` (unix seconds)."""

    label: Label
    previous: Label | None
    priority: float | None
    event: str
    until: float

    def to_json(self) -> str:
        return json.dumps(
            {
                "label": self.label.to_dict(),
                "previous": self.previous.to_dict() if self.previous else None,
                "priority": self.priority,
                "event": self.event,
                "until": self.until,
            }
        )

    @classmethod
    def parse(cls, raw: str | bytes) -> UndoTicket:
        d = json.loads(raw)
        prev = d.get("previous")
        return cls(
            Label.parse(d["label"]),
            Label.parse(prev) if prev else None,
            d["priority"],
            d["event"],
            d["until"],
        )


# Claim the user's ticket only when it is for this image: GET, compare, DEL in one step, so a
# double click undoes once and a ticket for another image stays where it is.
_TAKE_UNDO = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
if cjson.decode(raw)['label']['image_id'] ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return raw
"""


@dataclass
class QueueEntry:
    image_id: str
    priority: float
    label: str
    source: str
    model_version: str
    decided_at: float
    flagged: bool
    scores: dict[str, float] = field(default_factory=dict)
    text: str = ""
    provenance: str = ""  # the image's provenance state ("" when none was read)
    label_source: str = "model"  # model | provenance | both
    unstable: bool | None = None  # None: not re-checked
    locked_by: str | None = None  # the moderator who has it open


@dataclass
class QueuePage:
    entries: list[QueueEntry]
    total: int  # entries matching the filters
    offset: int
    limit: int


def _queue_entry(
    image_id: str, score: float, raw_verdict: bytes, raw_event: bytes | None, provenance: str | None
) -> QueueEntry:
    """A queue entry from the stored verdict and event JSON, reading only the fields a page shows
    (``provenance``: the record's provenance-state field, which the worker writes beside the JSON).

    The worker validated both before it wrote them; a full ``Verdict.parse`` and
    ``ImageEvent.parse`` of every entry of every page was a fifth of a queue page's cost."""
    v = json.loads(raw_verdict)
    text = str(json.loads(raw_event).get("text") or "") if raw_event else ""
    if not v.get("provenance"):
        provenance = None
    elif provenance is None:  # a record from before the field was written
        provenance = Provenance.model_validate(v["provenance"]).state
    return QueueEntry(
        image_id=image_id,
        priority=score,
        label=v["label"],
        source="",
        model_version=v["model_version"],
        decided_at=datetime.fromisoformat(v["decided_at"]).timestamp(),
        flagged=bool(v["flagged"]),
        scores={k: float(p) for k, p in v["scores"].items()},
        text=text[:200],
        provenance=provenance or "",
        label_source=v.get("label_source") or "model",
        unstable=v.get("unstable"),
    )


class ReviewStore:
    def __init__(self, redis: Any, prefix: str, locks: ItemLocks | None = None) -> None:
        self.redis = redis  # redis.asyncio.Redis
        self.keys = Keys(prefix)
        self.locks = locks or ItemLocks(redis, prefix)
        self._take_undo = redis.register_script(_TAKE_UNDO)

    # -- keys ---------------------------------------------------------------------------------------
    def verdict_key(self, image_id: str) -> str:
        return self.keys.verdict(image_id)

    def labels_key(self, image_id: str) -> str:
        return self.keys.labels(image_id)

    @property
    def review_key(self) -> str:
        return self.keys.review()

    # -- queue --------------------------------------------------------------------------------------
    async def queue(
        self,
        *,
        offset: int = 0,
        limit: int = 25,
        source: str | None = None,
        label: str | None = None,
        model_version: str | None = None,
        exclude: set[str] | None = None,
        chunk: int = 500,
        provenance: str | None = None,
        sort: str = "priority",
    ) -> QueuePage:
        """Queue entries, highest priority first, filtered; ``total`` counts every match.

        Without filters a page is one ZREVRANGE. With filters the queue is walked in chunks (HMGET of
        the filter fields per image, pipelined); the queue holds only unlabeled flagged images,
        so it stays small enough for that. ``sort="unstable"`` walks it too: verdicts whose label
        changed under the JPEG re-check first, then the rest, each by priority.
        """
        filtered = bool(source or label or model_version or exclude or provenance) or sort == "unstable"
        if not filtered:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zcard(self.review_key)
            pipe.zrevrange(self.review_key, offset, offset + limit - 1, withscores=True)
            total, pairs = await pipe.execute()
            entries = await self._entries([(_s(m), float(s)) for m, s in pairs])
            return QueuePage(entries=entries, total=total, offset=offset, limit=limit)

        matched: list[tuple[str, float]] = []
        unstable: dict[str, bool] = {}
        start = 0
        while True:
            pairs = await self.redis.zrevrange(self.review_key, start, start + chunk - 1, withscores=True)
            if not pairs:
                break
            ids = [(_s(m), float(s)) for m, s in pairs]
            pipe = self.redis.pipeline(transaction=False)
            for image_id, _ in ids:
                pipe.hmget(
                    self.verdict_key(image_id), "source", "label", "model_version", "provenance", "unstable"
                )
            for (image_id, score), (src, lbl, ver, prov, shaky) in zip(
                ids, await pipe.execute(), strict=True
            ):
                if exclude and image_id in exclude:
                    continue
                if source and (src is None or _s(src) != source):
                    continue
                if label and (lbl is None or _s(lbl) != label):
                    continue
                if model_version and (ver is None or _s(ver) != model_version):
                    continue
                if provenance and (prov is None or _s(prov) != provenance):
                    continue
                matched.append((image_id, score))
                unstable[image_id] = shaky is not None and _s(shaky) == "1"
            start += chunk
        if sort == "unstable":  # stable sort: priority order kept within each group
            matched.sort(key=lambda pair: not unstable[pair[0]])
        page = matched[offset : offset + limit]
        return QueuePage(entries=await self._entries(page), total=len(matched), offset=offset, limit=limit)

    async def _entries(self, pairs: list[tuple[str, float]]) -> list[QueueEntry]:
        if not pairs:
            return []
        # One round trip for the records and the locks of the whole page.
        ids = [image_id for image_id, _ in pairs]
        pipe = self.redis.pipeline(transaction=False)
        for image_id in ids:
            pipe.hmget(self.verdict_key(image_id), "verdict", "source", "event", "provenance")
        self.locks.read_holders(pipe, ids)
        *records, lock_names = await pipe.execute()
        held = await self.locks.parse_holders(ids, lock_names)
        out = []
        for (image_id, score), (raw_v, src, raw_e, prov) in zip(pairs, records, strict=True):
            if raw_v is None:  # queued but its record is gone (expired or deleted): not reviewable
                continue
            entry = _queue_entry(image_id, score, raw_v, raw_e, _s(prov) if prov is not None else None)
            entry.source = _s(src) if src is not None else ""
            entry.locked_by = held[image_id].holder if image_id in held else None
            out.append(entry)
        return out

    async def facets(self) -> dict[str, list[str]]:
        """Values the queue filters offer: sources with an index, labels, model versions in the queue."""
        sources = sorted(
            [
                _s(k).rsplit(":", 1)[1]
                async for k in self.redis.scan_iter(self.keys.pattern("index", "source"), count=500)
            ]
        )
        ids = [_s(m) for m in await self.redis.zrevrange(self.review_key, 0, 999)]
        pipe = self.redis.pipeline(transaction=False)
        for image_id in ids:
            pipe.hget(self.verdict_key(image_id), "model_version")
        versions = sorted({_s(v) for v in await pipe.execute() if v is not None})
        return {
            "source": sources,
            "label": ["authentic", "manipulated", "synthesized", "uncertain"],
            "model_version": versions,
            "provenance": await self.provenance_states(),
        }

    async def provenance_states(self) -> list[str]:
        """The provenance states some verdict was filed under (their index exists), in rank order."""
        pipe = self.redis.pipeline(transaction=False)
        for state in PROVENANCE_STATES:
            pipe.exists(self.keys.index_provenance(state))
        return [state for state, n in zip(PROVENANCE_STATES, await pipe.execute(), strict=True) if n]

    async def next_for(self, user: str, after: str | None = None) -> str | None:
        """The highest-priority queued image this user has not skipped lately (and not ``after``),
        not labeled already (an image waiting for its second moderator), that no other moderator
        has open."""
        skipped = await self.skipped(user)
        if after:
            skipped.add(after)
        start = 0
        while True:
            ids = [_s(m) for m in await self.redis.zrevrange(self.review_key, start, start + 99)]
            if not ids:
                return None
            pipe = self.redis.pipeline(transaction=False)
            for image_id in ids:
                pipe.hexists(self.labels_key(image_id), user)
            skipped |= {i for i, mine in zip(ids, await pipe.execute(), strict=True) if mine}
            held = await self.locks.holders([i for i in ids if i not in skipped])
            for image_id in ids:
                if image_id not in skipped and (image_id not in held or held[image_id].held_by(user)):
                    return image_id
            start += 100

    async def skip(self, user: str, image_id: str) -> None:
        key = self.keys.skipped(user)
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(key, {image_id: now})
        pipe.zremrangebyscore(key, "-inf", now - SKIP_TTL_S)
        pipe.expire(key, SKIP_TTL_S)
        await pipe.execute()

    async def skipped(self, user: str) -> set[str]:
        key = self.keys.skipped(user)
        return {_s(m) for m in await self.redis.zrangebyscore(key, time.time() - SKIP_TTL_S, "+inf")}

    # -- items --------------------------------------------------------------------------------------
    async def item(self, image_id: str) -> Item | None:
        pipe = self.redis.pipeline(transaction=False)
        self._read_item(pipe, image_id)
        return self._parse_item(image_id, await pipe.execute())

    async def item_and_lock(self, image_id: str) -> tuple[Item | None, Lock | None]:
        """The item and who has it open, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        self._read_item(pipe, image_id)
        self.locks.read_holders(pipe, [image_id])
        *item_replies, lock_names = await pipe.execute()
        lock = (await self.locks.parse_holders([image_id], lock_names)).get(image_id)
        return self._parse_item(image_id, item_replies), lock

    async def before_label(self, image_id: str) -> tuple[Item | None, Lock | None, int]:
        """What labeling needs first, in one round trip: the item, who has it open, and the label's
        sequence number (for :meth:`save_label`; a number left unused when the label fails is harmless)."""
        pipe = self.redis.pipeline(transaction=False)
        self._read_item(pipe, image_id)
        self.locks.read_holders(pipe, [image_id])
        pipe.incr(self.keys.label_seq())
        *item_replies, lock_names, seq = await pipe.execute()
        lock = (await self.locks.parse_holders([image_id], lock_names)).get(image_id)
        return self._parse_item(image_id, item_replies), lock, int(seq)

    def _read_item(self, pipe: Any, image_id: str) -> None:
        """Queue the reads of one item on ``pipe`` (four replies, for :meth:`_parse_item`)."""
        pipe.hgetall(self.verdict_key(image_id))
        pipe.zscore(self.review_key, image_id)
        pipe.hgetall(self.labels_key(image_id))
        pipe.smembers(self.keys.sightings(image_id))

    def _parse_item(self, image_id: str, replies: list[Any]) -> Item | None:
        record, priority, labels, sightings = replies
        if not record:
            return None
        return self._item(image_id, record, priority, labels, sightings)

    def _item(self, image_id: str, record: Any, priority: Any, labels: Any, sightings: Any) -> Item:
        rec = {_s(k): v for k, v in record.items()}
        verdict = Verdict.parse(rec["verdict"])
        event = ImageEvent.parse(rec["event"]) if "event" in rec else None
        parsed = sorted((Label.parse(v) for v in labels.values()), key=lambda lb: lb.labeled_at)
        explanation = verdict.explanation or _s(rec.get("explanation", b""))
        return Item(
            image_id=image_id,
            verdict=verdict,
            event=event,
            in_queue=priority is not None,
            priority=float(priority) if priority is not None else None,
            labels=parsed,
            sightings=sorted(_s(s) for s in sightings),
            explanation=explanation,
            explanation_model_version=_s(rec["explanation_model_version"])
            if "explanation_model_version" in rec
            else None,
        )

    async def exists(self, image_id: str) -> bool:
        return bool(await self.redis.exists(self.verdict_key(image_id)))

    async def save_explanation(self, image_id: str, text: str, model_version: str) -> None:
        """Store an on-demand explanation in the verdict record (the JSON and a field of its own).

        The separate field survives a replay, which rewrites the verdict JSON without it.
        """
        raw = await self.redis.hget(self.verdict_key(image_id), "verdict")
        if raw is None:
            return
        verdict = Verdict.parse(raw).model_copy(update={"explanation": text})
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self.verdict_key(image_id),
            mapping={
                "verdict": verdict.to_json(),
                "explanation": text,
                "explanation_model_version": model_version,
            },
        )
        pipe.xadd(
            self.keys.audit(),
            {"action": "explain", "image_id": image_id, "model_version": model_version, "at": time.time()},
            maxlen=AUDIT_MAXLEN,
            approximate=True,
        )
        await pipe.execute()

    # -- labels -------------------------------------------------------------------------------------
    async def save_label(
        self,
        label: Label,
        previous: Label | None,
        *,
        priority: float | None = None,
        undo_s: float = 0.0,
        second_review: bool = False,
        seq: int | None = None,
    ) -> Item | None:
        """Record a label that the feedback topic has acknowledged: labels hash, audit, queue exit;
        with ``undo_s`` > 0, the moderator's undo ticket for that long (``priority``: the image's
        queue priority before the label, restored by an undo). ``second_review``: the image waits
        for a second moderator, so it stays in the queue (when it was there) and is marked.
        ``seq``: the label's number from :meth:`before_label` (else one is drawn here).

        In the same transaction (one round trip): the moderator's lock on the item is given back,
        and the item is read as it is now, which is returned."""
        at = label.labeled_at.timestamp()
        n = seq if seq is not None else await self.redis.incr(self.keys.label_seq())
        event = f"{label.image_id}:{label.moderator_id}:{n}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.labels_key(label.image_id), label.moderator_id, label.to_json())
        if second_review:
            pipe.sadd(self.keys.second_review(), label.image_id)
        else:
            pipe.zrem(self.review_key, label.image_id)
        pipe.zadd(self.keys.labeled(), {label.image_id: at})
        pipe.zadd(self.keys.label_events(), {event: at})
        if undo_s > 0:
            ticket = UndoTicket(label, previous, priority, event, time.time() + undo_s)
            pipe.set(self.keys.undo(label.moderator_id), ticket.to_json(), px=int(undo_s * 1000))
        pipe.xadd(
            self.keys.audit(),
            {
                "action": "label",
                "image_id": label.image_id,
                "moderator": label.moderator_id,
                "label": label.label,
                "previous": previous.label if previous else "",
                "note": label.note,
                "regions": len(label.regions),
                "verdict_model_version": label.verdict_model_version or "",
                "at": at,
            },
            maxlen=AUDIT_MAXLEN,
            approximate=True,
        )
        self.locks.release_in(pipe, label.image_id, label.moderator_id)
        self._read_item(pipe, label.image_id)
        replies = await pipe.execute()
        return self._parse_item(label.image_id, replies[-4:])

    async def undo_ticket(self, user: str) -> UndoTicket | None:
        """The user's last label while it may still be undone."""
        raw = await self.redis.get(self.keys.undo(user))
        ticket = UndoTicket.parse(raw) if raw is not None else None
        return ticket if ticket is not None and ticket.until > time.time() else None

    async def take_undo(self, user: str, image_id: str) -> UndoTicket | None:
        """Claim the user's undo ticket for ``image_id`` (once); None: none live for that image."""
        raw = await self._take_undo(keys=[self.keys.undo(user)], args=[image_id])
        ticket = UndoTicket.parse(raw) if raw else None
        return ticket if ticket is not None and ticket.until > time.time() else None

    async def put_back_undo(self, ticket: UndoTicket) -> None:
        """Return a claimed ticket (the undo could not be published), for the time it had left."""
        left = ticket.until - time.time()
        if left > 0:
            await self.redis.set(
                self.keys.undo(ticket.label.moderator_id), ticket.to_json(), px=int(left * 1000), nx=True
            )

    async def retract(self, ticket: UndoTicket, retraction: Label) -> None:
        """Undo a label the feedback topic has acknowledged the retraction of: the moderator's
        previous label comes back (or none), the stats forget it, the audit log says so, and an image
        nobody has labeled any more returns to the queue with its old priority."""
        label, image_id = ticket.label, ticket.label.image_id
        pipe = self.redis.pipeline(transaction=True)
        if ticket.previous is not None:
            pipe.hset(self.labels_key(image_id), label.moderator_id, ticket.previous.to_json())
        else:
            pipe.hdel(self.labels_key(image_id), label.moderator_id)
        pipe.zrem(self.keys.label_events(), ticket.event)
        pipe.xadd(
            self.keys.audit(),
            {
                "action": "undo",
                "image_id": image_id,
                "moderator": label.moderator_id,
                "label": label.label,
                "restored": ticket.previous.label if ticket.previous else "",
                "labeled_at": label.labeled_at.isoformat(),
                "at": retraction.retracted_at.timestamp() if retraction.retracted_at else time.time(),
            },
            maxlen=AUDIT_MAXLEN,
            approximate=True,
        )
        pipe.hlen(self.labels_key(image_id))
        pipe.hget(self.verdict_key(image_id), "flagged")
        pipe.sismember(self.keys.second_review(), image_id)
        *_, remaining, flagged, second = await pipe.execute()
        requeue = ticket.priority is not None and flagged is not None and _s(flagged) == "1"
        if not remaining:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zrem(self.keys.labeled(), image_id)
            if requeue:
                pipe.zadd(self.review_key, {image_id: ticket.priority})
            await pipe.execute()
        elif remaining == 1 and second and requeue:  # its second label undone: it waits for one again
            await self.redis.zadd(self.review_key, {image_id: ticket.priority})

    async def label_of(self, image_id: str, moderator: str) -> Label | None:
        raw = await self.redis.hget(self.labels_key(image_id), moderator)
        return Label.parse(raw) if raw is not None else None

    async def audit(self, count: int = 100, image_id: str | None = None) -> list[dict[str, str]]:
        """The latest audit entries, newest first (optionally of one image)."""
        out: list[dict[str, str]] = []
        last = "+"
        while len(out) < count:
            batch = await self.redis.xrevrange(self.keys.audit(), max=last, count=500)
            if not batch:
                break
            for entry_id, fields in batch:
                rec = {_s(k): _s(v) for k, v in fields.items()}
                rec["id"] = _s(entry_id)
                if image_id is None or rec.get("image_id") == image_id:
                    out.append(rec)
            if len(batch) < 500 or image_id is None:
                break
            last = "(" + _s(batch[-1][0])
        return out[:count]

    # -- stats --------------------------------------------------------------------------------------
    async def stats(self, now: float | None = None, recent: int = 5000) -> dict[str, Any]:
        """Throughput (verdicts and labels per hour, last 24 h), queue size, and agreement between
        moderators and with the model over the ``recent`` most recently labeled images."""
        now = time.time() if now is None else now
        hour0 = int(now // 3600) * 3600
        edges = [hour0 - 3600 * i for i in range(23, -1, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for start in edges:
            pipe.zcount(self.keys.index_time(), start, f"({start + 3600}")
        for start in edges:
            pipe.zcount(self.keys.label_events(), start, f"({start + 3600}")
        pipe.zcard(self.review_key)
        pipe.zcount(self.keys.index_time(), now - 3600, "+inf")
        pipe.zcount(self.keys.label_events(), now - 3600, "+inf")
        pipe.zcard(self.keys.labeled())
        pipe.zcard(self.keys.index_time())
        out = await pipe.execute()
        verdicts_h, labels_h = out[:24], out[24:48]
        queue_size, verdicts_1h, labels_1h, labeled_images, verdicts_total = out[48:]

        ids = [_s(m) for m in await self.redis.zrevrange(self.keys.labeled(), 0, recent - 1)]
        pipe = self.redis.pipeline(transaction=False)
        for image_id in ids:
            pipe.hgetall(self.labels_key(image_id))
            pipe.hget(self.verdict_key(image_id), "label")
        rows = await pipe.execute()
        per_moderator: Counter[str] = Counter()
        confusion: Counter[tuple[str, str]] = Counter()  # (model label, human label)
        model_agree = model_total = 0
        per_image: list[list[tuple[str, str]]] = []
        for labels_raw, model_label in zip(rows[0::2], rows[1::2], strict=True):
            # (moderator, label) pairs only: these labels were validated when this service wrote
            # them, and a full Label.parse of thousands of them was most of this method's time.
            labels = [_who_and_what(v) for v in labels_raw.values()]
            per_image.append(labels)
            ml = _s(model_label) if model_label is not None else None
            for moderator, human in labels:
                per_moderator[moderator] += 1
                if ml is not None:
                    confusion[(ml, human)] += 1
                    model_total += 1
                    model_agree += ml == human
        between = pairwise_agreement(per_image)
        return {
            "generated_at": now,
            "queue_size": int(queue_size),
            "verdicts_total": int(verdicts_total),
            "labeled_images": int(labeled_images),
            "verdicts_last_hour": int(verdicts_1h),
            "labels_last_hour": int(labels_1h),
            "throughput": [
                {"hour_start": e, "verdicts": int(v), "labels": int(lb)}
                for e, v, lb in zip(edges, verdicts_h, labels_h, strict=True)
            ],
            "labels_per_moderator": dict(sorted(per_moderator.items())),
            "agreement": {
                "window_images": len(ids),
                "with_model": {
                    "labels": model_total,
                    "agree": model_agree,
                    "rate": round(model_agree / model_total, 4) if model_total else None,
                },
                "between_moderators": {
                    "images_with_several_labels": between["images"],
                    "images_in_dispute": between["disputed"],
                    "pairs": between["pairs"],
                    "agreeing_pairs": between["agreeing_pairs"],
                    "rate": between["rate"],
                    # each moderator against the others, on the images both labeled
                    "per_moderator": between["per_moderator"],
                },
                "confusion": [
                    {"model": m, "moderator": h, "count": c} for (m, h), c in sorted(confusion.items())
                ],
            },
        }
