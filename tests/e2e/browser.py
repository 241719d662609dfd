"""Waiting on a condition inside a page served under the review service's CSP.

Playwright's ``wait_for_function`` evaluates its expression with ``eval`` in the page, which a
Content-Security-Policy without ``'unsafe-eval'`` refuses (an ``EvalError``, depending on timing).
``page.evaluate`` of a function goes through the DevTools protocol instead, which CSP does not
govern, so the condition is polled from here.
"""

from __future__ import annotations

from typing import Any

from misinfo.devstack.stack import wait_for


def page_until(page: Any, predicate: str, timeout: float = 30.0) -> None:
    """Wait until the JavaScript function ``predicate`` (``"() => ..."``) returns a truthy value."""
    wait_for(lambda: bool(page.evaluate(predicate)), timeout, 0.05, f"the page to satisfy {predicate}")
