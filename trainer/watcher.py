"""The retrain watcher: moderators' labels → training counters in Redis → the retrain trigger.

Its own service (``misinfo train watch``, one compose service): the GPU workers neither count labels
nor need Ray. It consumes the feedback topic in a consumer group of its own, so running two watchers
shares the labels between them; the label-identity set in Redis keeps counts exact across replays and
the trigger's ``SET NX`` claim keeps at most one training in flight. Thin Faust wiring only; the policy lives in :mod:`trainer.trigger`, the Ray submission in
:mod:`trainer.submit`. Redis and Ray calls block, so they run in a small executor, never on the event
loop. A timer re-checks the trigger so a finished job frees the slot even when no label arrives.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.config import Settings
from core.keys import Keys

log = logging.getLogger(__name__)

RECHECK_S = 30.0


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
        from core.contracts.base import ContractError
        from core.contracts.verdicts import Label

        try:
            label = Label.parse(payload)
        except ContractError as exc:
            log.warning("dropping an invalid label: %s", exc)
            return False
        if label.is_retraction:  # a moderator's undo: the label's counts are taken back
            return self.state.retract_label(label)
        # The model's own label, not the final one: a label decided by provenance (a C2PA manifest
        # declaring AI) that the model missed is a disagreement worth learning from.
        model, final = self.redis.hmget(
            Keys(self.settings.redis_prefix).verdict(label.image_id), "model_label", "label"
        )
        served = model if model is not None else final
        served_label = served.decode() if isinstance(served, bytes) else served
        return self.state.record_label(label, served_label, self.policy.disagreement_window)

    def check(self) -> Any:
        if not self.settings.train_trigger:
            return None
        from trainer.trigger import maybe_trigger

        return maybe_trigger(self.state, self.policy, self.submitter, self.settings.model_name)


class WatcherMetrics:
    """What an operator asks of the loop, as Prometheus gauges read from the trigger's counters:
    labels in all, labels since the last training, the disagreement share, a training in flight."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.labels_total = Gauge("misinfo_watcher_labels_total", "labels counted", registry=self.registry)
        self.new_labels = Gauge(
            "misinfo_watcher_new_labels", "labels since the last training started", registry=self.registry
        )
        self.disagreement = Gauge(
            "misinfo_watcher_disagreement",
            "moderator-model disagreement share over the window (-1 until the window is full)",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "misinfo_watcher_training_in_flight",
            "1 while a training job is in flight",
            registry=self.registry,
        )
        self.submitted = Counter(
            "misinfo_watcher_trainings_submitted",
            "trainings submitted by this watcher",
            registry=self.registry,
        )

    def update(self, handler: FeedbackHandler) -> None:
        c = handler.state.counters()
        self.labels_total.set(c.labels_total)
        self.new_labels.set(c.new_labels)
        share = c.disagreement(handler.policy.disagreement_window)
        self.disagreement.set(-1.0 if share is None else share)
        self.in_flight.set(1 if c.in_flight else 0)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


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

    def on_label(payload: bytes) -> None:
        try:
            h = handler()
            new = h.handle(payload)
        except Exception:  # noqa: BLE001 - the label itself is durable (topic + Redis); keep consuming
            log.exception("could not count a label")
            return
        if new:
            try:
                if h.check() is not None:
                    metrics.submitted.inc()
            except Exception as exc:  # noqa: BLE001 - a failed submission is retried on the next label/timer
                log.warning(
                    "retrain trigger failed (%s: %s); retrying on the next label", type(exc).__name__, exc
                )

    def recheck() -> None:
        try:
            if settings.train_trigger and handler().check() is not None:
                metrics.submitted.inc()
        except Exception as exc:  # noqa: BLE001 - e.g. Ray unreachable: one line, not a traceback a minute
            log.warning("retrain trigger re-check failed (%s: %s)", type(exc).__name__, exc)
        refresh_metrics()

    def refresh_metrics() -> None:
        try:
            metrics.update(handler())
        except Exception as exc:  # noqa: BLE001 - Redis down: the gauges keep their last values
            log.warning("watcher metrics not refreshed (%s: %s)", type(exc).__name__, exc)

    feedback = app.topic(settings.topic_feedback, value_type=bytes, key_type=bytes)
    loop_run = asyncio.get_event_loop

    @app.agent(feedback, concurrency=1)
    async def feedback_agent(stream: Any) -> None:
        async for payload in stream:
            await loop_run().run_in_executor(executor, on_label, payload)

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
        settings, settings.watcher_group, web_enabled=True, web_port=settings.watcher_web_port
    )
    register_watcher(app, settings)
    faust.Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()
