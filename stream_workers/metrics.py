"""The worker's Prometheus metrics (prometheus-client), built from ``metric_names.METRICS``.

One registry per app, so several apps in one process (tests, benchmarks) never share counters.
Images/s is ``rate(misinfo_images_total[1m])`` on the dashboard.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from stream_workers.metric_names import METRICS

_KINDS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
_BUCKETS = {
    "misinfo_batch_size": (1, 2, 4, 8, 16, 32, 64),
    "misinfo_model_latency_seconds": (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    "misinfo_end_to_end_latency_seconds": (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
}


class WorkerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.m: dict[str, Any] = {}
        for spec in METRICS:
            kwargs: dict[str, Any] = {"registry": self.registry, "labelnames": spec.labels}
            if spec.kind == "histogram":
                kwargs["buckets"] = _BUCKETS.get(spec.name, Histogram.DEFAULT_BUCKETS)
            self.m[spec.name] = _KINDS[spec.kind](spec.name, spec.help, **kwargs)

    def observe_batch(self, stats: Any) -> None:
        """Record one processed batch (a ``processor.BatchStats``)."""
        m = self.m
        if stats.received:
            m["misinfo_batch_size"].observe(stats.received)
        if stats.model_s:
            m["misinfo_model_latency_seconds"].observe(stats.model_s)
        m["misinfo_images_total"].inc(stats.verdicts)
        m["misinfo_reuse_hits_total"].inc(stats.reused)
        for reason in stats.dead_reasons:
            m["misinfo_dead_letters_total"].labels(reason=reason).inc()
        for label in stats.labels:
            m["misinfo_verdicts_total"].labels(label=label).inc()
        for seconds in stats.e2e_s:
            m["misinfo_end_to_end_latency_seconds"].observe(max(0.0, seconds))

    def set_lags(self, lags: dict[int, int]) -> None:
        """Lag of each partition assigned now; partitions that moved away lose their series."""
        gauge = self.m["misinfo_consumer_lag"]
        for (partition,) in list(gauge._metrics):  # prometheus-client keeps label values there
            if int(partition) not in lags:
                gauge.remove(partition)
        for partition, lag in lags.items():
            gauge.labels(partition=str(partition)).set(max(0, lag))

    def swapped(self) -> None:
        self.m["misinfo_model_swaps_total"].inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
