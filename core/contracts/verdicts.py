"""Contracts the workers and the moderation service publish: ``Verdict`` and ``Label``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from core.contracts.base import Contract, Timestamp, utcnow

VerdictLabel = Literal["authentic", "manipulated", "synthesized", "uncertain"]
HumanLabel = Literal["authentic", "manipulated", "synthesized"]


class Verdict(Contract):
    """The detector's decision on one image."""

    image_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: VerdictLabel
    scores: dict[str, float]
    explanation: str = ""
    model_name: str
    model_version: str
    profile_id: str
    latency_ms: float = Field(ge=0)
    decided_at: Timestamp = Field(default_factory=utcnow)
    flagged: bool
    reused_from: str | None = None  # image_id whose verdict this one reuses (near duplicate)

    @field_validator("scores")
    @classmethod
    def _probabilities(cls, scores: dict[str, float]) -> dict[str, float]:
        if any(not 0.0 <= p <= 1.0 for p in scores.values()):
            raise ValueError("scores must be probabilities in [0, 1]")
        return scores


class Label(Contract):
    """A moderator's judgment of one image: the system's ground truth."""

    image_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: HumanLabel
    moderator_id: str
    verdict_model_version: str | None
    note: str = ""
    labeled_at: Timestamp = Field(default_factory=utcnow)
