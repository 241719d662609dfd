"""The Prometheus metrics the Faust worker exports: one list shared by the worker and the dashboards
(see :mod:`core.metric_specs` for how specs, the worker's metrics and the dashboard test meet).
"""

from __future__ import annotations

from core.metric_specs import MetricKind, MetricSpec, exposed_series, series_of

__all__ = ["METRICS", "METRIC_NAMES", "MetricKind", "MetricSpec", "all_series", "exposed_series"]

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


def all_series() -> dict[str, MetricSpec]:
    """Every queryable series name, mapped to the metric it belongs to."""
    return series_of(METRICS)
