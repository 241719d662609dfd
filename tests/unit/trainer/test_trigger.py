from datetime import UTC, datetime

from core.contracts.training import TrainingRequest
from trainer.trigger import Counters, TriggerPolicy, decide, maybe_trigger

POLICY = TriggerPolicy(min_new_labels=10, disagreement_threshold=0.5, disagreement_window=4, cooldown_s=100)


def test_enough_new_labels_start_a_training():
    go, why = decide(POLICY, Counters(labels_total=25, labels_at_last=15), now=1000)
    assert go and "10 new labels" in why
    assert not decide(POLICY, Counters(labels_total=24, labels_at_last=15), now=1000)[0]


def test_disagreement_over_a_full_window_starts_a_training():
    assert decide(POLICY, Counters(labels_total=3, recent=(1, 1, 1, 0)), now=1000)[0]
    assert not decide(POLICY, Counters(labels_total=3, recent=(1, 1, 0, 0)), now=1000)[0]  # 0.5 is not above
    assert not decide(POLICY, Counters(labels_total=3, recent=(1, 1, 1)), now=1000)[0]  # window not full yet


def test_cooldown_and_in_flight_hold_a_training_back():
    busy = Counters(labels_total=100, in_flight="misinfo-train-x")
    assert decide(POLICY, busy, now=1000) == (False, "training misinfo-train-x is in flight")
    cooling = Counters(labels_total=100, last_started_at=950)
    go, why = decide(POLICY, cooling, now=1000)
    assert not go and why.startswith("cooldown")
    assert decide(POLICY, cooling, now=1051)[0]


def test_the_submission_id_is_derived_from_the_request():
    a = TrainingRequest(
        model_name="m", redis_prefix="p", labels_total=50, reason="reason one", created_at=1.0
    )
    b = TrainingRequest(
        model_name="m", redis_prefix="p", labels_total=50, reason="reason two", created_at=2.0
    )  # a retry of the same request
    assert a.submission_id == b.submission_id
    assert (
        a.submission_id
        != TrainingRequest(model_name="m", redis_prefix="p", labels_total=51, reason="x").submission_id
    )
    assert TrainingRequest.from_json(a.to_json()) == a


class MemoryState:
    """The TriggerState interface in memory (the Redis one runs in the integration tests)."""

    def __init__(self, counters: Counters) -> None:
        self.c = counters
        self.prefix = "p"
        self.events: list[str] = []

    def counters(self) -> Counters:
        return self.c

    def claim(self, sid: str) -> bool:
        if self.c.in_flight:
            return False
        self.c = Counters(
            self.c.labels_total, self.c.labels_at_last, self.c.recent, self.c.last_started_at, sid
        )
        return True

    def started(self, request: TrainingRequest) -> None:
        self.c = Counters(self.c.labels_total, request.labels_total, (), request.created_at, self.c.in_flight)
        self.events.append("started")

    def release(self, sid: str, outcome: str) -> None:
        self.c = Counters(
            self.c.labels_total, self.c.labels_at_last, self.c.recent, self.c.last_started_at, None
        )
        self.events.append(f"released {outcome}")


class FakeSubmitter:
    def __init__(self, status: str = "RUNNING", fail: bool = False) -> None:
        self.submitted: list[str] = []
        self._status = status
        self.fail = fail

    def submit(self, request: TrainingRequest) -> str:
        if self.fail:
            raise RuntimeError("ray is down")
        self.submitted.append(request.submission_id)
        return request.submission_id

    def status(self, sid: str) -> str:
        return self._status


def test_maybe_trigger_submits_once_then_waits_for_the_job():
    state, sub = MemoryState(Counters(labels_total=12)), FakeSubmitter()
    req = maybe_trigger(state, POLICY, sub, "m", now=1000)  # type: ignore[arg-type]
    assert req is not None and sub.submitted == [req.submission_id]
    assert state.c.in_flight == req.submission_id and state.c.labels_at_last == 12
    state.c = Counters(40, 12, (), 1000, req.submission_id)
    assert maybe_trigger(state, POLICY, sub, "m", now=2000) is None  # type: ignore[arg-type]
    sub._status = "SUCCEEDED"
    again = maybe_trigger(state, POLICY, sub, "m", now=2000)  # type: ignore[arg-type]
    assert again is not None and state.events == ["started", "released SUCCEEDED", "started"]


def test_a_failed_submission_releases_the_claim():
    state = MemoryState(Counters(labels_total=12))
    try:
        maybe_trigger(state, POLICY, FakeSubmitter(fail=True), "m", now=1000)  # type: ignore[arg-type]
    except RuntimeError:
        pass
    assert state.c.in_flight is None and state.c.labels_at_last == 0


def test_labels_have_a_stable_identity():
    from core.contracts.verdicts import Label

    lb = Label(
        image_id="a" * 64,
        label="authentic",
        moderator_id="m",
        verdict_model_version=None,
        labeled_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert Label.parse(lb.to_json()).labeled_at.isoformat() == lb.labeled_at.isoformat()
