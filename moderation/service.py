"""The moderation use cases shared by the API and the pages: label, wait for a verdict, and the
collaborators (users, sessions, store, feedback producer, uploader, explainer) in one object."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from core.config import Settings
from core.contracts.verdicts import Label
from moderation.auth import LoginThrottle, Session, SessionStore, User, UserStore
from moderation.explain import Explainer
from moderation.label_producer import FeedbackPublisher
from moderation.store import Item, ReviewStore
from moderation.uploads import Uploader

log = logging.getLogger(__name__)

MAX_NOTE = 2000


class Moderation:
    def __init__(
        self,
        settings: Settings,
        redis: Any,
        *,
        feedback: FeedbackPublisher | None = None,
        uploader: Uploader | None = None,
        explainer: Explainer | None = None,
        login_backoff_base_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.redis = redis
        p = settings.redis_prefix
        self.users = UserStore(redis, p)
        self.sessions = SessionStore(redis, p)
        self.throttle = LoginThrottle(
            redis,
            p,
            after=settings.login_backoff_after,
            after_address=settings.login_backoff_after_address,
            base_s=login_backoff_base_s,
            max_s=settings.login_backoff_max_s,
        )
        self.store = ReviewStore(redis, p)
        self.feedback = feedback or FeedbackPublisher(settings.kafka_bootstrap, settings.topic_feedback)
        self.uploader = uploader or Uploader(settings)
        if explainer is None:
            from detector.loading import load_detector

            explainer = Explainer(
                self.store,
                lambda: load_detector(settings),
                settings.explain_max_tokens,
                settings.max_image_pixels,
            )
        self.explainer = explainer

    async def session_user(self, sid: str | None) -> tuple[User, Session] | None:
        """The user and session behind a session cookie, while both are valid: the session exists,
        its user exists, and the user's credentials have not changed since it was opened (a new
        token, password or role ends every session; such a session is deleted here)."""
        session = await self.sessions.get(sid)
        if session is None:
            return None
        user = await self.users.get(session.user)
        if user is None or user.generation != session.generation:
            await self.sessions.delete(sid)
            return None
        return user, session

    async def label(self, image_id: str, user: User, label: str, note: str = "") -> tuple[Label, Item]:
        """Publish the label (acks=all), then record it; return it and the item as it is now.

        Raises KeyError for an image without a verdict record, FeedbackUnavailable when the broker
        does not acknowledge (then nothing is recorded, and the client may retry).
        """
        item = await self.store.item(image_id)
        if item is None:
            raise KeyError(image_id)
        lb = Label(
            image_id=image_id,
            label=label,  # type: ignore[arg-type]
            moderator_id=user.name,
            verdict_model_version=item.verdict.model_version,
            note=note.strip()[:MAX_NOTE],
        )
        previous = next((x for x in item.labels if x.moderator_id == user.name), None)
        await self.feedback.publish(lb)
        await self.store.save_label(lb, previous)
        log.info("label %s %s by %s", image_id[:12], label, user.name)
        after = await self.store.item(image_id)
        assert after is not None
        return lb, after

    async def wait_for_item(self, image_id: str, timeout_s: float, interval_s: float = 0.25) -> Item | None:
        """The item once its verdict record exists, or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            item = await self.store.item(image_id)
            if item is not None or time.monotonic() >= deadline:
                return item
            await asyncio.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))

    async def close(self) -> None:
        await self.feedback.close()
        self.uploader.close()
        self.explainer.close()
        await self.redis.aclose()
