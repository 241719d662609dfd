"""The evaluation gate: does a candidate replace the champion?

A candidate is promoted only when, on the same held-out set as the champion:

- its macro-F1 reaches the absolute floor ``min_macro_f1`` (this alone decides for the first model);
- its macro-F1 beats the champion's by at least ``min_improvement``;
- no class's recall drops by more than ``max_recall_drop`` from the champion's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GatePolicy:
    min_improvement: float = 0.01
    max_recall_drop: float = 0.05
    min_macro_f1: float = 0.5


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    candidate_macro_f1: float = 0.0
    champion_macro_f1: float | None = None
    recall_drops: dict[str, float] = field(default_factory=dict)
    policy: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(candidate: dict[str, Any], champion: dict[str, Any] | None, policy: GatePolicy) -> GateDecision:
    """Apply ``policy`` to two :func:`trainer.evaluate.metrics` reports (``champion`` None: first model)."""
    reasons: list[str] = []
    ok = True
    f1 = float(candidate["macro_f1"])
    if f1 < policy.min_macro_f1:
        ok = False
        reasons.append(f"macro-F1 {f1:.3f} is below the floor {policy.min_macro_f1:.3f}")
    drops: dict[str, float] = {}
    champ_f1 = None
    if champion is None:
        if ok:
            reasons.append(f"first model: macro-F1 {f1:.3f} reaches the floor {policy.min_macro_f1:.3f}")
    else:
        if champion.get("n") != candidate.get("n"):
            raise ValueError("candidate and champion were not scored on the same held-out set")
        champ_f1 = float(champion["macro_f1"])
        if f1 < champ_f1 + policy.min_improvement:
            ok = False
            reasons.append(
                f"macro-F1 {f1:.3f} does not beat the champion's {champ_f1:.3f} by {policy.min_improvement:.3f}"
            )
        for cls, stats in candidate["per_class"].items():
            before = champion["per_class"].get(cls, {}).get("recall")
            after = stats.get("recall")
            if before is None or after is None:
                continue
            drops[cls] = before - after
            if before - after > policy.max_recall_drop:
                ok = False
                reasons.append(
                    f"recall of {cls} drops {before:.3f} -> {after:.3f} (more than {policy.max_recall_drop:.3f})"
                )
        if ok:
            reasons.append(f"macro-F1 {champ_f1:.3f} -> {f1:.3f}; no class recall drops beyond the bound")
    return GateDecision(ok, reasons, f1, champ_f1, drops, asdict(policy))


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
