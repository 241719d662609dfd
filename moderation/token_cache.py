"""API token -> user, remembered by a review-service process while no user has changed.

Every API request checks its bearer token: a GET of the token's digest, then the user's hash, two
Redis round trips and a parse, for the same few dozen tokens all day. This cache keeps what those
found, tagged with the users epoch (``{p}:users-epoch``), a random value that every change of a
user (new user, new token, role, password, removal; :class:`~moderation.auth.UserStore`, whether the
service or ``misinfo users`` makes it) replaces in the same transaction as the change (random, so
that an epoch never comes back after Redis lost its data and users were made again). A lookup reads
the epoch (one small GET) and trusts an entry only when it was stored under that very epoch: a
revoked token, a removed user or a lowered role counts at once, in every process, as before.

The epoch is read before the lookups whose result is stored, so a change racing a lookup leaves
an entry under the old epoch, which the next request does not trust. Unknown tokens are never
cached (a guess costs its two lookups, as before). While the epoch key is missing (no user has
been made since Redis started empty), nothing is trusted. Bounded: full, it starts over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moderation.auth import User

MAX_ENTRIES = 4096


class TokenCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Any, User]] = {}  # token digest -> (epoch, user)

    def get(self, token_digest: str, epoch: Any) -> User | None:
        """The user stored for this token under ``epoch`` (the epoch read just now), else None."""
        if epoch is None:
            return None
        found = self._entries.get(token_digest)
        return found[1] if found is not None and found[0] == epoch else None

    def put(self, token_digest: str, epoch: Any, user: User) -> None:
        """Remember ``user`` for this token, found after ``epoch`` was read."""
        if epoch is None:
            return
        if len(self._entries) >= self.max_entries and token_digest not in self._entries:
            self._entries.clear()
        self._entries[token_digest] = (epoch, user)
