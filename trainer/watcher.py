"""The retrain watcher: moderators' labels → training counters in Redis → the retrain trigger.

Its own service (``misinfo train watch``, one compose service): the GPU workers neither count labels
nor need Ray. It consumes the feedback topic in a consumer group of its own, so running two watchers
shares the labels between them; the label-identity set in Redis keeps counts exact across replays and
the trigger's ``SET NX`` claim keeps at most one training in flight. Thin Faust wiring only; the policy lives in :mod:`trainer.trigger`, the Ray submission in
:mod:`trainer.submit`. Redis and Ray calls block, so they run in a small executor, never on the event
loop. A timer re-checks the trigger so a finished job frees the slot even when no label arrives.
Each batch of labels ends with one log line (what was read, where the trigger stands); /metrics
serves ``trainer.metric_names``, and every refresh leaves a heartbeat in Redis that ``misinfo train
status`` and the review service's stats page read ("label counting runs").
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.config import Settings
from core.keys import Keys

log = logging.getLogger(__name__)

RECHECK_S = 30.0
LABEL_BATCH = 200  # labels counted together, with one log line


class FeedbackHandler:
    """Counts one label and runs the trigger; framework-free (the agent only hands payloads in)."""

    def __init__(self, settings: Settings, redis: Any, submitter: Any) -> None:
        from trainer.trigger import TriggerPolicy, TriggerState

        self.settings = settings
        self.redis = redis
        self.state = TriggerState(redis, settings.redis_prefix)
        self.policy = TriggerPolicy.from_settings(settings)
        self.submitter = submitter

    def handle(self, payload: bytes) -> bool:
        """Record a Label payload (or apply a retraction: an undo); returns whether the counts changed.
        Invalid payloads are logged and dropped."""
        return self.handle_result(payload) in ("counted", "retracted")

    def handle_result(self, payload: bytes) -> str:
        """As :meth:`handle`, saying what became of the payload: ``counted``, ``retracted`` (an undo
        took a label's counts back), ``replayed`` (already counted or taken back), ``unknown`` (no verdict
        for that image: not counted) or ``invalid``."""
        from core.contracts.base import ContractError
        from core.contracts.verdicts import Label

        try:
            label = Label.parse(payload)
        except ContractError as exc:
            log.warning("dropping an invalid label: %s", exc)
            return "invalid"
        if label.is_retraction:  # a moderator's undo: the label's counts are taken back
            return "retracted" if self.state.retract_label(label) else "replayed"
        # The model's own label, not the final one: a label decided by provenance (a C2PA manifest
        # declaring AI) that the model missed is a disagreement worth learning from.
        keys = Keys(self.settings.redis_prefix)
        model, final = self.redis.hmget(keys.verdict(label.image_id), "model_label", "label")
        if model is None and final is None and self._records_whole(keys):
            # No verdict for this image while the records are known to be whole: not an image this
            # system judged (the review API refuses such labels; another producer wrote it). Counting
            # it would move the trigger for a label the dataset builder will skip anyway.
            log.warning(
                "label for an unknown image %s from %s: not counted", label.image_id, label.moderator_id
            )
            return "unknown"
        served = model if model is not None else final
        served_label = served.decode() if isinstance(served, bytes) else served
        counted = self.state.record_label(label, served_label, self.policy.disagreement_window)
        return "counted" if counted else "replayed"

    def _records_whole(self, keys: Keys) -> bool:
        """Whether the verdict records are whole (the workers' marker); after a Redis loss, before
        the rebuild, a missing record says nothing about the image, and the label counts."""
        marker = self.redis.get(keys.records_marker())
        return isinstance(marker, bytes) and marker.startswith(b"complete:")

    def check(self) -> Any:
        if not self.settings.train_trigger:
            return None
        from trainer.trigger import maybe_trigger

        return maybe_trigger(self.state, self.policy, self.submitter, self.settings.model_name)


class WatcherMetrics:
    """What an operator asks of the loop (``trainer.metric_names``): labels received by what became of
    them, the trigger's counters and thresholds, its progress, the cooldown left, a training in flight,
    and the cycles by outcome, the gauges read from the trigger's state in Redis."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        from core.metric_specs import build
        from trainer.metric_names import WATCHER_METRICS

        self.registry = CollectorRegistry()
        self.m = build(WATCHER_METRICS, self.registry)

    def received(self, result: str, n: int = 1) -> None:
        self.m["misinfo_watcher_labels_received_total"].labels(result=result).inc(n)

    def submitted(self) -> None:
        self.m["misinfo_watcher_trainings_submitted_total"].inc()

    def update(self, status: Any) -> None:
        """Set the gauges from a :class:`core.retraining.RetrainStatus`."""
        from core.retraining import OUTCOMES, outcome_counts

        c, p, m = status.counters, status.policy, self.m
        m["misinfo_watcher_labels_total"].set(c.labels_total)
        m["misinfo_watcher_new_labels"].set(c.new_labels)
        m["misinfo_watcher_new_labels_threshold"].set(p.min_new_labels)
        share = status.disagreement
        m["misinfo_watcher_disagreement"].set(-1.0 if share is None else share)
        m["misinfo_watcher_disagreement_threshold"].set(p.disagreement_threshold)
        m["misinfo_watcher_trigger_progress"].set(status.progress)
        m["misinfo_watcher_cooldown_seconds_left"].set(status.cooldown_left_s)
        m["misinfo_watcher_training_in_flight"].set(1 if c.in_flight else 0)
        counts = outcome_counts(status.cycles())
        for outcome in OUTCOMES:
            m["misinfo_watcher_cycles"].labels(outcome=outcome).set(counts[outcome])

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def batch_line(results: dict[str, int], status: Any) -> str:
    """The one log line per label batch: what was read, then where the trigger stands."""
    c, p = status.counters, status.policy
    read = ", ".join(f"{n} {k}" for k, n in sorted(results.items()) if n) or "nothing"
    share = status.disagreement
    dis = "n/a" if share is None else f"{share:.2f}"
    left = status.cooldown_left_s
    return (
        f"labels: {sum(results.values())} read ({read}); {c.new_labels}/{p.min_new_labels} new since the "
        f"last training, disagreement {dis}/{p.disagreement_threshold:.2f} over {p.disagreement_window}, "
        f"progress {status.progress:.0%}, "
        + (f"cooldown {left:.0f} s, " if left > 0 else "")
        + (f"training {c.in_flight} in flight" if c.in_flight else "no training in flight")
    )


def register_watcher(app: Any, settings: Settings, submitter: Any = None) -> Any:
    """Add the label agent (and its re-check timer) to ``app``; returns the agent."""
    import redis

    from trainer.submit import RaySubmitter

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watcher")
    metrics = WatcherMetrics()
    handler_box: dict[str, FeedbackHandler] = {}

    class _LazySubmitter:
        """Connects to Ray on first use: counting labels must not depend on Ray being up."""

        def __init__(self) -> None:
            self._real: Any = None

        def __getattr__(self, name: str) -> Any:
            if self._real is None:
                self._real = RaySubmitter(settings)
            return getattr(self._real, name)

    def handler() -> FeedbackHandler:
        if "h" not in handler_box:
            handler_box["h"] = FeedbackHandler(
                settings, redis.Redis.from_url(settings.redis_url), submitter or _LazySubmitter()
            )
        return handler_box["h"]

    def on_labels(payloads: list[bytes]) -> None:
        results: Counter[str] = Counter()
        h = handler()
        for payload in payloads:
            try:
                results[h.handle_result(payload)] += 1
            except Exception:  # noqa: BLE001 - the label itself is durable (topic + Redis); keep consuming
                log.exception("could not count a label")
                results["failed"] += 1
        for result, n in results.items():
            metrics.received(result, n)
        if results["counted"] or results["retracted"]:
            try:
                if h.check() is not None:
                    metrics.submitted()
            except Exception as exc:  # noqa: BLE001 - a failed submission is retried on the next label/timer
                log.warning(
                    "retrain trigger failed (%s: %s); retrying on the next label", type(exc).__name__, exc
                )
        status = refresh_metrics()
        if status is not None:
            log.info("%s", batch_line(results, status))

    def recheck() -> None:
        try:
            if settings.train_trigger and handler().check() is not None:
                metrics.submitted()
        except Exception as exc:  # noqa: BLE001 - e.g. Ray unreachable: one line, not a traceback a minute
            log.warning("retrain trigger re-check failed (%s: %s)", type(exc).__name__, exc)
        refresh_metrics()

    def refresh_metrics() -> Any:
        """Read the trigger's state, set the gauges and say "counting runs here" (the heartbeat)."""
        from core.retraining import read_status, report_watcher

        try:
            h = handler()
            status = read_status(h.redis, settings.redis_prefix, h.policy)
            metrics.update(status)
            report_watcher(h.redis, settings.redis_prefix, settings.watcher_group, socket.gethostname())
            return status
        except Exception as exc:  # noqa: BLE001 - Redis down: the gauges keep their last values
            log.warning("watcher metrics not refreshed (%s: %s)", type(exc).__name__, exc)
            return None

    feedback = app.topic(settings.topic_feedback, value_type=bytes, key_type=bytes)
    loop_run = asyncio.get_event_loop

    @app.agent(feedback, concurrency=1)
    async def feedback_agent(stream: Any) -> None:
        # Labels in batches (what arrived within a second): one count pass and one log line each.
        async for payloads in stream.take(LABEL_BATCH, within=1.0):
            await loop_run().run_in_executor(executor, on_labels, payloads)

    @app.timer(RECHECK_S)
    async def trigger_recheck() -> None:
        await loop_run().run_in_executor(executor, recheck)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        await loop_run().run_in_executor(executor, refresh_metrics)
        return web.bytes(metrics.render(), content_type="text/plain")

    app.misinfo_feedback = handler  # type: ignore[attr-defined]
    return feedback_agent


def run_watcher(settings: Settings) -> None:
    """Run the watcher as its own Faust app until SIGTERM/SIGINT."""
    import faust

    from core.kafka import make_faust_app

    app = make_faust_app(
        settings,
        settings.watcher_group,
        web_enabled=True,
        web_port=settings.watcher_web_port,
        web_bind=settings.watcher_web_bind,
    )
    register_watcher(app, settings)
    faust.Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()
