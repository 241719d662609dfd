"""Swagger UI at /api/docs in headless Chromium, under the same Content-Security-Policy as the
pages: its assets come from the service (the pinned fastapi-offline package), its scripts run with
the page's nonce, and it renders every operation of /api/openapi.json without a CSP violation."""

from __future__ import annotations

import os

import pytest

from tests.e2e.test_review_browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration.review_server import ReviewServer

pytestmark = pytest.mark.e2e


def test_swagger_ui_renders_the_api_under_the_pages_csp(settings):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with ReviewServer(settings) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            response = page.goto(srv.url("/api/docs"))
            assert response is not None and "nonce-" in response.headers["content-security-policy"]
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            assert page.inner_text(".info .title").startswith("misinfo-watch moderation")
            assert page.locator(".opblock").count() == 15
            assert not [m for m in console if "Content Security Policy" in m or m.startswith("error")], (
                console
            )
            assert all(u.startswith(srv.base) or u.startswith("data:") for u in requests), requests
        finally:
            browser.close()
