"""Moderation pieces without a network: credentials, roles, redirects, templates, explanation input."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from core.contracts.verdicts import Label, Verdict
from ingest.blobs import LocalBlobStore
from misinfo.samples import scene
from moderation.auth import (
    TOKEN_PREFIX,
    User,
    csrf_ok,
    digest,
    hash_password,
    new_token,
    verify_password,
)
from moderation.explain import Explainer
from moderation.pages import env, safe_next
from moderation.store import Item

IMAGE_ID = "ab" * 32


def test_tokens_are_random_prefixed_and_stored_as_sha256():
    a, b = new_token(), new_token()
    assert a != b and a.startswith(TOKEN_PREFIX) and len(a) >= len(TOKEN_PREFIX) + 43
    assert digest(a) != a and len(digest(a)) == 64 and digest(a) == digest(a)


def test_passwords_are_salted_scrypt_and_verify_only_themselves():
    h1, h2 = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert h1 != h2 and h1.startswith("scrypt$") and "correct" not in h1
    assert verify_password("correct horse battery", h1)
    assert not verify_password("correct horse batterY", h1)
    assert not verify_password("x", "garbage")


def test_roles_are_ordered_viewer_moderator_admin():
    viewer, moderator, admin = (User("u", r) for r in ("viewer", "moderator", "admin"))  # type: ignore[arg-type]
    assert viewer.has("viewer") and not viewer.has("moderator")
    assert moderator.has("viewer") and moderator.has("moderator") and not moderator.has("admin")
    assert admin.has("viewer") and admin.has("moderator") and admin.has("admin")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/items/abc?x=1", "/items/abc?x=1"),
        ("", "/queue"),
        (None, "/queue"),
        ("https://evil.example/", "/queue"),
        ("//evil.example/", "/queue"),
        ("/\\evil.example", "/queue"),
        ("javascript:alert(1)", "/queue"),
    ],
)
def test_after_login_only_local_paths(given, expected):
    assert safe_next(given) == expected


def test_csrf_comparison():
    assert csrf_ok("abc", "abc")
    assert not csrf_ok("abc", "abd") and not csrf_ok("abc", None) and not csrf_ok("abc", "")


def _item(**overrides):  # type: ignore[no-untyped-def]
    verdict = Verdict(
        image_id=IMAGE_ID,
        label="uncertain",
        scores={"authentic": 0.2, "manipulated": 0.3, "synthesized": 0.5},
        model_name="m",
        model_version="7",
        profile_id="p",
        latency_ms=1.0,
        flagged=True,
    )
    labels = [
        Label(
            image_id=IMAGE_ID,
            label="synthesized",
            moderator_id="ann",
            verdict_model_version="7",
            note="<b>x</b>",
        ),
        Label(image_id=IMAGE_ID, label="authentic", moderator_id="bob", verdict_model_version="7"),
    ]
    base = dict(
        image_id=IMAGE_ID,
        verdict=verdict,
        event=None,
        in_queue=False,
        priority=None,
        labels=labels,
        sightings=["x:1"],
        explanation="",
        explanation_model_version=None,
    )
    return Item(**{**base, **overrides})


def _render(name: str, **ctx):  # type: ignore[no-untyped-def]
    request = SimpleNamespace(url=SimpleNamespace(path="/items/x"))
    keys = {"authentic": "a", "manipulated": "m", "synthesized": "s"}
    return env.get_template(name).render(request=request, nonce="N0NCE", keys=keys, **ctx)


def test_item_page_shows_disagreement_escapes_notes_and_offers_shortcuts_to_moderators():
    item = _item()
    assert item.disagreement
    user = User("ann", "moderator")
    html = _render("item.jinja", user=user, csrf="C", item=item, mine=item.labels[0], can_label=True, done="")
    assert 'id="disagreement"' in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    for key in ("a", "m", "s"):
        assert f'data-key="{key}"' in html
    assert '<script nonce="N0NCE">' in html
    viewer = _render(
        "item.jinja", user=User("v", "viewer"), csrf="C", item=item, mine=None, can_label=False, done=""
    )
    assert 'id="label-form"' not in viewer and "/explain" not in viewer


def test_one_label_is_no_disagreement():
    assert not _item(labels=_item().labels[:1]).disagreement


def test_an_uncertain_verdict_is_explained_for_its_most_probable_class(tmp_path):
    buf = io.BytesIO()
    scene(3, (64, 48)).save(buf, "PNG")
    uri = LocalBlobStore(tmp_path).put(buf.getvalue())
    asked: list[tuple[int, list[str], int]] = []

    class FakeDetector:
        version = "9"

        def explain(self, images, labels, max_new_tokens):  # type: ignore[no-untyped-def]
            asked.append((images[0].width, labels, max_new_tokens))
            return ["because"]

    explainer = Explainer(store=None, load_detector=FakeDetector, max_new_tokens=5, max_pixels=10**7)  # type: ignore[arg-type]
    try:
        text, version = explainer._generate(uri, "uncertain", _item().verdict.scores)
        assert (text, version) == ("because", "9")
        assert asked == [(64, ["synthesized"], 5)]
        explainer._generate(uri, "manipulated", _item().verdict.scores)
        assert asked[-1][1] == ["manipulated"]
    finally:
        explainer.close()


def test_stats_template_renders_empty_numbers():
    stats = {
        "queue_size": 0,
        "verdicts_last_hour": 0,
        "verdicts_total": 0,
        "labels_last_hour": 0,
        "labeled_images": 0,
        "throughput": [
            {"hour_start": datetime(2026, 1, 1, tzinfo=UTC).timestamp(), "verdicts": 0, "labels": 0}
        ],
        "labels_per_moderator": {},
        "agreement": {
            "window_images": 0,
            "with_model": {"labels": 0, "agree": 0, "rate": None},
            "between_moderators": {
                "images_with_several_labels": 0,
                "images_in_dispute": 0,
                "pairs": 0,
                "agreeing_pairs": 0,
                "rate": None,
                "per_moderator": {},
            },
            "confusion": [],
        },
    }
    retraining = {"progress": 0.0, "lines": [], "gate": "gate: no version judged yet", "cycles": []}

    def render(second_share: float) -> str:
        return _render(  # type: ignore[no-any-return]
            "stats.jinja",
            user=User("v", "viewer"),
            csrf="C",
            stats=stats,
            peak=1,
            retraining=retraining,
            second_share=second_share,
        )

    html = render(0.0)
    assert 'id="stat-model-agreement">–<' in html and "2026-01-01 00:00:00 UTC" in html
    assert "no image labeled by two moderators yet" in html
    stats["agreement"]["between_moderators"]["per_moderator"] = {
        "ann": {"pairs": 4, "agreeing": 3, "rate": 0.75}
    }
    html = render(0.1)
    assert '<td>ann</td><td class="mono">75.0%</td><td class="mono">3 of 4</td>' in html
    assert "10.0% of queued items go to a second moderator" in html
