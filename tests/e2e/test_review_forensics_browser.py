"""The forensic tools in headless Chromium, against the review service on a real uvicorn server with
the session's broker and Redis: zoom and pan over the full-resolution image, the metadata panel of
an exiftool-tagged JPEG, a region drawn with the box tool and sent with the label, undo of that label
(label and retraction on the feedback topic), another moderator kept off by the item's lock, search,
and the pages at 420 px wide without sideways scrolling.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright's Python package, as in
test_review_browser.py. Screenshots (zoom, metadata, region, undo, search, narrow) go to the test's
tmp dir and to $MISINFO_SCREENSHOTS_DIR when set (docs/screenshots/ is made that way).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from core.contracts.verdicts import Label
from ingest.blobs import open_blob_store, sha256_hex
from ingest.etl import prepare
from ingest.provenance import ProvenanceConfig
from misinfo import provenance_samples as ps
from misinfo.samples import scene
from tests.e2e.browser import page_until
from tests.e2e.test_review_browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration.review_server import ReviewServer
from tests.integration.test_moderation_api import add_user, consume, make_pair, seed

pytestmark = pytest.mark.e2e

EXPLANATION = "Verdict: manipulated\nReasons: the water's texture repeats at the left edge."


def tagged_photo(settings, size: tuple[int, int] = (1600, 1200)):  # type: ignore[no-untyped-def]
    """A large JPEG with camera EXIF, IPTC and an XMP tool that names a generator."""
    data = ps.exiftool(
        ps.jpeg(scene(17, size), quality=92),
        "-EXIF:Make=Canon",
        "-EXIF:Model=EOS R6",
        "-EXIF:DateTimeOriginal=2026:03:14 07:12:09",
        "-EXIF:Software=Adobe Photoshop 25.4",
        "-XMP-xmp:CreatorTool=Adobe Firefly Image 3",
        "-XMP-dc:Description=Flooded subway station, this morning",
        "-IPTC:By-line=J. Doe",
        "-IPTC:Keywords=flood",
    )
    prepared = prepare(data, 50_000_000, ProvenanceConfig())
    event, verdict = make_pair(
        settings, 601, fake=0.97, source="reddit", text="Flooded subway station, this morning"
    )
    event = event.model_copy(
        update={
            "image_id": sha256_hex(data),
            "blob_uri": open_blob_store(settings.blob_root).put(data),
            "width": size[0],
            "height": size[1],
            "mime": "image/jpeg",
            "phash": prepared.phash,
            "author": "u/rainman",
            "provenance": prepared.provenance,
        }
    )
    verdict = verdict.model_copy(
        update={"image_id": event.image_id, "provenance": prepared.provenance, "explanation": EXPLANATION}
    )
    return event, verdict


def explained(pair):  # type: ignore[no-untyped-def]
    event, verdict = pair
    return event, verdict.model_copy(update={"explanation": "Verdict: synthesized\nReasons: waxy skin."})


def test_zoom_metadata_region_undo_lock_search_and_a_narrow_screen(settings, tmp_path):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    if not ps.exiftool_available():
        pytest.skip("exiftool is missing (apt-get install -y libimage-exiftool-perl)")
    from playwright.sync_api import expect, sync_playwright

    pairs = [
        tagged_photo(settings),
        explained(
            make_pair(
                settings, 602, label="synthesized", fake=0.9, source="x", text="The pope in a puffer jacket"
            )
        ),
        explained(make_pair(settings, 603, fake=0.6, source="rss", text="Protest, Paris")),
    ]
    ids = asyncio.run(seed(settings, pairs))
    top = ids[0]
    maria, omar = add_user(settings, "maria", "moderator"), add_user(settings, "omar", "moderator")
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def log_in(page, base: str, name: str, token: str) -> None:  # type: ignore[no-untyped-def]
        page.goto(base + "/login")
        page.fill("input[name=name]", name)
        page.fill("input[name=secret]", token)
        page.click("button[type=submit]")
        expect(page).to_have_url(base + "/queue")

    def scale(page) -> float:  # type: ignore[no-untyped-def]
        return float(page.locator("#viewer").get_attribute("data-scale"))

    with ReviewServer(settings) as srv, sync_playwright() as pw:
        base = srv.base
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            # Script errors and CSP violations land on the console; a missing resource is named by URL.
            page.on(
                "console",
                lambda m: (
                    errors.append(m.text) if m.type == "error" and "Failed to load" not in m.text else None
                ),
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            log_in(page, base, "maria", maria)
            page.goto(f"{base}/items/{top}")
            expect(page.locator("#viewer")).to_have_attribute("data-ready", "1")
            expect(page.locator("#viewer")).to_have_attribute("data-lock", "mine")

            # Zoom and pan: the 1600 px image opens fitted, "1" shows every pixel, the wheel zooms
            # in where the pointer is, a drag pans.
            fitted = scale(page)
            assert 0.2 < fitted < 1
            page.keyboard.press("+")
            assert scale(page) == pytest.approx(fitted * 1.5, rel=1e-3)
            page.keyboard.press("1")
            assert scale(page) == pytest.approx(1.0)
            page.keyboard.press("0")
            assert scale(page) == pytest.approx(fitted)
            # Wheel in on the edge of the red block (image fraction 0.54, 0.27): it stays under the pointer.
            img = page.locator("#image").bounding_box()
            assert img is not None
            px, py = img["x"] + img["width"] * 0.54, img["y"] + img["height"] * 0.27
            page.mouse.move(px, py)
            for n in range(1, 7):
                page.mouse.wheel(0, -200)
                page_until(
                    page,
                    f"() => Number(document.getElementById('viewer').dataset.scale) > {fitted * 1.25**n * 0.99}",
                )
            under = page.locator("#image").bounding_box()
            assert under is not None
            assert (px - under["x"]) / under["width"] == pytest.approx(0.54, abs=0.01)
            before = page.locator("#stage").evaluate("el => el.style.transform")
            page.mouse.down()
            page.mouse.move(px + 60, py + 40, steps=5)
            page.mouse.up()
            assert page.locator("#stage").evaluate("el => el.style.transform") != before
            page.locator("#viewer-card").screenshot(path=str(shots / "zoom.png"))

            # The metadata panel: every field, the generator-naming one marked, next to the provenance card.
            md = page.locator("#metadata")
            expect(md.locator("#md-exif")).to_contain_text("EOS R6")
            expect(md.locator("tr.spoke")).to_contain_text("xmp:CreatorTool")
            expect(md.locator("#md-iptc")).to_contain_text("J. Doe")
            md.screenshot(path=str(shots / "metadata.png"))

            # Omar opens the same item: maria has it, his label buttons are off.
            other = browser.new_page(viewport={"width": 1280, "height": 900})
            log_in(other, base, "omar", omar)
            other.goto(f"{base}/items/{top}")
            expect(other.locator("#lock-banner")).to_contain_text("maria has this item open")
            expect(other.locator("#label-manipulated")).to_be_disabled()
            other.goto(f"{base}/queue")
            expect(other.locator(f'tr[data-image-id="{top}"] .locked')).to_contain_text("maria")

            # A region: fit, box tool, drag over the middle of the image, label with "m".
            page.keyboard.press("0")
            page.keyboard.press("b")
            expect(page.locator("#box-tool")).to_have_attribute("aria-pressed", "true")
            page.locator("#viewer").scroll_into_view_if_needed()
            img = page.locator("#image").bounding_box()
            assert img is not None
            x0, y0 = img["x"] + img["width"] * 0.25, img["y"] + img["height"] * 0.5
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x0 + img["width"] * 0.25, y0 + img["height"] * 0.25, steps=8)
            page.mouse.up()
            expect(page.locator("#regions-list .region-row")).to_have_count(1)
            page.locator("#viewer-card").screenshot(path=str(shots / "region.png"))
            page.keyboard.press("m")
            expect(page).to_have_url(f"{base}/items/{ids[1]}?done={top}%3Amanipulated")
            labeled = page.request.get(f"{base}/api/items/{top}").json()["labels"][0]
            assert labeled["label"] == "manipulated"
            (region,) = labeled["regions"]
            assert region == pytest.approx({"x": 0.25, "y": 0.5, "w": 0.25, "h": 0.25}, abs=0.01)

            # Undo: the flash on the next item offers it; "u" withdraws the label.
            expect(page.locator("#done-flash #undo")).to_be_visible()
            page.screenshot(path=str(shots / "undo.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 260})
            page.keyboard.press("u")
            expect(page).to_have_url(f"{base}/items/{top}?undone=true")
            expect(page.locator("#undone-flash")).to_contain_text("Your label was undone")
            expect(page.locator("#queue-state")).to_contain_text("in the queue")
            assert page.request.get(f"{base}/api/items/{top}").json()["labels"] == []

            # Search: by account and words, from the search page.
            page.goto(f"{base}/search")
            page.fill("#account", "rain")
            page.fill("#q", "subway")
            page.click("#search-button")
            expect(page.locator("#results tbody tr[data-image-id]")).to_have_count(1)
            expect(page.locator(f'#results tr[data-image-id="{top}"]')).to_contain_text("u/rainman")
            page.screenshot(path=str(shots / "search.png"), full_page=True)
            page.select_option("#source", "x")
            page.fill("#account", "")
            page.fill("#q", "")
            page.click("#search-button")
            expect(page.locator("#results tbody tr[data-image-id]")).to_have_count(1)
            expect(page.locator(f'#results tr[data-image-id="{ids[1]}"]')).to_be_visible()
            assert not errors, errors  # no script error, no CSP violation, on any page so far

            # 420 px: every page fits without scrolling sideways.
            narrow = browser.new_page(viewport={"width": 420, "height": 860})
            log_in(narrow, base, "maria", maria)
            for path in ("/queue", "/search?q=paris", f"/items/{ids[2]}"):
                narrow.goto(base + path)
                width = narrow.evaluate("document.documentElement.scrollWidth")
                assert width <= 420, (path, width)
            expect(narrow.locator("#viewer")).to_have_attribute("data-ready", "1")
            narrow.screenshot(path=str(shots / "narrow.png"))
        finally:
            browser.close()

    # On the feedback topic: the label with its region, then its retraction (same identity).
    label, retraction = (Label.parse(v) for _, v in consume(settings, settings.topic_feedback, 2))
    assert not label.is_retraction and retraction.is_retraction
    assert retraction.identity() == label.identity() and len(label.regions) == 1

    target = os.environ.get("MISINFO_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for png in shots.glob("*.png"):
            shutil.copy(png, Path(target) / png.name)
