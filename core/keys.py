"""The Redis key layout, declared once: every key any package reads or writes is built here.

All keys live under one prefix (``MISINFO_REDIS_PREFIX``; a run of its own gets ``<prefix>:<name>``,
see :meth:`core.config.Settings.isolated`), so several deployments or test runs share one Redis
without seeing each other. Writers and readers build keys through :class:`Keys` only; a test checks
that no other module spells a key out.

| key | type | written by | read by |
| --- | --- | --- | --- |
| ``{p}:verdict:{image_id}`` | hash: verdict JSON, label, flagged, event ... | worker | review service, watcher, trainer |
| ``{p}:index:time`` | zset image_id -> decided_at | worker | review service (stats, search) |
| ``{p}:index:source:{source}`` | zset image_id -> decided_at | worker | review service |
| ``{p}:index:provenance:{state}`` | zset image_id -> decided_at (state: c2pa-intact, hint ...) | worker | review service |
| ``{p}:review`` | zset image_id -> priority (flagged, not yet labeled) | worker, review service | review service |
| ``{p}:records:marker`` | string: ``complete:<id>`` once the records are whole, ``rebuilding:<id>`` (TTL) while rebuilt | worker, ``misinfo verdicts rebuild`` | worker |
| ``{p}:sightings:{image_id}`` | set of ``source:item`` | ingest | worker (reach), review service |
| ``{p}:ingest:published:{image_id}`` | string (first publish) | ingest | ingest |
| ``{p}:ingest:phash:{d}:{band}:{value}`` | set of image ids (near-duplicate bands) | ingest | ingest |
| ``{p}:labels:{image_id}`` | hash moderator -> Label JSON | review service | worker, trainer |
| ``{p}:labeled``, ``{p}:label-events``, ``{p}:label-seq`` | zsets / counter | review service | review service |
| ``{p}:skipped:{user}`` | set | review service | review service |
| ``{p}:lock:{image_id}`` | string: the moderator who has the item open (TTL, renewed by the page) | review service | review service |
| ``{p}:undo:{user}`` | string: the user's last label and what it replaced, while it may be undone (TTL) | review service | review service |
| ``{p}:audit`` | stream | review service, ``misinfo users`` | review service |
| ``{p}:user:{name}``, ``{p}:users``, ``{p}:token:{digest}`` | hash (role, digests, credential generation) / set / string | ``misinfo users``, review service | review service |
| ``{p}:users-epoch`` | string: a random value replaced with every change of a user (the review service's token cache checks it) | ``misinfo users``, review service | review service |
| ``{p}:session:{digest}`` | hash (TTL) | review service | review service |
| ``{p}:login:address:{addr}``, ``{p}:login:pair:{name}:{addr}`` | hash: failures, blocked-until (TTL) | review service | review service |
| ``{p}:training:{name}`` | counters, sets, lists of the retrain trigger (``counted``, ``retracted``: undo) | retrain watcher | watcher, trainer |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key builders for one prefix."""

    prefix: str

    def _k(self, *parts: object) -> str:
        return ":".join([self.prefix, *(str(p) for p in parts)])

    def scoped(self, name: str) -> str:
        """The prefix of a run of its own under this one (``{p}:{name}``): its keys never meet ours."""
        return self._k(name)

    def pattern(self, *parts: object) -> str:
        """A SCAN pattern: ``pattern("verdict")`` matches every ``{p}:verdict:*``; no part: everything."""
        return self._k(*parts, "*")

    # Verdicts (the worker's records) and their indexes.
    def verdict(self, image_id: str) -> str:
        return self._k("verdict", image_id)

    def index_time(self) -> str:
        return self._k("index", "time")

    def index_source(self, source: str) -> str:
        return self._k("index", "source", source)

    def index_provenance(self, state: str) -> str:
        """Verdicts by the provenance state of their image (``Provenance.state``)."""
        return self._k("index", "provenance", state)

    def review(self) -> str:
        return self._k("review")

    def records_marker(self) -> str:
        """Present while the verdict records are whole; gone when Redis lost its data (a restart of
        a memory-only Redis), which makes the workers rebuild them (stream_workers/recovery.py)."""
        return self._k("records", "marker")

    # Ingest.
    def sightings(self, image_id: str) -> str:
        return self._k("sightings", image_id)

    def published(self, image_id: str) -> str:
        return self._k("ingest", "published", image_id)

    def phash_band(self, distance: int, band: int, value: int) -> str:
        return self._k("ingest", "phash", distance, band, f"{value:x}")

    # Moderation.
    def labels(self, image_id: str) -> str:
        return self._k("labels", image_id)

    def labeled(self) -> str:
        return self._k("labeled")

    def second_review(self) -> str:
        """Images picked for a second moderator (``MISINFO_REVIEW_SECOND_SHARE``): they stay in the
        queue after their first label, for someone else."""
        return self._k("second-review")

    def label_events(self) -> str:
        return self._k("label-events")

    def label_seq(self) -> str:
        return self._k("label-seq")

    def skipped(self, user: str) -> str:
        return self._k("skipped", user)

    def lock(self, image_id: str) -> str:
        """Who has the item open (a lease with a TTL that the item page renews)."""
        return self._k("lock", image_id)

    def undo(self, user: str) -> str:
        """The user's last label while it may still be undone (a ticket with a TTL)."""
        return self._k("undo", user)

    def audit(self) -> str:
        return self._k("audit")

    def user(self, name: str) -> str:
        return self._k("user", name)

    def users(self) -> str:
        return self._k("users")

    def users_epoch(self) -> str:
        return self._k("users-epoch")

    def token(self, digest: str) -> str:
        return self._k("token", digest)

    def session(self, digest: str) -> str:
        return self._k("session", digest)

    def login_address(self, client: str) -> str:
        """Failed logins from one client address, whatever the user name (the login throttle)."""
        return self._k("login", "address", client)

    def login_pair(self, client: str, name: str) -> str:
        """Failed logins for one user name from one client address (the login throttle)."""
        return self._k("login", "pair", name, client)

    # The retrain trigger's state.
    def training(self, *parts: object) -> str:
        return self._k("training", *parts)
