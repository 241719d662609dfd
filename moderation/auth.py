"""Users, roles, API tokens, browser sessions and the login rate limit, all in Redis.

Keys (``p`` = the Redis prefix):

- ``{p}:users``                    set of user names
- ``{p}:user:{name}``              hash: role, token_sha256, password (scrypt, optional), created_at,
                                   generation (bumped by a new token, password or role)
- ``{p}:token:{sha256}``           string: the user name owning the API token with that digest
- ``{p}:session:{sha256}``         hash: user, csrf, generation, created_at; expires (fixed lifetime)
- ``{p}:login:pair:{name}:{addr}`` / ``{p}:login:address:{addr}``  failed logins: count, blocked-until

Tokens are 32 random bytes (URL-safe base64); only their sha256 is stored, which is enough for
secrets of that entropy (a KDF protects guessable passwords, not random tokens). Passwords, which
people choose, are stored with scrypt. Session ids are stored hashed too, so a Redis dump yields no
usable credential. A session is valid only while its user's credential generation is the one it was
created under: a new token, a new password or a new role ends every session of that user.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from core.keys import Keys
from moderation.token_cache import TokenCache

Role = Literal["viewer", "moderator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "moderator", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
TOKEN_PREFIX = "mdr_"
NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class AuthError(Exception):
    """A user-management request that cannot be done (unknown user, duplicate, bad name)."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    created_at: str = ""
    generation: int = 0  # of its credentials: sessions made under another one are void

    def has(self, role: Role) -> bool:
        """Whether this user's role is ``role`` or above (viewer < moderator < admin)."""
        return RANK[self.role] >= RANK[role]


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(key) // 2
    )
    return hmac.compare_digest(got.hex(), key)


# What a login for an unknown user, or for a user without a password, is checked against: the same
# scrypt work as a real password (so the answer takes as long), and a key nothing derives to.
DUMMY_PASSWORD_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * 16}${'00' * 32}"
DUMMY_TOKEN_DIGEST = "0" * 64


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _user(name: str, fields: dict[str, str]) -> User:
    return User(
        name=name,
        role=fields["role"],  # type: ignore[arg-type]
        created_at=fields.get("created_at", ""),
        generation=int(fields.get("generation") or 0),
    )


class UserStore:
    """User management and credential checks; ``redis`` is a ``redis.asyncio.Redis``."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self._tokens = TokenCache()

    def _user_key(self, name: str) -> str:
        return self.keys.user(name)

    def _new_epoch(self, pipe: Any) -> None:
        """A new users epoch, in the change's own transaction. A random value, not a counter: a
        counter starts again at 1 after Redis loses its data (a memory-only Redis restarted) and would
        match entries cached before the loss, for tokens that no longer exist."""
        pipe.set(self.keys.users_epoch(), secrets.token_hex(16))

    def _token_key(self, token_digest: str) -> str:
        return self.keys.token(token_digest)

    async def add(self, name: str, role: Role) -> str:
        """Create a user; return the API token (shown once, stored only as a digest)."""
        import re

        if not re.fullmatch(NAME_PATTERN, name):
            raise AuthError(f"bad user name {name!r}: 1-64 of letters, digits and _ . @ -")
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        token = new_token()
        created = datetime.now(UTC).isoformat()
        # HSETNX on the role field makes creation atomic: two concurrent adds cannot both win.
        if not await self.redis.hsetnx(self._user_key(name), "role", role):
            raise AuthError(f"user {name!r} exists (use `misinfo users token {name}` for a new token)")
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._user_key(name), mapping={"token_sha256": digest(token), "created_at": created})
        pipe.set(self._token_key(digest(token)), name)
        pipe.sadd(self.keys.users(), name)
        self._new_epoch(pipe)
        await pipe.execute()
        return token

    async def get(self, name: str) -> User | None:
        raw = await self.redis.hgetall(self._user_key(name))
        if not raw:
            return None
        return _user(name, {_s(k): _s(v) for k, v in raw.items()})

    async def list(self) -> list[User]:
        names = sorted(_s(n) for n in await self.redis.smembers(self.keys.users()))
        users = [await self.get(n) for n in names]
        return [u for u in users if u is not None]

    async def rotate_token(self, name: str) -> str:
        """Replace the user's API token (the old one stops working at once); return the new one."""
        old = await self.redis.hget(self._user_key(name), "token_sha256")
        if old is None:
            raise AuthError(f"no user {name!r}")
        token = new_token()
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._token_key(_s(old)))
        pipe.hset(self._user_key(name), "token_sha256", digest(token))
        pipe.hincrby(self._user_key(name), "generation", 1)  # ends the user's sessions
        pipe.set(self._token_key(digest(token)), name)
        self._new_epoch(pipe)  # every process's token cache forgets the old token
        await pipe.execute()
        return token

    async def set_role(self, name: str, role: Role) -> None:
        """Change the role; the user's sessions end (they were opened with the old role's rights)."""
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if not await self.redis.exists(self._user_key(name)):
            raise AuthError(f"no user {name!r}")
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._user_key(name), "role", role)
        pipe.hincrby(self._user_key(name), "generation", 1)
        self._new_epoch(pipe)
        await pipe.execute()

    async def set_password(self, name: str, password: str) -> None:
        """Set the login password; the user's sessions end."""
        if not await self.redis.exists(self._user_key(name)):
            raise AuthError(f"no user {name!r}")
        if len(password) < 10:
            raise AuthError("a password needs at least 10 characters")
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._user_key(name), "password", hash_password(password))
        pipe.hincrby(self._user_key(name), "generation", 1)
        self._new_epoch(pipe)
        await pipe.execute()

    async def remove(self, name: str) -> None:
        """Delete the user, its token and every session of it."""
        old = await self.redis.hget(self._user_key(name), "token_sha256")
        if old is None:
            raise AuthError(f"no user {name!r}")
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._token_key(_s(old)), self._user_key(name))
        pipe.srem(self.keys.users(), name)
        self._new_epoch(pipe)
        await pipe.execute()
        # Sessions are found by their owner's name (ids are stored hashed); a removed user must not
        # stay logged in anywhere.
        async for key in self.redis.scan_iter(self.keys.pattern("session"), count=500):
            if _s(await self.redis.hget(key, "user") or b"") == name:
                await self.redis.delete(key)

    async def by_token(self, token: str) -> User | None:
        """The user owning this API token, or None (see :mod:`moderation.token_cache`)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        token_digest = digest(token)
        epoch = await self.redis.get(self.keys.users_epoch())
        user = self._tokens.get(token_digest, epoch)
        if user is not None:
            return user
        name = await self.redis.get(self._token_key(token_digest))
        user = await self.get(_s(name)) if name is not None else None
        if user is not None:
            self._tokens.put(token_digest, epoch, user)
        return user

    async def check_login(self, name: str, secret: str) -> User | None:
        """The user when ``secret`` is its password or its API token, else None.

        The work does not depend on whether the user exists or has a password: a password-shaped
        secret always costs one scrypt (against a dummy hash when there is nothing real to check),
        a token-shaped one always one digest comparison. So the answer's timing tells nothing about
        which names exist."""
        raw = await self.redis.hgetall(self._user_key(name)) if name else {}
        fields = {_s(k): _s(v) for k, v in raw.items()}
        if secret.startswith(TOKEN_PREFIX):
            ok = hmac.compare_digest(digest(secret), fields.get("token_sha256") or DUMMY_TOKEN_DIGEST)
        else:
            real = fields.get("password", "")
            # scrypt takes tens of milliseconds on purpose: keep it off the event loop.
            ok = await asyncio.get_running_loop().run_in_executor(
                None, verify_password, secret, real or DUMMY_PASSWORD_HASH
            )
            ok = ok and bool(real)
        if not ok or "role" not in fields:
            return None
        return _user(name, fields)


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    generation: int = 0  # the user's credential generation when the session was opened


class SessionStore:
    """Server-side browser sessions: the cookie holds a random id, Redis holds its digest."""

    def __init__(self, redis: Any, prefix: str, ttl_s: int = 12 * 3600) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s

    def _key(self, sid: str) -> str:
        return self.keys.session(digest(sid))

    async def create(self, user: User) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(user=user.name, csrf=secrets.token_urlsafe(32), generation=user.generation)
        key = self._key(sid)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "user": user.name,
                "csrf": session.csrf,
                "generation": user.generation,
                "created_at": datetime.now(UTC).isoformat(),
            },
        )
        pipe.expire(key, self.ttl_s)
        await pipe.execute()
        return sid, session

    async def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 200:
            return None
        raw = await self.redis.hgetall(self._key(sid))
        if not raw:
            return None
        fields = {_s(k): _s(v) for k, v in raw.items()}
        return Session(
            user=fields["user"], csrf=fields["csrf"], generation=int(fields.get("generation") or 0)
        )

    async def delete(self, sid: str | None) -> None:
        if sid:
            await self.redis.delete(self._key(sid))


@dataclass(frozen=True)
class Throttled:
    """A login refused before its credentials were checked: wait ``retry_after_s``."""

    retry_after_s: int
    scope: Literal["user-address", "address"]


class LoginThrottle:
    """Login throttling that an attacker cannot turn against a user.

    Failures are counted per (user name, client address) and per client address. Up to ``after``
    failures of a pair (``after_address`` of an address) cost nothing; each further one blocks that
    pair (address) for 1 s, 2 s, 4 s, ... up to ``max_s``: exponential backoff, not a fixed lock.
    A success clears its pair. Nothing is counted per user name alone, so wrong passwords typed for
    a user from other addresses never block that user at a new address; and API requests with a
    token are never throttled. A record is forgotten a day after its last failure.
    """

    FORGET_S = 24 * 3600

    def __init__(
        self,
        redis: Any,
        prefix: str,
        *,
        after: int = 5,
        after_address: int = 30,
        base_s: float = 1.0,
        max_s: float = 900.0,
    ) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.after = after
        self.after_address = after_address
        self.base_s = base_s
        self.max_s = max_s

    def _scopes(self, client: str, name: str) -> list[tuple[Literal["user-address", "address"], str, int]]:
        return [
            ("user-address", self.keys.login_pair(client, name.lower()[:64]), self.after),
            ("address", self.keys.login_address(client), self.after_address),
        ]

    async def check(self, client: str, name: str, now: float | None = None) -> Throttled | None:
        """Whether a login attempt may be checked now."""
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=False)
        scopes = self._scopes(client, name)
        for _, key, _ in scopes:
            pipe.hget(key, "until")
        untils = await pipe.execute()
        waits = [
            (float(_s(u)) - now, scope)
            for (scope, _, _), u in zip(scopes, untils, strict=True)
            if u is not None
        ]
        waits = [(w, scope) for w, scope in waits if w > 0]
        if not waits:
            return None
        wait, scope = max(waits)
        return Throttled(max(1, math.ceil(wait)), scope)

    async def failed(self, client: str, name: str, now: float | None = None) -> None:
        """Count a failed attempt; past the free allowance, block the pair / address for a while."""
        now = time.time() if now is None else now
        scopes = self._scopes(client, name)
        pipe = self.redis.pipeline(transaction=True)
        for _, key, _ in scopes:
            pipe.hincrby(key, "failures", 1)
            pipe.expire(key, self.FORGET_S)
        counts = (await pipe.execute())[0::2]
        pipe = self.redis.pipeline(transaction=True)
        for (_, key, free), count in zip(scopes, counts, strict=True):
            if int(count) >= free:
                delay = min(self.max_s, self.base_s * 2.0 ** min(int(count) - free, 30))
                pipe.hset(key, "until", now + delay)
        await pipe.execute()

    async def succeeded(self, client: str, name: str) -> None:
        await self.redis.delete(self.keys.login_pair(client, name.lower()[:64]))


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected, given or "")
