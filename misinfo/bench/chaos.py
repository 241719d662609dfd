"""``misinfo bench chaos``: faults struck one after another while images stream through.

A stack of its own (Tansu broker, a Redis the stack starts, so it can be paused and killed), two
`misinfo worker` processes in one group and a `misinfo collect folder --every` collector. The
images are offered to the collector's folder in chunks, one chunk before each fault; each fault is
struck once a backlog of at least two batches (published events without a record) is in flight, and
the next chunk waits until every image offered so far has its record (that wait is the fault's
``recovered_s``, measured from the strike). Faults, in the default order:

- ``worker-kill``: SIGKILL one worker (the first, then the second), start it again at once;
- ``collector-kill``: SIGKILL the collector, start it again (it resumes from its cursor);
- ``broker-pause``: SIGSTOP the broker for ``--broker-pause-s``, then SIGCONT;
- ``redis-pause``: SIGSTOP Redis for ``--redis-pause-s``, then SIGCONT;
- ``redis-kill``: SIGKILL Redis and start it again, empty (the embedded Redis keeps nothing): the
  workers notice and rebuild the records from the topics (``stream_workers/recovery.py``).

It ends when every image has a record, or at ``--deadline-s``, and prints one JSON line: images,
records, lost (images without a record), verdict messages and the repeats among them (messages
beyond one per image), dead letters, each fault with its backlog, outage and recovery time, and
whether every process is alive at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from core.config import Settings, load_settings
from misinfo.bench.support import (
    Child,
    TopicCounter,
    component_pid,
    emit,
    image_ids,
    machine,
    offer,
    own_stack,
    owned_partitions,
    read_keys,
    recorded_ids,
    records,
    say,
    stop_on_sigterm,
    worker_settings,
)

DEFAULT_FAULTS = "worker-kill,collector-kill,broker-pause,worker-kill,redis-pause,redis-kill"
KNOWN_FAULTS = {"worker-kill", "collector-kill", "broker-pause", "redis-pause", "redis-kill"}


class Run:
    """The processes of one chaos run and what it measures from outside them."""

    def __init__(self, s: Settings, stack: Any, workers: int, logs: Path, watch: Path) -> None:
        self.s, self.stack, self.logs, self.watch = s, stack, logs, watch
        self.started = time.monotonic()
        self.workers = [
            Child(f"worker-{i + 1}", ws, ["worker"], logs / f"worker-{i + 1}.log")
            for i, ws in enumerate(worker_settings(s, workers))
        ]
        self.collector = Child(
            "collector", s, ["collect", "folder", str(watch), "--every", "0.5s"], logs / "collector.log"
        )
        self.images = TopicCounter(s.kafka_bootstrap, s.topic_images)  # live: the backlog
        self.kills = 0

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def published(self) -> int:
        return len(self.images.snapshot()[1])

    def backlog(self) -> int:
        """Events published and not yet recorded (records while Redis is down: unknown, so 0)."""
        done = records(self.s)
        return self.published() - done if done >= 0 else 0

    def joined(self, worker: Child) -> bool:
        return owned_partitions(worker.settings.worker_web_port) >= 1

    def wait_for(self, cond: Any, timeout: float) -> float | None:
        """Seconds until ``cond`` held (polled every 0.2 s), or None at the timeout."""
        started = time.monotonic()
        while not cond():
            if time.monotonic() - started > timeout:
                return None
            time.sleep(0.2)
        return round(time.monotonic() - started, 2)

    # --- faults: each returns (target, outage seconds) -------------------------------------------
    def strike(self, fault: str, broker_pause_s: float, redis_pause_s: float) -> tuple[str, float | None]:
        if fault == "worker-kill":
            worker = self.workers[self.kills % len(self.workers)]
            self.kills += 1
            worker.kill()
            t0 = time.monotonic()
            worker.start()
            back = self.wait_for(lambda: self.joined(worker), 180)
            return worker.name, None if back is None else round(time.monotonic() - t0, 2)
        if fault == "collector-kill":
            self.collector.kill()
            self.collector.start()
            return "collector", 0.0
        if fault in ("broker-pause", "redis-pause"):
            name = fault.split("-")[0]
            pid = component_pid(self.stack, name)
            pause = broker_pause_s if name == "broker" else redis_pause_s
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(pause)  # the outage itself: a fixed length is the fault being measured
            finally:
                os.kill(pid, signal.SIGCONT)
            return name, pause
        if fault == "redis-kill":
            pid = component_pid(self.stack, "redis")
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):  # the stack started it from this process
                os.waitpid(pid, 0)
            self.stack.up(["redis"], progress=lambda m: say("    " + m))
            return "redis", round(time.monotonic() - t0, 2)
        raise click.ClickException(f"unknown fault {fault!r}")

    def alive(self) -> dict[str, bool]:
        out = {w.name: w.alive() for w in self.workers}
        out["collector"] = self.collector.alive()
        for status in self.stack.status(["broker", "redis"]):
            out[status.name] = bool(status.healthy)
        return out

    def rebuilds(self) -> int:
        n = 0
        for w in self.workers:
            try:
                n += w.log.read_text(errors="replace").count("verdict records: rebuilt")
            except OSError:
                pass
        return n


def _chunks(items: list[str], n: int) -> list[list[str]]:
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def run_chaos(
    base: Settings,
    n: int,
    faults: list[str],
    workers: int,
    broker_pause_s: float,
    redis_pause_s: float,
    deadline_s: float,
    tmp: Path,
) -> dict[str, Any]:
    from misinfo.samples import write_samples

    staging, watch, logs = tmp / "staging", tmp / "watch", tmp / "logs"
    logs.mkdir(parents=True)
    watch.mkdir()
    say(f"writing {n} sample images")
    write_samples(staging, n=n, seed=13)
    files = image_ids(staging)
    ids = list(files)
    chunks = _chunks(ids, len(faults) + 1)
    threshold = 2 * base.max_batch
    say(f"schedule ({len(faults)} faults, each struck once at least {threshold} events wait for a record):")
    for i, fault in enumerate(faults):
        say(f"  {i + 1}. after chunk {i + 1} ({len(chunks[i])} images): {fault}")
    say(f"  then the last chunk ({len(chunks[-1])} images); deadline {deadline_s:.0f} s")

    with own_stack(base, tmp / "state") as (s, stack):
        run = Run(s, stack, workers, logs, watch)
        run.images.start()
        for w in run.workers:
            w.start()
        try:
            say("waiting for the workers to join")
            if run.wait_for(lambda: all(run.joined(w) for w in run.workers), 300) is None:
                raise click.ClickException(f"the workers did not join; see {logs}")
            run.collector.start()
            offered = 0
            schedule: list[dict[str, Any]] = []
            end_at = time.monotonic() + deadline_s
            for i, fault in enumerate(faults):
                before = run.published()
                offer([files[x] for x in chunks[i]], watch)
                offered += len(chunks[i])
                if fault == "collector-kill":  # strike it mid-chunk, with events of this chunk waiting
                    size = len(chunks[i])
                    waited = run.wait_for(
                        lambda b=before, n=size: (
                            threshold <= run.published() - b < n and run.backlog() >= threshold
                        ),
                        30,
                    )
                else:
                    waited = run.wait_for(lambda: run.backlog() >= threshold, 120)
                backlog = run.backlog()
                at = run.now()
                say(f"[{at:7.1f}s] {fault}: backlog {backlog} (waited {waited}s) ...")
                target, outage = run.strike(fault, broker_pause_s, redis_pause_s)
                total = offered
                left = max(1.0, end_at - time.monotonic())
                recovered = run.wait_for(lambda total=total: records(s) >= total, left)
                if recovered is not None:
                    recovered = round(run.now() - at, 2)
                say(
                    f"[{run.now():7.1f}s]   {target}: outage {outage}s, recovered {recovered}s after the strike"
                )
                schedule.append(
                    {
                        "fault": fault,
                        "target": target,
                        "at_s": at,
                        "backlog": backlog,
                        "backlog_reached": waited is not None,
                        "outage_s": outage,
                        "recovered_s": recovered,
                    }
                )
            offer([files[x] for x in chunks[-1]], watch)
            left = max(1.0, end_at - time.monotonic())
            finished = run.wait_for(lambda: records(s) >= n, left)
            say(f"[{run.now():7.1f}s] all {n} offered; every record there: {finished is not None}")
            alive = run.alive()
            done = recorded_ids(s, ids)
            per_key = read_keys(s.kafka_bootstrap, s.topic_verdicts)
            messages = sum(per_key.values())
            dead_letters = sum(read_keys(s.kafka_bootstrap, s.topic_dead_letters).values())
            rebuilds = run.rebuilds()
        finally:
            for child in [*run.workers, run.collector]:
                child.stop()
            run.images.close()
    judged = [i for i in ids if i in per_key]
    return {
        "benchmark": "chaos",
        "images": n,
        "records": len(done),
        "lost": n - len(done),
        "verdict_messages": messages,
        "repeated_verdict_messages": messages - len(judged),
        "repeats_allowed": 2 * base.max_batch * len(faults),
        "images_without_verdict_message": n - len(judged),
        "dead_letters": dead_letters,
        "faults": schedule,
        "record_rebuilds": rebuilds,
        "alive": alive,
        "all_alive": all(alive.values()),
        "seconds": run.now(),
        "workers": workers,
        "batch_size": base.max_batch,
        "model": "tiny-random-qwen2.5-vl(seed=0)",
        "machine": machine(),
    }


@click.command("chaos")
@click.option("--images", "n", default=1000, show_default=True, help="images through the collector")
@click.option("--faults", default=DEFAULT_FAULTS, show_default=True, help="comma-separated, in order")
@click.option("--workers", default=2, show_default=True)
@click.option("--batch-size", default=8, show_default=True, help="MISINFO_MAX_BATCH of the workers")
@click.option("--broker-pause-s", default=30.0, show_default=True)
@click.option("--redis-pause-s", default=15.0, show_default=True)
@click.option("--deadline-s", default=1200.0, show_default=True, help="give up waiting for records after")
def bench_chaos(
    n: int,
    faults: str,
    workers: int,
    batch_size: int,
    broker_pause_s: float,
    redis_pause_s: float,
    deadline_s: float,
) -> None:
    """Faults under a running stream: lost records, repeated verdicts, recovery times (one JSON line)."""
    from detector.loading import ensure_model

    wanted = [f.strip() for f in faults.split(",") if f.strip()]
    unknown = sorted(set(wanted) - KNOWN_FAULTS)
    if unknown:
        raise click.BadParameter(
            f"unknown faults {unknown}; known: {sorted(KNOWN_FAULTS)}", param_hint="--faults"
        )
    stop_on_sigterm()
    base = load_settings()
    base = replace(
        base,
        model_path=base.model_path or ensure_model(base),
        max_batch=batch_size,
        max_wait_s=0.2,
        train_trigger=False,
    )
    tmp = tempfile.TemporaryDirectory(prefix="misinfo-chaos-")
    try:
        figures = run_chaos(
            base, n, wanted, workers, broker_pause_s, redis_pause_s, deadline_s, Path(tmp.name)
        )
        emit(figures)  # before the clean-up, which takes a while after a long run
    finally:
        tmp.cleanup()
