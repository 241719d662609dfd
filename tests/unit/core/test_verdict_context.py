"""A verdict carries the post it is about (optional, no schema_version bump)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.contracts.images import ImageEvent
from core.contracts.verdicts import CAPTION_EXCERPT, PostContext, Verdict

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def event(text: str, **kw: object) -> ImageEvent:
    fields = dict(
        image_id="a" * 64,
        blob_uri="file:///blobs/a",
        source="reddit",
        source_item_id="t3_x:0",
        source_url="https://www.reddit.com/r/pics/comments/x/",
        author="alice",
        posted_at=NOW,
        collected_at=NOW,
        width=10,
        height=10,
        mime="image/jpeg",
        phash="0" * 16,
        text=text,
        media_url="https://i.redd.it/x.jpg",
    )
    return ImageEvent(**{**fields, **kw})  # type: ignore[arg-type]


def verdict(**kw: object) -> Verdict:
    fields = dict(
        image_id="a" * 64,
        label="manipulated",
        scores={"authentic": 0.2, "manipulated": 0.7, "synthesized": 0.1},
        model_name="m",
        model_version="1",
        profile_id="p",
        latency_ms=1.0,
        flagged=True,
    )
    return Verdict(**{**fields, **kw})  # type: ignore[arg-type]


def test_context_comes_from_the_event_with_a_caption_excerpt():
    c = PostContext.of(event("  a  caption\nwith   spaces " + "x" * 400))
    assert (c.source, c.post_url, c.media_url, c.account) == (
        "reddit",
        "https://www.reddit.com/r/pics/comments/x/",
        "https://i.redd.it/x.jpg",
        "alice",
    )
    assert len(c.caption) == CAPTION_EXCERPT and c.caption.endswith("…") and "  " not in c.caption
    assert PostContext.of(event("short")).caption == "short"
    assert (c.collected_at, c.posted_at) == (NOW, NOW)


def test_verdicts_with_and_without_context_parse_and_old_readers_ignore_it():
    with_context = verdict(context=PostContext.of(event("hello")))
    again = Verdict.parse(with_context.to_json())
    assert again == with_context and again.schema_version == 1
    old = with_context.to_dict()
    del old["context"]
    assert Verdict.parse(old).context is None  # a verdict from before the field
