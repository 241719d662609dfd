"""The review service as one ASGI app: ``/api`` (JSON, OpenAPI at ``/api/openapi.json``) and the pages."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from core.config import Settings
from moderation import api, apidocs, assets, pages, review_pages
from moderation.gate import BodyTooLarge, Gate
from moderation.headers import SecurityHeaders
from moderation.service import Moderation

log = logging.getLogger(__name__)

DESCRIPTION = """Review queue, labels and uploads of the misinfo-watch stream.

Authenticate with `Authorization: Bearer <token>`; `misinfo users add NAME --role ROLE` prints a
token. Roles: **viewer** reads the queue, items and stats; **moderator** also labels, uploads and asks
for explanations; **admin** also manages users and reads the audit log. No or a bad token gives 401,
a role too low 403.

Limits: a request body may carry at most `MISINFO_MODERATION_MAX_BODY_BYTES` (64 KiB), an upload
`MISINFO_MAX_DOWNLOAD_BYTES` plus 64 KiB; a larger one gets 413, and an `/api` request with a body
but no valid credential gets 401 before any of the body is read.
"""


def create_app(settings: Settings, moderation: Moderation | None = None) -> FastAPI:
    """The app; ``moderation`` is built from ``settings`` (on a new Redis client) when not given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await app.state.moderation.uploader.start()
        yield
        await app.state.moderation.close()

    app = FastAPI(
        title="misinfo-watch moderation",
        version="1",
        description=DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url=None,  # served by moderation.apidocs, without a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    if moderation is None:
        import redis.asyncio as aioredis

        moderation = Moderation(settings, aioredis.Redis.from_url(settings.redis_url))
    app.state.moderation = moderation
    app.include_router(api.router)
    app.include_router(apidocs.router)
    app.include_router(pages.router)
    app.include_router(review_pages.router)
    app.include_router(assets.router)
    # Inside the security headers (added after it, so outermost), so that its answers get them too.
    app.add_middleware(Gate, moderation=lambda: app.state.moderation)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(pages.LoginRequired)
    async def login_required(request: Request, exc: pages.LoginRequired) -> Response:
        query = "next=" + quote(exc.next_url, safe="") + ("&error=session-ended" if exc.ended else "")
        return RedirectResponse("/login?" + query, status_code=303)

    async def error_page(request: Request, status: int, message: str) -> Response:
        found = await app.state.moderation.session_user(request.cookies.get(api.SESSION_COOKIE))
        user: Any = found[0] if found else None
        csrf = found[1].csrf if found else ""
        return pages.render(request, "error.jinja", status=status, user=user, csrf=csrf, message=message)

    @app.exception_handler(pages.PageForbidden)
    async def page_forbidden(request: Request, exc: pages.PageForbidden) -> Response:
        return await error_page(request, 403, exc.detail)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, 413, headers=exc.headers)
        response = await error_page(request, 413, exc.detail[0].upper() + exc.detail[1:] + ".")
        response.headers["Connection"] = "close"
        return response

    routers = (api.router, apidocs.router, pages.router, review_pages.router, assets.router)

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        """405 with every method the path has: Starlette names only the first route's (a path with a
        GET route and a POST route would say ``Allow: GET``)."""
        path = request.url.path
        methods = sorted(
            {
                m
                for router in routers
                for r in router.routes
                if isinstance(r, APIRoute) and r.path_regex.match(path)
                for m in r.methods or ()
            }
        )
        return JSONResponse({"detail": "Method Not Allowed"}, 405, headers={"Allow": ", ".join(methods)})

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        """The API's 422 as FastAPI writes it; a page's as a page naming the bad parameters."""
        if request.url.path.startswith("/api/"):
            return await request_validation_exception_handler(request, exc)
        names = ", ".join(sorted({str(e["loc"][-1]) for e in exc.errors() if e.get("loc")}))
        return await error_page(request, 422, f"Bad value for {names or 'the request'}: check the address.")

    return app
