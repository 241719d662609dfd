from __future__ import annotations

from core.contracts.verdicts import Verdict
from stream_workers.metric_names import METRIC_NAMES
from stream_workers.metrics import WorkerMetrics
from stream_workers.processor import BatchStats
from stream_workers.sinks import review_priority


def _verdict(scores: dict[str, float]) -> Verdict:
    return Verdict(
        image_id="a" * 64,
        label="uncertain",
        scores=scores,
        model_name="m",
        model_version="1",
        profile_id="p",
        latency_ms=1.0,
        flagged=True,
    )


def test_every_declared_metric_is_exported_and_batches_are_counted():
    m = WorkerMetrics()
    m.observe_batch(
        BatchStats(
            received=4,
            verdicts=3,
            reused=1,
            dead_letters=1,
            model_s=0.2,
            dead_reasons=["decode"],
            e2e_s=[1.0, 2.0, 3.0],
            labels=["authentic"] * 3,
        )
    )
    m.set_lags({0: 5, 1: 0})
    m.set_lags({1: 2})  # partition 0 moved to another worker
    m.swapped()
    text = m.render().decode()
    for name in METRIC_NAMES:
        assert name.removesuffix("_total") in text
    assert "misinfo_images_total 3.0" in text
    assert 'misinfo_dead_letters_total{reason="decode"} 1.0' in text
    assert 'misinfo_consumer_lag{partition="1"} 2.0' in text
    assert 'misinfo_consumer_lag{partition="0"}' not in text
    assert "misinfo_model_swaps_total 1.0" in text


def test_review_priority_rises_with_doubt_fakeness_and_reach():
    sure_real = _verdict({"authentic": 0.95, "manipulated": 0.03, "synthesized": 0.02})
    doubtful = _verdict({"authentic": 0.4, "manipulated": 0.35, "synthesized": 0.25})
    fake = _verdict({"authentic": 0.05, "manipulated": 0.9, "synthesized": 0.05})
    assert review_priority(sure_real, 0) < review_priority(doubtful, 0) < review_priority(fake, 0)
    assert review_priority(doubtful, 100) > review_priority(doubtful, 1)
