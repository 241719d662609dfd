"""The Prometheus metrics the Faust worker exports: one list shared by the worker and the dashboards.

The worker creates its prometheus-client metrics from :data:`METRICS`; the Grafana dashboard in
``compose/grafana/`` may name only these (a unit test checks it), so renaming a metric here breaks
that test instead of silently blanking a panel in production.

Names are the exposition names: a counter's name already ends in ``_total`` (prometheus-client
strips and re-adds that suffix), a histogram's series add ``_bucket``, ``_sum`` and ``_count``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: exposition name, kind, help text and label names."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("misinfo_images_total", "counter", "Images the detector has judged"),
    MetricSpec("misinfo_batch_size", "histogram", "Images per detection batch"),
    MetricSpec("misinfo_model_latency_seconds", "histogram", "Detector forward time per batch"),
    MetricSpec(
        "misinfo_end_to_end_latency_seconds", "histogram", "From collection (collected_at) to verdict sent"
    ),
    MetricSpec(
        "misinfo_consumer_lag", "gauge", "Messages behind the log end, per images partition", ("partition",)
    ),
    MetricSpec("misinfo_dead_letters_total", "counter", "Events sent to the dead-letter topic", ("reason",)),
    MetricSpec("misinfo_reuse_hits_total", "counter", "Verdicts reused from a near-duplicate image"),
    MetricSpec("misinfo_model_swaps_total", "counter", "Hot swaps of the serving model"),
    MetricSpec("misinfo_verdicts_total", "counter", "Verdicts sent, per label", ("label",)),
)

METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)

_SERIES_SUFFIXES: dict[str, tuple[str, ...]] = {
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}


def exposed_series(spec: MetricSpec) -> tuple[str, ...]:
    """The series names Prometheus stores for one metric (what a PromQL query may name)."""
    base = spec.name
    if spec.kind == "counter":
        # prometheus-client exposes `<base>_total` and `<base>_created`, base without `_total`.
        base = base.removesuffix("_total")
        return (base + "_total", base + "_created")
    return tuple(base + suffix for suffix in _SERIES_SUFFIXES[spec.kind])


def all_series() -> dict[str, MetricSpec]:
    """Every queryable series name, mapped to the metric it belongs to."""
    return {series: spec for spec in METRICS for series in exposed_series(spec)}
