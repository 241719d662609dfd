"""Web pages: the images a page shows (``og:image``, ``twitter:image``, ``<img>`` in the article body or,
without an ``<article>``, the page). The cursor keeps, per page, the image URLs already handled, so a
watched page yields only what was added since."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from ingest.collectors.base import Collector
from ingest.collectors.html import find_images
from ingest.fetcher import FetchError
from ingest.pipeline import RawItem

log = logging.getLogger(__name__)


class WebCollector(Collector):
    name = "web"

    def __init__(self, *args: Any, pages: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pages = pages

    def poll(self) -> Iterator[RawItem]:
        assert self.fetcher is not None
        for page_url in self.pages:
            try:
                resp = self.fetcher.get(page_url, headers={"Accept": "text/html,application/xhtml+xml"})
                if resp.status >= 400:
                    raise FetchError(f"HTTP {resp.status} from {page_url}")
            except FetchError as exc:
                self.stats["source_errors"] += 1
                log.error("web: page %s skipped: %s", page_url, exc.reason)
                continue
            charset = resp.headers.get("content-type", "").partition("charset=")[2].strip(" \"'") or "utf-8"
            try:
                html = resp.body.decode(charset, errors="replace")
            except LookupError:
                html = resp.body.decode("utf-8", errors="replace")
            page = find_images(html)
            for url, alt in page.urls(resp.url):
                item_id = f"{page_url} {url}"
                if self.was_seen(page_url, url) or self.handled(item_id):
                    continue
                yield self.image_item(
                    url,
                    source="web",
                    source_item_id=item_id,
                    text=" — ".join(filter(None, [page.title, alt])),
                )
                self.remember(page_url, url)
