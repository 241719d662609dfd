"""The fusion policy: the model's verdict and the image's provenance evidence -> the final label, its
source (``model``, ``provenance``, ``both``), the flag, and the reasons.

Pure functions, no I/O: the worker calls :func:`fuse` where it builds a ``Verdict``, and
:func:`refuse` when it reuses a near duplicate's verdict (the model part is shared, the evidence is
the image's own). The rows, in order (docs/detector.md has the same table):

1. A declaration of AI decides the label, whatever the model says: a C2PA manifest that verifies
   (trusted signer or not: nobody falsely declares their own image synthetic) or a plain XMP IPTC
   tag declaring ``trainedAlgorithmicMedia`` -> ``synthesized``; ``compositeWithTrainedAlgorithmicMedia``
   or ``compositeSynthetic`` -> ``manipulated``. Flagged. Source ``both`` when the model said the same.
2. A C2PA manifest that fails validation (a hash or the signature) -> flagged for review: the image
   was edited after signing, or the manifest forged. The label stays the model's.
3. A C2PA store that cannot be read (malformed, over the size limit) -> flagged, label the model's.
4. Generator hints in plain metadata (EXIF ``Software``, PNG parameters, ComfyUI graphs, XMP tool
   fields) -> evidence and a flag, label the model's: anyone can write these fields.
5. A verified manifest from a trusted signer declaring a capture (``digitalCapture`` ...) with no
   AI action supports ``authentic``: source ``both`` when the model says ``authentic``. It never
   clears an image the model flags: the model's label and flag stand, the evidence is noted.
6. Anything else (no metadata, stripped, unreadable XMP/EXIF, an untrusted capture claim) is
   evidence at most; the model decides.

Metadata never clears: the final flag is the model's flag OR the provenance flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.contracts.provenance import AI_COMPOSITE, AI_GENERATED, CAPTURED, Provenance
from core.contracts.verdicts import Verdict

MAX_EVIDENCE = 12


@dataclass(frozen=True)
class Fused:
    label: str
    flagged: bool
    label_source: str  # model | provenance | both
    evidence: list[str] = field(default_factory=list)

    def verdict_fields(
        self,
        model_label: str,
        model_flagged: bool,
        provenance: Provenance | None,
        recheck_label: str | None = None,
    ) -> dict[str, Any]:
        """The ``Verdict`` fields of this fusion (``label`` and ``flagged`` included)."""
        return {
            "label": self.label,
            "flagged": self.flagged,
            "label_source": self.label_source,
            "evidence": self.evidence[:MAX_EVIDENCE],
            "model_label": model_label,
            "model_flagged": model_flagged,
            "provenance": provenance,
            "unstable": None if recheck_label is None else recheck_label != model_label,
            "recheck_label": recheck_label,
        }


def _declared(pv: Provenance) -> list[tuple[str, str]]:
    """(source type, who declared it) for the declarations that count: an intact manifest's, and
    plain XMP's."""
    out = []
    if pv.c2pa.state == "intact":
        who = "C2PA manifest (verified, trusted signer)" if pv.c2pa.trusted else "C2PA manifest (verified)"
        out += [(t, who) for t in pv.c2pa.digital_source_types]
    if pv.declared_source_type:
        out.append((pv.declared_source_type, "XMP IPTC DigitalSourceType"))
    return out


def fuse(model_label: str, model_flagged: bool, provenance: Provenance | None) -> Fused:
    """The final decision for one image (the rows in this module's docstring)."""
    if provenance is None:
        return Fused(model_label, model_flagged, "model")
    pv = provenance
    evidence: list[str] = []
    flag = False
    decided: str | None = None

    declared = _declared(pv)
    for kind, labels_as in ((AI_GENERATED, "synthesized"), (AI_COMPOSITE, "manipulated")):
        hits = [(t, who) for t, who in declared if t in kind]
        if hits and decided is None:
            decided = labels_as
            evidence += [f"{who} declares {t}: {labels_as}" for t, who in hits]
    if decided:
        flag = True
    elif pv.declared_source_type:
        evidence.append(
            f"XMP IPTC DigitalSourceType declares {pv.declared_source_type} (plain metadata: noted, not relied on)"
        )

    c2pa = pv.c2pa
    if c2pa.state == "tampered":
        flag = True
        codes = ", ".join(c for c in c2pa.failures if "untrusted" not in c)[:200] or c2pa.validation_state
        evidence.append(f"C2PA manifest fails validation ({codes}): edited after signing, or forged")
        if c2pa.digital_source_types:
            evidence.append(
                f"the failing manifest claims {', '.join(c2pa.digital_source_types)} (not relied on)"
            )
    elif c2pa.state == "unreadable":
        flag = True
        evidence.append(f"C2PA manifest present but unreadable: {c2pa.reason}")

    for hint in pv.hints:
        flag = True
        said = f"names {hint.generator}" if hint.generator else "carries generation data"
        evidence.append(f"{hint.where} {said} (plain metadata: anyone can write it)")

    for part in pv.unreadable:
        evidence.append(f"{part.part} unreadable: {part.reason}")

    supports_authentic = (
        c2pa.state == "intact"
        and c2pa.trusted is True
        and any(t in CAPTURED for t in c2pa.digital_source_types)
        and decided is None
    )
    if supports_authentic:
        if model_label == "authentic":
            evidence.append("C2PA manifest (verified, trusted signer) declares a capture")
            if not flag and not model_flagged:
                return Fused("authentic", False, "both", evidence)
        else:
            evidence.append(
                "C2PA manifest (verified, trusted signer) declares a capture; the model's verdict stands"
            )
    elif c2pa.state == "intact" and decided is None:
        types = ", ".join(c2pa.digital_source_types) or "no source type"
        evidence.append(f"C2PA manifest verifies ({types}; signer not trusted): noted, not relied on")

    if decided is not None:
        source = "both" if model_label == decided else "provenance"
        return Fused(decided, True, source, evidence)
    return Fused(model_label, model_flagged or flag, "model", evidence)


def refuse(verdict: Verdict, provenance: Provenance | None) -> Verdict:
    """A reused verdict (a near duplicate's) fused again with this image's own provenance."""
    model_label = verdict.model_label or verdict.label
    model_flagged = verdict.model_flagged if verdict.model_flagged is not None else verdict.flagged
    fused = fuse(model_label, model_flagged, provenance)
    fields = fused.verdict_fields(model_label, model_flagged, provenance, verdict.recheck_label)
    return verdict.model_copy(update=fields)
