"""The fusion policy, row by row (docs/detector.md has the same table)."""

from __future__ import annotations

import pytest

from core.contracts.provenance import C2paEvidence, Hint, Provenance, Unreadable
from core.contracts.verdicts import Verdict
from detector.fusion import fuse, refuse

AI = "trainedAlgorithmicMedia"
COMPOSITE = "compositeWithTrainedAlgorithmicMedia"


def c2pa(state: str = "intact", trusted: bool | None = True, types: tuple[str, ...] = (), **kw) -> Provenance:  # type: ignore[no-untyped-def]
    return Provenance(
        c2pa=C2paEvidence(state=state, trusted=trusted, digital_source_types=list(types), **kw),  # type: ignore[arg-type]
        metadata=["c2pa"],
    )


# (name, model label, model flagged, provenance, final label, flagged, source)
ROWS = [
    ("no provenance read: the model decides", "authentic", False, None, "authentic", False, "model"),
    ("stripped: the model decides", "manipulated", True, Provenance(stripped=True), "manipulated", True, "model"),
    ("1a intact manifest declares AI, model says authentic", "authentic", False, c2pa(types=(AI,)), "synthesized", True, "provenance"),
    ("1a untrusted signer declaring AI still counts", "authentic", False, c2pa(trusted=False, types=(AI,)), "synthesized", True, "provenance"),
    ("1a model agrees", "synthesized", True, c2pa(types=(AI,)), "synthesized", True, "both"),
    ("1b plain XMP declares AI", "uncertain", True, Provenance(declared_source_type=AI), "synthesized", True, "provenance"),
    ("1c composite with AI -> manipulated", "authentic", False, c2pa(types=(COMPOSITE,)), "manipulated", True, "provenance"),
    ("1c plain XMP composite, model agrees", "manipulated", True, Provenance(declared_source_type=COMPOSITE), "manipulated", True, "both"),
    ("2 tampered manifest: flagged, label the model's", "authentic", False, c2pa("tampered", failures=["assertion.dataHash.mismatch"]), "authentic", True, "model"),
    ("2 a tampered manifest's AI claim is not relied on", "authentic", False, c2pa("tampered", types=(AI,)), "authentic", True, "model"),
    ("3 unreadable manifest: flagged", "authentic", False, c2pa("unreadable", None, reason="expected JUMD"), "authentic", True, "model"),
    ("4 generator hint: flagged, label the model's", "authentic", False, Provenance(hints=[Hint(where="EXIF Software", value="Midjourney 6", generator="Midjourney")]), "authentic", True, "model"),
    ("5 trusted capture supports authentic", "authentic", False, c2pa(types=("digitalCapture",)), "authentic", False, "both"),
    ("5 a trusted capture never clears a flag", "manipulated", True, c2pa(types=("digitalCapture",)), "manipulated", True, "model"),
    ("6 an untrusted capture is noted only", "authentic", False, c2pa(trusted=False, types=("digitalCapture",)), "authentic", False, "model"),
    ("6 capture not trusted never clears either", "synthesized", True, c2pa(trusted=None, types=("digitalCapture",)), "synthesized", True, "model"),
    ("6 unreadable XMP is evidence, not a flag", "authentic", False, Provenance(unreadable=[Unreadable(part="xmp", reason="DTD")]), "authentic", False, "model"),
    ("plain XMP capture claim counts for nothing", "authentic", False, Provenance(declared_source_type="digitalCapture"), "authentic", False, "model"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "model", "model_flag", "pv", "label", "flagged", "source"), ROWS, ids=[r[0] for r in ROWS]
)
def test_policy_row(name, model, model_flag, pv, label, flagged, source):  # type: ignore[no-untyped-def]
    fused = fuse(model, model_flag, pv)
    assert (fused.label, fused.flagged, fused.label_source) == (label, flagged, source)
    if pv is not None and pv.state not in ("stripped", "plain"):
        assert fused.evidence  # every decision that provenance touched says why


def test_metadata_never_clears_what_the_model_flags():
    clearing = [
        c2pa(types=("digitalCapture",)),
        Provenance(declared_source_type="digitalCapture"),
        Provenance(stripped=True),
        c2pa(trusted=True, types=("digitalCapture", "humanEdits")),
    ]
    for pv in clearing:
        for model in ("manipulated", "synthesized", "uncertain"):
            assert fuse(model, True, pv).flagged


def test_the_evidence_names_the_field_and_the_caveat():
    pv = Provenance(hints=[Hint(where="PNG text parameters", value="Steps: 20", generator="")])
    (line,) = fuse("authentic", False, pv).evidence
    assert line.startswith("PNG text parameters carries generation data") and "anyone can write" in line


def test_the_verdict_fields_keep_the_model_and_mark_instability():
    pv = c2pa(types=(AI,))
    fields = fuse("authentic", False, pv).verdict_fields("authentic", False, pv, recheck_label="manipulated")
    assert fields["label"] == "synthesized" and fields["model_label"] == "authentic"
    assert fields["unstable"] is True and fields["recheck_label"] == "manipulated"
    assert fuse("authentic", False, None).verdict_fields("authentic", False, None)["unstable"] is None


def test_a_reused_verdict_is_fused_with_the_new_images_own_provenance():
    pv = c2pa(types=(AI,))
    fused = fuse("authentic", False, pv)
    original = Verdict(
        image_id="a" * 64,
        scores={"authentic": 0.8, "manipulated": 0.1, "synthesized": 0.1},
        model_name="m",
        model_version="1",
        profile_id="p",
        latency_ms=1.0,
        **fused.verdict_fields("authentic", False, pv),
    )
    assert original.label == "synthesized"
    stripped_copy = refuse(original.model_copy(update={"image_id": "b" * 64}), Provenance(stripped=True))
    assert (stripped_copy.label, stripped_copy.flagged, stripped_copy.label_source) == (
        "authentic",
        False,
        "model",
    )
    assert stripped_copy.provenance == Provenance(stripped=True) and stripped_copy.scores == original.scores
    legacy = original.model_copy(
        update={"model_label": None, "model_flagged": None, "label": "manipulated", "flagged": True}
    )
    assert refuse(legacy, None).label == "manipulated"  # a verdict from before fusion keeps its own
