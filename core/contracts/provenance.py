"""``Provenance``: what an image's own metadata says about where it came from, read once at ingest.

It travels inside the ``ImageEvent`` (field ``provenance``) and, with the fusion policy's reading of
it, inside the ``Verdict``. Every list and text is capped by the reader, so an event stays far below
the broker's message limit whatever the image carries.

Parts, in the order the fusion policy (``detector/fusion.py``) weighs them:

- ``c2pa``: a C2PA manifest (content credentials) and its validation: ``absent``, ``intact`` (the
  hashes and the claim signature verify), ``tampered`` (a hash or the signature fails; the failure
  codes say which), ``unreadable`` (a manifest is there but cannot be parsed, or is over the size
  limit). ``trusted`` says whether the signing certificate chains to a configured trust anchor.
- ``declared_source_type``: an IPTC digital source type declared in plain XMP (outside C2PA);
  anyone can write it, but a declaration of AI is self-incriminating, so it counts.
- ``hints``: metadata fields that name a generator or carry generation parameters (EXIF
  ``Software``, a PNG ``parameters`` or ComfyUI ``prompt`` chunk, XMP ``CreatorTool`` ...).
- ``stripped``: no metadata block at all (what re-sharing on most platforms leaves).
- ``unreadable``: parts that could not be read (hostile or broken), with the reason.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

C2paState = Literal["absent", "intact", "tampered", "unreadable"]
ProvenanceState = Literal[
    "c2pa-tampered", "c2pa-intact", "unreadable", "declared", "hint", "plain", "stripped"
]
# Highest first: the one a record is filed under when several apply.
PROVENANCE_STATES: tuple[ProvenanceState, ...] = (
    "c2pa-tampered",
    "c2pa-intact",
    "unreadable",
    "declared",
    "hint",
    "plain",
    "stripped",
)

# IPTC NewsCodes digital source types (http://cv.iptc.org/newscodes/digitalsourcetype/<code>) that
# the fusion policy acts on; the record keeps whatever short code it finds.
IPTC_DST_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"
AI_GENERATED = frozenset({"trainedAlgorithmicMedia"})
AI_COMPOSITE = frozenset({"compositeWithTrainedAlgorithmicMedia", "compositeSynthetic"})
CAPTURED = frozenset(
    {"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print", "compositeCapture"}
)


def short_source_type(value: str) -> str:
    """``http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia`` (or the https form,
    or the bare code) -> ``trainedAlgorithmicMedia``."""
    value = value.strip()
    return value.rstrip("/").rsplit("/", 1)[-1] if "/" in value else value


class Part(BaseModel):
    """A frozen, strictly typed part of a contract (no ``schema_version`` of its own)."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


class C2paEvidence(Part):
    state: C2paState = "absent"
    trusted: bool | None = None  # signer chains to a configured trust anchor; None: nothing was judged
    validation_state: str = ""  # the C2PA SDK's word: Valid, Trusted, Invalid
    failures: list[str] = []  # validation failure codes, e.g. assertion.dataHash.mismatch
    claim_generator: str = ""
    signer: str = ""  # the signing certificate's issuer / common name
    title: str = ""
    actions: list[str] = []  # c2pa.created, c2pa.edited ...
    digital_source_types: list[str] = []  # short IPTC codes from the actions
    software_agents: list[str] = []
    reason: str = ""  # why unreadable


class Hint(Part):
    """One metadata field that spoke: where it was, what it said (an excerpt), which generator."""

    where: str  # e.g. "EXIF Software", "PNG text parameters", "XMP xmp:CreatorTool"
    value: str
    generator: str = ""  # the generator it names when recognised; "" for generation parameters alone


class Unreadable(Part):
    part: str  # c2pa, xmp, exif, iptc, png-text, container
    reason: str


class Provenance(Part):
    c2pa: C2paEvidence = C2paEvidence()
    declared_source_type: str | None = None  # short IPTC code declared in plain XMP
    hints: list[Hint] = []
    metadata: list[str] = []  # blocks present: c2pa, exif, xmp, iptc, png-text, comment, icc
    stripped: bool = False  # no metadata block at all (an ICC colour profile does not count)
    unreadable: list[Unreadable] = []

    @property
    def state(self) -> ProvenanceState:
        """The one state the review queue files this record under (see ``PROVENANCE_STATES``)."""
        if self.c2pa.state == "tampered":
            return "c2pa-tampered"
        if self.c2pa.state == "intact":
            return "c2pa-intact"
        if self.unreadable or self.c2pa.state == "unreadable":
            return "unreadable"
        if self.declared_source_type:
            return "declared"
        if self.hints:
            return "hint"
        return "stripped" if self.stripped else "plain"

    def source_types(self) -> list[str]:
        """Every digital source type declared, C2PA's (when intact or tampered) first."""
        out = list(self.c2pa.digital_source_types) if self.c2pa.state in ("intact", "tampered") else []
        if self.declared_source_type and self.declared_source_type not in out:
            out.append(self.declared_source_type)
        return out
