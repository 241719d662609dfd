"""Users, roles, API tokens, browser sessions and the login rate limit, all in Redis.

Keys (``p`` = the Redis prefix):

- ``{p}:users``                    set of user names
- ``{p}:user:{name}``              hash: role, token_sha256, password (scrypt, optional), created_at
- ``{p}:token:{sha256}``           string: the user name owning the API token with that digest
- ``{p}:session:{sha256}``         hash: user, csrf, created_at; expires (fixed lifetime)
- ``{p}:login:ip:{addr}`` / ``{p}:login:user:{name}``  attempt counters of the current window

Tokens are 32 random bytes (URL-safe base64); only their sha256 is stored, which is enough for
secrets of that entropy (a KDF protects guessable passwords, not random tokens). Passwords, which
people choose, are stored with scrypt. Session ids are stored hashed too, so a Redis dump yields no
usable credential.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from core.keys import Keys

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


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class UserStore:
    """User management and credential checks; ``redis`` is a ``redis.asyncio.Redis``."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.keys = Keys(prefix)

    def _user_key(self, name: str) -> str:
        return self.keys.user(name)

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
        await pipe.execute()
        return token

    async def get(self, name: str) -> User | None:
        raw = await self.redis.hgetall(self._user_key(name))
        if not raw:
            return None
        fields = {_s(k): _s(v) for k, v in raw.items()}
        return User(name=name, role=fields["role"], created_at=fields.get("created_at", ""))  # type: ignore[arg-type]

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
        pipe.set(self._token_key(digest(token)), name)
        await pipe.execute()
        return token

    async def set_role(self, name: str, role: Role) -> None:
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if not await self.redis.exists(self._user_key(name)):
            raise AuthError(f"no user {name!r}")
        await self.redis.hset(self._user_key(name), "role", role)

    async def set_password(self, name: str, password: str) -> None:
        if not await self.redis.exists(self._user_key(name)):
            raise AuthError(f"no user {name!r}")
        if len(password) < 10:
            raise AuthError("a password needs at least 10 characters")
        await self.redis.hset(self._user_key(name), "password", hash_password(password))

    async def remove(self, name: str) -> None:
        """Delete the user, its token and every session of it."""
        old = await self.redis.hget(self._user_key(name), "token_sha256")
        if old is None:
            raise AuthError(f"no user {name!r}")
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._token_key(_s(old)), self._user_key(name))
        pipe.srem(self.keys.users(), name)
        await pipe.execute()
        # Sessions are found by their owner's name (ids are stored hashed); a removed user must not
        # stay logged in anywhere.
        async for key in self.redis.scan_iter(self.keys.pattern("session"), count=500):
            if _s(await self.redis.hget(key, "user") or b"") == name:
                await self.redis.delete(key)

    async def by_token(self, token: str) -> User | None:
        """The user owning this API token, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        name = await self.redis.get(self._token_key(digest(token)))
        return await self.get(_s(name)) if name is not None else None

    async def check_login(self, name: str, secret: str) -> User | None:
        """The user when ``secret`` is its password or its API token, else None."""
        raw = await self.redis.hgetall(self._user_key(name))
        if not raw:
            return None
        fields = {_s(k): _s(v) for k, v in raw.items()}
        ok = False
        if secret.startswith(TOKEN_PREFIX):
            ok = hmac.compare_digest(digest(secret), fields.get("token_sha256", ""))
        elif fields.get("password"):
            import asyncio

            # scrypt takes tens of milliseconds on purpose: keep it off the event loop.
            ok = await asyncio.get_running_loop().run_in_executor(
                None, verify_password, secret, fields["password"]
            )
        if not ok:
            return None
        return User(name=name, role=fields["role"], created_at=fields.get("created_at", ""))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str


class SessionStore:
    """Server-side browser sessions: the cookie holds a random id, Redis holds its digest."""

    def __init__(self, redis: Any, prefix: str, ttl_s: int = 12 * 3600) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s

    def _key(self, sid: str) -> str:
        return self.keys.session(digest(sid))

    async def create(self, user: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(user=user, csrf=secrets.token_urlsafe(32))
        key = self._key(sid)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            key, mapping={"user": user, "csrf": session.csrf, "created_at": datetime.now(UTC).isoformat()}
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
        return Session(user=fields["user"], csrf=fields["csrf"])

    async def delete(self, sid: str | None) -> None:
        if sid:
            await self.redis.delete(self._key(sid))


class LoginLimiter:
    """Fixed-window limit on login attempts, per client address and per user name.

    Every attempt counts (not only failures), so a password-spraying client is slowed as much as a
    guesser; a successful login does not reset the window.
    """

    def __init__(self, redis: Any, prefix: str, max_attempts: int = 10, window_s: int = 900) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.max_attempts = max_attempts
        self.window_s = window_s

    async def hit(self, client: str, name: str) -> int:
        """Count one attempt; return 0 when allowed, else the seconds until the window ends."""
        keys = [self.keys.login_ip(client), self.keys.login_user(name.lower()[:64])]
        pipe = self.redis.pipeline(transaction=True)
        for key in keys:
            pipe.incr(key)
            pipe.expire(key, self.window_s, nx=True)
        for key in keys:
            pipe.ttl(key)
        out = await pipe.execute()
        counts = out[0:4:2]
        ttls = out[4:]
        if max(counts) > self.max_attempts:
            return max(int(t) for t, c in zip(ttls, counts, strict=True) if c > self.max_attempts) or 1
        return 0


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected, given or "")
