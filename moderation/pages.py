"""The HTML pages: login, queue, item (with keyboard labeling), upload, stats.

Pages use a server-side session (cookie ``misinfo_session``, HttpOnly, SameSite=Lax); every form
post carries the session's CSRF token, and the login form a double-submit token of its own. Login
attempts are rate-limited per client address and per user name.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from core.keys import Keys
from moderation.api import SESSION_COOKIE, check_image_id, moderation
from moderation.auth import Role, Session, User, csrf_ok
from moderation.label_producer import FeedbackUnavailable
from moderation.uploads import UploadRejected

LOGIN_CSRF_COOKIE = "misinfo_login_csrf"
KEYS = {"authentic": "a", "manipulated": "m", "synthesized": "s"}

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
env.filters["ts"] = lambda t: datetime.fromtimestamp(float(t), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
env.filters["pct"] = lambda x: "–" if x is None else f"{100 * float(x):.1f}%"


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PageForbidden(Exception):
    def __init__(self, detail: str) -> None:
        self.detail = detail


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    ctx.setdefault("user", None)
    ctx.setdefault("csrf", "")
    html = env.get_template(name).render(request=request, nonce=request.state.nonce, keys=KEYS, **ctx)
    return HTMLResponse(html, status_code=status)


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def page_auth(request: Request, role: Role = "viewer") -> tuple[User, Session]:
    mod = moderation(request)
    session = await mod.sessions.get(request.cookies.get(SESSION_COOKIE))
    user = await mod.users.get(session.user) if session else None
    if session is None or user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    if not user.has(role):
        raise PageForbidden(f"This needs the role {role} or above; you are {user.role}.")
    return user, session


async def form_auth(request: Request, role: Role) -> tuple[User, Session, Any]:
    """Session + role + CSRF for a form post; returns the parsed form too."""
    user, session = await page_auth(request, role)
    form = await request.form()
    if not csrf_ok(session.csrf, str(form.get("csrf", ""))):
        raise PageForbidden("The form's security token is missing or stale; reload the page and try again.")
    return user, session, form


def safe_next(url: str | None) -> str:
    """Only local paths: a login link must not send anyone to another site."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/queue"
    return url


router = APIRouter(include_in_schema=False)


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/queue", status_code=303)


@router.get("/login")
async def login_page(request: Request, next: str = "/queue", error: str = "") -> Response:
    token = secrets.token_urlsafe(32)
    resp = render(request, "login.jinja", login_csrf=token, next=safe_next(next), error=error)
    resp.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure(request), max_age=3600
    )
    return resp


@router.post("/login")
async def login(request: Request) -> Response:
    mod = moderation(request)
    form = await request.form()
    name = str(form.get("name", "")).strip()
    secret = str(form.get("secret", ""))
    nxt = safe_next(str(form.get("next", "")))
    if not csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE, ""), str(form.get("csrf", ""))):
        return _login_again(request, nxt, "The login form expired; please try again.", 403)
    client = request.client.host if request.client else "unknown"
    wait = await mod.limiter.hit(client, name)
    if wait:
        resp = _login_again(request, nxt, f"Too many login attempts; try again in {wait} seconds.", 429)
        resp.headers["Retry-After"] = str(wait)
        return resp
    user = await mod.users.check_login(name, secret) if name and secret else None
    if user is None:
        return _login_again(request, nxt, "Unknown user or wrong password/token.", 401)
    sid, _ = await mod.sessions.create(user.name)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(
        SESSION_COOKIE, sid, httponly=True, samesite="lax", secure=secure(request), max_age=mod.sessions.ttl_s
    )
    resp.delete_cookie(LOGIN_CSRF_COOKIE)
    return resp


def _login_again(request: Request, nxt: str, error: str, status: int) -> Response:
    token = secrets.token_urlsafe(32)
    resp = render(request, "login.jinja", status=status, login_csrf=token, next=nxt, error=error)
    resp.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure(request), max_age=3600
    )
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    _, session, _ = await form_auth(request, "viewer")
    await moderation(request).sessions.delete(request.cookies.get(SESSION_COOKIE))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


@router.get("/queue")
async def queue_page(
    request: Request,
    offset: int = 0,
    limit: int = 25,
    source: str = "",
    label: str = "",
    model_version: str = "",
    done: str = "",
) -> Response:
    user, session = await page_auth(request)
    mod = moderation(request)
    offset, limit = max(0, offset), min(max(1, limit), 200)
    page = await mod.store.queue(
        offset=offset,
        limit=limit,
        source=source or None,
        label=label or None,
        model_version=model_version or None,
    )
    filters = {
        k: v for k, v in {"source": source, "label": label, "model_version": model_version}.items() if v
    }

    def link(o: int) -> str:
        return "/queue?" + urlencode({**filters, "offset": o, "limit": limit})

    return render(
        request,
        "queue.jinja",
        user=user,
        csrf=session.csrf,
        page=page,
        facets=await mod.store.facets(),
        filters=filters,
        prev_url=link(max(0, offset - limit)) if offset > 0 else None,
        next_url=link(offset + limit) if offset + limit < page.total else None,
        done=done,
        now=time.time(),
    )


@router.get("/items/{image_id}")
async def item_page(request: Request, image_id: str, done: str = "") -> Response:
    user, session = await page_auth(request)
    mod = moderation(request)
    item = await mod.store.item(check_image_id(image_id))
    if item is None:
        # An upload not judged yet: a page that refreshes itself until the verdict is there.
        sightings = await mod.redis.scard(Keys(mod.settings.redis_prefix).sightings(image_id))
        if sightings:
            return render(request, "pending.jinja", user=user, csrf=session.csrf, image_id=image_id)
        return render(
            request, "error.jinja", status=404, user=user, csrf=session.csrf, message="No such image."
        )
    mine = next((lb for lb in item.labels if lb.moderator_id == user.name), None)
    return render(
        request,
        "item.jinja",
        user=user,
        csrf=session.csrf,
        item=item,
        mine=mine,
        can_label=user.has("moderator"),
        done=done,
    )


@router.post("/items/{image_id}/label")
async def label_form(request: Request, image_id: str) -> Response:
    user, session, form = await form_auth(request, "moderator")
    mod = moderation(request)
    label = str(form.get("label", ""))
    if label not in KEYS:
        return render(
            request, "error.jinja", status=400, user=user, csrf=session.csrf, message="Pick a label."
        )
    try:
        await mod.label(check_image_id(image_id), user, label, str(form.get("note", "")))
    except KeyError:
        return render(
            request, "error.jinja", status=404, user=user, csrf=session.csrf, message="No such image."
        )
    except FeedbackUnavailable as exc:
        return render(
            request,
            "error.jinja",
            status=503,
            user=user,
            csrf=session.csrf,
            message=f"The label was not saved: {exc}. Go back and try again.",
        )
    return await _next(request, user, image_id, f"{image_id}:{label}")


@router.post("/items/{image_id}/skip")
async def skip_form(request: Request, image_id: str) -> Response:
    user, _, _ = await form_auth(request, "moderator")
    await moderation(request).store.skip(user.name, check_image_id(image_id))
    return await _next(request, user, image_id, "")


async def _next(request: Request, user: User, image_id: str, done: str) -> Response:
    nxt = await moderation(request).store.next_for(user.name, after=image_id)
    suffix = f"?done={quote(done)}" if done else ""
    return RedirectResponse(f"/items/{nxt}{suffix}" if nxt else f"/queue{suffix}", status_code=303)


@router.get("/next")
async def next_page(request: Request) -> Response:
    user, _ = await page_auth(request)
    nxt = await moderation(request).store.next_for(user.name)
    return RedirectResponse(f"/items/{nxt}" if nxt else "/queue", status_code=303)


@router.get("/upload")
async def upload_page(request: Request) -> Response:
    user, session = await page_auth(request, "moderator")
    return render(request, "upload.jinja", user=user, csrf=session.csrf, error="")


@router.post("/upload")
async def upload_form(request: Request) -> Response:
    user, session, form = await form_auth(request, "moderator")
    mod = moderation(request)
    upload = form.get("file")
    data = await upload.read(mod.settings.max_download_bytes + 1) if hasattr(upload, "read") else b""
    error = ""
    if not data:
        error = "Choose an image file."
    elif len(data) > mod.settings.max_download_bytes:
        error = f"The file is larger than {mod.settings.max_download_bytes} bytes."
    else:
        try:
            result = await mod.uploader.upload(
                data, user.name, str(form.get("caption", "")), str(form.get("source_url", ""))
            )
        except UploadRejected as exc:
            error = f"Not a usable image: {exc}"
        else:
            return RedirectResponse(f"/items/{result.image_id}", status_code=303)
    return render(request, "upload.jinja", status=422, user=user, csrf=session.csrf, error=error)


@router.get("/stats")
async def stats_page(request: Request) -> Response:
    user, session = await page_auth(request)
    stats = await moderation(request).store.stats()
    peak = max([1] + [max(h["verdicts"], h["labels"]) for h in stats["throughput"]])
    return render(request, "stats.jinja", user=user, csrf=session.csrf, stats=stats, peak=peak)
