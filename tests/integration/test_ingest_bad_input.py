"""Every bad input of the issue, served by a local host through an RSS feed, through the real fetcher,
ETL, dedup and the real embedded broker: each ends as a published event, a duplicate or a dead letter
whose reason says what was wrong; the collector survives; published + duplicates + dead letters =
inputs, and the topics hold exactly that."""

from __future__ import annotations

import dataclasses
import json
from xml.sax.saxutils import escape

import pytest

from core.contracts.images import DeadLetter, ImageEvent
from ingest.cli import collector_kwargs
from ingest.collectors.base import Backoff
from ingest.collectors.rss import RssCollector
from tests.integration.ingest_support import images
from tests.integration.ingest_support.server import LocalServer, Reply, endless
from tests.integration.ingest_support.topics import read_topic

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def test_bad_inputs_end_published_duplicate_or_dead_lettered(settings, tmp_path):
    with LocalServer() as srv, LocalServer() as internal:
        internal.route("/admin", Reply(200, images.jpeg(99), content_type="image/jpeg"))
        jpeg = images.jpeg(1)
        # name -> (reply, expected outcome, what the dead letter's reason must say)
        cases: dict[str, tuple[Reply, str, str]] = {
            "plain.jpg": (Reply(200, jpeg, content_type="image/jpeg"), "published", ""),
            "same-again.jpg": (Reply(200, jpeg, content_type="image/jpeg"), "duplicate", ""),
            "truncated.jpg": (
                Reply(200, jpeg[: len(jpeg) // 2], content_type="image/jpeg"),
                "dead",
                "truncated",
            ),
            "truncated.png": (Reply(200, images.png()[:300], content_type="image/png"), "dead", "PNG"),
            "zero.jpg": (Reply(200, b"", content_type="image/jpeg"), "dead", "empty body (0 bytes)"),
            "page.jpg": (
                Reply(200, images.HTML, content_type="image/jpeg"),
                "dead",
                "content is HTML, not an image (served as image/jpeg)",
            ),
            "vector.svg": (Reply(200, images.SVG, content_type="image/svg+xml"), "dead", "SVG"),
            "bomb.png": (
                Reply(200, images.png_bomb_header(), content_type="image/png"),
                "dead",
                "decompression bomb",
            ),
            "anim.gif": (Reply(200, images.animated_gif(), content_type="image/gif"), "published", ""),
            "cmyk.jpg": (Reply(200, images.cmyk_jpeg(), content_type="image/jpeg"), "published", ""),
            "deep.png": (Reply(200, images.png_16bit(), content_type="image/png"), "published", ""),
            "alpha.png": (Reply(200, images.png_alpha(), content_type="image/png"), "published", ""),
            "rotated.jpg": (
                Reply(200, images.exif_rotated_jpeg(), content_type="image/jpeg"),
                "published",
                "",
            ),
            "photo.webp": (Reply(200, images.webp(), content_type="image/webp"), "published", ""),
            "scan.tiff": (Reply(200, images.tiff(), content_type="image/tiff"), "published", ""),
            "caption.jpg": (Reply(200, images.jpeg(11), content_type="image/jpeg"), "published", ""),
            "near.jpg": (Reply(200, images.jpeg(1, quality=60), content_type="image/jpeg"), "published", ""),
            "huge.jpg": (Reply(200, endless(50 * MB), content_type="image/jpeg"), "dead", "cap"),
            "stall.jpg": (Reply(200, srv.stall(jpeg[:100]), content_type="image/jpeg"), "dead", "stalled"),
            "metadata": (
                Reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
                "dead",
                "169.254.169.254 is not globally reachable (link-local)",
            ),
            "loopback": (
                Reply(302, headers={"Location": internal.url("/admin")}),
                "dead",
                "127.0.0.1 is not globally reachable (loopback)",
            ),
        }
        for name, (reply, _, _) in cases.items():
            srv.route(f"/img/{name}", reply)
        items = []
        for name in cases:
            title = escape(f"post {name}").encode()
            if name == "caption.jpg":
                title = b"caf\xe9 \xff\xfe broken caption"  # not valid UTF-8 in a UTF-8 feed
            items.append(
                b"<item><guid>"
                + name.encode()
                + b"</guid><title>"
                + title
                + b"</title>"
                + f'<enclosure url="{srv.url("/img/" + name)}" type="image/jpeg" length="1"/>'.encode()
                + b"</item>"
            )
        feed = (
            b'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>'
            + b"".join(items)
            + b"</channel></rss>"
        )
        srv.route("/feed.xml", Reply(200, feed, content_type="application/rss+xml"))

        s = dataclasses.replace(
            settings,
            fetch_allow=f"127.0.0.1:{srv.port}",  # our host only: the "internal" one stays refused
            fetch_read_timeout_s=0.5,
            max_download_bytes=5 * MB,
        )
        kwargs = collector_kwargs(s, "rss", "bad-input")
        kwargs["backoff"] = Backoff(base_s=0.01, max_s=0.05)
        collector = RssCollector(**kwargs, feeds=[srv.url("/feed.xml")])
        outcomes: dict[str, str] = {}
        counts = collector.run_once(
            on_item=lambda item, outcome: outcomes.__setitem__(item.source_item_id, outcome)
        )
        collector.ingestor.publisher.close()

    n = len(cases)
    assert counts["seen"] == n
    assert counts["published"] + counts["duplicates"] + counts["dead_letters"] == n
    expected = {name: ("dead_letter" if want == "dead" else want) for name, (_, want, _) in cases.items()}
    assert {k.split("#")[0]: v for k, v in outcomes.items()} == expected
    assert internal.hits("/admin") == []  # the guard never connected to the refused address

    events = {
        e.source_item_id.split("#")[0]: e
        for e in (
            ImageEvent.parse(r.value)
            for r in read_topic(s.kafka_bootstrap, s.topic_images, counts["published"])
        )
    }
    letters = [
        DeadLetter.parse(r.value)
        for r in read_topic(s.kafka_bootstrap, s.topic_dead_letters, counts["dead_letters"])
    ]
    assert len(events) == counts["published"] == sum(v == "published" for v in expected.values())
    assert len(letters) == counts["dead_letters"]
    by_item = {letter.event["source_item_id"].split("#")[0]: letter for letter in letters}
    for name, (_, want, reason) in cases.items():
        if want == "dead":
            assert reason in by_item[name].reason, (name, by_item[name].reason)
    assert by_item["page.jpg"].stage == "fetch" and by_item["bomb.png"].stage == "etl"

    assert (events["rotated.jpg"].width, events["rotated.jpg"].height) == (240, 320)  # EXIF applied
    assert events["anim.gif"].mime == "image/gif" and events["deep.png"].mime == "image/png"
    assert events["photo.webp"].mime == "image/webp" and events["scan.tiff"].mime == "image/tiff"
    assert "\ufffd" in events["caption.jpg"].text and "broken caption" in events["caption.jpg"].text
    assert events["near.jpg"].near_duplicate_of == events["plain.jpg"].image_id
    assert events["plain.jpg"].near_duplicate_of is None
    json.dumps([e.to_dict() for e in events.values()])  # every event serializes
