"""The retrain trigger: label counters in Redis and the policy that turns them into a training request.

A training starts when, whichever comes first,

- ``min_new_labels`` labels arrived since the last training started, or
- the share of moderator–model disagreements over the last ``disagreement_window`` labels exceeds
  ``disagreement_threshold`` (a moderator label differing from the served verdict, ``uncertain``
  included, counts as a disagreement),

and neither the cooldown since the last start is running nor a training is in flight (at most one:
the claim is a Redis ``SET NX``, so several feedback agents never start two). Keys, under
``{prefix}:training:``: ``labels_total``, ``seen`` (label identities, so a replayed label is not
counted twice), ``recent`` (0/1 disagreements, newest first), ``per_class:{label}``,
``labels_at_last``, ``last_started_at``, ``in_flight`` (submission id), ``history`` (JSON lines:
``submitted``, ``finished`` and the cycle's ``result``), ``watcher`` (the watcher's heartbeat). The
read side (counters, policy, cycles and their outcomes) is :mod:`core.retraining`, shared with the
review service's stats page.

Undo: a moderator's undo arrives as a retraction of the label (``Label.retracted_at`` set, same
identity). :meth:`TriggerState.retract_label` takes the label's counts back once (``retracted`` holds
the identities taken back; ``counted`` maps each counted identity to the training it was counted
under and its disagreement bit): ``labels_total`` and ``per_class`` go down; if no training started
since the label was counted, its bit leaves ``recent``, else ``labels_at_last`` goes down too (the
training already counted it, so ``new_labels`` stays right).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from core.contracts.training import TrainingRequest
from core.keys import Keys
from core.retraining import Counters, TriggerPolicy  # noqa: F401 - re-exported: read by every service

log = logging.getLogger(__name__)

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def decide(policy: TriggerPolicy, c: Counters, now: float) -> tuple[bool, str]:
    """(start a training?, why / why not). Pure: the unit tests drive it directly."""
    if c.in_flight:
        return False, f"training {c.in_flight} is in flight"
    if c.last_started_at is not None and now - c.last_started_at < policy.cooldown_s:
        return False, f"cooldown: {policy.cooldown_s - (now - c.last_started_at):.0f}s left"
    if policy.min_new_labels > 0 and c.new_labels >= policy.min_new_labels:
        return True, f"{c.new_labels} new labels (threshold {policy.min_new_labels})"
    share = c.disagreement(policy.disagreement_window)
    if share is not None and share > policy.disagreement_threshold:
        return True, (
            f"disagreement {share:.2f} over the last {policy.disagreement_window} labels "
            f"(threshold {policy.disagreement_threshold:.2f})"
        )
    return False, f"{c.new_labels} new labels, disagreement {share if share is not None else 'n/a'}"


class Submitter(Protocol):
    def submit(self, request: TrainingRequest) -> str: ...

    def status(self, submission_id: str) -> str: ...


class TriggerState:
    """The counters in Redis (a synchronous ``redis.Redis``)."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.r = redis
        self.keys = Keys(prefix)
        self.prefix = prefix

    def record_label(self, label: Any, served_label: str | None, window: int) -> bool:
        """Count one label; ``served_label`` is the verdict the model gave (None: never judged).
        Returns False for a label already counted (a replay)."""
        ident = f"{label.image_id}:{label.moderator_id}:{label.labeled_at.isoformat()}"
        if not self.r.sadd(self.keys.training("seen"), ident):
            return False
        bit = None if served_label is None else int(served_label != label.label)
        started = self.r.get(self.keys.training("last_started_at"))
        pipe = self.r.pipeline(transaction=True)
        pipe.incr(self.keys.training("labels_total"))
        pipe.incr(self.keys.training("per_class", label.label))
        if bit is not None:
            pipe.lpush(self.keys.training("recent"), bit)
            pipe.ltrim(self.keys.training("recent"), 0, max(window, 1) - 1)
        # Which training's count it joined, and its bit: what an undo needs to take it back exactly.
        pipe.hset(self.keys.training("counted"), ident, json.dumps([_text(started), bit]))
        pipe.execute()
        return True

    def retract_label(self, label: Any) -> bool:
        """Take back the counts of the label that ``label`` (a retraction) withdraws, once.
        Returns False for a retraction already applied, or of a label never counted."""
        ident = label.identity()
        if not self.r.sadd(self.keys.training("retracted"), ident):
            return False
        if self.r.sadd(self.keys.training("seen"), ident):
            return False  # never counted; now a late (replayed) copy of the label never will be
        raw, started = (
            self.r.hget(self.keys.training("counted"), ident),
            self.r.get(self.keys.training("last_started_at")),
        )
        if raw is not None:
            counted_under, bit = json.loads(raw)
            before_last = counted_under != _text(started)
        else:  # counted before undo existed: its time says which side of the last start it fell
            bit = None
            before_last = started is not None and label.labeled_at.timestamp() < float(started)
        pipe = self.r.pipeline(transaction=True)
        pipe.decr(self.keys.training("labels_total"))
        pipe.decr(self.keys.training("per_class", label.label))
        if before_last:
            pipe.decr(self.keys.training("labels_at_last"))
        elif bit is not None:
            pipe.lrem(self.keys.training("recent"), 1, bit)
        pipe.hdel(self.keys.training("counted"), ident)
        pipe.execute()
        return True

    def counters(self) -> Counters:
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.keys.training("labels_total"))
        pipe.get(self.keys.training("labels_at_last"))
        pipe.lrange(self.keys.training("recent"), 0, -1)
        pipe.get(self.keys.training("last_started_at"))
        pipe.get(self.keys.training("in_flight"))
        total, at_last, recent, started, flight = pipe.execute()
        return Counters(
            int(total or 0),
            int(at_last or 0),
            tuple(int(x) for x in recent),
            float(started) if started else None,
            flight.decode() if isinstance(flight, bytes) else flight,
        )

    def claim(self, submission_id: str) -> bool:
        return bool(self.r.set(self.keys.training("in_flight"), submission_id, nx=True))

    def started(self, request: TrainingRequest) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.keys.training("labels_at_last"), request.labels_total)
        pipe.set(self.keys.training("last_started_at"), request.created_at)
        pipe.delete(self.keys.training("recent"))  # the next disagreement share is about the new model
        pipe.rpush(self.keys.training("history"), json.dumps({"event": "submitted", **request.to_dict()}))
        pipe.execute()

    def release(self, submission_id: str, outcome: str) -> None:
        if self.r.get(self.keys.training("in_flight")) in (submission_id, submission_id.encode()):
            self.r.delete(self.keys.training("in_flight"))
        self.r.rpush(
            self.keys.training("history"),
            json.dumps(
                {"event": "finished", "submission_id": submission_id, "status": outcome, "at": time.time()}
            ),
        )

    def history(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self.keys.training("history"), 0, -1)]


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def maybe_trigger(
    state: TriggerState,
    policy: TriggerPolicy,
    submitter: Submitter,
    model_name: str,
    now: float | None = None,
) -> TrainingRequest | None:
    """Check the in-flight job, apply the policy, and submit a request when it says so."""
    now = time.time() if now is None else now
    c = state.counters()
    if c.in_flight:
        status = submitter.status(c.in_flight)
        if status in TERMINAL or status == "NOT_FOUND":
            log.info("training %s finished: %s", c.in_flight, status)
            state.release(c.in_flight, status)
            c = state.counters()
    go, why = decide(policy, c, now)
    if not go:
        log.debug("no training: %s", why)
        return None
    request = TrainingRequest(
        model_name=model_name,
        redis_prefix=state.prefix,
        labels_total=c.labels_total,
        reason=why,
        created_at=now,
    )
    if not state.claim(request.submission_id):
        return None  # another agent claimed it first
    try:
        submitter.submit(request)
    except Exception:
        state.release(request.submission_id, "SUBMIT_FAILED")
        raise
    state.started(request)
    log.info("training %s submitted: %s", request.submission_id, why)
    return request
