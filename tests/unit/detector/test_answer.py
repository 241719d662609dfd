"""The answer format: the first token after ``Verdict:`` decides the class."""

from __future__ import annotations

import pytest

from detector.answer import (
    CLASSES,
    VERDICT_PREFIX,
    class_token_ids,
    format_answer,
    parse_label,
    reasons_prefix,
)


def test_format_and_parse_round_trip() -> None:
    for cls in CLASSES:
        text = format_answer(cls, "  soft  edges\n near the face ")
        assert text == f"Verdict: {cls}\nReasons: soft edges near the face"
        assert text.startswith(reasons_prefix(cls))
        assert parse_label(text) == cls
    assert parse_label("Reasons: none") is None
    assert parse_label("Verdict: maybe") is None
    with pytest.raises(ValueError):
        format_answer("fake")


def test_class_tokens_with_tiny_tokenizer(tiny_detector) -> None:
    tok = tiny_detector.tokenizer
    ids = class_token_ids(tok)
    assert set(ids) == set(CLASSES) and len(set(ids.values())) == 3
    prefix = tok.encode(VERDICT_PREFIX, add_special_tokens=False)
    for cls, tid in ids.items():
        full = tok.encode(format_answer(cls), add_special_tokens=False)
        assert full[: len(prefix)] == prefix and full[len(prefix)] == tid
        assert tok.convert_ids_to_tokens(tid).startswith("Ġ" + cls[0])


class _SharedFirstToken:
    """A tokenizer that splits every word after the prefix into a lone space token first."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        head, _, rest = text.partition(" ")
        return [1] + ([2] + [ord(c) for c in rest] if rest else [])


def test_tokenizer_where_classes_share_a_first_token_is_refused() -> None:
    with pytest.raises(ValueError, match="share a first token"):
        class_token_ids(_SharedFirstToken())
