"""The retrain watcher counts a moderator's disagreement with the model's own label, not with a label
that provenance decided (a C2PA manifest declaring AI that the model missed is worth learning from)."""

from __future__ import annotations

from typing import Any

from core.config import Settings
from core.contracts.verdicts import Label
from trainer.watcher import FeedbackHandler


class Record:
    def __init__(self, fields: dict[str, bytes]) -> None:
        self.fields = fields

    def hmget(self, key: str, *names: str) -> list[bytes | None]:
        return [self.fields.get(n) for n in names]


class State:
    served: list[Any] = []

    def record_label(self, label: Label, served: Any, window: int) -> bool:
        self.served.append(served)
        return True


def served_for(fields: dict[str, bytes]) -> Any:
    handler = FeedbackHandler(Settings(), Record(fields), submitter=None)
    handler.state = State()  # type: ignore[assignment]
    handler.handle(
        Label(image_id="a" * 64, label="synthesized", moderator_id="m", verdict_model_version="1").to_json()
    )
    return handler.state.served[-1]  # type: ignore[attr-defined]


def test_the_models_own_label_is_what_the_moderator_disagrees_with():
    assert served_for({"label": b"synthesized", "model_label": b"authentic"}) == "authentic"


def test_a_record_from_before_fusion_falls_back_to_its_label():
    assert served_for({"label": b"manipulated"}) == "manipulated"
    assert served_for({}) is None
