"""The trigger's state as `misinfo train status`, the watcher's metrics and the stats page read it."""

from __future__ import annotations

import json

from core.contracts.training import TrainingRequest
from core.retraining import Counters, RetrainStatus, TriggerPolicy, cycles, outcome_counts, status_from

POLICY = TriggerPolicy(min_new_labels=10, disagreement_threshold=0.5, disagreement_window=4, cooldown_s=100)


def submitted(labels_total: int, at: float) -> tuple[dict, str]:
    req = TrainingRequest(
        model_name="m", redis_prefix="p", labels_total=labels_total, reason="r", created_at=at
    )
    return {"event": "submitted", **req.to_dict()}, req.submission_id


def test_history_folds_into_cycles_with_their_outcome():
    a, sid_a = submitted(10, 1.0)
    b, sid_b = submitted(20, 2.0)
    c, sid_c = submitted(30, 3.0)
    d, sid_d = submitted(40, 4.0)
    history = [
        a,
        {"event": "result", "submission_id": sid_a, "version": "1", "gate": "passed", "promoted": True},
        {"event": "finished", "submission_id": sid_a, "status": "SUCCEEDED", "at": 5.0},
        b,
        {"event": "finished", "submission_id": sid_b, "status": "FAILED", "at": 6.0},
        c,
        {"event": "result", "submission_id": sid_c, "version": "2", "gate": "refused", "promoted": False},
        {"event": "finished", "submission_id": sid_c, "status": "SUCCEEDED", "at": 7.0},
        d,
    ]
    got = cycles(history)
    assert [x.submission_id for x in got] == [sid_a, sid_b, sid_c, sid_d]
    assert [x.outcome for x in got] == ["promoted", "failed", "refused", "running"]
    assert got[0].version == "1" and got[0].reason == "r" and got[0].submitted_at == 1.0
    counts = outcome_counts(got)
    assert (counts["promoted"], counts["failed"], counts["refused"], counts["running"]) == (1, 1, 1, 1)
    assert counts["stopped"] == 0


def test_progress_cooldown_and_disagreement():
    s = RetrainStatus(Counters(labels_total=14, labels_at_last=10, recent=(1, 0, 1)), POLICY, now=1000)
    assert s.disagreement is None and s.progress == 0.4 and s.cooldown_left_s == 0
    s = RetrainStatus(Counters(labels_total=2, recent=(1, 0, 0, 0), last_started_at=950), POLICY, now=1000)
    assert s.disagreement == 0.25 and s.progress == 0.5 and s.cooldown_left_s == 50
    s = RetrainStatus(Counters(labels_total=2, recent=(1, 1, 1, 0)), POLICY, now=1000)
    assert s.progress == 1.0  # the share is above the threshold: the policy would start one


def test_lines_say_whether_label_counting_runs():
    base = Counters(labels_total=3, labels_at_last=1)
    absent = RetrainStatus(base, POLICY, now=1000).lines()
    assert "no retrain watcher has reported" in absent[0] and "misinfo train watch" in absent[0]
    seen = RetrainStatus(base, POLICY, watcher={"at": 990, "group": "g"}, now=1000).lines()
    assert "its own service" in seen[0] and "10 s ago" in seen[0]
    stale = RetrainStatus(base, POLICY, watcher={"at": 0, "group": "g"}, now=1000).lines()
    assert "1000 s ago" in stale[0]
    text = "\n".join(seen)
    assert "2/10 new labels" in text and "n/a until 4 labels" in text and "in flight: no training" in text


def test_status_from_a_pipeline_result():
    a, sid = submitted(5, 1.0)
    results = [b"7", b"5", [b"1", b"0"], b"900.0", sid.encode(), b"4", b"2", None, [json.dumps(a).encode()],
               json.dumps({"at": 995.0, "group": "w"}).encode()]  # fmt: skip
    s = status_from(results, POLICY, now=1000.0)
    assert s.counters == Counters(7, 5, (1, 0), 900.0, sid)
    assert s.per_class == {"authentic": 4, "manipulated": 2, "synthesized": 0}
    assert [c.outcome for c in s.cycles()] == ["running"] and s.cooldown_left_s == 0 and s.watcher_age_s == 5
