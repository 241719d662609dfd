"""The JSON API under ``/api`` (described at ``/api/openapi.json``).

Authentication: ``Authorization: Bearer <token>`` (tokens from ``misinfo users add``), or the
browser session cookie, which then needs the ``X-CSRF-Token`` header on every POST. No or a bad
credential -> 401; a role below the route's -> 403. Roles: viewer (read), moderator (label, upload,
explain, undo, lock), admin (users, audit).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from core.contracts.images import ImageEvent, Source
from core.contracts.provenance import ProvenanceState
from core.contracts.verdicts import MAX_REGIONS, HumanLabel, Label, Region, Verdict, VerdictLabel
from core.keys import Keys
from ingest.blobs import BlobNotFound, read_blob
from moderation.auth import ROLES, AuthError, Role, Session, User, csrf_ok
from moderation.explain import ExplainUnavailable
from moderation.label_producer import FeedbackUnavailable
from moderation.locks import RENEW_S, Lock
from moderation.metadata import metadata_of
from moderation.search import HumanFilter, SearchQuery, search
from moderation.service import MAX_NOTE, ItemLocked, Moderation, NothingToUndo
from moderation.stats_cache import STATS_TTL_S
from moderation.store import Item
from moderation.uploads import MAX_CAPTION, MAX_SOURCE_URL, UploadRejected, UploadUnavailable

log = logging.getLogger(__name__)

SESSION_COOKIE = "misinfo_session"
IMAGE_ID = r"^[0-9a-f]{64}$"
MAX_OFFSET = 1_000_000_000  # far past any real queue, and inside what Redis accepts as an index
bearer = HTTPBearer(auto_error=False, description="an API token from `misinfo users add NAME --role ROLE`")


def moderation(request: Request) -> Moderation:
    return request.app.state.moderation  # type: ignore[no-any-return]


class Unauthorized(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(401, detail, headers={"WWW-Authenticate": "Bearer"})


@dataclass(frozen=True)
class GateCredential:
    """What the front gate (:mod:`moderation.gate`) found for a request with a body, under
    ``scope[GATE_CREDENTIAL]``: the API token or session id it checked, and its user (and session)."""

    token: str | None
    sid: str | None
    user: User
    session: Session | None


GATE_CREDENTIAL = "misinfo.gate_credential"


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> User:
    mod = moderation(request)
    # The gate already looked up this very credential for this request (a request with a body).
    checked: GateCredential | None = request.scope.get(GATE_CREDENTIAL)
    if request.headers.get("authorization"):
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthorized("use Authorization: Bearer <token>")
        if checked is not None and checked.token == credentials.credentials:
            user: User | None = checked.user
        else:
            user = await mod.users.by_token(credentials.credentials)
        if user is None:
            raise Unauthorized("unknown or revoked token")
        return user
    sid = request.cookies.get(SESSION_COOKIE)
    if checked is not None and checked.sid == sid and checked.session is not None:
        found: tuple[User, Session] | None = (checked.user, checked.session)
    else:
        found = await mod.session_user(sid)
    if found is None:
        raise Unauthorized("authentication required: Authorization: Bearer <token>")
    user, session = found
    if request.method not in {"GET", "HEAD", "OPTIONS"} and not csrf_ok(
        session.csrf, request.headers.get("x-csrf-token")
    ):
        raise HTTPException(403, "missing or wrong X-CSRF-Token for a session request")
    return user


def require(role: Role) -> Any:
    async def check(user: Annotated[User, Depends(authenticate)]) -> User:
        if not user.has(role):
            raise HTTPException(403, f"needs role {role} or above (you are {user.role})")
        return user

    return Depends(check)


Viewer = Annotated[User, require("viewer")]
Moderator = Annotated[User, require("moderator")]
Admin = Annotated[User, require("admin")]
ImageId = Annotated[str, Field(pattern=IMAGE_ID)]


def _iso(value: Any) -> Any:
    """ISO 8601 text only: pydantic alone would also read ``0.5`` as a unix time."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


Instant = Annotated[datetime, BeforeValidator(_iso)]
LockToken = Annotated[
    str,
    Query(
        pattern=r"^[A-Za-z0-9_-]{0,64}$",
        description="the page view's lock token: a release with it frees only that view's lease",
    ),
]


# -- response and request models -------------------------------------------------------------------
class QueueEntryOut(BaseModel):
    image_id: str
    priority: float
    label: str
    source: str
    model_version: str
    decided_at: float
    flagged: bool
    scores: dict[str, float]
    text: str
    url: str
    provenance: str = Field(description="the image's provenance state ('' when none was read)")
    label_source: str = Field(description="what decided the label: model, provenance or both")
    unstable: bool | None = Field(
        description="the label changed under the JPEG re-check (null: not re-checked)"
    )
    locked_by: str | None = Field(default=None, description="the moderator who has the item open")


class QueueOut(BaseModel):
    entries: list[QueueEntryOut]
    total: int = Field(description="entries matching the filters")
    offset: int
    limit: int
    next_offset: int | None


class LockOut(BaseModel):
    image_id: str
    holder: str = Field(description="the moderator who has the item open")
    mine: bool = Field(description="the holder is you")
    expires_at: float = Field(description="unix seconds; the page renews the lock while it is open")
    renew_every_s: float


def lock_out(lock: Lock, user: User) -> LockOut:
    return LockOut(
        image_id=lock.image_id,
        holder=lock.holder,
        mine=lock.held_by(user.name),
        expires_at=round(lock.expires_at, 3),
        renew_every_s=RENEW_S,
    )


class ItemOut(BaseModel):
    image_id: str
    verdict: Verdict
    event: ImageEvent | None
    in_queue: bool
    priority: float | None
    labels: list[Label] = Field(description="the latest label of each moderator, oldest first")
    disagreement: bool = Field(description="moderators gave different labels")
    sightings: list[str] = Field(description="source:item pairs where ingest saw this image")
    explanation: str = Field(description="empty until generated (POST .../explain)")
    explanation_model_version: str | None
    image_url: str
    lock: LockOut | None = Field(default=None, description="who has the item open (GET /api/items/{id} only)")


class RegionIn(BaseModel):
    """A box: top-left corner and size as fractions of the image; a box past an edge is cut there."""

    # Strict: JSON numbers only (lax mode would read ``true`` as 1.0; schemathesis found it).
    model_config = ConfigDict(strict=True)

    x: float = Field(ge=0.0, lt=1.0)
    y: float = Field(ge=0.0, lt=1.0)
    w: float = Field(gt=0.0, le=1.0)
    h: float = Field(gt=0.0, le=1.0)

    def region(self) -> Region:
        return Region(x=self.x, y=self.y, w=min(self.w, 1.0 - self.x), h=min(self.h, 1.0 - self.y))


# An authentic label carries no regions: said in the schema too, so clients (and schemathesis) know.
NO_REGIONS_ON_AUTHENTIC: dict[str, Any] = {
    "if": {"properties": {"label": {"const": "authentic"}}, "required": ["label"]},
    "then": {"properties": {"regions": {"maxItems": 0}}},
}


class LabelIn(BaseModel):
    model_config = ConfigDict(json_schema_extra=NO_REGIONS_ON_AUTHENTIC)

    label: HumanLabel
    note: str = Field(default="", max_length=MAX_NOTE)
    regions: list[RegionIn] = Field(
        default=[],
        max_length=MAX_REGIONS,
        description="boxes where the image is manipulated or synthesized (none on an authentic label)",
    )

    @model_validator(mode="after")
    def _no_regions_on_authentic(self) -> LabelIn:
        if self.regions and self.label == "authentic":
            raise ValueError("an authentic label carries no regions")
        return self


class LabelOut(BaseModel):
    label: Label
    item: ItemOut


class UndoOut(BaseModel):
    retraction: Label = Field(description="published on the feedback topic: the label with retracted_at")
    restored: Label | None = Field(description="your earlier label of this image, which counts again")
    item: ItemOut | None


class SearchHitOut(BaseModel):
    image_id: str
    decided_at: float
    label: str = Field(description="the verdict's final label")
    flagged: bool
    source: str
    author: str
    text: str = Field(description="the caption, cut at 200 characters")
    source_url: str
    in_queue: bool
    human_labels: list[str] = Field(description="the moderators' labels, oldest first")
    locked_by: str | None
    url: str


class SearchOut(BaseModel):
    hits: list[SearchHitOut]
    total: int = Field(description="matches among the scanned verdicts")
    scanned: int = Field(description="verdicts looked at, newest first")
    truncated: bool = Field(
        description="the scan stopped at its limit: narrow the dates to look further back"
    )
    offset: int
    limit: int
    next_offset: int | None


class MetadataFieldOut(BaseModel):
    key: str
    value: str
    truncated: bool
    spoke: bool = Field(description="the provenance reader found a generator or a declaration here")


class MetadataSectionOut(BaseModel):
    name: str = Field(description="EXIF, XMP, IPTC, PNG text or Comment")
    fields: list[MetadataFieldOut]
    more: int = Field(description="fields not listed (over the limit)")


class MetadataOut(BaseModel):
    image_id: str
    format: str
    width: int
    height: int
    size_bytes: int
    icc_profile: bool
    c2pa_store_bytes: int
    sections: list[MetadataSectionOut]
    problems: list[str] = Field(description="parts that could not be read, with the reason")


class ExplanationOut(BaseModel):
    image_id: str
    explanation: str


class UploadOut(BaseModel):
    image_id: str = Field(description="sha256 of the uploaded bytes")
    status: Literal["done", "pending"]
    outcome: Literal["published", "duplicate"] = Field(
        description="duplicate: these bytes were ingested before"
    )
    poll: str = Field(description="GET this until it answers 200")
    item: ItemOut | None = None


class UserIn(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    role: Role


class UserOut(BaseModel):
    name: str
    role: Role
    created_at: str


class NewUserOut(UserOut):
    token: str = Field(description="shown once; only its digest is stored")


def item_out(item: Item) -> ItemOut:
    return ItemOut(
        image_id=item.image_id,
        verdict=item.verdict,
        event=item.event,
        in_queue=item.in_queue,
        priority=item.priority,
        labels=item.labels,
        disagreement=item.disagreement,
        sightings=item.sightings,
        explanation=item.explanation,
        explanation_model_version=item.explanation_model_version,
        image_url=f"/api/items/{item.image_id}/image",
    )


def check_image_id(image_id: str) -> str:
    import re

    if not re.fullmatch(IMAGE_ID, image_id):
        raise HTTPException(404, "no such image (image ids are 64 lowercase hex digits)")
    return image_id


# -- routes ----------------------------------------------------------------------------------------
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no, unknown or revoked credential (for a request with a body: before it is read)"},
    403: {"description": "role too low, or a session POST without X-CSRF-Token"},
}
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "a body that cannot be parsed (malformed multipart)"},
    413: {"description": "a body over the route's limit (see the API description)"},
}
router = APIRouter(prefix="/api", responses=AUTH_RESPONSES)


@router.get("/queue", response_model=QueueOut, summary="The review queue, highest priority first")
async def get_queue(
    request: Request,
    user: Viewer,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 25,
    source: str | None = None,
    label: Literal["authentic", "manipulated", "synthesized", "uncertain"] | None = None,
    model_version: str | None = None,
    provenance: Annotated[ProvenanceState | None, Query(description="only this provenance state")] = None,
    sort: Annotated[
        Literal["priority", "unstable"],
        Query(description="unstable: verdicts that flipped under the re-check first"),
    ] = "priority",
) -> QueueOut:
    page = await moderation(request).store.queue(
        offset=offset,
        limit=limit,
        source=source or None,
        label=label,
        model_version=model_version or None,
        provenance=provenance,
        sort=sort,
    )
    return QueueOut(
        entries=[QueueEntryOut(**vars(e), url=f"/api/items/{e.image_id}") for e in page.entries],
        total=page.total,
        offset=offset,
        limit=limit,
        next_offset=offset + limit if offset + limit < page.total else None,
    )


@router.get(
    "/items/{image_id}",
    response_model=ItemOut,
    summary="One image: verdict, scores, explanation, labels, sightings",
    responses={404: {"description": "no verdict for this image (yet)"}},
)
async def get_item(request: Request, image_id: str, user: Viewer) -> ItemOut:
    item, lock = await moderation(request).store.item_and_lock(check_image_id(image_id))
    if item is None:
        raise HTTPException(404, "no verdict for this image (yet)")
    out = item_out(item)
    return out.model_copy(update={"lock": lock_out(lock, user)}) if lock else out


@router.get(
    "/items/{image_id}/image",
    summary="The image bytes",
    response_class=Response,
    responses={200: {"content": {"image/*": {}}}, 404: {"description": "no such image"}},
)
async def get_image(request: Request, image_id: str, user: Viewer) -> Response:
    item = await moderation(request).store.item(check_image_id(image_id))
    if item is None or item.event is None:
        raise HTTPException(404, "no such image")
    try:
        data = await asyncio.get_running_loop().run_in_executor(None, read_blob, item.event.blob_uri)
    except BlobNotFound:
        raise HTTPException(404, "the image's blob is gone") from None
    return Response(
        data,
        media_type=item.event.mime,
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


@router.post(
    "/items/{image_id}/label",
    response_model=LabelOut,
    summary="Label an image (moderator); it leaves the queue and goes to the feedback topic",
    responses={
        404: {"description": "no verdict for this image"},
        409: {"description": "another moderator has the item open (its lock)"},
        503: {"description": "broker down"},
        **BODY_RESPONSES,
    },
)
async def post_label(request: Request, image_id: str, body: LabelIn, user: Moderator) -> LabelOut:
    regions = [r.region() for r in body.regions]
    try:
        lb, item = await moderation(request).label(
            check_image_id(image_id), user, body.label, body.note, regions
        )
    except KeyError:
        raise HTTPException(404, "no verdict for this image") from None
    except ItemLocked as exc:
        raise HTTPException(409, str(exc)) from None
    except FeedbackUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
    return LabelOut(label=lb, item=item_out(item))


@router.post(
    "/items/{image_id}/label/undo",
    response_model=UndoOut,
    summary="Undo your last label (moderator), within a minute: a retraction goes to the feedback topic",
    responses={
        404: {"description": "nothing to undo: your last label is not on this image, or is too old"},
        503: {"description": "broker down (nothing changed; retry)"},
        **BODY_RESPONSES,
    },
)
async def post_undo(request: Request, image_id: str, user: Moderator) -> UndoOut:
    try:
        retraction, restored, item = await moderation(request).undo(check_image_id(image_id), user)
    except NothingToUndo as exc:
        raise HTTPException(404, str(exc)) from None
    except FeedbackUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
    return UndoOut(retraction=retraction, restored=restored, item=item_out(item) if item else None)


@router.post(
    "/items/{image_id}/lock",
    response_model=LockOut,
    summary="Take or renew the item's lock (moderator): others see that you have it open",
    responses={
        404: {"description": "no verdict for this image"},
        409: {"model": LockOut, "description": "another moderator has it open (the body says who)"},
        **BODY_RESPONSES,
    },
)
async def post_lock(request: Request, image_id: str, user: Moderator, token: LockToken = "") -> Response:
    mod = moderation(request)
    if not await mod.store.exists(check_image_id(image_id)):
        raise HTTPException(404, "no verdict for this image")
    out = lock_out(await mod.locks.acquire(image_id, user.name, token), user)
    return JSONResponse(out.model_dump(mode="json"), status_code=200 if out.mine else 409)


@router.delete(
    "/items/{image_id}/lock",
    status_code=204,
    response_class=Response,
    summary="Give the item's lock back (moderator); nothing changes when you do not hold it",
    responses={404: {"description": "not an image id"}, **BODY_RESPONSES},
)
async def delete_lock(request: Request, image_id: str, user: Moderator, token: LockToken = "") -> Response:
    await moderation(request).locks.release(check_image_id(image_id), user.name, token)
    return Response(status_code=204)


@router.get(
    "/items/{image_id}/metadata",
    response_model=MetadataOut,
    summary="Every metadata field of the image (EXIF, XMP, IPTC, PNG text), the ones that spoke marked",
    responses={404: {"description": "no such image"}},
)
async def get_metadata(request: Request, image_id: str, user: Viewer) -> MetadataOut:
    item = await moderation(request).store.item(check_image_id(image_id))
    if item is None or item.event is None:
        raise HTTPException(404, "no such image")
    provenance = item.verdict.provenance or item.event.provenance
    try:
        md = await asyncio.get_running_loop().run_in_executor(
            None, metadata_of, item.event.blob_uri, provenance
        )
    except BlobNotFound:
        raise HTTPException(404, "the image's blob is gone") from None
    return MetadataOut(image_id=image_id, **_plain(md))


def _plain(md: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(md)  # type: ignore[no-any-return]


@router.get(
    "/search",
    response_model=SearchOut,
    summary="Search every judged image by id, source, account, caption, date and labels, newest first",
)
async def get_search(
    request: Request,
    user: Viewer,
    q: Annotated[
        str,
        Query(
            max_length=200,
            description="an image id prefix (4+ hex digits), or words in caption, account or URL",
        ),
    ] = "",
    source: Source | None = None,
    account: Annotated[str, Query(max_length=200, description="part of the author's name")] = "",
    caption: Annotated[str, Query(max_length=200, description="part of the caption")] = "",
    label: Annotated[VerdictLabel | None, Query(description="the verdict's final label")] = None,
    human_label: Annotated[
        HumanFilter | None,
        Query(description="none: no moderator label; any: labeled; or a moderator's label"),
    ] = None,
    since: Annotated[
        Instant | None, Query(description="decided at or after (ISO 8601; UTC if no zone)")
    ] = None,
    until: Annotated[
        Instant | None, Query(description="decided at or before (ISO 8601; UTC if no zone)")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 25,
) -> SearchOut:
    mod = moderation(request)
    query = SearchQuery(
        q=q,
        source=source or "",
        account=account,
        caption=caption,
        label=label or "",
        human_label=human_label or "",
        since=_unix(since),
        until=_unix(until),
    )
    page = await search(mod.redis, mod.settings.redis_prefix, query, offset=offset, limit=limit)
    held = await mod.locks.holders([h.image_id for h in page.hits])
    return SearchOut(
        hits=[
            SearchHitOut(
                **{**vars(h), "locked_by": held[h.image_id].holder if h.image_id in held else None},
                url=f"/api/items/{h.image_id}",
            )
            for h in page.hits
        ],
        total=page.total,
        scanned=page.scanned,
        truncated=page.truncated,
        offset=offset,
        limit=limit,
        next_offset=offset + limit if offset + limit < page.total else None,
    )


def _unix(t: datetime | None) -> float | None:
    """Unix seconds, without the overflow ``timestamp()`` meets near year 1 or 9999 with an offset."""
    if t is None:
        return None
    offset = t.utcoffset()
    seconds = (t.replace(tzinfo=None) - datetime(1970, 1, 1)).total_seconds()
    return seconds - (offset.total_seconds() if offset else 0.0)


@router.post(
    "/items/{image_id}/explain",
    response_model=ExplanationOut,
    summary="The explanation of the verdict, generated now when missing (moderator)",
    responses={
        404: {"description": "no verdict for this image"},
        503: {"description": "cannot explain"},
        **BODY_RESPONSES,
    },
)
async def post_explain(request: Request, image_id: str, user: Moderator) -> ExplanationOut:
    try:
        text = await moderation(request).explainer.explain(check_image_id(image_id))
    except KeyError:
        raise HTTPException(404, "no verdict for this image") from None
    except ExplainUnavailable as exc:
        raise HTTPException(503, f"no explanation: {exc}") from None
    return ExplanationOut(image_id=image_id, explanation=text)


@router.post(
    "/uploads",
    response_model=UploadOut,
    status_code=202,
    summary="Upload an image (moderator): the same ETL and stream as collected images",
    responses={
        200: {"model": UploadOut, "description": "the verdict arrived within `wait` seconds"},
        202: {"model": UploadOut, "description": "accepted; poll GET /api/items/{image_id}"},
        **BODY_RESPONSES,
        413: {"description": "larger than the download limit"},
        422: {"description": "not a usable image (the detail says why)"},
        503: {"description": "the upload worker stopped during this upload (nothing published; retry)"},
    },
)
async def post_upload(
    request: Request,
    user: Moderator,
    file: Annotated[
        UploadFile,
        File(
            description="the image: JPEG, PNG, GIF, WebP, TIFF or BMP bytes (not empty)",
            json_schema_extra={"minLength": 1},
        ),
    ],
    caption: Annotated[str, Form(max_length=MAX_CAPTION)] = "",
    source_url: Annotated[str, Form(max_length=MAX_SOURCE_URL, description="where the image was seen")] = "",
    wait: Annotated[float, Query(ge=0, le=300, description="seconds to wait for the verdict")] = 0.0,
) -> Response:
    mod = moderation(request)
    limit = mod.settings.max_download_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"image larger than {limit} bytes")
    try:
        result = await mod.uploader.upload(data, user.name, caption, source_url)
    except UploadRejected as exc:
        raise HTTPException(422, f"not a usable image: {exc}") from None
    except UploadUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
    poll = f"/api/items/{result.image_id}"
    item = await mod.wait_for_item(result.image_id, wait) if wait else await mod.store.item(result.image_id)
    out = UploadOut(
        image_id=result.image_id,
        status="done" if item else "pending",
        outcome=result.outcome,  # type: ignore[arg-type]
        poll=poll,
        item=item_out(item) if item else None,
    )
    return JSONResponse(
        out.model_dump(mode="json"), status_code=200 if item else 202, headers={"Location": poll}
    )


@router.get(
    "/stats",
    summary="Throughput, queue size, agreement between moderators and with the model",
    description=f"Counted at most once every {STATS_TTL_S:g} seconds per service process: the figures "
    "may be that old (`generated_at`, unix seconds, says when they were counted).",
)
async def get_stats(request: Request, user: Viewer) -> dict[str, Any]:
    mod = moderation(request)
    # agreement.between_moderators.per_moderator: each moderator against the others on the images
    # both labeled; second_review_share: the share of queued items that go to a second moderator
    return {**await mod.stats.get(), "second_review_share": mod.settings.review_second_share}


@router.get("/audit", summary="The audit log, newest first (admin)")
async def get_audit(
    request: Request,
    user: Admin,
    count: Annotated[int, Query(ge=1, le=1000)] = 100,
    image_id: str | None = None,
) -> list[dict[str, str]]:
    return await moderation(request).store.audit(count, image_id)


@router.get("/users", response_model=list[UserOut], summary="Users and their roles (admin)")
async def get_users(request: Request, user: Admin) -> list[UserOut]:
    return [
        UserOut(name=u.name, role=u.role, created_at=u.created_at)
        for u in await moderation(request).users.list()
    ]


@router.post(
    "/users",
    response_model=NewUserOut,
    status_code=201,
    summary="Create a user (admin); the response holds its API token, shown once",
    responses={409: {"description": "the user exists"}, **BODY_RESPONSES},
)
async def post_user(request: Request, body: UserIn, user: Admin) -> NewUserOut:
    mod = moderation(request)
    try:
        token = await mod.users.add(body.name, body.role)
    except AuthError as exc:
        raise HTTPException(409, str(exc)) from None
    await mod.redis.xadd(
        Keys(mod.settings.redis_prefix).audit(),
        {
            "action": "user_add",
            "user": body.name,
            "role": body.role,
            "by": user.name,
            "at": datetime.now().timestamp(),
        },
    )
    created = await mod.users.get(body.name)
    assert created is not None
    return NewUserOut(name=created.name, role=created.role, created_at=created.created_at, token=token)


__all__ = ["GATE_CREDENTIAL", "ROLES", "SESSION_COOKIE", "GateCredential", "authenticate", "router"]
