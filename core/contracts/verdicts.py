"""Contracts the workers and the moderation service publish: ``Verdict`` and ``Label`` (with the
``Region`` boxes a label may carry)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.contracts.base import Contract, Timestamp, utcnow
from core.contracts.images import ImageEvent
from core.contracts.provenance import Part, Provenance

VerdictLabel = Literal["authentic", "manipulated", "synthesized", "uncertain"]
HumanLabel = Literal["authentic", "manipulated", "synthesized"]
LabelSource = Literal["model", "provenance", "both"]
MAX_REGIONS = 32  # boxes on one label; more is a drawing accident, not evidence


CAPTION_EXCERPT = 280  # characters of the post's text a verdict carries; the event keeps it all


class PostContext(Part):
    """What a verdict is about, copied from its image event so that a subscriber can act (open the
    post, contact the account, quote the caption) without looking anything up."""

    source: str  # reddit, x, instagram, rss, web, folder, upload
    source_item_id: str
    post_url: str  # the post a person would open (for a folder: the file's URL)
    media_url: str | None = None  # the image file itself, when it has a URL of its own
    account: str | None = None  # the author or account that posted it
    caption: str = ""  # the post's text, cut to CAPTION_EXCERPT characters ("…" marks a cut)
    posted_at: Timestamp | None = None
    collected_at: Timestamp

    @classmethod
    def of(cls, event: ImageEvent) -> PostContext:
        text = " ".join(event.text.split())
        if len(text) > CAPTION_EXCERPT:
            text = text[: CAPTION_EXCERPT - 1].rstrip() + "…"
        return cls(
            source=event.source,
            source_item_id=event.source_item_id,
            post_url=event.source_url,
            media_url=event.media_url,
            account=event.author,
            caption=text,
            posted_at=event.posted_at,
            collected_at=event.collected_at,
        )


class Verdict(Contract):
    """The decision on one image: the model's scores, the provenance evidence, and the final label.

    ``scores`` are the model's alone; ``label`` and ``flagged`` are final, after the fusion policy
    (``detector/fusion.py``) has weighed the provenance evidence; ``label_source`` says which side
    decided the label, ``model_label`` what the model alone said, ``evidence`` why, one line each.
    ``context`` says which post, URL, account and caption it is about, and when it was collected.
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
    # The post it is about (optional: verdicts from before it parse unchanged; None there).
    context: PostContext | None = None

    @field_validator("scores")
    @classmethod
    def _probabilities(cls, scores: dict[str, float]) -> dict[str, float]:
        if any(not 0.0 <= p <= 1.0 for p in scores.values()):
            raise ValueError("scores must be probabilities in [0, 1]")
        return scores


class Region(Part):
    """A box a moderator drew where the image is manipulated or synthesized: its top-left corner and
    size as fractions of the image's width and height, so it holds at any resolution."""

    x: float = Field(ge=0.0, le=1.0)
    y: float = Field(ge=0.0, le=1.0)
    w: float = Field(gt=0.0, le=1.0)
    h: float = Field(gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _inside(self) -> Region:
        if self.x + self.w > 1.0 + 1e-6 or self.y + self.h > 1.0 + 1e-6:
            raise ValueError("a region must lie inside the image (x + w <= 1 and y + h <= 1)")
        return self


class Label(Contract):
    """A moderator's judgment of one image: the system's ground truth.

    Optional fields (added without a ``schema_version`` bump):

    - ``regions``: boxes marking where the image is manipulated or synthesized (none on an
      ``authentic`` label); exported with the training set.
    - ``retracted_at``: set on a *retraction*, the message the review service publishes when a
      moderator undoes a label. A retraction repeats the withdrawn label field for field
      (``image_id``, ``moderator_id``, ``labeled_at``, ``label`` ...) and adds the time of the undo,
      so :meth:`identity` names the label it withdraws. Readers that know the field drop both
      (the retrain watcher takes the label's counts back, the dataset builder ignores it); a reader
      from before it sees the same label twice, which it already treats as a replay.
    """

    image_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: HumanLabel
    moderator_id: str
    verdict_model_version: str | None
    note: str = ""
    labeled_at: Timestamp = Field(default_factory=utcnow)
    regions: list[Region] = Field(default=[], max_length=MAX_REGIONS)
    retracted_at: Timestamp | None = None

    @model_validator(mode="after")
    def _regions_mark_fakes(self) -> Label:
        if self.regions and self.label == "authentic":
            raise ValueError(
                "an authentic label carries no regions (they mark manipulated or synthesized parts)"
            )
        return self

    @property
    def is_retraction(self) -> bool:
        return self.retracted_at is not None

    def identity(self) -> str:
        """``image_id:moderator_id:labeled_at``: one label, and every retraction of it."""
        return f"{self.image_id}:{self.moderator_id}:{self.labeled_at.isoformat()}"

    def retraction(self, at: datetime | None = None) -> Label:
        """The message that withdraws this label (see the class docstring)."""
        return self.model_copy(update={"retracted_at": at or utcnow()})
