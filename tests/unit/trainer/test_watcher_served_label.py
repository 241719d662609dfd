"""The retrain watcher counts a moderator's disagreement with the model's own label, not with a label
that provenance decided (a C2PA manifest declaring AI that the model missed is worth learning from)."""

from __future__ import annotations

from typing import Any

from core.config import Settings
from core.contracts.verdicts import Label
from trainer.watcher import FeedbackHandler


class Record:
    def __init__(self, fields: dict[str, bytes], marker: bytes | None = None) -> None:
        self.fields = fields
        self.marker = marker

    def hmget(self, key: str, *names: str) -> list[bytes | None]:
        return [self.fields.get(n) for n in names]

    def get(self, key: str) -> bytes | None:
        assert key.endswith(":records:marker")
        return self.marker


class State:
    served: list[Any] = []

    def record_label(self, label: Label, served: Any, window: int) -> bool:
        self.served.append(served)
        return True


def handled(fields: dict[str, bytes], marker: bytes | None = None) -> tuple[str, list[Any]]:
    handler = FeedbackHandler(Settings(), Record(fields, marker), submitter=None)
    handler.state = State()  # type: ignore[assignment]
    handler.state.served = []  # type: ignore[attr-defined]
    result = handler.handle_result(
        Label(image_id="a" * 64, label="synthesized", moderator_id="m", verdict_model_version="1").to_json()
    )
    return result, handler.state.served  # type: ignore[attr-defined]


def served_for(fields: dict[str, bytes]) -> Any:
    return handled(fields)[1][-1]


def test_the_models_own_label_is_what_the_moderator_disagrees_with():
    assert served_for({"label": b"synthesized", "model_label": b"authentic"}) == "authentic"


def test_a_record_from_before_fusion_falls_back_to_its_label():
    assert served_for({"label": b"manipulated"}) == "manipulated"
    assert served_for({}) is None


def test_a_label_for_an_image_never_judged_is_not_counted_while_the_records_are_whole():
    assert handled({}, marker=b"complete:4f2a") == ("unknown", [])
    assert handled({"label": b"authentic"}, marker=b"complete:4f2a") == ("counted", ["authentic"])


def test_after_a_redis_loss_a_missing_record_says_nothing_and_the_label_counts():
    assert handled({}, marker=None) == ("counted", [None])  # records lost, not yet rebuilt
    assert handled({}, marker=b"rebuilding:4f2a") == ("counted", [None])
