"""The pages' own static files under ``/static`` (scripts too long to inline). Only the names listed
are served; a ``<script>`` loading one carries the page's CSP nonce like an inline one."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

STATIC = Path(__file__).parent / "static"
SERVED = {"review.js": "text/javascript; charset=utf-8"}  # name -> media type

router = APIRouter(prefix="/static", include_in_schema=False)


@router.get("/{name}")
async def asset(name: str) -> Response:
    if name not in SERVED:
        raise HTTPException(404, "no such file")
    return FileResponse(STATIC / name, media_type=SERVED[name], headers={"Cache-Control": "no-cache"})
