"""The HTML pages: login, queue, item (with keyboard labeling and the forensic tools: zoom and pan,
regions, metadata, undo, the item lock), upload, stats. Search and the undo form: ``review_pages``.

Pages use a server-side session (cookie ``misinfo_session``, HttpOnly, SameSite=Lax); every form
post carries the session's CSRF token, and the login form a double-submit token of its own. Failed
logins back off per (user name, client address) and per client address (see ``LoginThrottle``).
Query parameters are validated: a bad one is a 422 page, never a 500.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field, TypeAdapter, ValidationError

from core.contracts.provenance import PROVENANCE_STATES
from core.contracts.verdicts import MAX_REGIONS, Region
from core.keys import Keys
from ingest.blobs import BlobNotFound
from moderation.api import IMAGE_ID, MAX_OFFSET, SESSION_COOKIE, RegionIn, check_image_id, moderation
from moderation.auth import Role, Session, User, csrf_ok
from moderation.label_producer import FeedbackUnavailable
from moderation.locks import RENEW_S, Lock
from moderation.metadata import Metadata, metadata_of
from moderation.service import ItemLocked
from moderation.store import Item
from moderation.uploads import MAX_CAPTION, MAX_SOURCE_URL, UploadRejected, UploadUnavailable

LOGIN_CSRF_COOKIE = "misinfo_login_csrf"
KEYS = {"authentic": "a", "manipulated": "m", "synthesized": "s"}
# What each label means, shown beside the label buttons (and, for uncertain, in the queue's legend).
LABEL_DEFINITIONS = {
    "authentic": "A photograph or scan of a real scene, with at most edits that keep what it shows: "
    "cropping, resizing, re-compression, exposure or colour correction.",
    "manipulated": "A real photograph whose content was changed: something added, removed or moved, a "
    "face swapped, parts spliced in from another image, inpainted or retouched to alter what it "
    "shows. Mark the changed regions with the box tool.",
    "synthesized": "Made whole by a generator (text-to-image, a GAN face, a render), however "
    "photographic it looks. Mark regions only when a real photo was composited with generated parts.",
    "uncertain": "The model's word when no class is likely enough; not a label a moderator gives.",
}
# The only messages /login?error=... shows: links carry a code, never text of their own.
LOGIN_ERRORS = {
    "session-ended": "Your session has ended (signed out elsewhere, or your credentials changed)."
}
# What a page shows after a label: "<image id>:<label>" (a skip shows nothing).
DONE = Query(pattern=rf"^({IMAGE_ID[1:-1]}:(authentic|manipulated|synthesized))?$", max_length=100)
MAX_SECRET = 1024  # longer than any token or sensible password; scrypt is not fed megabytes
PROVENANCE_FILTER = "^(|" + "|".join(PROVENANCE_STATES) + ")$"

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
env.filters["ts"] = lambda t: datetime.fromtimestamp(float(t), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
env.filters["pct"] = lambda x: "–" if x is None else f"{100 * float(x):.1f}%"
env.filters["hms"] = lambda t: datetime.fromtimestamp(float(t), UTC).strftime("%H:%M:%S UTC")
env.globals["definitions"] = LABEL_DEFINITIONS
REGIONS = TypeAdapter(Annotated[list[RegionIn], Field(max_length=MAX_REGIONS)])


class LoginRequired(Exception):
    def __init__(self, next_url: str, ended: bool = False) -> None:
        self.next_url = next_url
        self.ended = ended  # there was a session cookie, but its session is over


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
    sid = request.cookies.get(SESSION_COOKIE)
    found = await mod.session_user(sid)
    if found is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target, ended=bool(sid))
    user, session = found
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
async def login_page(
    request: Request,
    next: Annotated[str, Query(max_length=2000)] = "/queue",
    error: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    token = secrets.token_urlsafe(32)
    message = LOGIN_ERRORS.get(error, "")  # a code; unknown ones show nothing
    resp = render(request, "login.jinja", login_csrf=token, next=safe_next(next), error=message)
    resp.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure(request), max_age=3600
    )
    return resp


@router.post("/login")
async def login(request: Request) -> Response:
    mod = moderation(request)
    form = await request.form()
    name = str(form.get("name", "")).strip()[:64]
    secret = str(form.get("secret", ""))[:MAX_SECRET]
    nxt = safe_next(str(form.get("next", "")))
    if not csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE, ""), str(form.get("csrf", ""))):
        return _login_again(request, nxt, "The login form expired; please try again.", 403)
    # The peer's address; a proxy's X-Forwarded-For only from MISINFO_MODERATION_FORWARDED_ALLOW_IPS.
    client = request.client.host if request.client else "unknown"
    throttled = await mod.throttle.check(client, name)
    if throttled:
        wait = throttled.retry_after_s
        why = (
            "for this user name from your address"
            if throttled.scope == "user-address"
            else "from your address"
        )
        resp = _login_again(request, nxt, f"Too many failed logins {why}; try again in {wait} seconds.", 429)
        resp.headers["Retry-After"] = str(wait)
        return resp
    user = await mod.users.check_login(name, secret) if name and secret else None
    if user is None:
        await mod.throttle.failed(client, name)
        return _login_again(request, nxt, "Unknown user or wrong password/token.", 401)
    await mod.throttle.succeeded(client, name)
    sid, _ = await mod.sessions.create(user)
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
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 25,
    source: Annotated[str, Query(max_length=200)] = "",
    label: Annotated[str, Query(pattern="^(|authentic|manipulated|synthesized|uncertain)$")] = "",
    model_version: Annotated[str, Query(max_length=200)] = "",
    provenance: Annotated[str, Query(pattern=PROVENANCE_FILTER)] = "",
    sort: Annotated[str, Query(pattern="^(|priority|unstable)$")] = "",
    done: Annotated[str, DONE] = "",
) -> Response:
    user, session = await page_auth(request)
    mod = moderation(request)
    page = await mod.store.queue(
        offset=offset,
        limit=limit,
        source=source or None,
        label=label or None,
        model_version=model_version or None,
        provenance=provenance or None,
        sort=sort or "priority",
    )
    filters = {
        k: v
        for k, v in {
            "source": source,
            "label": label,
            "model_version": model_version,
            "provenance": provenance,
            "sort": sort if sort != "priority" else "",
        }.items()
        if v
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
        undo=await mod.store.undo_ticket(user.name) if done else None,
        now=time.time(),
    )


@router.get("/items/{image_id}")
async def item_page(
    request: Request, image_id: str, done: Annotated[str, DONE] = "", undone: bool = False
) -> Response:
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
    token = ""
    lock: Lock | None
    if user.has("moderator"):  # opening the item takes its lock (or shows who has it)
        token = secrets.token_urlsafe(12)
        lock = await mod.locks.acquire(image_id, user.name, token)
    else:
        lock = await mod.locks.holder(image_id)
    metadata, metadata_error = await _metadata(item)
    return render(
        request,
        "item.jinja",
        user=user,
        csrf=session.csrf,
        item=item,
        mine=mine,
        can_label=user.has("moderator"),
        done=done,
        undone=undone,
        lock=lock,
        lock_token=token if lock and lock.held_by(user.name) else "",
        renew_s=RENEW_S,
        undo=await mod.store.undo_ticket(user.name),
        metadata=metadata,
        metadata_error=metadata_error,
    )


async def _metadata(item: Item) -> tuple[Metadata | None, str]:
    if item.event is None:
        return None, "No ingest record: the image's file is unknown."
    provenance = item.verdict.provenance or item.event.provenance
    try:
        md = await asyncio.get_running_loop().run_in_executor(
            None, metadata_of, item.event.blob_uri, provenance
        )
    except BlobNotFound:
        return None, "The image's file is gone from the blob store."
    except Exception as exc:  # noqa: BLE001 - a file the reader cannot open: the page still shows
        return None, f"The metadata could not be read: {type(exc).__name__}."
    return md, ""


def parse_regions(raw: str) -> list[Region]:
    """The label form's regions (a JSON list of boxes; a box past an edge is cut there)."""
    if not raw.strip():
        return []
    try:
        return [r.region() for r in REGIONS.validate_json(raw)]
    except ValidationError as exc:
        raise ValueError(f"the regions could not be read ({exc.error_count()} problems)") from None


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
        regions = parse_regions(str(form.get("regions", "")))
        await mod.label(check_image_id(image_id), user, label, str(form.get("note", "")), regions)
    except KeyError:
        return render(
            request, "error.jinja", status=404, user=user, csrf=session.csrf, message="No such image."
        )
    except ItemLocked as exc:
        message = (
            f"{exc.lock.holder} has this item open; your label was not saved. Try again when they are done."
        )
        return render(request, "error.jinja", status=409, user=user, csrf=session.csrf, message=message)
    except ValueError as exc:
        message = f"The label was not saved: {exc}."
        return render(request, "error.jinja", status=400, user=user, csrf=session.csrf, message=message)
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
    await moderation(request).locks.release(image_id, user.name)
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
    return render(
        request,
        "upload.jinja",
        user=user,
        csrf=session.csrf,
        error="",
        max_caption=MAX_CAPTION,
        max_source_url=MAX_SOURCE_URL,
    )


@router.post("/upload")
async def upload_form(request: Request) -> Response:
    user, session, form = await form_auth(request, "moderator")
    mod = moderation(request)
    upload = form.get("file")
    data = await upload.read(mod.settings.max_download_bytes + 1) if hasattr(upload, "read") else b""
    caption, source_url = str(form.get("caption", "")), str(form.get("source_url", ""))
    error, status = "", 422
    if not data:
        error = "Choose an image file."
    elif len(data) > mod.settings.max_download_bytes:
        error = f"The file is larger than {mod.settings.max_download_bytes} bytes."
    elif len(caption) > MAX_CAPTION:
        error = f"The caption is longer than {MAX_CAPTION} characters."
    elif len(source_url) > MAX_SOURCE_URL:
        error = f"The URL is longer than {MAX_SOURCE_URL} characters."
    else:
        try:
            result = await mod.uploader.upload(data, user.name, caption, source_url)
        except UploadRejected as exc:
            error = f"Not a usable image: {exc}"
        except UploadUnavailable as exc:
            error, status = f"{str(exc)[0].upper()}{str(exc)[1:]}.", 503
        else:
            return RedirectResponse(f"/items/{result.image_id}", status_code=303)
    return render(
        request,
        "upload.jinja",
        status=status,
        user=user,
        csrf=session.csrf,
        error=error,
        max_caption=MAX_CAPTION,
        max_source_url=MAX_SOURCE_URL,
    )


@router.get("/stats")
async def stats_page(request: Request) -> Response:
    from moderation.retraining import panel

    user, session = await page_auth(request)
    mod = moderation(request)
    stats = await mod.stats.get()
    peak = max([1] + [max(h["verdicts"], h["labels"]) for h in stats["throughput"]])
    retraining = await panel(mod.settings, mod.redis)
    return render(
        request,
        "stats.jinja",
        user=user,
        csrf=session.csrf,
        stats=stats,
        peak=peak,
        retraining=retraining,
        second_share=mod.settings.review_second_share,
    )
