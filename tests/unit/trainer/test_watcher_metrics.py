"""The retrain watcher's metrics and its one log line per label batch."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from core.retraining import Counters, RetrainStatus, TriggerPolicy
from trainer.metric_names import WATCHER_METRIC_NAMES
from trainer.watcher import WatcherMetrics, batch_line

POLICY = TriggerPolicy(min_new_labels=50, disagreement_threshold=0.3, disagreement_window=2, cooldown_s=3600)


def samples(metrics: WatcherMetrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_declared_metric_is_exported_with_the_trigger_state():
    history = [
        {"event": "finished", "submission_id": "misinfo-train-a", "status": "FAILED"},
        {"event": "result", "submission_id": "misinfo-train-b", "gate": "refused", "promoted": False},
    ]
    status = RetrainStatus(Counters(60, 40, (1, 0), 1000.0, None), POLICY, history=history, now=1600.0)
    m = WatcherMetrics()
    m.received("counted", 3)
    m.received("replayed")
    m.submitted()
    m.update(status)
    got = samples(m)
    names = {name for name, _ in got}
    for declared in WATCHER_METRIC_NAMES:
        assert declared in names or declared.removesuffix("_total") + "_total" in names, declared
    assert got[("misinfo_watcher_new_labels", ())] == 20
    assert got[("misinfo_watcher_disagreement", ())] == 0.5
    assert got[("misinfo_watcher_trigger_progress", ())] == 1.0  # 0.5 > 0.3: the policy would start one
    assert got[("misinfo_watcher_cooldown_seconds_left", ())] == 3000
    assert got[("misinfo_watcher_labels_received_total", (("result", "counted"),))] == 3
    assert got[("misinfo_watcher_cycles", (("outcome", "failed"),))] == 1
    assert got[("misinfo_watcher_cycles", (("outcome", "refused"),))] == 1
    assert got[("misinfo_watcher_cycles", (("outcome", "promoted"),))] == 0


def test_one_line_per_batch_says_what_was_read_and_where_the_trigger_stands():
    status = RetrainStatus(Counters(12, 0, (1,), None, "misinfo-train-x"), POLICY, now=0.0)
    line = batch_line({"counted": 4, "replayed": 1, "invalid": 0}, status)
    assert "\n" not in line
    assert line.startswith("labels: 5 read (4 counted, 1 replayed)")
    assert (
        "12/50 new" in line
        and "disagreement n/a/0.30" in line
        and "training misinfo-train-x in flight" in line
    )
