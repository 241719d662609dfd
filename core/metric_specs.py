"""How a service declares its Prometheus metrics: one :class:`MetricSpec` per metric, in one list per
service (``stream_workers.metric_names``, ``trainer.metric_names``). The service builds its
prometheus-client metrics from its list, and the Grafana dashboard may name only their series (a unit
test checks it), so renaming a metric breaks that test instead of silently blanking a panel.

Names are the exposition names: a counter's name already ends in ``_total`` (prometheus-client
strips and re-adds that suffix), a histogram's series add ``_bucket``, ``_sum`` and ``_count``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

MetricKind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: exposition name, kind, help text and label names."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()


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


def series_of(specs: Iterable[MetricSpec]) -> dict[str, MetricSpec]:
    """Every queryable series name of ``specs``, mapped to the metric it belongs to."""
    return {series: spec for spec in specs for series in exposed_series(spec)}


def build(
    specs: Iterable[MetricSpec], registry: Any, buckets: dict[str, tuple[float, ...]] | None = None
) -> dict[str, Any]:
    """prometheus-client metrics for ``specs`` in ``registry``, by name."""
    from prometheus_client import Counter, Gauge, Histogram

    kinds = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
    out: dict[str, Any] = {}
    for spec in specs:
        kwargs: dict[str, Any] = {"registry": registry, "labelnames": spec.labels}
        if spec.kind == "histogram":
            kwargs["buckets"] = (buckets or {}).get(spec.name, Histogram.DEFAULT_BUCKETS)
        out[spec.name] = kinds[spec.kind](spec.name, spec.help, **kwargs)
    return out
