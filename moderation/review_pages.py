"""The forensic pages beside the queue: search over every judged image, and the undo form.

Search filters by id or words (caption, account, URL), source, account, caption, decision date, the
verdict's label and the moderators' labels (see :mod:`moderation.search` for how far back it looks).
Undo withdraws the user's last label within the undo window (see :meth:`Moderation.undo`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from core.contracts.images import Source
from moderation.api import MAX_OFFSET, check_image_id, moderation
from moderation.label_producer import FeedbackUnavailable
from moderation.pages import form_auth, page_auth, render
from moderation.search import HUMAN_FILTERS, SearchQuery, search
from moderation.service import NothingToUndo

SOURCES: tuple[str, ...] = Source.__args__  # type: ignore[attr-defined]
DATE = Query(pattern=r"^(|\d{4}-\d{2}-\d{2})$", description="YYYY-MM-DD (UTC)")
TEXT = Query(max_length=200)

router = APIRouter(include_in_schema=False)


def _day(value: str, end: bool = False) -> float | None:
    """A date's first (or, with ``end``, last) instant in UTC; '' -> None."""
    if not value:
        return None
    start = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    return (start + timedelta(days=1)).timestamp() - 0.001 if end else start.timestamp()


@router.post("/items/{image_id}/undo")
async def undo_form(request: Request, image_id: str) -> Response:
    user, session, _ = await form_auth(request, "moderator")
    try:
        await moderation(request).undo(check_image_id(image_id), user)
    except NothingToUndo as exc:
        message = str(exc)[0].upper() + str(exc)[1:] + "."
        return render(request, "error.jinja", status=404, user=user, csrf=session.csrf, message=message)
    except FeedbackUnavailable as exc:
        message = f"The label was not undone: {exc}. Go back and try again."
        return render(request, "error.jinja", status=503, user=user, csrf=session.csrf, message=message)
    return RedirectResponse(f"/items/{image_id}?undone=true", status_code=303)


@router.get("/search")
async def search_page(
    request: Request,
    q: Annotated[str, TEXT] = "",
    source: Annotated[str, Query(pattern="^(|" + "|".join(SOURCES) + ")$")] = "",
    account: Annotated[str, TEXT] = "",
    caption: Annotated[str, TEXT] = "",
    label: Annotated[str, Query(pattern="^(|authentic|manipulated|synthesized|uncertain)$")] = "",
    human_label: Annotated[str, Query(pattern="^(|" + "|".join(HUMAN_FILTERS) + ")$")] = "",
    since: Annotated[str, DATE] = "",
    until: Annotated[str, DATE] = "",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 25,
) -> Response:
    user, session = await page_auth(request)
    mod = moderation(request)
    filters = {
        k: v
        for k, v in {
            "q": q.strip(),
            "source": source,
            "account": account.strip(),
            "caption": caption.strip(),
            "label": label,
            "human_label": human_label,
            "since": since,
            "until": until,
        }.items()
        if v
    }
    query = SearchQuery(
        q=q.strip(),
        source=source,
        account=account.strip(),
        caption=caption.strip(),
        label=label,
        human_label=human_label,
        since=_day(since),
        until=_day(until, end=True),
    )
    page = await search(mod.redis, mod.settings.redis_prefix, query, offset=offset, limit=limit)
    held = await mod.locks.holders([h.image_id for h in page.hits])
    for h in page.hits:
        h.locked_by = held[h.image_id].holder if h.image_id in held else None

    def link(o: int) -> str:
        return "/search?" + urlencode({**filters, "offset": o, "limit": limit})

    return render(
        request,
        "search.jinja",
        user=user,
        csrf=session.csrf,
        page=page,
        filters=filters,
        sources=SOURCES,
        human_filters=HUMAN_FILTERS,
        prev_url=link(max(0, offset - limit)) if offset > 0 else None,
        next_url=link(offset + limit) if offset + limit < page.total else None,
    )
