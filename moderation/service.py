"""The moderation use cases shared by the API and the pages: label, undo, wait for a verdict, and
the collaborators (users, sessions, store, locks, feedback producer, uploader, explainer) in one object.

Undo: for ``undo_window_s`` after a label, its moderator may withdraw it (only their last label).
The label is already on the feedback topic, so an undo publishes a retraction (the same label with
``retracted_at`` set: see :class:`~core.contracts.verdicts.Label`), acknowledged like a label, and
only then puts Redis back as it was: the moderator's previous label of the image (or none), the
image back in the queue when nobody else labeled it. The retrain watcher and the dataset builder
read the retraction from the topic and drop the label too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from core.config import Settings
from core.contracts.verdicts import Label, Region
from moderation.auth import LoginThrottle, Session, SessionStore, User, UserStore
from moderation.explain import Explainer
from moderation.label_producer import FeedbackPublisher, FeedbackUnavailable
from moderation.locks import LOCK_TTL_S, ItemLocks, Lock
from moderation.stats_cache import STATS_TTL_S, StatsCache
from moderation.store import Item, ReviewStore
from moderation.uploads import Uploader

log = logging.getLogger(__name__)

MAX_NOTE = 2000
UNDO_WINDOW_S = 60.0


def picked_for_second_review(image_id: str, share: float) -> bool:
    """Whether ``image_id`` goes to a second moderator: a fixed share of images, chosen by their id
    (so every replica and every retry agrees), for the moderator-agreement figures the stats page
    shows and the gate reads."""
    if share <= 0:
        return False
    return int(hashlib.sha256(f"second:{image_id}".encode()).hexdigest()[:8], 16) < share * 0x1_0000_0000


class ItemLocked(Exception):
    """Another moderator has the item open."""

    def __init__(self, lock: Lock) -> None:
        self.lock = lock
        super().__init__(f"{lock.holder} has this item open; try again when they are done")


class NothingToUndo(Exception):
    """No label of this user on this image can be undone (none, too old, or not their last)."""


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
        undo_window_s: float = UNDO_WINDOW_S,
        lock_ttl_s: float = LOCK_TTL_S,
        stats_ttl_s: float = STATS_TTL_S,
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
        self.locks = ItemLocks(redis, p, lock_ttl_s)
        self.store = ReviewStore(redis, p, self.locks)
        self.stats = StatsCache(self.store.stats, stats_ttl_s)
        self.undo_window_s = undo_window_s
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

    async def label(
        self, image_id: str, user: User, label: str, note: str = "", regions: Sequence[Region] = ()
    ) -> tuple[Label, Item]:
        """Publish the label (acks=all), then record it; return it and the item as it is now.

        Raises KeyError for an image without a verdict record, ItemLocked while another moderator
        has it open, ValueError for regions on an authentic label, FeedbackUnavailable when the
        broker does not acknowledge (then nothing is recorded, and the client may retry).
        """
        item, lock, seq = await self.store.before_label(image_id)
        if item is None:
            raise KeyError(image_id)
        if lock is not None and not lock.held_by(user.name):
            raise ItemLocked(lock)
        if regions and label == "authentic":
            raise ValueError("an authentic label carries no regions: remove the boxes, or pick another label")
        lb = Label(
            image_id=image_id,
            label=label,  # type: ignore[arg-type]
            moderator_id=user.name,
            verdict_model_version=item.verdict.model_version,
            note=note.strip()[:MAX_NOTE],
            regions=list(regions),
        )
        previous = next((x for x in item.labels if x.moderator_id == user.name), None)
        others = {x.moderator_id for x in item.labels} - {user.name}
        second = not others and picked_for_second_review(image_id, self.settings.review_second_share)
        await self.feedback.publish(lb)
        after = await self.store.save_label(  # gives the user's lock back too
            lb, previous, priority=item.priority, undo_s=self.undo_window_s, second_review=second, seq=seq
        )
        log.info("label %s %s by %s", image_id[:12], label, user.name)
        assert after is not None
        return lb, after

    async def undo(self, image_id: str, user: User) -> tuple[Label, Label | None, Item | None]:
        """Withdraw the user's last label, if it is on ``image_id`` and within the undo window:
        publish the retraction (acks=all), then restore Redis. Returns the retraction, the label of
        this user that counts again (or None), and the item as it is now.

        Raises NothingToUndo, or FeedbackUnavailable (then nothing changed and the undo may be retried).
        """
        ticket = await self.store.take_undo(user.name, image_id)
        if ticket is None:
            raise NothingToUndo(
                f"nothing to undo: your last label is not on this image, or is over {self.undo_window_s:.0f} s old"
            )
        retraction = ticket.label.retraction()
        try:
            await self.feedback.publish(retraction)
        except FeedbackUnavailable:
            await self.store.put_back_undo(ticket)
            raise
        await self.store.retract(ticket, retraction)
        log.info("undo %s %s by %s", image_id[:12], ticket.label.label, user.name)
        return retraction, ticket.previous, await self.store.item(image_id)

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
