"""The retrain trigger's state as every service reads it: counters, policy, cycles and their outcomes.

The retrain watcher (``trainer/``) writes this state in Redis under ``{prefix}:training:`` (see
:mod:`trainer.trigger` for the writer and the policy's decision); ``misinfo train status``, the
watcher's metrics and the review service's stats page read it through :func:`read_status` /
:func:`aread_status`, so the three always tell the same story. ``history`` is a Redis list of
JSON events: ``submitted`` (a training request), ``finished`` (the Ray job's final status) and
``result`` (what the cycle ended with: the version registered and the gate's decision).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from core.keys import Keys

LABELS = ("authentic", "manipulated", "synthesized")
HISTORY_SHOWN = 200  # newest history events read for the status (cycles are a few events each)
WATCHER_STALE_S = 120.0  # the watcher reports every 30 s; silence this long means it is not running


@dataclass(frozen=True)
class TriggerPolicy:
    """When a training starts (whichever comes first; see :mod:`trainer.trigger`)."""

    min_new_labels: int = 50
    disagreement_threshold: float = 0.3
    disagreement_window: int = 100
    cooldown_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Any) -> TriggerPolicy:
        return cls(
            settings.train_min_new_labels,
            settings.train_disagreement_threshold,
            settings.train_disagreement_window,
            settings.train_cooldown_s,
        )


@dataclass(frozen=True)
class Counters:
    labels_total: int = 0
    labels_at_last: int = 0
    recent: tuple[int, ...] = ()  # newest first, at most the window
    last_started_at: float | None = None
    in_flight: str | None = None

    @property
    def new_labels(self) -> int:
        return self.labels_total - self.labels_at_last

    def disagreement(self, window: int) -> float | None:
        """The disagreement share over the last ``window`` labels, None until the window is full."""
        if window <= 0 or len(self.recent) < window:
            return None
        return sum(self.recent[:window]) / window


@dataclass(frozen=True)
class Cycle:
    """One training: its request, how the Ray job ended, and what the cycle decided."""

    submission_id: str
    reason: str = ""
    submitted_at: float | None = None
    status: str | None = None  # the Ray job's final status; None while in flight
    finished_at: float | None = None
    version: str | None = None  # the registered candidate
    gate: str | None = None  # passed / refused
    promoted: bool | None = None
    gate_reasons: str = ""

    @property
    def outcome(self) -> str:
        """``promoted``, ``refused`` (the gate kept the champion), ``passed`` (not promoted
        automatically), ``succeeded`` (no result recorded), ``failed``, ``stopped`` or ``running``."""
        if self.gate is not None:
            return "promoted" if self.promoted else "refused" if self.gate == "refused" else "passed"
        if self.status is None:
            return "running"
        if self.status == "SUCCEEDED":
            return "succeeded"
        return "stopped" if self.status == "STOPPED" else "failed"


OUTCOMES = ("promoted", "refused", "passed", "succeeded", "failed", "stopped", "running")


def cycles(history: list[dict[str, Any]]) -> list[Cycle]:
    """The history's events folded into cycles, oldest first."""
    by_id: dict[str, dict[str, Any]] = {}
    for ev in history:
        sid = ev.get("submission_id") or ""
        if not sid and ev.get("event") == "submitted":
            sid = _submission_id(ev)
        if not sid:
            continue
        c = by_id.setdefault(sid, {"submission_id": sid})
        kind = ev.get("event")
        if kind == "submitted":
            c.update(reason=str(ev.get("reason", "")), submitted_at=_float(ev.get("created_at")))
        elif kind == "finished":
            c.update(status=str(ev.get("status")), finished_at=_float(ev.get("at")))
        elif kind == "result":
            c.update(
                version=None if ev.get("version") is None else str(ev["version"]),
                gate=ev.get("gate"),
                promoted=bool(ev.get("promoted")),
                gate_reasons=str(ev.get("reasons", "")),
            )
            c.setdefault("finished_at", _float(ev.get("at")))
    return [Cycle(**c) for c in by_id.values()]


def _submission_id(ev: dict[str, Any]) -> str:
    """A ``submitted`` event holds the request; its submission id is derived from it."""
    from core.contracts.training import TrainingRequest

    try:
        fields = {k: v for k, v in ev.items() if k != "event"}
        return TrainingRequest.parse(fields).submission_id
    except ValueError:
        return ""


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def outcome_counts(all_cycles: list[Cycle]) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for c in all_cycles:
        counts[c.outcome] += 1
    return counts


@dataclass(frozen=True)
class RetrainStatus:
    """A snapshot of the trigger's state and what the policy makes of it, at ``now``."""

    counters: Counters
    policy: TriggerPolicy
    per_class: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    watcher: dict[str, Any] | None = None  # the watcher's last report (``at``, ``group``, ``host``)
    now: float = field(default_factory=time.time)

    @property
    def disagreement(self) -> float | None:
        return self.counters.disagreement(self.policy.disagreement_window)

    @property
    def cooldown_left_s(self) -> float:
        started = self.counters.last_started_at
        if started is None:
            return 0.0
        return max(0.0, self.policy.cooldown_s - (self.now - started))

    @property
    def progress(self) -> float:
        """How close the next training is, 0..1 (1: the policy would start one but for the cooldown
        or a training in flight): the larger of new labels over their threshold and the
        disagreement share over its threshold (0 until the window is full)."""
        p = self.policy
        by_count = self.counters.new_labels / p.min_new_labels if p.min_new_labels > 0 else 0.0
        share = self.disagreement
        by_share = (
            share / p.disagreement_threshold if share is not None and p.disagreement_threshold > 0 else 0.0
        )
        if share is not None and share > p.disagreement_threshold:
            by_share = 1.0
        return max(0.0, min(1.0, max(by_count, by_share)))

    @property
    def watcher_age_s(self) -> float | None:
        at = _float((self.watcher or {}).get("at"))
        return None if at is None else max(0.0, self.now - at)

    def cycles(self) -> list[Cycle]:
        return cycles(self.history)

    def lines(self) -> list[str]:
        """The status for people, one fact a line (the CLI prints them; the stats page shows them)."""
        c, p = self.counters, self.policy
        out = []
        age = self.watcher_age_s
        if age is None:
            out.append(
                "label counting: no retrain watcher has reported; start one with `misinfo train watch`"
            )
        elif age > WATCHER_STALE_S:
            out.append(
                f"label counting: the retrain watcher last reported {age:.0f} s ago; is `misinfo train watch` running?"
            )
        else:
            group = (self.watcher or {}).get("group", "")
            out.append(
                f"label counting: the retrain watcher (its own service, group {group}), seen {age:.0f} s ago"
            )
        classes = ", ".join(f"{k} {self.per_class.get(k, 0)}" for k in LABELS)
        out.append(
            f"labels: {c.labels_total} counted ({classes}); {c.new_labels} since the last training started"
        )
        share = self.disagreement
        window = p.disagreement_window
        if share is None:
            seen = len(c.recent)
            dis = f"disagreement: n/a until {window} labels since the last training ({seen} so far)"
        else:
            dis = f"disagreement: {share:.2f} over the last {window} labels"
        out.append(
            f"trigger: {c.new_labels}/{p.min_new_labels} new labels, {dis} "
            f"(starts above {p.disagreement_threshold:.2f}); progress {self.progress:.0%}"
        )
        left = self.cooldown_left_s
        out.append(f"cooldown: {left:.0f} s left" if left > 0 else "cooldown: none")
        out.append(f"in flight: {c.in_flight}" if c.in_flight else "in flight: no training")
        return out


def queue_reads(pipe: Any, keys: Keys) -> None:
    """Queue the reads of :func:`status_from` on a Redis pipeline (sync or asyncio: same calls)."""
    pipe.get(keys.training("labels_total"))
    pipe.get(keys.training("labels_at_last"))
    pipe.lrange(keys.training("recent"), 0, -1)
    pipe.get(keys.training("last_started_at"))
    pipe.get(keys.training("in_flight"))
    for label in LABELS:
        pipe.get(keys.training("per_class", label))
    pipe.lrange(keys.training("history"), -HISTORY_SHOWN, -1)
    pipe.get(keys.training("watcher"))


def status_from(results: list[Any], policy: TriggerPolicy, now: float | None = None) -> RetrainStatus:
    total, at_last, recent, started, flight, *rest = results
    per_class = {label: int(v or 0) for label, v in zip(LABELS, rest[: len(LABELS)], strict=True)}
    history_raw, watcher_raw = rest[len(LABELS) :]
    counters = Counters(
        int(total or 0),
        int(at_last or 0),
        tuple(int(x) for x in recent),
        float(started) if started else None,
        flight.decode() if isinstance(flight, bytes) else flight,
    )
    history = []
    for raw in history_raw:
        try:
            history.append(json.loads(raw))
        except ValueError:
            continue
    watcher = None
    if watcher_raw:
        try:
            watcher = json.loads(watcher_raw)
        except ValueError:
            watcher = None
    return RetrainStatus(counters, policy, per_class, history, watcher, time.time() if now is None else now)


def read_status(redis: Any, prefix: str, policy: TriggerPolicy, now: float | None = None) -> RetrainStatus:
    """The status from a synchronous ``redis.Redis``."""
    pipe = redis.pipeline(transaction=False)
    queue_reads(pipe, Keys(prefix))
    return status_from(pipe.execute(), policy, now)


async def aread_status(
    redis: Any, prefix: str, policy: TriggerPolicy, now: float | None = None
) -> RetrainStatus:
    """The status from a ``redis.asyncio.Redis`` (the review service)."""
    pipe = redis.pipeline(transaction=False)
    queue_reads(pipe, Keys(prefix))
    return status_from(await pipe.execute(), policy, now)


def record_event(redis: Any, prefix: str, event: dict[str, Any]) -> None:
    """Append one event to the history (a synchronous ``redis.Redis``)."""
    redis.rpush(Keys(prefix).training("history"), json.dumps(event, default=str))


def report_watcher(redis: Any, prefix: str, group: str, host: str, now: float | None = None) -> None:
    """The watcher's heartbeat: the status says whether label counting runs."""
    at = time.time() if now is None else now
    redis.set(Keys(prefix).training("watcher"), json.dumps({"at": at, "group": group, "host": host}))
