"""RSS 2.0, RSS 1.0 (RDF) and Atom feeds: images from enclosures, ``media:content`` /
``media:thumbnail`` and ``<img>`` tags in the entry's HTML (description, ``content:encoded``, Atom
content/summary).

Feeds are parsed with defusedxml (no entity expansion, no external entities). A feed with bytes that
are not valid in its declared encoding is decoded with replacement characters and parsed again, so a
broken caption costs a few U+FFFD characters rather than the whole feed. Conditional GET (ETag,
Last-Modified) saves re-downloading unchanged feeds; the cursor keeps the ids of entries already
handled per feed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin
from xml.etree.ElementTree import Element, ParseError

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from ingest.collectors.base import Collector
from ingest.collectors.html import find_images
from ingest.fetcher import FetchError
from ingest.pipeline import RawItem

log = logging.getLogger(__name__)

IMAGE_EXT = re.compile(r"\.(jpe?g|png|gif|webp|tiff?|bmp)(\?|#|$)", re.I)


@dataclass
class FeedEntry:
    entry_id: str
    link: str
    title: str
    author: str | None
    published: datetime | None
    images: list[str] = field(default_factory=list)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _text(el: Element | None) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""


def _child(el: Element, *names: str) -> Element | None:
    for c in el:
        if _local(c.tag) in names:
            return c
    return None


def _date(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None


def parse_xml(body: bytes) -> Element:
    """Parse a feed; re-decode with replacement characters when its bytes are not valid text."""
    try:
        return SafeET.fromstring(body)
    except DefusedXmlException as exc:
        raise FetchError(f"feed refused: {type(exc).__name__} (entity tricks are not parsed)") from None
    except ParseError as first:
        text = body.decode("utf-8", errors="replace")
        text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)  # drop the (now wrong) encoding
        try:
            return SafeET.fromstring(text.encode("utf-8"))
        except (ParseError, DefusedXmlException):
            raise FetchError(f"not a parseable feed: {first}") from None


def parse_feed(body: bytes, feed_url: str) -> list[FeedEntry]:
    root = parse_xml(body)
    entries: list[FeedEntry] = []
    for el in root.iter():
        if _local(el.tag) not in ("item", "entry"):
            continue
        link = ""
        for c in el:
            if _local(c.tag) == "link":
                href = c.get("href")
                if href is None:  # RSS: <link>url</link>
                    link = link or _text(c)
                elif c.get("rel", "alternate") == "alternate":
                    link = link or href
        link = urljoin(feed_url, link) if link else ""
        guid = _text(_child(el, "guid", "id"))
        title = _text(_child(el, "title"))
        author_el = _child(el, "author", "creator")
        author = (_text(_child(author_el, "name")) or _text(author_el)) if author_el is not None else None
        published = _date(_text(_child(el, "pubdate", "published", "updated", "date")))
        images: list[str] = []
        thumbs: list[str] = []
        for c in el.iter():
            name = _local(c.tag)
            ctype = (c.get("type") or "").lower()
            if name == "enclosure" or (name == "link" and c.get("rel") == "enclosure"):
                url = c.get("url") or c.get("href") or ""
                if ctype.startswith("image/") or (not ctype and IMAGE_EXT.search(url)):
                    images.append(url)
            elif name == "content" and c.get("url"):  # media:content
                medium = (c.get("medium") or "").lower()
                if medium == "image" or ctype.startswith("image/") or (not medium and not ctype):
                    images.append(c.get("url", ""))
            elif name == "thumbnail" and c.get("url"):  # media:thumbnail: only when nothing better
                thumbs.append(c.get("url", ""))
            elif name in ("description", "encoded", "content", "summary") and not c.get("url"):
                html = c.text or ""
                if "<" in html:
                    images.extend(u for u, _ in find_images(html).urls(link or feed_url))
        images = images or thumbs
        absolute = list(dict.fromkeys(urljoin(link or feed_url, u.strip()) for u in images if u.strip()))
        entries.append(FeedEntry(guid or link or title, link or feed_url, title, author, published, absolute))
    return entries


class RssCollector(Collector):
    name = "rss"

    def __init__(self, *args: Any, feeds: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feeds = feeds
        self.cursor.setdefault("http", {})

    def poll(self) -> Iterator[RawItem]:
        assert self.fetcher is not None
        for feed_url in self.feeds:
            cached = self.cursor["http"].get(feed_url, {})
            headers = {
                "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"
            }
            if cached.get("etag"):
                headers["If-None-Match"] = cached["etag"]
            if cached.get("last_modified"):
                headers["If-Modified-Since"] = cached["last_modified"]
            try:
                resp = self.fetcher.get(feed_url, headers=headers)
                if resp.status == 304:
                    continue
                if resp.status >= 400:
                    raise FetchError(f"HTTP {resp.status} from {feed_url}")
                entries = parse_feed(resp.body, resp.url)
            except FetchError as exc:  # one broken feed must not stop the others
                self.stats["source_errors"] += 1
                log.error("rss: feed %s skipped: %s", feed_url, exc.reason)
                continue
            for entry in entries:
                if self.was_seen(feed_url, entry.entry_id):
                    continue
                for i, url in enumerate(entry.images):
                    item_id = f"{entry.entry_id}#{i}"
                    if self.handled(item_id):
                        continue
                    yield self.image_item(
                        url,
                        source="rss",
                        source_item_id=item_id,
                        author=entry.author,
                        posted_at=entry.published,
                        text=entry.title,
                    )
                self.remember(feed_url, entry.entry_id)
            self.cursor["http"][feed_url] = {
                "etag": resp.headers.get("etag"),
                "last_modified": resp.headers.get("last-modified"),
            }
