"""The review service's front: security headers (pure ASGI) and the gate handing the credential it
checked to the route's own check (in-process app, a counting user store, no Redis)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from moderation.api import authenticate
from moderation.auth import User
from moderation.gate import Gate
from moderation.headers import SecurityHeaders

TOKEN = "mdr_" + "t" * 43


class CountingUsers:
    def __init__(self) -> None:
        self.lookups = 0

    async def by_token(self, token: str) -> User | None:
        self.lookups += 1
        return User("mia", "moderator") if token == TOKEN else None


def front(users: CountingUsers) -> FastAPI:
    async def no_session(sid: str | None) -> None:
        return None

    mod = SimpleNamespace(
        settings=SimpleNamespace(max_download_bytes=1000, moderation_max_body_bytes=1000),
        users=users,
        session_user=no_session,
    )
    app = FastAPI()
    app.state.moderation = mod

    @app.post("/api/echo")
    async def echo(request: Request, user: Annotated[User, Depends(authenticate)]) -> dict[str, Any]:
        return {"user": user.name, "nonce": request.state.nonce}

    @app.get("/api/own-cache")
    async def own_cache(user: Annotated[User, Depends(authenticate)]) -> JSONResponse:
        return JSONResponse({}, headers={"Cache-Control": "max-age=60"})

    @app.get("/login")
    async def login() -> dict[str, str]:
        return {}

    app.add_middleware(Gate, moderation=lambda: mod)
    app.add_middleware(SecurityHeaders)
    return app


async def call(app: FastAPI, method: str, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return await c.request(method, path, **kw)


async def test_a_request_with_a_body_looks_its_token_up_once():
    users = CountingUsers()
    r = await call(
        front(users), "POST", "/api/echo", json={"a": 1}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status_code == 200 and r.json()["user"] == "mia"
    assert users.lookups == 1  # the gate's; the route took it from the scope


async def test_the_gate_still_refuses_a_bad_token_before_the_body():
    users = CountingUsers()
    r = await call(
        front(users), "POST", "/api/echo", json={"a": 1}, headers={"Authorization": "Bearer mdr_nope"}
    )
    assert r.status_code == 401 and r.headers["connection"] == "close"


async def test_a_request_without_a_body_is_checked_by_the_route():
    users = CountingUsers()
    r = await call(front(users), "GET", "/api/own-cache", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and users.lookups == 1
    r = await call(front(users), "GET", "/api/own-cache", headers={"Authorization": "Basic eDp5"})
    assert r.status_code == 401


async def test_security_headers_on_every_answer_with_a_fresh_nonce_each():
    app = front(CountingUsers())
    auth = {"Authorization": f"Bearer {TOKEN}"}
    a = await call(app, "POST", "/api/echo", json={}, headers=auth)
    b = await call(app, "POST", "/api/echo", json={}, headers=auth)
    assert a.json()["nonce"] != b.json()["nonce"]
    assert f"script-src 'nonce-{a.json()['nonce']}'" in a.headers["content-security-policy"]
    for r in (a, await call(app, "GET", "/login"), await call(app, "POST", "/api/echo", json={})):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert a.headers["cache-control"] == "private, no-store"
    assert "cache-control" not in (await call(app, "GET", "/login")).headers


async def test_a_header_the_route_set_is_kept():
    r = await call(
        front(CountingUsers()), "GET", "/api/own-cache", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.headers["cache-control"] == "max-age=60"
