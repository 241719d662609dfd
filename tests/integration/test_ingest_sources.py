"""Each collector, as a real ``misinfo collect <source> --once`` process, against a local server that
answers like the source's API (Reddit through the real praw client), publishing to the real broker.
A second pass publishes nothing new (cursor: since_id, seen ids, conditional GET)."""

from __future__ import annotations

import json

import pytest

from core.contracts.images import ImageEvent
from core.keys import Keys
from tests.conftest import run_cli
from tests.integration.ingest_support import apis, images
from tests.integration.ingest_support.apis import reddit_post
from tests.integration.ingest_support.server import LocalServer, Reply
from tests.integration.ingest_support.topics import read_topic

pytestmark = pytest.mark.integration


def summary(proc) -> dict[str, int]:  # type: ignore[no-untyped-def]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def events(settings, n: int) -> dict[str, ImageEvent]:  # type: ignore[no-untyped-def]
    out = {}
    for record in read_topic(settings.kafka_bootstrap, settings.topic_images, n):
        ev = ImageEvent.parse(record.value)
        assert record.key.decode() == ev.image_id
        out[ev.source_item_id] = ev
    assert len(out) == n
    return out


def test_reddit_new_and_rising_with_galleries_and_crossposts_through_praw(settings):
    with LocalServer() as srv:
        urls = apis.serve_images(srv, {"r1": 21, "g1": 22, "g2": 23, "r3": 24, "bad": 25})
        srv.route("/media/bad", Reply(200, images.HTML, content_type="image/jpeg"))
        image_post = reddit_post("a1", "a photo", url=urls["r1"], post_hint="image", domain="i.redd.it")
        gallery = reddit_post(
            "a2",
            "a gallery",
            url="https://www.reddit.com/gallery/a2",
            is_gallery=True,
            gallery_data={"items": [{"media_id": "m2", "id": 2}, {"media_id": "m1", "id": 1}]},
            media_metadata={
                "m1": {
                    "status": "valid",
                    "e": "Image",
                    "m": "image/jpg",
                    "s": {"u": urls["g1"] + "?a=1&amp;b=2", "x": 200, "y": 160},
                },
                "m2": {
                    "status": "valid",
                    "e": "Image",
                    "m": "image/jpg",
                    "s": {"u": urls["g2"], "x": 200, "y": 160},
                },
            },
        )
        text_post = reddit_post(
            "a3", "just words", url="https://www.reddit.com/r/pics/comments/a3/", is_self=True
        )
        crosspost = reddit_post(
            "a4",
            "look at this",
            url="/r/other/comments/z9/",
            crosspost_parent="t3_z9",
            crosspost_parent_list=[reddit_post("z9", "orig", url=urls["r1"], post_hint="image")["data"]],
        )
        broken = reddit_post("a5", "broken", url=urls["bad"], post_hint="image")
        rising = reddit_post("b1", "rising", url=urls["r3"], post_hint="image")
        apis.install_reddit(
            srv,
            {"/r/pics/new": [image_post, gallery, text_post, crosspost, broken], "/r/pics/rising": [rising]},
        )
        env = {
            "MISINFO_REDDIT_CLIENT_ID": "app-id",
            "MISINFO_REDDIT_CLIENT_SECRET": "app-secret",
            "MISINFO_REDDIT_OAUTH_URL": srv.base,
            "MISINFO_REDDIT_URL": srv.base,
            "MISINFO_FETCH_ALLOW": f"127.0.0.1:{srv.port}",
        }
        first = summary(run_cli(settings, "collect", "reddit", "pics", "--once", **env))
        # image post, 2 gallery images, crosspost (same image as a1: a duplicate sighting), broken
        assert first == {"seen": 5, "published": 3, "duplicates": 1, "dead_letters": 1}
        again = summary(run_cli(settings, "collect", "reddit", "pics", "--once", **env))
        assert again == {"seen": 0, "published": 0, "duplicates": 0, "dead_letters": 0}
        rising_run = summary(
            run_cli(settings, "collect", "reddit", "pics", "--sort", "rising", "--once", **env)
        )
        assert rising_run == {"seen": 1, "published": 1, "duplicates": 0, "dead_letters": 0}
        assert all(
            r.headers.get("authorization") == f"bearer {apis.REDDIT_TOKEN}" for r in srv.hits("/r/pics/new")
        )

    evs = events(settings, 4)
    assert set(evs) == {"t3_a1", "t3_a2/m2", "t3_a2/m1", "t3_b1"}
    assert evs["t3_a1"].source == "reddit" and evs["t3_a1"].author == "poster"
    assert evs["t3_a1"].source_url == "https://www.reddit.com/r/pics/comments/a1/x/"
    import redis

    r = redis.Redis.from_url(settings.redis_url)
    reach = r.smembers(Keys(settings.redis_prefix).sightings(evs["t3_a1"].image_id))
    assert reach == {b"reddit:t3_a1", b"reddit:t3_a4"}  # the crosspost counts as a sighting


def test_x_search_and_timeline_pages_since_id_and_rate_limit(settings):
    with LocalServer() as srv:
        urls = apis.serve_images(srv, {"x5": 31, "x4": 32, "x2a": 33, "x2b": 34})
        state = apis.install_x(srv, urls, rate_limit_first=True)
        env = {
            "MISINFO_X_BEARER_TOKEN": apis.X_TOKEN,
            "MISINFO_X_API_URL": srv.base,
            "MISINFO_FETCH_ALLOW": f"127.0.0.1:{srv.port}",
        }
        first = summary(
            run_cli(
                settings, "collect", "x", "--query", "cats has:images", "--user", "alice", "--once", **env
            )
        )
        # search: 4 images; alice's timeline lists tweet 5 again: the same post, handled once per pass
        assert first == {"seen": 4, "published": 4, "duplicates": 0, "dead_letters": 0}
        assert len(srv.hits("/2/users/42/tweets")) == 1
        assert state["rate_limited"] == 1
        search_calls = srv.hits("/2/tweets/search/recent")
        assert [c.arg("next_token") for c in search_calls] == [None, None, "2"]  # 429, then 2 pages
        again = summary(
            run_cli(
                settings, "collect", "x", "--query", "cats has:images", "--user", "alice", "--once", **env
            )
        )
        assert again == {"seen": 0, "published": 0, "duplicates": 0, "dead_letters": 0}
        assert srv.hits("/2/tweets/search/recent")[-1].arg("since_id") == "1900000000000000005"
        assert srv.hits("/2/users/42/tweets")[-1].arg("since_id") == "1900000000000000005"
    evs = events(settings, 4)
    assert set(evs) == {
        "1900000000000000005/3_5",
        "1900000000000000004/7_4",
        "1900000000000000002/3_2a",
        "1900000000000000002/3_2b",
    }
    ev = evs["1900000000000000005/3_5"]
    assert (ev.source, ev.author, ev.text) == ("x", "alice", "five")
    assert ev.source_url == "https://x.com/alice/status/1900000000000000005"


def test_instagram_hashtag_and_account_media_with_paging(settings):
    with LocalServer() as srv:
        urls = apis.serve_images(srv, {"h3": 41, "h2": 42, "c1": 43, "c2": 44, "h1": 45, "a1": 46})
        apis.install_instagram(srv, urls)
        env = {
            "MISINFO_INSTAGRAM_ACCESS_TOKEN": apis.IG_TOKEN,
            "MISINFO_INSTAGRAM_GRAPH_URL": srv.base,
            "MISINFO_INSTAGRAM_USER_ID": "17841",
            "MISINFO_FETCH_ALLOW": f"127.0.0.1:{srv.port}",
        }
        args = ("collect", "instagram", "--hashtag", "#cats", "--account", "17841", "--once")
        first = summary(run_cli(settings, *args, **env))
        assert first == {"seen": 5, "published": 5, "duplicates": 0, "dead_letters": 0}
        assert [r.arg("after") for r in srv.hits("/v21.0/17843/recent_media")] == [None, "2"]
        assert all("access_token" not in r.query for r in srv.requests)  # the token travels in a header
        again = summary(run_cli(settings, *args, **env))
        assert again == {"seen": 0, "published": 0, "duplicates": 0, "dead_letters": 0}
        assert len(srv.hits("/v21.0/ig_hashtag_search")) == 1  # the hashtag id is kept in the cursor
        bad = run_cli(settings, *args, **{**env, "MISINFO_INSTAGRAM_ACCESS_TOKEN": "wrong-token"})
        assert bad.returncode == 1 and "Invalid OAuth access token" in bad.stderr
        assert "wrong-token" not in bad.stderr
    evs = events(settings, 5)
    assert set(evs) == {"h3", "h2/c1", "h2/c2", "h1", "a1"}
    assert evs["a1"].author == "newsroom" and evs["h2/c1"].source_url == "https://www.instagram.com/p/h2/"


def test_web_page_and_atom_feed(settings):
    with LocalServer() as srv:
        urls = apis.serve_images(srv, {"og": 51, "body": 52, "big": 53, "side": 54, "atom": 55})
        page = f"""<!doctype html><html><head><title>News</title>
            <meta property="og:image" content="{urls["og"]}"><base href="/media/"></head>
            <body><img src="side"><article><p>story</p><img src="body" alt="the scene">
            <img srcset="side 320w, big 1280w" src="side"><img src="data:image/png;base64,AAAA"></article></body></html>"""
        srv.route("/news/story.html", Reply(200, page.encode(), content_type="text/html; charset=utf-8"))
        atom = f"""<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"
            xmlns:media="http://search.yahoo.com/mrss/"><title>f</title>
            <entry><id>tag:e1</id><title>entry one</title><link href="{srv.url("/e1")}"/><updated>2026-10-01T10:00:00Z</updated>
              <author><name>reporter</name></author><media:content url="{urls["atom"]}" medium="image"/></entry>
            <entry><id>tag:e2</id><title>entry two</title><link href="{srv.url("/e2")}"/>
              <content type="html">&lt;p&gt;x&lt;img src="{urls["og"]}"&gt;&lt;/p&gt;</content></entry></feed>"""
        srv.route(
            "/feed.atom",
            Reply(200, atom.encode(), headers={"ETag": '"v1"'}, content_type="application/atom+xml"),
        )
        env = {"MISINFO_FETCH_ALLOW": f"127.0.0.1:{srv.port}"}
        web = summary(run_cli(settings, "collect", "web", srv.url("/news/story.html"), "--once", **env))
        assert web == {
            "seen": 3,
            "published": 3,
            "duplicates": 0,
            "dead_letters": 0,
        }  # og, body, big (article only)
        feed = summary(run_cli(settings, "collect", "rss", srv.url("/feed.atom"), "--once", **env))
        assert feed == {"seen": 2, "published": 1, "duplicates": 1, "dead_letters": 0}
        again = summary(run_cli(settings, "collect", "rss", srv.url("/feed.atom"), "--once", **env))
        assert again["seen"] == 0
        assert srv.hits("/feed.atom")[-1].headers.get("if-none-match") == '"v1"'
    evs = events(settings, 4)
    by_url = {e.source_item_id.split(" ", 1)[-1]: e for e in evs.values() if e.source == "web"}
    assert set(by_url) == {urls["og"], urls["body"], urls["big"]}
    assert by_url[urls["body"]].text == "News — the scene"
    atom_ev = next(e for e in evs.values() if e.source == "rss")
    assert (atom_ev.source_item_id, atom_ev.author, atom_ev.text) == ("tag:e1#0", "reporter", "entry one")
