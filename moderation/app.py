"""The review service as one ASGI app: ``/api`` (JSON, OpenAPI at ``/api/openapi.json``) and the pages."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from core.config import Settings
from moderation import api, pages
from moderation.service import Moderation

log = logging.getLogger(__name__)

DESCRIPTION = """Review queue, labels and uploads of the misinfo-watch stream.

Authenticate with `Authorization: Bearer <token>`; `misinfo users add NAME --role ROLE` prints a
token. Roles: **viewer** reads the queue, items and stats; **moderator** also labels, uploads and asks
for explanations; **admin** also manages users and reads the audit log. No or a bad token gives 401,
a role too low 403.
"""


def create_app(settings: Settings, moderation: Moderation | None = None) -> FastAPI:
    """The app; ``moderation`` is built from ``settings`` (on a new Redis client) when not given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.moderation.close()

    app = FastAPI(
        title="misinfo-watch moderation",
        version="1",
        description=DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    if moderation is None:
        import redis.asyncio as aioredis

        moderation = Moderation(settings, aioredis.Redis.from_url(settings.redis_url))
    app.state.moderation = moderation
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.nonce = secrets.token_urlsafe(16)
        response = await call_next(request)
        if request.url.path == "/api/docs":  # Swagger UI loads its own scripts from a CDN
            return response
        response.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; script-src 'nonce-{request.state.nonce}'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.url.path.startswith(("/api/", "/items", "/queue", "/stats")):
            response.headers.setdefault("Cache-Control", "private, no-store")
        return response

    @app.exception_handler(pages.LoginRequired)
    async def login_required(request: Request, exc: pages.LoginRequired) -> Response:
        return RedirectResponse("/login?next=" + quote(exc.next_url, safe=""), status_code=303)

    @app.exception_handler(pages.PageForbidden)
    async def page_forbidden(request: Request, exc: pages.PageForbidden) -> Response:
        mod = app.state.moderation
        session = await mod.sessions.get(request.cookies.get(api.SESSION_COOKIE))
        user: Any = await mod.users.get(session.user) if session else None
        return pages.render(
            request,
            "error.jinja",
            status=403,
            user=user,
            csrf=session.csrf if session else "",
            message=exc.detail,
        )

    return app
