"""Provenance in the review service against real Redis: the queue filtered by provenance state and
sorted by instability (API and page), the item page and API showing the evidence next to the scores.

Verdict records are written the way the worker writes them (RedisSink), with the fusion policy's
fields filled in by the policy itself."""

from __future__ import annotations

import pytest

from core.contracts.provenance import C2paEvidence, Hint, Provenance, Unreadable
from detector.fusion import fuse
from tests.integration.test_moderation_api import add_user, app_client, bearer, make_pair, seed
from tests.integration.test_moderation_pages import login

pytestmark = pytest.mark.integration

AI_MANIFEST = Provenance(
    c2pa=C2paEvidence(
        state="intact",
        trusted=True,
        validation_state="Trusted",
        claim_generator="ImageGen 2.1",
        signer="ImageGen signer / ImageGen Inc.",
        actions=["c2pa.created"],
        digital_source_types=["trainedAlgorithmicMedia"],
        software_agents=["ImageGen 2.1"],
    ),
    metadata=["c2pa"],
)
TAMPERED = Provenance(
    c2pa=C2paEvidence(state="tampered", trusted=True, validation_state="Invalid", failures=["assertion.dataHash.mismatch"]),
    metadata=["c2pa", "exif"],
)  # fmt: skip
HINTED = Provenance(
    hints=[Hint(where="EXIF Software", value="Midjourney 6.1", generator="Midjourney")], metadata=["exif"]
)
HOSTILE = Provenance(
    unreadable=[Unreadable(part="xmp", reason="XMP refused: DTDForbidden")], metadata=["xmp"]
)


def with_provenance(pair, pv, unstable=None):  # type: ignore[no-untyped-def]
    """A (event, verdict) pair as the worker would write it with this provenance and re-check."""
    event, verdict = pair
    fused = fuse(verdict.label, verdict.flagged, pv)
    recheck = None if unstable is None else ("authentic" if unstable else verdict.label)
    fields = fused.verdict_fields(verdict.label, verdict.flagged, pv, recheck)
    return event.model_copy(update={"provenance": pv}), verdict.model_copy(update=fields)


@pytest.fixture
async def seeded(settings):  # type: ignore[no-untyped-def]
    pairs = [
        with_provenance(make_pair(settings, 301, fake=0.9), TAMPERED, unstable=False),
        with_provenance(make_pair(settings, 302, fake=0.8), AI_MANIFEST, unstable=True),
        with_provenance(make_pair(settings, 303, fake=0.7), HINTED, unstable=False),
        with_provenance(make_pair(settings, 304, fake=0.6), HOSTILE, unstable=True),
        make_pair(settings, 305, fake=0.55),  # a verdict from before provenance: no fields at all
    ]
    return await seed(settings, pairs)


async def test_the_queue_filters_by_provenance_state_and_sorts_by_instability(settings, seeded):
    ids = seeded
    token = add_user(settings, "vera", "viewer")
    async with app_client(settings) as c:

        async def queue(**params):  # type: ignore[no-untyped-def]
            r = await c.get("/api/queue", params=params, headers=bearer(token))
            assert r.status_code == 200, r.text
            return r.json()

        everything = await queue()
        assert [e["image_id"] for e in everything["entries"]] == ids  # priority order, as seeded
        by_id = {e["image_id"]: e for e in everything["entries"]}
        assert by_id[ids[1]]["label"] == "synthesized" and by_id[ids[1]]["label_source"] == "provenance"
        assert [by_id[i]["provenance"] for i in ids] == [
            "c2pa-tampered",
            "c2pa-intact",
            "hint",
            "unreadable",
            "",
        ]
        assert [by_id[i]["unstable"] for i in ids] == [False, True, False, True, None]

        for state, expected in [
            ("c2pa-tampered", [0]),
            ("c2pa-intact", [1]),
            ("hint", [2]),
            ("unreadable", [3]),
        ]:
            page = await queue(provenance=state)
            assert [e["image_id"] for e in page["entries"]] == [ids[i] for i in expected], state
            assert page["total"] == len(expected)
        assert (await queue(provenance="stripped"))["total"] == 0

        unstable_first = await queue(sort="unstable")
        assert [e["image_id"] for e in unstable_first["entries"]] == [ids[1], ids[3], ids[0], ids[2], ids[4]]
        paged = await queue(sort="unstable", limit=2, offset=1)
        assert [e["image_id"] for e in paged["entries"]] == [ids[3], ids[0]] and paged["total"] == 5
        assert [e["image_id"] for e in (await queue(sort="unstable", provenance="hint"))["entries"]] == [
            ids[2]
        ]

        for bad in ({"provenance": "trusted"}, {"sort": "random"}):
            r = await c.get("/api/queue", params=bad, headers=bearer(token))
            assert r.status_code == 422

        assert (await login(c, "vera", token)).status_code == 303
        page = await c.get("/queue", params={"provenance": "c2pa-intact", "sort": "unstable"})
        assert page.status_code == 200
        assert ids[1] in page.text and ids[0] not in page.text and ids[3] not in page.text
        assert (
            '<option value="c2pa-intact" selected>' in page.text
            and '<option value="stripped"' not in page.text
        )
        sorted_page = await c.get("/queue", params={"sort": "unstable"})
        rows = [i for i in ids if f'data-image-id="{i}"' in sorted_page.text]
        assert sorted(rows, key=sorted_page.text.index) == [ids[1], ids[3], ids[0], ids[2], ids[4]]
        assert (await c.get("/queue", params={"provenance": "<script>"})).status_code == 422


async def test_the_item_shows_the_evidence_next_to_the_model_scores(settings, seeded):
    ids = seeded
    token = add_user(settings, "wim", "viewer")
    async with app_client(settings) as c:
        item = (await c.get(f"/api/items/{ids[1]}", headers=bearer(token))).json()
        v = item["verdict"]
        assert (v["label"], v["model_label"], v["label_source"]) == (
            "synthesized",
            "manipulated",
            "provenance",
        )
        assert v["provenance"]["c2pa"]["digital_source_types"] == ["trainedAlgorithmicMedia"]
        assert item["event"]["provenance"] == v["provenance"] and v["scores"]["manipulated"] == pytest.approx(
            0.4
        )

        assert (await login(c, "wim", token)).status_code == 303
        html = (await c.get(f"/items/{ids[1]}")).text
        for text in ("c2pa-intact", "ImageGen 2.1", "trusted signer", "trainedAlgorithmicMedia", "Unstable"):
            assert text in html, text
        assert 'id="label-source">provenance<' in html and 'id="model-only-label">manipulated<' in html
        tampered = (await c.get(f"/items/{ids[0]}")).text
        assert "assertion.dataHash.mismatch" in tampered and "edited after signing" in tampered
        hinted = (await c.get(f"/items/{ids[2]}")).text
        assert "EXIF Software" in hinted and "Midjourney 6.1" in hinted and "anyone can write it" in hinted
        hostile = (await c.get(f"/items/{ids[3]}")).text
        assert "xmp unreadable" in hostile and "DTDForbidden" in hostile
        legacy = (await c.get(f"/items/{ids[4]}")).text
        assert "No provenance was read for this image" in legacy
