"""The review service's forensic tools against the real broker and Redis: item locks between two
moderators, regions on labels, undo (the retraction on the feedback topic, Redis put back, the retrain
watcher's counts and the dataset built from a topic replay honouring it), search, and the metadata
panel on an exiftool-written file. The app runs in-process (httpx's ASGI transport)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from core.contracts.base import utcnow
from core.contracts.images import ImageEvent
from core.contracts.verdicts import Label, Verdict
from core.keys import Keys
from ingest.blobs import open_blob_store, sha256_hex
from ingest.etl import prepare
from ingest.provenance import ProvenanceConfig
from misinfo import provenance_samples as ps
from misinfo.samples import scene
from moderation.app import create_app
from moderation.search import SearchQuery, search
from moderation.service import Moderation
from tests.integration.test_moderation_api import add_user, app_client, bearer, consume, make_pair, seed
from tests.integration.test_moderation_pages import csrf_of, login
from trainer.dataset import labels_from_topic
from trainer.watcher import FeedbackHandler

pytestmark = pytest.mark.integration

BOX = {"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.25}


def authored(pair: tuple[ImageEvent, Verdict], author: str) -> tuple[ImageEvent, Verdict]:
    event, verdict = pair
    return event.model_copy(update={"author": author}), verdict


async def test_a_lock_keeps_a_second_moderator_off_and_the_next_item_skips_it(settings):
    ids = await seed(settings, [make_pair(settings, 501, fake=0.95), make_pair(settings, 502, fake=0.6)])
    maria, omar = add_user(settings, "maria", "moderator"), add_user(settings, "omar", "moderator")
    async with app_client(settings) as c:
        r = await c.post(f"/api/items/{ids[0]}/lock", headers=bearer(maria))
        assert r.status_code == 200 and r.json()["mine"] and r.json()["holder"] == "maria"
        r = await c.post(f"/api/items/{ids[0]}/lock", headers=bearer(omar))
        assert r.status_code == 409 and r.json() | {"expires_at": 0} == {
            "image_id": ids[0],
            "holder": "maria",
            "mine": False,
            "expires_at": 0,
            "renew_every_s": 30,
        }
        assert (await c.get(f"/api/items/{ids[0]}", headers=bearer(omar))).json()["lock"]["holder"] == "maria"
        queue = (await c.get("/api/queue", headers=bearer(omar))).json()["entries"]
        assert [(e["image_id"], e["locked_by"]) for e in queue] == [(ids[0], "maria"), (ids[1], None)]
        r = await c.post(f"/api/items/{ids[0]}/label", json={"label": "authentic"}, headers=bearer(omar))
        assert r.status_code == 409 and "maria has this item open" in r.json()["detail"]

        # Pages: omar's "next item" passes over maria's, and her item page tells him who has it.
        await login(c, "omar", omar)
        assert (await c.get("/next")).headers["location"] == f"/items/{ids[1]}"
        page = (await c.get(f"/items/{ids[0]}")).text
        assert "<strong>maria</strong> has this item open" in page
        assert re.search(r'id="label-manipulated"[^>]*disabled', page)

        # A label gives the lock back; a release names its page view's token.
        r = await c.post(f"/api/items/{ids[0]}/label", json={"label": "manipulated"}, headers=bearer(maria))
        assert r.status_code == 200
        taken = await c.post(f"/api/items/{ids[0]}/lock?token=view1", headers=bearer(omar))
        assert taken.status_code == 200 and taken.json()["mine"]
        assert (
            await c.delete(f"/api/items/{ids[0]}/lock?token=old", headers=bearer(omar))
        ).status_code == 204
        assert (await c.get(f"/api/items/{ids[0]}", headers=bearer(maria))).json()["lock"]["holder"] == "omar"
        assert (
            await c.delete(f"/api/items/{ids[0]}/lock?token=view1", headers=bearer(omar))
        ).status_code == 204
        assert (await c.get(f"/api/items/{ids[0]}", headers=bearer(maria))).json()["lock"] is None


async def test_regions_travel_with_the_label_and_undo_is_honoured_downstream(settings):
    pairs = [
        make_pair(settings, 511, fake=0.95),
        make_pair(settings, 512, fake=0.8),
        make_pair(settings, 513),
    ]
    ids = await seed(settings, pairs)
    token = add_user(settings, "maria", "moderator")
    async with app_client(settings) as c:
        before = (await c.get(f"/api/items/{ids[0]}", headers=bearer(token))).json()["priority"]
        over_the_edge = {"x": 0.8, "y": 0.9, "w": 0.5, "h": 0.5}  # cut at the image's edges
        r = await c.post(
            f"/api/items/{ids[0]}/label",
            json={"label": "manipulated", "note": "sky spliced", "regions": [BOX, over_the_edge]},
            headers=bearer(token),
        )
        assert r.status_code == 200, r.text
        regions = r.json()["label"]["regions"]
        assert regions[0] == BOX and regions[1] == pytest.approx({"x": 0.8, "y": 0.9, "w": 0.2, "h": 0.1})
        assert not r.json()["item"]["in_queue"]
        bad = await c.post(
            f"/api/items/{ids[1]}/label", json={"label": "authentic", "regions": [BOX]}, headers=bearer(token)
        )
        assert bad.status_code == 422

        undo = await c.post(f"/api/items/{ids[0]}/label/undo", headers=bearer(token))
        assert undo.status_code == 200, undo.text
        body = undo.json()
        assert body["retraction"]["retracted_at"] and body["restored"] is None
        assert body["item"]["labels"] == [] and body["item"]["in_queue"]
        assert body["item"]["priority"] == pytest.approx(before)  # back where it was
        again = await c.post(f"/api/items/{ids[0]}/label/undo", headers=bearer(token))
        assert again.status_code == 404 and "nothing to undo" in again.json()["detail"]

        # Undoing a change of mind brings the earlier label back.
        for label in ("synthesized", "authentic"):
            r = await c.post(f"/api/items/{ids[1]}/label", json={"label": label}, headers=bearer(token))
            assert r.status_code == 200
        undo = (await c.post(f"/api/items/{ids[1]}/label/undo", headers=bearer(token))).json()
        assert undo["restored"]["label"] == "synthesized"
        assert [lb["label"] for lb in undo["item"]["labels"]] == ["synthesized"]
        # Only the last label may be undone: ids[1]'s ticket is spent, ids[2] was never labeled.
        assert (await c.post(f"/api/items/{ids[2]}/label/undo", headers=bearer(token))).status_code == 404
        r = await c.post(
            f"/api/items/{ids[2]}/label",
            json={"label": "synthesized", "regions": [BOX]},
            headers=bearer(token),
        )
        assert r.status_code == 200
        audit = (await c.get("/api/audit", headers=bearer(add_user(settings, "root", "admin")))).json()
        assert [a["action"] for a in audit if a["action"] in ("label", "undo")][:3] == [
            "label",
            "undo",
            "label",
        ]

    # The feedback topic (keyed by image, so in order per image): 4 labels and 2 retractions, each
    # retraction right after the label it repeats.
    msgs = [Label.parse(v) for _, v in consume(settings, settings.topic_feedback, 6)]
    per_image = {i: [(m.label, m.is_retraction) for m in msgs if m.image_id == i] for i in ids}
    assert per_image == {
        ids[0]: [("manipulated", False), ("manipulated", True)],
        ids[1]: [("synthesized", False), ("authentic", False), ("authentic", True)],
        ids[2]: [("synthesized", False)],
    }
    for i, m in enumerate(msgs):
        if m.is_retraction:
            withdrawn = [x for x in msgs[:i] if x.image_id == m.image_id][-1]
            assert withdrawn.identity() == m.identity() and withdrawn.regions == m.regions

    # The retrain watcher (real Redis) counts the 2 labels that stand, however often it replays.
    r = redis.Redis.from_url(settings.redis_url)
    handler = FeedbackHandler(settings, r, submitter=None)
    for m in msgs + msgs:  # a replay of everything changes nothing
        handler.handle(m.to_json())
    counters = handler.state.counters()
    assert counters.labels_total == 2 and counters.new_labels == 2
    per_class = {
        c: int(r.get(Keys(settings.redis_prefix).training("per_class", c)) or 0)
        for c in ("manipulated", "synthesized", "authentic")
    }
    assert per_class == {"manipulated": 0, "synthesized": 2, "authentic": 0}

    # The dataset from a replay of the topic: ids[0] is gone, ids[1] synthesized, ids[2] with its box.
    items = labels_from_topic(
        settings.kafka_bootstrap, settings.topic_feedback, r, settings.redis_prefix, idle_s=3
    )
    assert {(it.image_id, it.label) for it in items} == {(ids[1], "synthesized"), (ids[2], "synthesized")}
    boxed = next(it for it in items if it.image_id == ids[2])
    assert boxed.regions == [{**BOX, "moderator": "maria"}]


async def test_an_undo_after_its_window_is_refused(settings):
    (image_id,) = await seed(settings, [make_pair(settings, 521)])
    token = add_user(settings, "maria", "moderator")
    mod = Moderation(settings, aioredis.Redis.from_url(settings.redis_url), undo_window_s=0.3)
    transport = httpx.ASGITransport(app=create_app(settings, mod))
    async with httpx.AsyncClient(transport=transport, base_url="http://review.test") as c:
        r = await c.post(f"/api/items/{image_id}/label", json={"label": "manipulated"}, headers=bearer(token))
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while await mod.store.undo_ticket("maria") is not None:  # the ticket's time runs out
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        late = await c.post(f"/api/items/{image_id}/label/undo", headers=bearer(token))
        assert late.status_code == 404
        assert (await c.get(f"/api/items/{image_id}", headers=bearer(token))).json()["labels"][0][
            "label"
        ] == "manipulated"
    await mod.close()


async def test_label_regions_and_undo_through_the_pages(settings):
    ids = await seed(settings, [make_pair(settings, 531, fake=0.95), make_pair(settings, 532, fake=0.6)])
    token = add_user(settings, "maria", "moderator")
    async with app_client(settings) as c:
        await login(c, "maria", token)
        page = await c.get(f"/items/{ids[0]}")
        assert 'data-lock="mine"' in page.text and 'id="definitions"' in page.text
        assert '<script nonce="' in page.text and 'src="/static/review.js"' in page.text
        r = await c.post(
            f"/items/{ids[0]}/label",
            data={
                "label": "manipulated",
                "regions": '[{"x":0.1,"y":0.2,"w":0.3,"h":0.25}]',
                "csrf": csrf_of(page.text),
            },
        )
        assert (
            r.status_code == 303 and r.headers["location"] == f"/items/{ids[1]}?done={ids[0]}%3Amanipulated"
        )
        nxt = await c.get(r.headers["location"])
        assert f'action="/items/{ids[0]}/undo"' in nxt.text and 'id="undo"' in nxt.text
        labeled = (await c.get(f"/api/items/{ids[0]}")).json()["labels"][0]
        assert labeled["regions"] == [BOX]
        bad = await c.post(
            f"/items/{ids[1]}/label",
            data={"label": "manipulated", "regions": "[{]", "csrf": csrf_of(nxt.text)},
        )
        assert bad.status_code == 400 and "regions could not be read" in bad.text

        r = await c.post(f"/items/{ids[0]}/undo", data={"csrf": csrf_of(nxt.text)})
        assert r.status_code == 303 and r.headers["location"] == f"/items/{ids[0]}?undone=true"
        back = await c.get(r.headers["location"])
        assert 'id="undone-flash"' in back.text and "in the queue" in back.text
        again = await c.post(f"/items/{ids[0]}/undo", data={"csrf": csrf_of(back.text)})
        assert again.status_code == 404 and "Nothing to undo" in again.text
        js = await c.get("/static/review.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert (await c.get("/static/../pages.py")).status_code == 404


async def test_search_by_source_account_caption_dates_and_labels(settings):
    now = utcnow()
    pairs = [
        authored(make_pair(settings, 541, source="reddit", text="Flooded subway station"), "u/rainman"),
        authored(make_pair(settings, 542, source="x", label="synthesized", text="Pope in a puffer"), "@drip"),
        authored(
            make_pair(settings, 543, source="x", label="authentic", text="Harbour at dusk"), "@rainbird"
        ),
    ]
    for n, age in enumerate((timedelta(hours=1), timedelta(hours=2), timedelta(days=3))):
        event, verdict = pairs[n]
        pairs[n] = (event, verdict.model_copy(update={"decided_at": now - age}))
    ids = await seed(settings, pairs)
    token = add_user(settings, "maria", "moderator")
    async with app_client(settings) as c:
        await c.post(f"/api/items/{ids[1]}/label", json={"label": "synthesized"}, headers=bearer(token))

        async def found(**params: str) -> list[str]:
            r = await c.get("/api/search", params=params, headers=bearer(token))
            assert r.status_code == 200, r.text
            return [h["image_id"] for h in r.json()["hits"]]

        assert await found() == ids  # newest first: the third was judged three days ago
        assert await found(source="x") == ids[1:]
        assert await found(account="RAIN") == [ids[0], ids[2]]
        assert await found(caption="puffer") == [ids[1]]
        assert await found(q="subway flooded") == [ids[0]]
        assert await found(q=ids[2][:8]) == [ids[2]] and await found(q=ids[1]) == [ids[1]]
        assert await found(label="authentic") == [ids[2]]
        assert await found(human_label="synthesized") == [ids[1]] and await found(human_label="none") == [
            ids[0],
            ids[2],
        ]
        day = (now - timedelta(days=2)).isoformat()
        assert await found(since=day) == ids[:2] and await found(until=day) == [ids[2]]
        assert (
            await c.get("/api/search", params={"since": "yesterday"}, headers=bearer(token))
        ).status_code == 422
        hit = (await c.get("/api/search", params={"source": "x"}, headers=bearer(token))).json()["hits"][0]
        assert hit["human_labels"] == ["synthesized"] and hit["author"] == "@drip" and not hit["in_queue"]

        await login(c, "maria", token)
        page = await c.get(
            "/search", params={"account": "rain", "since": (now - timedelta(days=5)).date().isoformat()}
        )
        assert page.status_code == 200 and page.text.count('<tr data-image-id="') == 2
        assert "2 matches (3 verdicts looked at, newest first)" in page.text
        assert (await c.get("/search", params={"since": "3/4/2026"})).status_code == 422

    # The walk stops where it is told to, and says so.
    r = aioredis.Redis.from_url(settings.redis_url)
    try:
        page = await search(r, settings.redis_prefix, SearchQuery(), max_scan=2)
        assert (page.scanned, page.total, page.truncated) == (2, 2, True)
    finally:
        await r.aclose()


@pytest.mark.skipif(not ps.exiftool_available(), reason="exiftool is not installed")
async def test_the_metadata_panel_lists_every_field_and_marks_those_that_spoke(settings):
    data = ps.exiftool(
        ps.jpeg(scene(7, (320, 240))),
        "-EXIF:Software=Midjourney v6.1",
        "-EXIF:Make=Canon",
        "-XMP-dc:Description=<script>alert(1)</script>",
        "-IPTC:Keywords=harbour",
    )
    prepared = prepare(data, 10_000_000, ProvenanceConfig())
    assert prepared.provenance is not None
    uri = open_blob_store(settings.blob_root).put(data)
    pair = make_pair(settings, 551)
    event = pair[0].model_copy(
        update={
            "image_id": sha256_hex(data),
            "blob_uri": uri,
            "width": 320,
            "height": 240,
            "mime": "image/jpeg",
            "provenance": prepared.provenance,
        }
    )
    verdict = pair[1].model_copy(update={"image_id": event.image_id, "provenance": prepared.provenance})
    (image_id,) = await seed(settings, [(event, verdict)])
    token = add_user(settings, "vera", "viewer")
    async with app_client(settings) as c:
        md = (await c.get(f"/api/items/{image_id}/metadata", headers=bearer(token))).json()
        assert (md["format"], md["width"], md["height"]) == ("JPEG", 320, 240)
        fields = {(s["name"], f["key"]): f for s in md["sections"] for f in s["fields"]}
        assert fields[("EXIF", "Software")]["spoke"] and not fields[("EXIF", "Make")]["spoke"]
        assert fields[("XMP", "dc:description")]["value"] == "<script>alert(1)</script>"
        assert fields[("IPTC", "Keywords")]["value"] == "harbour"
        assert (await c.get(f"/api/items/{'0' * 64}/metadata", headers=bearer(token))).status_code == 404
        await login(c, "vera", token)
        page = (await c.get(f"/items/{image_id}")).text
        assert 'id="metadata"' in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert re.search(r'<tr class="spoke"><td class="mono">Software<span class="badge">spoke', page)
        assert 'href="#metadata"' in page  # the provenance card points at every field
        assert 'id="label-form"' not in page and 'data-lock=""' in page  # a viewer takes no lock
