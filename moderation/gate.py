"""The service's front gate, ahead of every route: request-body limits, and API authentication
before any byte of a body is read.

FastAPI reads and parses a request's body before it runs the route's dependencies, authentication
among them; without this gate an anonymous client could make the service receive, spool and parse a
body of any size before hearing 401. The gate

- answers 401 to an ``/api`` request that announces a body (``Content-Length`` > 0 or chunked) but
  carries no valid credential (a known API token, or a live session cookie), without reading it;
- answers 413 when the announced ``Content-Length`` is over the route's limit, without reading;
- stops a body that grows past the limit while it streams (chunked, or a length that lies) with 413.

These answers carry ``Connection: close``: the server reads nothing more of that request. A client
that sends ``Expect: 100-continue`` (curl does for large bodies) gets the answer before sending any
of the body, as uvicorn sends "100 Continue" only once the app starts reading.

Limits: an upload (``POST /api/uploads``, ``POST /upload``) may carry ``max_download_bytes`` plus
``FORM_OVERHEAD`` of multipart framing and fields; every other request ``moderation_max_body_bytes``.
Roles and CSRF are still checked by the routes (after a body that is now bounded).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser

from moderation.api import GATE_CREDENTIAL, SESSION_COOKIE, GateCredential

if TYPE_CHECKING:
    from moderation.service import Moderation

UPLOAD_PATHS = frozenset({"/api/uploads", "/upload"})
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers, caption and source URL fields

Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


class BodyTooLarge(HTTPException):
    """A body that passed its route's limit while streaming (an HTTPException, so that FastAPI's
    body reading lets it through to the exception handlers instead of calling it a 400)."""

    def __init__(self, limit: int, path: str) -> None:
        super().__init__(413, too_large(limit, path), headers={"Connection": "close"})


def too_large(limit: int, path: str) -> str:
    what = "an upload" if path in UPLOAD_PATHS else "a request to this path"
    return f"request body too large: {what} may carry at most {limit} bytes"


def body_limit(settings: Any, path: str) -> int:
    """The largest body a request to ``path`` may carry."""
    if path in UPLOAD_PATHS:
        return int(settings.max_download_bytes) + FORM_OVERHEAD
    return int(settings.moderation_max_body_bytes)


class Gate:
    """Pure ASGI middleware (no buffering of its own); ``moderation`` returns the app's service."""

    def __init__(self, app: Any, moderation: Callable[[], Moderation]) -> None:
        self.app = app
        self.moderation = moderation

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        mod = self.moderation()
        path: str = scope["path"]
        headers = Headers(scope=scope)
        limit = body_limit(mod.settings, path)
        declared_raw = headers.get("content-length")
        declared = int(declared_raw) if declared_raw and declared_raw.isdigit() else None
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if (
            (chunked or declared)
            and path.startswith("/api/")
            and not await _authenticated(mod, headers, scope)
        ):
            await _answer(
                send,
                path,
                401,
                "authentication required before a request body is accepted: Authorization: Bearer <token>",
                {"WWW-Authenticate": "Bearer"},
            )
            return
        if declared is not None and declared > limit:
            await _answer(send, path, 413, too_large(limit, path))
            return

        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, path)
            return message

        await self.app(scope, bounded_receive, send)


async def _authenticated(mod: Moderation, headers: Headers, scope: dict[str, Any]) -> bool:
    """A valid credential, as the API's own check will see it (roles and CSRF come later). What it
    found is left in the scope for that check (see :func:`moderation.api.authenticate`), so that a
    request with a body looks its credential up once."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        user = await mod.users.by_token(token.strip())
        if user is not None:
            scope[GATE_CREDENTIAL] = GateCredential(token.strip(), None, user, None)
        return user is not None
    sid = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
    found = await mod.session_user(sid)
    if found is not None:
        scope[GATE_CREDENTIAL] = GateCredential(None, sid, *found)
    return found is not None


async def _answer(
    send: Send, path: str, status: int, detail: str, extra: dict[str, str] | None = None
) -> None:
    # JSON for the API; plain text that a browser shows for the pages' forms.
    if path.startswith("/api/"):
        body, kind = json.dumps({"detail": detail}).encode(), b"application/json"
    else:
        body, kind = (detail[0].upper() + detail[1:] + ".\n").encode(), b"text/plain; charset=utf-8"
    head = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the unread body stays unread
    ]
    head += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
