"""Image references in HTML: ``og:image`` / ``twitter:image`` meta tags, ``<link rel=image_src>``,
``<img src>`` (and the largest ``srcset`` candidate), preferring images inside ``<article>`` when the
page has one. Used for web pages and for the HTML bodies of feed entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

META_IMAGE = {"og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src"}


def _largest_srcset(srcset: str) -> str | None:
    best: tuple[float, str] | None = None
    for part in srcset.split(","):
        bits = part.strip().split()
        if not bits:
            continue
        size = 1.0
        if len(bits) > 1 and bits[1][:-1].replace(".", "", 1).isdigit():
            size = float(bits[1][:-1])
        if best is None or size > best[0]:
            best = (size, bits[0])
    return best[1] if best else None


@dataclass
class PageImages:
    title: str = ""
    meta_images: list[str] = field(default_factory=list)
    article_images: list[tuple[str, str]] = field(default_factory=list)  # (url, alt)
    body_images: list[tuple[str, str]] = field(default_factory=list)
    base: str | None = None

    def urls(self, page_url: str) -> list[tuple[str, str]]:
        """(absolute URL, alt text) in order of importance, without repeats; only http(s)."""
        base = urljoin(page_url, self.base) if self.base else page_url
        body = self.article_images or self.body_images
        out: dict[str, str] = {}
        for url, alt in [(u, "") for u in self.meta_images] + body:
            absolute = urljoin(base, url.strip())
            if absolute.startswith(("http://", "https://")) and absolute not in out:
                out[absolute] = alt
        return list(out.items())


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = PageImages()
        self._article_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "article":
            self._article_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "base" and a.get("href") and self.page.base is None:
            self.page.base = a["href"]
        elif tag == "meta":
            key = (a.get("property") or a.get("name") or "").lower()
            if key in META_IMAGE and a.get("content"):
                self.page.meta_images.append(a["content"])
            elif key == "og:title" and a.get("content") and not self.page.title:
                self.page.title = a["content"]
        elif tag == "link" and "image_src" in a.get("rel", "").lower().split() and a.get("href"):
            self.page.meta_images.append(a["href"])
        elif tag == "img":
            src = _largest_srcset(a["srcset"]) if a.get("srcset") else None
            src = src or a.get("src") or a.get("data-src")
            if src and not src.startswith("data:"):
                target = self.page.article_images if self._article_depth else self.page.body_images
                target.append((src, a.get("alt", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "article" and self._article_depth:
            self._article_depth -= 1
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title and not self.page.title:
            self.page.title = data.strip()


def find_images(html: str) -> PageImages:
    """Parse ``html`` (never raises on malformed markup) and return what it references."""
    parser = _Parser()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser's last-resort failures on garbage
        pass
    return parser.page
