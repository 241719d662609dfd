"""The moderation API against the real broker and Redis: every 401 and 403, the queue (order, paging,
filters), labels onto the feedback topic (and out of the queue, for good), two moderators'
disagreement, uploads through ingest, stats, users made by the real `misinfo users` CLI.

The app runs in-process (httpx's ASGI transport); Redis, the broker, the blob store and the
ingest pipeline are real. Verdict records are written the way the worker writes them (RedisSink).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from core.config import Settings
from core.contracts.base import utcnow
from core.contracts.images import ImageEvent
from core.contracts.verdicts import Label, Verdict
from core.kafka import replay_consumer
from core.keys import Keys
from ingest.blobs import open_blob_store, sha256_hex
from ingest.etl import prepare
from misinfo.samples import scene
from moderation.app import create_app
from moderation.service import Moderation
from stream_workers.sinks import RedisSink
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

LABELS = ("authentic", "manipulated", "synthesized")


# -- seeding: what the worker would have written ---------------------------------------------------
def image_bytes(seed: int, size: tuple[int, int] = (96, 72)) -> bytes:
    buf = io.BytesIO()
    scene(seed, size).save(buf, "PNG")
    return buf.getvalue()


def make_pair(
    settings: Settings,
    seed: int,
    *,
    label: str = "manipulated",
    fake: float = 0.7,
    source: str = "folder",
    model_version: str = "1",
    text: str = "",
    size: tuple[int, int] = (96, 72),
) -> tuple[ImageEvent, Verdict]:
    data = image_bytes(seed, size)
    prepared = prepare(data, 10_000_000)
    uri = open_blob_store(settings.blob_root).put(data)
    image_id = sha256_hex(data)
    rest = 1.0 - fake
    scores = {
        "authentic": round(rest, 6),
        "manipulated": round(fake / 2, 6),
        "synthesized": round(fake / 2, 6),
    }
    if label == "authentic":
        scores = {"authentic": 0.9, "manipulated": 0.05, "synthesized": 0.05}
    event = ImageEvent(
        image_id=image_id,
        blob_uri=uri,
        source=source,  # type: ignore[arg-type]
        source_item_id=f"item-{seed}",
        source_url=f"https://example.org/post/{seed}",
        author="someone",
        posted_at=utcnow() - timedelta(hours=2),
        collected_at=utcnow(),
        width=prepared.width,
        height=prepared.height,
        mime=prepared.mime,
        phash=prepared.phash,
        text=text or f"caption {seed}",
    )
    verdict = Verdict(
        image_id=image_id,
        label=label,  # type: ignore[arg-type]
        scores=scores,
        model_name="misinfo-detector",
        model_version=model_version,
        profile_id="default",
        latency_ms=12.0,
        flagged=label != "authentic",
    )
    return event, verdict


async def seed(settings: Settings, pairs: list[tuple[ImageEvent, Verdict]]) -> list[str]:
    """Write what ingest (the sighting) and the worker (the verdict record) would have written."""
    r = aioredis.Redis.from_url(settings.redis_url)
    try:
        for event, _ in pairs:
            await r.sadd(
                Keys(settings.redis_prefix).sightings(event.image_id),
                f"{event.source}:{event.source_item_id}",
            )
        await RedisSink(r, settings.redis_prefix).write(pairs)
    finally:
        await r.aclose()
    return [e.image_id for e, _ in pairs]


def add_user(settings: Settings, name: str, role: str) -> str:
    """Create a user with the real CLI; the token is the last line of its output."""
    out = run_cli(settings, "users", "add", name, "--role", role)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def consume(settings: Settings, topic: str, n: int, timeout_s: float = 20) -> list[tuple[bytes, bytes]]:
    consumer = replay_consumer(settings.kafka_bootstrap, topic, idle_s=timeout_s)
    out = []
    try:
        for msg in consumer:
            out.append((msg.key, msg.value))
            if len(out) >= n:
                break
    finally:
        consumer.close()
    return out


@contextlib.asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app on real Redis and broker, reached through httpx's ASGI transport."""
    # A long first backoff step: the rate-limit test must not outlast it on a slow machine.
    mod = Moderation(settings, aioredis.Redis.from_url(settings.redis_url), login_backoff_base_s=60)
    app = create_app(settings, mod)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://review.test") as c:
        c.app = app  # type: ignore[attr-defined]
        yield c
    await mod.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as c:
        yield c


@pytest.fixture
def tokens(settings: Settings) -> dict[str, str]:
    return {role: add_user(settings, f"{role}-1", role) for role in ("viewer", "moderator", "admin")}


# -- authentication and authorization -------------------------------------------------------------
ZERO = "0" * 64
ROUTES = [  # (method, path, minimum role)
    ("GET", "/api/queue", "viewer"),
    ("GET", f"/api/items/{ZERO}", "viewer"),
    ("GET", f"/api/items/{ZERO}/image", "viewer"),
    ("GET", "/api/stats", "viewer"),
    ("GET", "/api/search", "viewer"),
    ("GET", f"/api/items/{ZERO}/metadata", "viewer"),
    ("POST", f"/api/items/{ZERO}/label", "moderator"),
    ("POST", f"/api/items/{ZERO}/label/undo", "moderator"),
    ("POST", f"/api/items/{ZERO}/lock", "moderator"),
    ("DELETE", f"/api/items/{ZERO}/lock", "moderator"),
    ("POST", f"/api/items/{ZERO}/explain", "moderator"),
    ("POST", "/api/uploads", "moderator"),
    ("GET", "/api/audit", "admin"),
    ("GET", "/api/users", "admin"),
    ("POST", "/api/users", "admin"),
]
RANK = {"viewer": 0, "moderator": 1, "admin": 2}


async def test_every_api_route_answers_401_without_a_valid_token(client, tokens):
    for method, path, _ in ROUTES:
        for headers in (
            {},
            bearer("mdr_not-a-real-token"),
            {"Authorization": "Basic dXNlcjpwYXNz"},
            bearer(""),
        ):
            r = await client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"


async def test_every_api_route_answers_403_to_a_role_below_its_own(client, tokens):
    checked = 0
    for method, path, needed in ROUTES:
        for role, token in tokens.items():
            r = await client.request(method, path, headers=bearer(token))
            if RANK[role] < RANK[needed]:
                assert r.status_code == 403, (role, method, path, r.text)
                checked += 1
            else:  # allowed through auth: whatever the route says next, never 401/403
                assert r.status_code not in (401, 403), (role, method, path, r.text)
    assert checked == 9 + 3  # viewer: the 9 moderator and admin routes; moderator: the 3 admin ones


async def test_a_rotated_or_removed_users_token_stops_working(client, settings):
    token = add_user(settings, "rotating", "viewer")
    assert (await client.get("/api/queue", headers=bearer(token))).status_code == 200
    out = run_cli(settings, "users", "token", "rotating")
    assert out.returncode == 0, out.stderr
    new = out.stdout.strip().splitlines()[-1]
    assert (await client.get("/api/queue", headers=bearer(token))).status_code == 401
    assert (await client.get("/api/queue", headers=bearer(new))).status_code == 200
    assert run_cli(settings, "users", "remove", "rotating").returncode == 0
    assert (await client.get("/api/queue", headers=bearer(new))).status_code == 401


async def test_a_role_lowered_by_the_cli_counts_at_once(client, settings):
    """The service remembers tokens it has checked; a change by another process still counts at
    the very next request (the users epoch)."""
    token = add_user(settings, "demoted", "moderator")
    h = bearer(token)
    (image_id,) = await seed(settings, [make_pair(settings, 33)])
    for _ in range(2):  # the second one from the service's token cache
        assert (await client.post(f"/api/items/{image_id}/lock", headers=h)).status_code == 200
    assert run_cli(settings, "users", "role", "demoted", "viewer").returncode == 0
    r = await client.post(f"/api/items/{image_id}/lock", headers=h)
    assert r.status_code == 403, r.text
    assert (await client.get("/api/queue", headers=h)).status_code == 200
    assert run_cli(settings, "users", "role", "demoted", "moderator").returncode == 0
    assert (await client.post(f"/api/items/{image_id}/lock", headers=h)).status_code == 200


async def test_tokens_are_stored_only_as_digests(client, settings, tokens):
    r = aioredis.Redis.from_url(settings.redis_url)
    try:
        dump = []
        async for key in r.scan_iter(Keys(settings.redis_prefix).pattern()):
            kind = await r.type(key)
            if kind == b"hash":
                dump.append(json.dumps({k.decode(): v.decode() for k, v in (await r.hgetall(key)).items()}))
            elif kind == b"string":
                dump.append((await r.get(key)).decode())
            dump.append(key.decode())
    finally:
        await r.aclose()
    text = "\n".join(dump)
    for token in tokens.values():
        assert token not in text
        assert sha256_hex(token.encode()) in text


async def test_openapi_describes_the_api_and_its_bearer_auth(client):
    r = await client.get("/api/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    for path in (
        "/api/queue",
        "/api/items/{image_id}",
        "/api/items/{image_id}/label",
        "/api/uploads",
        "/api/stats",
    ):
        assert path in spec["paths"], path
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/queue" not in spec["paths"]  # pages are not part of the API


# -- queue ----------------------------------------------------------------------------------------
async def test_queue_is_ordered_paged_and_filtered(client, settings, tokens):
    pairs = [
        make_pair(settings, 1, fake=0.95, source="reddit", model_version="1"),
        make_pair(settings, 2, fake=0.6, source="rss", model_version="2"),
        make_pair(settings, 3, label="synthesized", fake=0.8, source="reddit", model_version="2"),
        make_pair(settings, 4, label="uncertain", fake=0.4, source="x", model_version="1"),
        make_pair(settings, 5, label="authentic", source="reddit"),  # not flagged: never queued
    ]
    await seed(settings, pairs)
    h = bearer(tokens["viewer"])
    r = (await client.get("/api/queue", headers=h)).json()
    assert r["total"] == 4
    prios = [e["priority"] for e in r["entries"]]
    assert prios == sorted(prios, reverse=True)
    assert pairs[4][0].image_id not in {e["image_id"] for e in r["entries"]}

    first = (await client.get("/api/queue?limit=3", headers=h)).json()
    second = (await client.get(f"/api/queue?limit=3&offset={first['next_offset']}", headers=h)).json()
    assert first["next_offset"] == 3 and second["next_offset"] is None
    assert [e["image_id"] for e in first["entries"] + second["entries"]] == [
        e["image_id"] for e in r["entries"]
    ]

    by_source = (await client.get("/api/queue?source=reddit", headers=h)).json()
    assert {e["image_id"] for e in by_source["entries"]} == {pairs[0][0].image_id, pairs[2][0].image_id}
    by_label = (await client.get("/api/queue?label=synthesized", headers=h)).json()
    assert [e["image_id"] for e in by_label["entries"]] == [pairs[2][0].image_id]
    by_version = (await client.get("/api/queue?model_version=2&source=reddit", headers=h)).json()
    assert [e["image_id"] for e in by_version["entries"]] == [pairs[2][0].image_id]
    paged = (await client.get("/api/queue?source=reddit&limit=1&offset=1", headers=h)).json()
    assert paged["total"] == 2 and len(paged["entries"]) == 1 and paged["next_offset"] is None
    assert (await client.get("/api/queue?label=bogus", headers=h)).status_code == 422


async def test_item_shows_verdict_event_sightings_and_image(client, settings, tokens):
    event, verdict = make_pair(settings, 11, text="a caption with <script>")
    r = aioredis.Redis.from_url(settings.redis_url)
    await r.sadd(Keys(settings.redis_prefix).sightings(event.image_id), "folder:item-11", "reddit:t3_abc")
    await r.aclose()
    await seed(settings, [(event, verdict)])
    h = bearer(tokens["viewer"])
    item = (await client.get(f"/api/items/{event.image_id}", headers=h)).json()
    assert item["verdict"]["label"] == "manipulated"
    assert item["event"]["source_url"] == event.source_url
    assert item["sightings"] == ["folder:item-11", "reddit:t3_abc"]
    assert item["in_queue"] is True and item["labels"] == [] and item["explanation"] == ""
    img = await client.get(item["image_url"], headers=h)
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert sha256_hex(img.content) == event.image_id
    assert (await client.get(f"/api/items/{'1' * 64}", headers=h)).status_code == 404
    assert (await client.get("/api/items/not-an-id", headers=h)).status_code == 404


# -- labels ---------------------------------------------------------------------------------------
async def test_a_label_goes_to_the_feedback_topic_leaves_the_queue_for_good_and_is_audited(
    client, settings, tokens
):
    pairs = [make_pair(settings, 21), make_pair(settings, 22)]
    ids = await seed(settings, pairs)
    r = await client.post(
        f"/api/items/{ids[0]}/label",
        json={"label": "synthesized", "note": "GAN artefacts in the hair"},
        headers=bearer(tokens["moderator"]),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"]["moderator_id"] == "moderator-1"
    assert body["label"]["verdict_model_version"] == "1"
    assert body["item"]["in_queue"] is False

    ((key, value),) = consume(settings, settings.topic_feedback, 1)
    assert key.decode() == ids[0]
    label = Label.parse(value)
    assert (label.label, label.moderator_id, label.note) == (
        "synthesized",
        "moderator-1",
        "GAN artefacts in the hair",
    )

    queue = (await client.get("/api/queue", headers=bearer(tokens["viewer"]))).json()
    assert [e["image_id"] for e in queue["entries"]] == [ids[1]]
    await seed(settings, pairs)  # a replay by the worker: the labeled image stays out of the queue
    queue = (await client.get("/api/queue", headers=bearer(tokens["viewer"]))).json()
    assert [e["image_id"] for e in queue["entries"]] == [ids[1]]

    audit = (await client.get("/api/audit", headers=bearer(tokens["admin"]))).json()
    entry = next(a for a in audit if a["action"] == "label")
    assert (entry["image_id"], entry["moderator"], entry["label"]) == (ids[0], "moderator-1", "synthesized")

    assert (
        await client.post(
            f"/api/items/{ids[0]}/label", json={"label": "uncertain"}, headers=bearer(tokens["moderator"])
        )
    ).status_code == 422
    assert (
        await client.post(
            f"/api/items/{'2' * 64}/label", json={"label": "authentic"}, headers=bearer(tokens["moderator"])
        )
    ).status_code == 404


async def test_two_moderators_disagreeing_are_both_kept_and_visible(client, settings, tokens):
    second = add_user(settings, "moderator-2", "moderator")
    (image_id,) = await seed(settings, [make_pair(settings, 31, label="manipulated")])
    for token, lbl in ((tokens["moderator"], "manipulated"), (second, "authentic")):
        r = await client.post(f"/api/items/{image_id}/label", json={"label": lbl}, headers=bearer(token))
        assert r.status_code == 200, r.text
    item = (await client.get(f"/api/items/{image_id}", headers=bearer(tokens["viewer"]))).json()
    assert {(lb["moderator_id"], lb["label"]) for lb in item["labels"]} == {
        ("moderator-1", "manipulated"),
        ("moderator-2", "authentic"),
    }
    assert item["disagreement"] is True
    assert len(consume(settings, settings.topic_feedback, 2)) == 2

    stats = (await client.get("/api/stats", headers=bearer(tokens["viewer"]))).json()
    between = stats["agreement"]["between_moderators"]
    assert (between["pairs"], between["agreeing_pairs"], between["images_in_dispute"]) == (1, 0, 1)
    with_model = stats["agreement"]["with_model"]
    assert (with_model["labels"], with_model["agree"], with_model["rate"]) == (2, 1, 0.5)
    assert stats["labels_per_moderator"] == {"moderator-1": 1, "moderator-2": 1}
    assert stats["labels_last_hour"] == 2 and stats["verdicts_last_hour"] == 1
    assert sum(h["labels"] for h in stats["throughput"]) == 2


# -- uploads --------------------------------------------------------------------------------------
async def test_an_upload_goes_through_ingest_and_returns_its_verdict_when_ready(client, settings, tokens):
    data = image_bytes(41)
    h = bearer(tokens["moderator"])
    files = {"file": ("photo.png", data, "image/png")}
    form = {"caption": "seen on a forum", "source_url": "https://forum.example/t/1"}
    r = await client.post("/api/uploads", files=files, data=form, headers=h)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body == {
        "image_id": sha256_hex(data),
        "status": "pending",
        "outcome": "published",
        "poll": f"/api/items/{sha256_hex(data)}",
        "item": None,
    }
    assert (await client.get(body["poll"], headers=h)).status_code == 404  # no verdict yet

    # The event is on the images topic, exactly as a collector would have published it.
    ((key, value),) = consume(settings, settings.topic_images, 1)
    event = ImageEvent.parse(value)
    assert key.decode() == event.image_id == body["image_id"]
    assert (event.source, event.author, event.text, event.source_url) == (
        "upload",
        "moderator-1",
        "seen on a forum",
        "https://forum.example/t/1",
    )

    # The same bytes again, waiting: a stand-in for the worker writes the verdict meanwhile.
    async def worker() -> None:
        _, verdict = make_pair(settings, 41)
        await asyncio.sleep(0.5)
        await seed(settings, [(event, verdict)])

    judged = asyncio.create_task(worker())
    r = await client.post("/api/uploads?wait=30", files=files, headers=h)
    await judged
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["outcome"]) == ("done", "duplicate")
    assert body["item"]["verdict"]["image_id"] == event.image_id
    assert len(body["item"]["sightings"]) == 2  # two uploads, two sightings

    bad = await client.post(
        "/api/uploads", files={"file": ("x.jpg", b"<html>no</html>", "image/jpeg")}, headers=h
    )
    assert bad.status_code == 422 and "not a usable image" in bad.json()["detail"]


async def test_an_upload_worker_that_dies_costs_one_upload_and_not_the_service(client, settings, tokens):
    h = bearer(tokens["moderator"])

    async def upload(seed: int) -> httpx.Response:
        files = {"file": ("photo.png", image_bytes(seed), "image/png")}
        return await client.post("/api/uploads", files=files, headers=h)

    assert (await upload(45)).status_code == 202
    uploader = client.app.state.moderation.uploader  # type: ignore[attr-defined]
    (pid,) = uploader.worker_pids()
    os.kill(pid, signal.SIGKILL)  # a decoder crash on hostile bytes, say
    r = await upload(46)
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    r = await upload(46)  # a new worker takes the retry
    assert r.status_code == 202, r.text
    assert r.json()["outcome"] == "published"
    assert uploader.worker_pids() != [pid]
    assert (await client.get("/api/queue", headers=h)).status_code == 200


async def test_upload_larger_than_the_limit_is_refused(client, settings, tokens):
    client.app.state.moderation.settings = dataclasses.replace(settings, max_download_bytes=1000)
    r = await client.post(
        "/api/uploads",
        files={"file": ("big.png", image_bytes(42), "image/png")},
        headers=bearer(tokens["moderator"]),
    )
    assert r.status_code == 413


# -- admin ----------------------------------------------------------------------------------------
async def test_admin_creates_a_user_whose_token_works(client, tokens):
    name = f"api-made-{uuid.uuid4().hex[:6]}"
    r = await client.post(
        "/api/users", json={"name": name, "role": "viewer"}, headers=bearer(tokens["admin"])
    )
    assert r.status_code == 201, r.text
    new = r.json()["token"]
    assert (await client.get("/api/queue", headers=bearer(new))).status_code == 200
    assert (await client.post("/api/uploads", headers=bearer(new))).status_code == 403
    again = await client.post(
        "/api/users", json={"name": name, "role": "admin"}, headers=bearer(tokens["admin"])
    )
    assert again.status_code == 409
    names = {u["name"] for u in (await client.get("/api/users", headers=bearer(tokens["admin"]))).json()}
    assert {name, "viewer-1", "moderator-1", "admin-1"} <= names


def test_users_cli_refuses_bad_input(settings):
    assert run_cli(settings, "users", "add", "x", "--role", "superuser").returncode != 0
    assert run_cli(settings, "users", "add", "bad name!", "--role", "viewer").returncode != 0
    assert run_cli(settings, "users", "token", "nobody").returncode != 0
    add_user(settings, "twice", "viewer")
    dup = run_cli(settings, "users", "add", "twice", "--role", "admin")
    assert dup.returncode != 0 and "exists" in dup.stderr
    listed = [json.loads(line) for line in run_cli(settings, "users", "list").stdout.splitlines()]
    assert {"name": "twice", "role": "viewer"}.items() <= listed[0].items()
