"""A share of queued items goes to a second moderator: after the first label such an item stays in
the queue for the others (never offered again to the one who labeled it), leaves it with the second
label, and the stats (API and page) show each moderator's agreement with the others."""

from __future__ import annotations

import dataclasses

import pytest

from moderation.service import picked_for_second_review
from tests.integration.test_moderation_api import add_user, app_client, bearer, make_pair, seed

pytestmark = pytest.mark.integration


def test_the_share_picks_images_by_id_alone():
    ids = [f"{i:064x}" for i in range(2000)]
    picked = [i for i in ids if picked_for_second_review(i, 0.25)]
    assert 0.2 < len(picked) / len(ids) < 0.3
    assert picked == [i for i in ids if picked_for_second_review(i, 0.25)]  # the same every time
    assert not any(picked_for_second_review(i, 0.0) for i in ids)
    assert all(picked_for_second_review(i, 1.0) for i in ids)


async def test_a_picked_item_waits_for_a_second_moderator_and_their_agreement_is_shown(settings):
    s = dataclasses.replace(settings, review_second_share=1.0)  # every item goes to two moderators
    ann, bob, cat = (add_user(s, name, "moderator") for name in ("ann", "bob", "cat"))
    ids = await seed(s, [make_pair(s, 60 + i, label="manipulated", fake=0.7 + i / 100) for i in range(3)])
    async with app_client(s) as client:
        store = client.app.state.moderation.store  # type: ignore[attr-defined]
        first = await store.next_for("ann")  # the top of the queue
        assert first in ids
        r = await client.post(f"/api/items/{first}/label", json={"label": "manipulated"}, headers=bearer(ann))
        assert r.status_code == 200, r.text
        queue = (await client.get("/api/queue", headers=bearer(ann))).json()
        assert first in {e["image_id"] for e in queue["entries"]}  # still waiting for a second label
        nxt = await store.next_for("ann")
        assert nxt is not None and nxt != first  # never offered again to who labeled it
        assert await store.next_for("bob") == first

        r = await client.post(f"/api/items/{first}/label", json={"label": "authentic"}, headers=bearer(bob))
        assert r.status_code == 200, r.text
        queue = (await client.get("/api/queue", headers=bearer(ann))).json()
        assert first not in {e["image_id"] for e in queue["entries"]}  # two labels: done
        other = next(i for i in ids if i != first)
        for image_id, token in ((other, ann), (other, cat)):
            r = await client.post(
                f"/api/items/{image_id}/label", json={"label": "synthesized"}, headers=bearer(token)
            )
            assert r.status_code == 200, r.text

        stats = (await client.get("/api/stats", headers=bearer(cat))).json()
        assert stats["second_review_share"] == 1.0
        per = stats["agreement"]["between_moderators"]["per_moderator"]
        assert per["ann"] == {"pairs": 2, "agreeing": 1, "rate": 0.5}
        assert per["bob"] == {"pairs": 1, "agreeing": 0, "rate": 0.0}
        assert per["cat"] == {"pairs": 1, "agreeing": 1, "rate": 1.0}
