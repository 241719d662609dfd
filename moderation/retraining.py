"""The stats page's retraining panel: how far the next training is, the last cycles, and the gate's
last decision, read the way ``misinfo train status`` reads them (:mod:`core.retraining` on Redis,
:func:`registry.gate.last_decision_line` on MLflow), so the page and the CLI never disagree."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from core.retraining import TriggerPolicy, aread_status

GATE_TTL_S = 30.0  # the gate's decision changes once per training: MLflow is asked at most this often
_gate_cache: dict[tuple[str, str], tuple[float, str]] = {}


async def gate_line(tracking_uri: str, model_name: str) -> str:
    """The gate's last decision (or why it is unknown), from MLflow in a thread, cached briefly."""
    from registry.gate import last_decision_line

    key = (tracking_uri, model_name)
    cached = _gate_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < GATE_TTL_S:
        return cached[1]
    try:
        line = await asyncio.to_thread(last_decision_line, tracking_uri, model_name)
    except Exception as exc:  # noqa: BLE001 - the stats page must render whatever MLflow does
        line = f"gate: unknown ({type(exc).__name__}: {exc})"[:300]
    _gate_cache[key] = (time.monotonic(), line)
    return line


async def panel(settings: Any, redis: Any, shown: int = 5) -> dict[str, Any]:
    """What the template shows: status lines, the last cycles (newest first), the gate's line."""
    status = await aread_status(redis, settings.redis_prefix, TriggerPolicy.from_settings(settings))
    recent = status.cycles()[-shown:]
    return {
        "lines": status.lines(),
        "progress": status.progress,
        "cycles": [
            {
                "submitted_at": c.submitted_at,
                "submission_id": c.submission_id,
                "outcome": c.outcome,
                "version": c.version,
                "reason": c.reason,
            }
            for c in reversed(recent)
        ],
        "gate": await gate_line(settings.mlflow_tracking_uri, settings.model_name),
    }
