"""X API v2: recent search and user timelines, with media expansions, a bearer token, ``since_id`` and
pagination tokens.

Each listing (a query, a user) keeps its own ``since_id`` in the cursor: the newest tweet id of the
last complete pass, written only when every page of the pass was handled, so an interrupted pass
re-reads (and dedups) rather than skips. Photos are fetched by ``url``; videos and GIFs by their
``preview_image_url``. A 429 carries ``x-rate-limit-reset``, which the base's backoff honours.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from ingest.collectors.base import Collector, SourceError
from ingest.pipeline import RawItem

log = logging.getLogger(__name__)

EXPANSIONS = {
    "expansions": "attachments.media_keys,author_id",
    "media.fields": "media_key,type,url,preview_image_url,width,height",
    "tweet.fields": "id,text,created_at,author_id,attachments",
    "user.fields": "id,username",
}


class XCollector(Collector):
    name = "x"

    def __init__(
        self,
        *args: Any,
        api_url: str,
        bearer_token: Any,
        queries: list[str] = (),  # type: ignore[assignment]
        users: list[str] = (),  # type: ignore[assignment]
        max_results: int = 100,
        max_pages: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.api_url = api_url.rstrip("/")
        token = bearer_token.reveal() if hasattr(bearer_token, "reveal") else str(bearer_token)
        if not token:
            raise SourceError("X needs a bearer token (MISINFO_X_BEARER_TOKEN)")
        self._headers = {"Authorization": f"Bearer {token}"}
        self.queries = list(queries)
        self.users = list(users)
        self.max_results = max_results
        self.max_pages = max_pages
        self.cursor.setdefault("since_id", {})
        self.cursor.setdefault("user_ids", {})

    def __repr__(self) -> str:  # never the token
        return f"XCollector(api_url={self.api_url!r}, queries={self.queries!r}, users={self.users!r})"

    def poll(self) -> Iterator[RawItem]:
        for query in self.queries:
            yield from self._listing(
                f"search:{query}", "/2/tweets/search/recent", {"query": query}, "next_token"
            )
        for user in self.users:
            uid = self._user_id(user)
            yield from self._listing(f"user:{user}", f"/2/users/{uid}/tweets", {}, "pagination_token")

    def _user_id(self, username: str) -> str:
        cached = self.cursor["user_ids"].get(username)
        if cached:
            return str(cached)
        doc = self.api_json(f"{self.api_url}/2/users/by/username/{quote(username)}", headers=self._headers)
        if not isinstance(doc.get("data"), dict) or "id" not in doc["data"]:
            raise SourceError(f"X: no user {username!r}: {doc.get('errors')}")
        self.cursor["user_ids"][username] = doc["data"]["id"]
        return str(doc["data"]["id"])

    def _listing(self, key: str, path: str, params: dict[str, Any], token_param: str) -> Iterator[RawItem]:
        since = self.cursor["since_id"].get(key)
        base = {**params, **EXPANSIONS, "max_results": self.max_results}
        if since:
            base["since_id"] = since
        newest: str | None = None
        token: str | None = None
        for _page in range(self.max_pages):
            doc = self.api_json(
                self.api_url + path, {**base, **({token_param: token} if token else {})}, self._headers
            )
            if "data" not in doc and doc.get("errors"):
                raise SourceError(f"X {key}: {doc['errors']}")
            meta = doc.get("meta") or {}
            if meta.get("newest_id") and (newest is None or int(meta["newest_id"]) > int(newest)):
                newest = meta["newest_id"]
            includes = doc.get("includes") or {}
            media = {m.get("media_key"): m for m in includes.get("media") or []}
            users = {u.get("id"): u.get("username") for u in includes.get("users") or []}
            for tweet in doc.get("data") or []:
                yield from self._tweet_items(tweet, media, users)
            token = meta.get("next_token")
            if not token:
                break
        if newest and (not since or int(newest) > int(since)):
            self.cursor["since_id"][key] = newest

    def _tweet_items(
        self, tweet: dict[str, Any], media: dict[str, Any], users: dict[str, Any]
    ) -> Iterator[RawItem]:
        username = users.get(str(tweet.get("author_id")))
        tweet_id = str(tweet.get("id"))
        created = tweet.get("created_at")
        posted = datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
        link = f"https://x.com/{username or 'i'}/status/{tweet_id}"
        for media_key in (tweet.get("attachments") or {}).get("media_keys") or []:
            m = media.get(media_key) or {}
            url = m.get("url") if m.get("type") == "photo" else m.get("preview_image_url")
            item_id = f"{tweet_id}/{media_key}"
            if not url or self.handled(item_id):
                continue
            yield self.image_item(
                url,
                link,
                source="x",
                source_item_id=item_id,
                author=username,
                posted_at=posted,
                text=tweet.get("text") or "",
            )
