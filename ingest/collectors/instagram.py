"""Instagram Graph API: hashtag recent media and business accounts' media, with an access token and
paging cursors.

Calls go to ``{graph_url}/{version}/...`` with the token in the ``Authorization`` header (never in a
URL, so it cannot leak into logs or dead letters); pages are followed with ``paging.cursors.after``
against our own base URL rather than the ``next`` link the server hands back. Hashtag ids are looked
up once (``ig_hashtag_search``) and kept in the cursor. Listings are newest first and have no
``since``: the cursor keeps the media ids already handled per listing, and paging stops at the first
page with nothing new. Carousels yield each child; videos and reels their thumbnail.
Graph errors 4, 17, 32, 613 and 80001-80009 mean "rate limited": the pass backs off and resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ingest.collectors.base import Collector, SourceError
from ingest.fetcher import TransientFetchError, retry_after_s
from ingest.pipeline import RawItem

log = logging.getLogger(__name__)

CHILDREN = "children{id,media_type,media_url,thumbnail_url}"
HASHTAG_FIELDS = f"id,caption,media_type,media_url,permalink,timestamp,{CHILDREN}"
ACCOUNT_FIELDS = f"id,caption,media_type,media_url,thumbnail_url,permalink,timestamp,username,{CHILDREN}"
RATE_LIMIT_CODES = {4, 17, 32, 613} | set(range(80001, 80010))


def _ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None


def media_images(media: dict[str, Any]) -> list[tuple[str, str]]:
    """(item id, URL) for each image of a media object."""
    kind = media.get("media_type")
    if kind == "CAROUSEL_ALBUM":
        out = []
        for child in (media.get("children") or {}).get("data") or []:
            url = child.get("media_url") if child.get("media_type") == "IMAGE" else child.get("thumbnail_url")
            if url:
                out.append((f"{media.get('id')}/{child.get('id')}", url))
        return out
    url = media.get("media_url") if kind == "IMAGE" else media.get("thumbnail_url")
    return [(str(media.get("id")), url)] if url else []


class InstagramCollector(Collector):
    name = "instagram"

    def __init__(
        self,
        *args: Any,
        graph_url: str,
        api_version: str,
        access_token: Any,
        user_id: str,
        hashtags: list[str] = (),  # type: ignore[assignment]
        accounts: list[str] = (),  # type: ignore[assignment]
        page_size: int = 50,
        max_pages: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        token = access_token.reveal() if hasattr(access_token, "reveal") else str(access_token)
        if not token:
            raise SourceError("Instagram needs an access token (MISINFO_INSTAGRAM_ACCESS_TOKEN)")
        if hashtags and not user_id:
            raise SourceError("hashtag search needs the calling business account (MISINFO_INSTAGRAM_USER_ID)")
        self.base = f"{graph_url.rstrip('/')}/{api_version}"
        self._headers = {"Authorization": f"Bearer {token}"}
        self.user_id = user_id
        self.hashtags = [h.lstrip("#") for h in hashtags]
        self.accounts = list(accounts)
        self.page_size = page_size
        self.max_pages = max_pages
        self.cursor.setdefault("hashtag_ids", {})

    def __repr__(self) -> str:  # never the token
        return (
            f"InstagramCollector(base={self.base!r}, hashtags={self.hashtags!r}, accounts={self.accounts!r})"
        )

    def poll(self) -> Iterator[RawItem]:
        for tag in self.hashtags:
            hashtag_id = self._hashtag_id(tag)
            params = {"user_id": self.user_id, "fields": HASHTAG_FIELDS}
            yield from self._listing(f"hashtag:{tag}", f"{self.base}/{hashtag_id}/recent_media", params)
        for account in self.accounts:
            yield from self._listing(
                f"account:{account}", f"{self.base}/{account}/media", {"fields": ACCOUNT_FIELDS}
            )

    def _graph(self, url: str, params: dict[str, Any]) -> Any:
        resp = self.fetcher.get(url, params, self._headers)  # type: ignore[union-attr]
        doc = resp.json() if resp.body else {}
        error = doc.get("error") if isinstance(doc, dict) else None
        if error:
            code = error.get("code")
            if code in RATE_LIMIT_CODES:
                raise TransientFetchError(
                    f"Instagram rate limit (code {code}): {error.get('message')}",
                    retry_after_s(resp.headers) or 60.0,
                    status=429,
                )
            raise SourceError(f"Instagram API error {code} ({error.get('type')}): {error.get('message')}")
        if resp.status >= 400:
            raise SourceError(f"Instagram API answered HTTP {resp.status}")
        return doc

    def _hashtag_id(self, tag: str) -> str:
        cached = self.cursor["hashtag_ids"].get(tag)
        if cached:
            return str(cached)
        doc = self._graph(f"{self.base}/ig_hashtag_search", {"user_id": self.user_id, "q": tag})
        ids = [d.get("id") for d in doc.get("data") or [] if d.get("id")]
        if not ids:
            raise SourceError(f"Instagram knows no hashtag #{tag}")
        self.cursor["hashtag_ids"][tag] = ids[0]
        return str(ids[0])

    def _listing(self, key: str, url: str, params: dict[str, Any]) -> Iterator[RawItem]:
        after: str | None = None
        for _page in range(self.max_pages):
            doc = self._graph(url, {**params, "limit": self.page_size, **({"after": after} if after else {})})
            new = 0
            for media in doc.get("data") or []:
                media_id = str(media.get("id"))
                if self.was_seen(key, media_id):
                    continue
                new += 1
                for item_id, image_url in media_images(media):
                    if self.handled(item_id):
                        continue
                    yield self.image_item(
                        image_url,
                        media.get("permalink"),
                        source="instagram",
                        source_item_id=item_id,
                        author=media.get("username"),
                        posted_at=_ts(media.get("timestamp")),
                        text=media.get("caption") or "",
                    )
                self.remember(key, media_id)
            paging = doc.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not new or not after or not paging.get("next"):
                break
