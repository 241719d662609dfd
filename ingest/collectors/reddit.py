"""Reddit through praw: subreddits by new, hot or rising; image posts, galleries and crossposts.

Credentials (an app's client id and secret, application-only OAuth) come from the settings. praw's
``oauth_url`` / ``reddit_url`` point it at another server (the tests' local one). A crosspost's image
lives in its parent: it is fetched from there but recorded as a sighting of the crosspost, so reach
counts both. Listings other than ``new`` are not chronological, so the cursor keeps the ids of posts
already handled per subreddit and listing rather than a ``before`` marker.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ingest.collectors.base import Collector, SourceError
from ingest.fetcher import TransientFetchError, retry_after_s
from ingest.pipeline import RawItem

log = logging.getLogger(__name__)

SORTS = ("new", "hot", "rising")
IMAGE_DOMAINS = ("i.redd.it", "i.imgur.com", "preview.redd.it")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")


def make_reddit(
    client_id: str, client_secret: str, user_agent: str, oauth_url: str, reddit_url: str, timeout_s: float
) -> Any:
    import praw

    return praw.Reddit(
        client_id=client_id,
        client_secret=client_secret,
        user_agent=user_agent,
        oauth_url=oauth_url,
        reddit_url=reddit_url,
        check_for_updates=False,
        check_for_async=False,
        timeout=timeout_s,  # type: ignore[arg-type]  # praw passes it on to requests
    )


def post_images(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(image key, URL) for the images a post shows; a crosspost's come from its parent."""
    parents = data.get("crosspost_parent_list") or []
    if parents:
        data = parents[0]
    if data.get("is_gallery") and data.get("media_metadata"):
        out = []
        items = (data.get("gallery_data") or {}).get("items") or []
        order = [i["media_id"] for i in items if "media_id" in i] or list(data["media_metadata"])
        for media_id in order:
            meta = data["media_metadata"].get(media_id) or {}
            if meta.get("status") != "valid" or meta.get("e") not in ("Image", "AnimatedImage"):
                continue
            source = meta.get("s") or {}
            url = source.get("u") or source.get("gif")
            if url:
                out.append((media_id, html.unescape(url)))
        return out
    url = data.get("url_overridden_by_dest") or data.get("url") or ""
    host = url.split("/")[2] if url.count("/") >= 2 else ""
    path = url.split("?", 1)[0].lower()
    if data.get("post_hint") == "image" or host in IMAGE_DOMAINS or path.endswith(IMAGE_SUFFIXES):
        return [("", html.unescape(url))]
    return []


class RedditCollector(Collector):
    name = "reddit"

    def __init__(
        self,
        *args: Any,
        reddit: Any,
        subreddits: list[str],
        sort: str = "new",
        limit: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        self.reddit = reddit
        self.subreddits = subreddits
        self.sort = sort
        self.limit = limit

    def poll(self) -> Iterator[RawItem]:
        for sub in self.subreddits:
            listing = f"{sub}/{self.sort}"
            for post in self._listing(sub):
                data = {k: v for k, v in vars(post).items() if not k.startswith("_")}
                post_id = f"t3_{data.get('id')}"
                if self.was_seen(listing, post_id):
                    continue
                author = data.get("author")
                created = data.get("created_utc")
                link = "https://www.reddit.com" + data["permalink"] if data.get("permalink") else None
                for key, url in post_images(data):
                    item_id = f"{post_id}/{key}" if key else post_id
                    if self.handled(item_id):
                        continue
                    yield self.image_item(
                        url,
                        link,
                        source="reddit",
                        source_item_id=item_id,
                        author=str(author) if author else None,
                        posted_at=datetime.fromtimestamp(float(created), UTC) if created else None,
                        text=data.get("title") or "",
                    )
                self.remember(listing, post_id)

    def _listing(self, sub: str) -> Iterator[Any]:
        import prawcore

        try:
            yield from getattr(self.reddit.subreddit(sub), self.sort)(limit=self.limit)
        except prawcore.exceptions.TooManyRequests as exc:
            headers = {k.lower(): v for k, v in exc.response.headers.items()}
            raise TransientFetchError("Reddit: HTTP 429", retry_after_s(headers), status=429) from None
        except (prawcore.exceptions.ServerError, prawcore.exceptions.RequestException) as exc:
            raise TransientFetchError(f"Reddit: {exc}") from None
        except (prawcore.exceptions.ResponseException, prawcore.exceptions.OAuthException) as exc:
            raise SourceError(f"Reddit refused r/{sub}/{self.sort}: {exc}") from None
