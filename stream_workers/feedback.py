"""The feedback agent: moderators' labels → training counters in Redis → the retrain trigger.

Thin Faust wiring only; the policy lives in :mod:`trainer.trigger`, the Ray submission in
:mod:`trainer.submit`. Redis and Ray calls block, so they run in a small executor, never on the event
loop. A timer re-checks the trigger so a finished job frees the slot even when no label arrives.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from misinfo.config import Settings

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
        """Record a Label payload; returns whether it was new. Invalid payloads are logged and dropped."""
        from misinfo.schema import ContractError
        from stream_workers.contracts import Label

        try:
            label = Label.parse(payload)
        except ContractError as exc:
            log.warning("dropping an invalid label: %s", exc)
            return False
        served = self.redis.hget(f"{self.settings.redis_prefix}:verdict:{label.image_id}", "label")
        served_label = served.decode() if isinstance(served, bytes) else served
        return self.state.record_label(label, served_label, self.policy.disagreement_window)

    def check(self) -> Any:
        if not self.settings.train_trigger:
            return None
        from trainer.trigger import maybe_trigger

        return maybe_trigger(self.state, self.policy, self.submitter, self.settings.model_name)


def register_feedback_agent(app: Any, settings: Settings, submitter: Any = None) -> Any:
    """Add the feedback agent (and its re-check timer) to ``app``; returns the agent."""
    import redis

    from trainer.submit import RaySubmitter

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback")
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
                h.check()
            except Exception as exc:  # noqa: BLE001 - a failed submission is retried on the next label/timer
                log.warning(
                    "retrain trigger failed (%s: %s); retrying on the next label", type(exc).__name__, exc
                )

    def recheck() -> None:
        if not settings.train_trigger:
            return
        try:
            handler().check()
        except Exception as exc:  # noqa: BLE001 - e.g. Ray unreachable: one line, not a traceback a minute
            log.warning("retrain trigger re-check failed (%s: %s)", type(exc).__name__, exc)

    feedback = app.topic(settings.topic_feedback, value_type=bytes, key_type=bytes)
    loop_run = asyncio.get_event_loop

    @app.agent(feedback, concurrency=1)
    async def feedback_agent(stream: Any) -> None:
        async for payload in stream:
            await loop_run().run_in_executor(executor, on_label, payload)

    @app.timer(RECHECK_S)
    async def trigger_recheck() -> None:
        await loop_run().run_in_executor(executor, recheck)

    app.misinfo_feedback = handler  # type: ignore[attr-defined]
    return feedback_agent


def main() -> None:
    """``python -m stream_workers.feedback``: the feedback agent alone, as its own Faust app (for a
    deployment that runs the trigger apart from the GPU workers, and for the closed-loop tests)."""
    import faust

    from misinfo.config import load_settings
    from stream_workers.app import make_faust_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    app = make_faust_app(settings, f"{settings.worker_group}-feedback", web_enabled=False)
    register_feedback_agent(app, settings)
    faust.Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
