"""A moderator in headless Chromium: logs in to a real `misinfo moderate` process, opens the top item
of the queue, labels it with the keyboard, and sees it leave the queue; the label is on the feedback
topic with the moderator's name.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run), driven by Playwright's Python
package; Playwright's own browser download is never used. Screenshots of the queue and item pages
go to the test's tmp dir, and also to $MISINFO_SCREENSHOTS_DIR when set (docs/screenshots/ is made
that way).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import urllib.request
from pathlib import Path

import pytest

from core.contracts.verdicts import Label
from misinfo.devstack.stack import wait_for
from tests.conftest import free_port, start_cli
from tests.e2e.browser import page_until
from tests.integration.test_moderation_api import add_user, consume, make_pair, seed

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - a loopback URL of our own
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture
def review_service(settings, tiny_model, tmp_path):  # type: ignore[no-untyped-def]
    port = free_port()
    log = tmp_path / "moderate.log"
    proc = start_cli(settings, "moderate", "--port", str(port), log=log, MISINFO_MODEL_PATH=tiny_model)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base + "/login") or proc.poll() is not None, 60, 0.2, "the review service")
        assert proc.poll() is None, log.read_text()[-3000:]
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_moderator_labels_with_the_keyboard_and_the_item_leaves_the_queue(settings, review_service, tmp_path):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    pairs = [
        make_pair(
            settings,
            201,
            size=(480, 360),
            fake=0.97,
            source="reddit",
            text="Flooded subway station, this morning",
        ),
        make_pair(
            settings, 202, label="synthesized", fake=0.9, source="x", text="The pope in a puffer jacket"
        ),
        make_pair(
            settings, 203, label="uncertain", fake=0.5, source="rss", model_version="2", text="Protest, Paris"
        ),
        make_pair(settings, 204, size=(480, 360), fake=0.6, source="folder", text="Shark on the highway"),
    ]
    ids = asyncio.run(seed(settings, pairs))
    token = add_user(settings, "maria", "moderator")
    shots = tmp_path / "screenshots"
    shots.mkdir()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(review_service + "/queue")
            expect(page).to_have_url(review_service + "/login?next=%2Fqueue")
            page.fill("input[name=name]", "maria")
            page.fill("input[name=secret]", token)
            page.click("button[type=submit]")
            expect(page).to_have_url(review_service + "/queue")
            rows = page.locator("#queue tbody tr[data-image-id]")
            expect(rows).to_have_count(4)
            top = rows.first.get_attribute("data-image-id")
            assert top == ids[0]  # highest priority first
            page_until(page, "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(shots / "queue.png"), full_page=True)

            page.keyboard.press("Enter")  # opens the top item
            expect(page).to_have_url(f"{review_service}/items/{top}")
            expect(page.locator("#model-label")).to_have_text("manipulated")
            # The explanation is generated on demand (the tiny random model: its words are noise).
            expect(page.locator("#explanation")).not_to_have_text("Generating…", timeout=120_000)
            expect(page.locator("#sightings")).to_contain_text("reddit:item-201")
            page_until(page, "() => document.getElementById('image').naturalWidth === 480")
            page.screenshot(path=str(shots / "item.png"), full_page=True)

            page.keyboard.press("n")  # focus the note, type, leave it, then label with "m"
            page.keyboard.type("cloned water texture at the left edge")
            page.keyboard.press("Escape")
            page.keyboard.press("m")
            expect(page).to_have_url(f"{review_service}/items/{ids[1]}?done={top}%3Amanipulated")
            expect(page.locator(".flash")).to_contain_text("as manipulated")

            page.goto(review_service + "/queue")
            expect(rows).to_have_count(3)
            assert top not in [r.get_attribute("data-image-id") for r in rows.all()]
            expect(page.locator("#queue-total")).to_have_text("3 items")
        finally:
            browser.close()

    ((key, value),) = consume(settings, settings.topic_feedback, 1)
    label = Label.parse(value)
    assert key.decode() == top
    assert (label.label, label.moderator_id, label.note) == (
        "manipulated",
        "maria",
        "cloned water texture at the left edge",
    )

    target = os.environ.get("MISINFO_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for png in shots.glob("*.png"):
            shutil.copy(png, Path(target) / png.name)
