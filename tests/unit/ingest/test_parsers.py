"""Source-format parsing: feeds, HTML pages, Reddit posts, Instagram media, captions."""

from __future__ import annotations

from ingest.collectors.html import find_images
from ingest.collectors.instagram import media_images
from ingest.collectors.reddit import post_images
from ingest.collectors.rss import parse_feed
from ingest.pipeline import clean_text

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>c</title>
<item><guid>g1</guid><title>one</title><link>https://news.example/a</link>
  <enclosure url="https://cdn.example/1.jpg" type="image/jpeg" length="10"/>
  <enclosure url="https://cdn.example/1.mp3" type="audio/mpeg" length="10"/></item>
<item><guid>g2</guid><title>two</title><link>https://news.example/b</link>
  <media:group><media:content url="https://cdn.example/2.jpg" medium="image"/></media:group>
  <media:thumbnail url="https://cdn.example/2-thumb.jpg"/></item>
<item><guid>g3</guid><title>three</title><link>https://news.example/c</link>
  <content:encoded><![CDATA[<p><img src="/img/3.png"> <img src="data:image/gif;base64,R0"></p>]]></content:encoded></item>
<item><guid>g4</guid><title>four</title><media:thumbnail url="https://cdn.example/4-thumb.jpg"/></item>
</channel></rss>"""


def test_rss_enclosures_media_content_and_body_images():
    entries = {e.entry_id: e for e in parse_feed(RSS, "https://news.example/feed")}
    assert entries["g1"].images == ["https://cdn.example/1.jpg"]
    assert entries["g2"].images == ["https://cdn.example/2.jpg"]  # the thumbnail only when nothing better
    assert entries["g3"].images == ["https://news.example/img/3.png"]
    assert entries["g4"].images == ["https://cdn.example/4-thumb.jpg"]


def test_feed_with_invalid_utf8_is_still_read():
    feed = b'<?xml version="1.0" encoding="UTF-8"?><rss><channel><item><guid>x</guid><title>caf\xe9</title></item></channel></rss>'
    (entry,) = parse_feed(feed, "https://f.example/")
    assert entry.title == "caf\ufffd"


def test_feed_entity_expansion_is_refused():
    import pytest

    from ingest.fetcher import FetchError

    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><rss><channel><item><title>&b;</title></item></channel></rss>'
    with pytest.raises(FetchError, match="entity"):
        parse_feed(bomb, "https://f.example/")


def test_page_images_prefer_article_and_meta():
    page = find_images(
        '<html><head><meta property="og:image" content="/og.jpg"><title>T</title></head><body>'
        '<img src="/nav.png"><article><img srcset="/s.jpg 320w, /l.jpg 1024w" src="/s.jpg" alt="A"></article>'
    )
    assert page.urls("https://site.example/story") == [
        ("https://site.example/og.jpg", ""),
        ("https://site.example/l.jpg", "A"),
    ]
    assert page.title == "T"
    assert find_images("<img src=x><<<>>\x00 broken").urls("https://s.example/") == [
        ("https://s.example/x", "")
    ]


def test_reddit_post_kinds():
    assert post_images({"url": "https://i.redd.it/a.jpg"}) == [("", "https://i.redd.it/a.jpg")]
    assert post_images({"url": "https://news.example/story", "is_self": False}) == []
    gallery = {
        "is_gallery": True,
        "gallery_data": {"items": [{"media_id": "b"}, {"media_id": "a"}, {"media_id": "c"}]},
        "media_metadata": {
            "a": {"status": "valid", "e": "Image", "s": {"u": "https://preview.redd.it/a.jpg?x=1&amp;y=2"}},
            "b": {"status": "valid", "e": "AnimatedImage", "s": {"gif": "https://i.redd.it/b.gif"}},
            "c": {"status": "failed"},
        },
    }
    assert post_images(gallery) == [
        ("b", "https://i.redd.it/b.gif"),
        ("a", "https://preview.redd.it/a.jpg?x=1&y=2"),
    ]
    assert post_images(
        {"url": "/r/x/comments/1", "crosspost_parent_list": [{"url": "https://i.imgur.com/z.png"}]}
    ) == [("", "https://i.imgur.com/z.png")]


def test_instagram_media_kinds():
    assert media_images({"id": "1", "media_type": "IMAGE", "media_url": "u1"}) == [("1", "u1")]
    assert media_images({"id": "2", "media_type": "VIDEO", "media_url": "v.mp4", "thumbnail_url": "t2"}) == [
        ("2", "t2")
    ]
    album = {
        "id": "3",
        "media_type": "CAROUSEL_ALBUM",
        "children": {"data": [{"id": "a", "media_type": "IMAGE", "media_url": "ua"}]},
    }
    assert media_images(album) == [("3/a", "ua")]


def test_captions_never_fail():
    assert clean_text(b"caf\xe9") == "caf\ufffd"
    assert clean_text("name-\udce9") == "name-\ufffd"  # a non-UTF-8 file name (surrogate escape)
    assert clean_text("lone \ud800 surrogate") == "lone \ufffd\ufffd\ufffd surrogate"
    assert clean_text("a\x00b\tc") == "ab\tc"
    assert len(clean_text("x" * 50_000)) == 10_000
