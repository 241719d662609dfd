"""Swagger UI at ``/api/docs``, served from this service: the assets come from the pinned
``fastapi-offline`` package (Swagger UI 5, no CDN), and the page gets the same security headers
as every other page (its two scripts carry the request's CSP nonce)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from moderation.pages import env

ASSETS = Path(str(files("fastapi_offline") / "static"))
SERVED = {  # name -> media type; nothing else under the package is reachable
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}

router = APIRouter(prefix="/api/docs", include_in_schema=False)


@router.get("")
async def swagger_ui(request: Request) -> Response:
    return HTMLResponse(env.get_template("apidocs.jinja").render(nonce=request.state.nonce))


@router.get("/{name}")
async def asset(name: str) -> Response:
    if name not in SERVED:
        raise HTTPException(404, "no such file")
    return FileResponse(
        ASSETS / name, media_type=SERVED[name], headers={"Cache-Control": "public, max-age=86400"}
    )
