"""The retrain watcher hands a retraction (a moderator's undo) to the trigger state to take the label's
counts back, and never counts it as a label of its own."""

from __future__ import annotations

from typing import Any

from core.config import Settings
from core.contracts.verdicts import Label
from trainer.watcher import FeedbackHandler


class State:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def record_label(self, label: Label, served: Any, window: int) -> bool:
        self.calls.append(("record", label.identity()))
        return True

    def retract_label(self, label: Label) -> bool:
        self.calls.append(("retract", label.identity()))
        return True


class Record:
    def hmget(self, key: str, *names: str) -> list[bytes | None]:
        return [b"authentic" if n == "label" else None for n in names]

    def get(self, key: str) -> bytes:
        return b"complete:1"  # the records are whole (and this image has one)


def test_a_retraction_takes_back_the_label_it_repeats():
    handler = FeedbackHandler(Settings(), Record(), submitter=None)
    state = State()
    handler.state = state  # type: ignore[assignment]
    label = Label(image_id="a" * 64, label="manipulated", moderator_id="m", verdict_model_version="1")
    assert handler.handle(label.to_json())
    assert handler.handle(label.retraction().to_json())
    assert state.calls == [("record", label.identity()), ("retract", label.identity())]
