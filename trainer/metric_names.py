"""The Prometheus metrics the retrain watcher exports (``misinfo train watch``, /metrics on
MISINFO_WATCHER_WEB_BIND:MISINFO_WATCHER_WEB_PORT); the Grafana dashboard's "Retraining" row shows
each of them. The gauges are read from the trigger's state in Redis, which every watcher shares, so
a dashboard takes their ``max``; the counters are this watcher's own.
"""

from __future__ import annotations

from core.metric_specs import MetricSpec, series_of

WATCHER_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "misinfo_watcher_labels_received_total",
        "counter",
        "Label messages this watcher read from the feedback topic, by what became of them",
        ("result",),  # counted, replayed, retracted, invalid, failed
    ),
    MetricSpec("misinfo_watcher_labels_total", "gauge", "Labels counted in all"),
    MetricSpec("misinfo_watcher_new_labels", "gauge", "Labels since the last training started"),
    MetricSpec(
        "misinfo_watcher_new_labels_threshold", "gauge", "New labels that start a training (the policy)"
    ),
    MetricSpec(
        "misinfo_watcher_disagreement",
        "gauge",
        "Moderator-model disagreement share over the window (-1 until the window is full)",
    ),
    MetricSpec(
        "misinfo_watcher_disagreement_threshold", "gauge", "Disagreement share above which a training starts"
    ),
    MetricSpec(
        "misinfo_watcher_trigger_progress",
        "gauge",
        "How close the next training is, 0..1 (new labels or disagreement over their thresholds)",
    ),
    MetricSpec("misinfo_watcher_cooldown_seconds_left", "gauge", "Seconds before a training may start again"),
    MetricSpec("misinfo_watcher_training_in_flight", "gauge", "1 while a training job is in flight"),
    MetricSpec(
        "misinfo_watcher_cycles",
        "gauge",
        "Training cycles in the trigger's history, by outcome (promoted, refused, failed, ...)",
        ("outcome",),
    ),
    MetricSpec("misinfo_watcher_trainings_submitted_total", "counter", "Trainings submitted by this watcher"),
)

WATCHER_METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in WATCHER_METRICS)


def watcher_series() -> dict[str, MetricSpec]:
    """Every queryable series name of the watcher's metrics."""
    return series_of(WATCHER_METRICS)
