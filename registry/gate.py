"""The evaluation gate: does a candidate replace the champion?

A candidate is promoted only when, on the same held-out set of new labels as the champion:

- its macro-F1 reaches the absolute floor ``min_macro_f1`` (this alone decides for the first model);
- its macro-F1 beats the champion's by at least ``min_improvement``;
- no class's recall drops by more than ``max_recall_drop`` from the champion's;

and, so that it cannot learn a new family by forgetting an old one, on every frozen regression set
(one per family, :mod:`trainer.regression`) no class's recall drops by more than ``max_recall_drop``
from the champion's on that set. Two checks refuse careless or poisoned labels:

- ``min_label_agreement``: the candidate must agree with at least this share of the held-out new
  labels (its accuracy on them). Labels that contradict one another cannot be learned: with 40% of
  them flipped even a perfect model agrees with about 60%, while it still scores well on the
  frozen regression sets, which the refusal then quotes;
- ``min_moderator_agreement``: where at least ``min_double_labeled`` images were labeled by two
  moderators (the review service's second-moderator share), the share of agreeing pairs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GatePolicy:
    min_improvement: float = 0.01
    max_recall_drop: float = 0.05
    min_macro_f1: float = 0.5
    min_label_agreement: float = 0.0  # 0 = not checked
    min_moderator_agreement: float = 0.0  # 0 = not checked
    min_double_labeled: int = 10


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    candidate_macro_f1: float = 0.0
    champion_macro_f1: float | None = None
    recall_drops: dict[str, float] = field(default_factory=dict)
    policy: dict[str, float] = field(default_factory=dict)
    # family -> class -> recall drop (champion - candidate) on that family's frozen regression set
    regression_drops: dict[str, dict[str, float]] = field(default_factory=dict)
    label_agreement: float | None = None
    moderator_agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _drops(candidate: dict[str, Any], champion: dict[str, Any]) -> dict[str, float]:
    out = {}
    for cls, stats in candidate["per_class"].items():
        before = champion["per_class"].get(cls, {}).get("recall")
        after = stats.get("recall")
        if before is not None and after is not None:
            out[cls] = before - after
    return out


def decide(
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    policy: GatePolicy,
    *,
    regression: dict[str, dict[str, Any]] | None = None,
    moderators: dict[str, Any] | None = None,
) -> GateDecision:
    """Apply ``policy`` to two :func:`trainer.evaluate.metrics` reports (``champion`` None: first model).

    ``regression``: family -> ``{"candidate": report, "champion": report or None}`` on its frozen set;
    ``moderators``: ``{"images": n double-labeled, "rate": agreeing share of pairs}``.
    """
    reasons: list[str] = []
    ok = True
    f1 = float(candidate["macro_f1"])
    if f1 < policy.min_macro_f1:
        ok = False
        reasons.append(f"macro-F1 {f1:.3f} is below the floor {policy.min_macro_f1:.3f}")
    drops: dict[str, float] = {}
    champ_f1 = None
    if champion is not None:
        if champion.get("n") != candidate.get("n"):
            raise ValueError("candidate and champion were not scored on the same held-out set")
        champ_f1 = float(champion["macro_f1"])
        if f1 < champ_f1 + policy.min_improvement:
            ok = False
            reasons.append(
                f"macro-F1 {f1:.3f} does not beat the champion's {champ_f1:.3f} by {policy.min_improvement:.3f}"
            )
        drops = _drops(candidate, champion)
        for cls, drop in drops.items():
            if drop > policy.max_recall_drop:
                ok = False
                before = champion["per_class"][cls]["recall"]
                reasons.append(
                    f"recall of {cls} drops {before:.3f} -> {before - drop:.3f} (more than {policy.max_recall_drop:.3f})"
                )
    regression_drops: dict[str, dict[str, float]] = {}
    for family, pair in sorted((regression or {}).items()):
        if pair.get("champion") is None:
            continue
        if pair["champion"].get("n") != pair["candidate"].get("n"):
            raise ValueError(f"regression set {family}: candidate and champion scored on different sets")
        regression_drops[family] = _drops(pair["candidate"], pair["champion"])
        for cls, drop in regression_drops[family].items():
            if drop > policy.max_recall_drop:
                ok = False
                before = pair["champion"]["per_class"][cls]["recall"]
                reasons.append(
                    f"regression set {family}: recall of {cls} drops {before:.3f} -> {before - drop:.3f} "
                    f"(more than {policy.max_recall_drop:.3f}): the candidate forgets what the champion knew"
                )
    agreement = candidate.get("accuracy")
    if policy.min_label_agreement > 0 and agreement is not None and agreement < policy.min_label_agreement:
        ok = False
        kept = [
            float(pair["candidate"]["accuracy"])
            for pair in (regression or {}).values()
            if pair["candidate"].get("accuracy") is not None
        ]
        elsewhere = (
            f" (it still scores {sum(kept) / len(kept):.0%} on the frozen regression sets)" if kept else ""
        )
        reasons.append(
            f"the candidate agrees with only {agreement:.0%} of the held-out new labels "
            f"(floor {policy.min_label_agreement:.0%}){elsewhere}: the labels contradict one another or "
            "what can be learned from them; check for careless or poisoned labeling (each moderator's "
            "agreement with the others is on the stats page)"
        )
    mod_rate = None
    if moderators and moderators.get("rate") is not None:
        mod_rate = float(moderators["rate"])
        n_double = int(moderators.get("images", 0))
        if (
            policy.min_moderator_agreement > 0
            and n_double >= policy.min_double_labeled
            and mod_rate < policy.min_moderator_agreement
        ):
            ok = False
            reasons.append(
                f"moderators agree on only {mod_rate:.0%} of the {n_double} images two of them labeled "
                f"(floor {policy.min_moderator_agreement:.0%}): the labels are not reliable enough to train on"
            )
    if ok:
        if champion is None:
            reasons.append(f"first model: macro-F1 {f1:.3f} reaches the floor {policy.min_macro_f1:.3f}")
        else:
            reasons.append(f"macro-F1 {champ_f1:.3f} -> {f1:.3f}; no class recall drops beyond the bound")
        if regression_drops:
            reasons.append(f"regression sets kept: {', '.join(regression_drops)}")
    return GateDecision(
        ok,
        reasons,
        f1,
        champ_f1,
        drops,
        asdict(policy),
        regression_drops,
        float(agreement) if agreement is not None else None,
        mod_rate,
    )


def last_decision(versions: list[Any]) -> dict[str, Any] | None:
    """The newest version the gate judged, from versions newest first (``RegistryStore.list_versions``):
    its number, ``passed``/``refused``, the reasons, its macro-F1 and aliases; None before any."""
    for v in versions:
        if v.tags.get("gate"):
            return {
                "version": v.version,
                "decision": v.tags["gate"],
                "reasons": v.tags.get("gate.reasons", ""),
                "macro_f1": v.tags.get("eval.macro_f1"),
                "aliases": list(v.aliases),
            }
    return None


def last_decision_line(tracking_uri: str, model_name: str) -> str:
    """The gate's last decision in one line, or one line saying that MLflow does not answer (checked
    first, within seconds: the client's own retries take minutes)."""
    from core.reach import mlflow_answers

    if not mlflow_answers(tracking_uri):
        return (
            f"gate: unknown, MLflow at {tracking_uri} is not reachable "
            "(`misinfo dev up mlflow`, or set MISINFO_MLFLOW_TRACKING_URI)"
        )
    from registry.store import RegistryStore

    last = last_decision(RegistryStore(tracking_uri, model_name).list_versions())
    if last is None:
        return f"gate: no version of {model_name} judged yet"
    aliases = f" ({', '.join(last['aliases'])})" if last["aliases"] else ""
    return (
        f"gate: version {last['version']}{aliases} {last['decision']}, macro-F1 {last['macro_f1'] or '-'}: "
        f"{last['reasons'] or 'no reasons recorded'}"
    )
