"""Contracts the workers and the moderation service publish: ``Verdict`` and ``Label``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from core.contracts.base import Contract, Timestamp, utcnow
from core.contracts.provenance import Provenance

VerdictLabel = Literal["authentic", "manipulated", "synthesized", "uncertain"]
HumanLabel = Literal["authentic", "manipulated", "synthesized"]
LabelSource = Literal["model", "provenance", "both"]


class Verdict(Contract):
    """The decision on one image: the model's scores, the provenance evidence, and the final label.

    ``scores`` are the model's alone; ``label`` and ``flagged`` are final, after the fusion policy
    (``detector/fusion.py``) has weighed the provenance evidence; ``label_source`` says which side
    decided the label, ``model_label`` what the model alone said, ``evidence`` why, one line each.
    """

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
    # Fusion with provenance (optional: verdicts from before it parse unchanged).
    model_label: VerdictLabel | None = None  # the model's own label; None: no fusion ran
    model_flagged: bool | None = None  # the model's own flag
    label_source: LabelSource = "model"
    provenance: Provenance | None = None  # the evidence, as ingest read it
    evidence: list[str] = []  # the fusion policy's reasons, one line each
    # The optional re-check (one JPEG re-encode judged in the same batch): None = not re-checked.
    unstable: bool | None = None
    recheck_label: VerdictLabel | None = None

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
