"""The review pages against real Redis and broker: session login (CSRF, rate limit, passwords),
the queue and item pages, labeling and skipping by form, uploads by form, stats, logout."""

from __future__ import annotations

import re

import httpx
import pytest

from ingest.blobs import sha256_hex
from tests.conftest import run_cli
from tests.integration.test_moderation_api import add_user, app_client, image_bytes, make_pair, seed

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(settings):  # type: ignore[no-untyped-def]
    async with app_client(settings) as c:
        yield c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)


async def login(c: httpx.AsyncClient, name: str, secret: str, next_url: str = "/queue") -> httpx.Response:
    page = await c.get("/login")
    return await c.post(
        "/login", data={"name": name, "secret": secret, "next": next_url, "csrf": csrf_of(page.text)}
    )


async def test_pages_need_a_session_and_login_sets_one(client, settings):
    r = await client.get("/queue?label=manipulated")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fqueue%3Flabel%3Dmanipulated"
    token = add_user(settings, "mia", "moderator")
    assert (await login(client, "mia", "wrong-secret")).status_code == 401
    assert (await login(client, "nobody", token)).status_code == 401
    r = await login(client, "mia", token, next_url="/stats")
    assert r.status_code == 303 and r.headers["location"] == "/stats"
    cookie = r.headers["set-cookie"]
    assert "misinfo_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert (await client.get("/stats")).status_code == 200
    # Only local paths after login: no open redirect.
    assert (await login(client, "mia", token, next_url="//evil.example/")).headers["location"] == "/queue"


async def test_login_needs_its_csrf_token(client, settings):
    token = add_user(settings, "nina", "viewer")
    await client.get("/login")  # sets the double-submit cookie
    r = await client.post("/login", data={"name": "nina", "secret": token, "csrf": "forged"})
    assert r.status_code == 403
    client.cookies.clear()
    r = await client.post("/login", data={"name": "nina", "secret": token})
    assert r.status_code == 403


async def test_failed_logins_back_off_for_that_name_from_that_address(client, settings):
    token = add_user(settings, "olga", "viewer")
    for _ in range(settings.login_backoff_after):  # free failures; the last one starts the backoff
        assert (await login(client, "olga", "guess-guess-guess")).status_code == 401
    r = await login(client, "olga", token)  # the right token, from the same address, too soon
    assert r.status_code == 429
    assert 0 < int(r.headers["retry-after"]) <= 60  # the fixture's first backoff step
    assert "Too many failed logins for this user name from your address" in r.text


async def test_password_login_after_users_passwd(client, settings):
    add_user(settings, "pia", "viewer")
    out = run_cli(settings, "users", "passwd", "pia", "--password", "correct horse battery")
    assert out.returncode == 0, out.stderr
    assert (await login(client, "pia", "correct horse battery")).status_code == 303
    short = run_cli(settings, "users", "passwd", "pia", "--password", "short")
    assert short.returncode != 0


async def test_labeling_by_form_needs_csrf_and_moves_to_the_next_item(client, settings):
    ids = await seed(
        settings,
        [
            make_pair(settings, 51, fake=0.99, text="<script>alert(1)</script>"),
            make_pair(settings, 52, fake=0.6),
        ],
    )
    await login(client, "rosa", add_user(settings, "rosa", "moderator"))
    queue = await client.get("/queue")
    assert queue.text.index(ids[0]) < queue.text.index(ids[1])  # highest priority first
    item = await client.get(f"/items/{ids[0]}")
    assert item.status_code == 200
    assert (
        "<script>alert(1)</script>" not in item.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in item.text
    )
    assert 'data-key="m"' in item.text and "https://example.org/post/51" in item.text
    csp = item.headers["content-security-policy"]
    assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]

    forged = await client.post(f"/items/{ids[0]}/label", data={"label": "manipulated", "csrf": "nope"})
    assert forged.status_code == 403
    r = await client.post(
        f"/items/{ids[0]}/label", data={"label": "manipulated", "note": "spliced", "csrf": csrf_of(item.text)}
    )
    assert r.status_code == 303 and r.headers["location"] == f"/items/{ids[1]}?done={ids[0]}%3Amanipulated"
    queue = await client.get("/queue")
    assert ids[0] not in queue.text and ids[1] in queue.text
    done = await client.get(f"/items/{ids[0]}")
    assert "not in the queue" in done.text and "spliced" in done.text

    # Skip: the next item for this moderator is another one; nothing is labeled.
    r = await client.post(f"/items/{ids[1]}/skip", data={"csrf": csrf_of(item.text)})
    assert r.status_code == 303 and r.headers["location"] == "/queue"
    assert ids[1] in (await client.get("/queue")).text


async def test_a_viewer_sees_but_cannot_label_and_session_api_posts_need_the_csrf_header(client, settings):
    (image_id,) = await seed(settings, [make_pair(settings, 61)])
    await login(client, "vera", add_user(settings, "vera", "viewer"))
    page = await client.get(f"/items/{image_id}")
    assert page.status_code == 200 and 'id="label-form"' not in page.text
    r = await client.post(f"/items/{image_id}/label", data={"label": "authentic", "csrf": csrf_of(page.text)})
    assert r.status_code == 403
    assert (await client.get("/upload")).status_code == 403
    assert (await client.get(f"/api/items/{image_id}")).status_code == 200  # the session works for reads

    client.cookies.clear()
    await login(client, "walt", add_user(settings, "walt", "moderator"))
    page = await client.get(f"/items/{image_id}")
    url = f"/api/items/{image_id}/label"
    assert (await client.post(url, json={"label": "authentic"})).status_code == 403
    r = await client.post(url, json={"label": "authentic"}, headers={"X-CSRF-Token": csrf_of(page.text)})
    assert r.status_code == 200 and r.json()["label"]["moderator_id"] == "walt"


async def test_upload_form_leads_to_the_pending_item_page(client, settings):
    await login(client, "uma", add_user(settings, "uma", "moderator"))
    page = await client.get("/upload")
    data = image_bytes(71)
    r = await client.post(
        "/upload",
        data={"csrf": csrf_of(page.text), "caption": "hi"},
        files={"file": ("a.png", data, "image/png")},
    )
    assert r.status_code == 303 and r.headers["location"] == f"/items/{sha256_hex(data)}"
    pending = await client.get(r.headers["location"])
    assert pending.status_code == 200 and "verdict is not there yet" in pending.text
    bad = await client.post(
        "/upload", data={"csrf": csrf_of(page.text)}, files={"file": ("a.png", b"GIF89a-broken", "image/gif")}
    )
    assert bad.status_code == 422 and "Not a usable image" in bad.text


async def test_stats_page_and_logout(client, settings):
    await seed(settings, [make_pair(settings, 81)])
    await login(client, "xena", add_user(settings, "xena", "viewer"))
    stats = await client.get("/stats")
    assert stats.status_code == 200 and 'id="stat-queue">1<' in stats.text
    sid = client.cookies.get("misinfo_session")
    r = await client.post("/logout", data={"csrf": csrf_of(stats.text)})
    assert r.status_code == 303
    client.cookies.set("misinfo_session", sid)  # a copy of the old cookie is worth nothing now
    assert (await client.get("/stats")).status_code == 303
