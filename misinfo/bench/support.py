"""What the benchmarks that drive real processes share: a stack of their own, worker and collector
processes (killable, restartable), topic counters that read what the system produced, and waits.

Used by ``pipeline``, ``chaos``, ``soak`` and ``review``; nothing here is a benchmark itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from core.config import Settings
from core.keys import Keys
from misinfo.procs import start_misinfo


def say(msg: str) -> None:
    """Progress on stderr (stdout carries only the final JSON line)."""
    click.echo(msg, err=True)


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so a benchmark's ``finally`` stops the processes and the stack
    it started instead of leaving them behind."""

    def _exit(*_: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, _exit)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh(settings: Settings, tag: str) -> Settings:
    """Topics, group, Redis prefix and collector cursors of one phase's own."""
    return settings.isolated(
        f"bench-{tag}",
        state_dir=str(Path(settings.state_dir) / "bench" / tag),
        train_trigger=False,
    )


def wait(cond: Callable[[], Any], timeout: float, what: str, proc: Any = None) -> None:
    """Poll ``cond`` every 0.1 s; a ClickException when ``proc`` exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise click.ClickException(f"the process exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out waiting for {what}")
        time.sleep(0.1)


def scrape(port: int) -> str:
    """A worker's /metrics text ('' when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:  # noqa: S310
            return str(resp.read().decode())
    except OSError:
        return ""


def owned_partitions(port: int) -> int:
    """How many images partitions the worker on ``port`` reports lag for (= owns now)."""
    return scrape(port).count("misinfo_consumer_lag{")


def partition_lags(port: int) -> dict[int, float]:
    """The worker's consumer lag per images partition, from its /metrics."""
    import re

    pattern = r'^misinfo_consumer_lag\{partition="(\d+)"\} (\S+)$'
    return {int(p): float(v) for p, v in re.findall(pattern, scrape(port), re.M)}


class Worker:
    """A `misinfo worker` process for one phase; joined (owns a partition) when entered."""

    def __init__(self, s: Settings, noop: bool, log: Path) -> None:
        args = ["worker", "--noop-detector"] if noop else ["worker"]
        self.s, self.proc = s, start_misinfo(s, *args, log=log)

    def __enter__(self) -> Any:
        wait(lambda: owned_partitions(self.s.worker_web_port) >= 1, 180, "the worker to join", self.proc)
        return self.proc

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; harmless on a process that already ended."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Child:
    """A `misinfo ...` process that a benchmark kills and starts again under the same name."""

    def __init__(self, name: str, settings: Settings, args: list[str], log: Path) -> None:
        self.name, self.settings, self.args, self.log = name, settings, args, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Child:
        self.proc = start_misinfo(self.settings, *self.args, log=self.log)
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


def worker_settings(settings: Settings, n: int) -> list[Settings]:
    """``n`` workers of one group, each with a web (metrics) port of its own."""
    return [replace(settings, worker_web_port=free_port()) for _ in range(n)]


@contextlib.contextmanager
def own_stack(base: Settings, state_dir: Path) -> Iterator[tuple[Settings, Any]]:
    """A broker and a Redis started for this benchmark alone: fresh loopback ports, its own state
    directory, a Redis the stack owns (so it may be paused, killed and restarted). Stopped on exit."""
    from misinfo.devstack import DevStack

    s = replace(
        base,
        state_dir=str(state_dir),
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    stack = DevStack(s)
    stack.up(["broker", "redis"], progress=lambda m: say("  " + m))
    try:
        yield s, stack
    finally:
        stack.down(["broker", "redis"], progress=lambda m: say("  " + m))


def component_pid(stack: Any, name: str) -> int:
    (status,) = stack.status([name])
    if status.pid is None:
        raise click.ClickException(f"{name} is not running under this benchmark's stack")
    return int(status.pid)


def image_ids(folder: Path) -> dict[str, Path]:
    """image_id (sha256 of the file's bytes, as ingest computes it) -> file."""
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in sorted(folder.iterdir()) if p.is_file()}


def offer(files: list[Path], folder: Path) -> None:
    """Move files into a watched folder atomically (a collector never sees one half-written)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        os.replace(path, folder / path.name)


def records(settings: Settings) -> int:
    """Verdict records in Redis (one index entry per judged image); -1 while Redis does not answer."""
    import redis

    try:
        r = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        return int(r.zcard(Keys(settings.redis_prefix).index_time()))
    except (redis.RedisError, OSError):
        return -1


def recorded_ids(settings: Settings, ids: list[str]) -> set[str]:
    """Which of ``ids`` have a verdict record."""
    import redis

    r = redis.Redis.from_url(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    pipe = r.pipeline(transaction=False)
    for image_id in ids:
        pipe.exists(keys.verdict(image_id))
    return {i for i, n in zip(ids, pipe.execute(), strict=True) if n}


class TopicCounter(threading.Thread):
    """Reads one topic from the start, outside any group, in the background: messages, and per key
    the JSON ``field`` of each value (when asked). ``caught_up()`` compares its position with the
    high watermark of the fetch responses (Tansu's ListOffsets answers short of the end)."""

    def __init__(self, bootstrap: str, topic: str, *, parse: Callable[[bytes], Any] | None = None) -> None:
        super().__init__(daemon=True, name=f"count-{topic}")
        self.bootstrap, self.topic, self.parse = bootstrap, topic, parse
        self.messages = 0
        self.keys: dict[str, int] = {}
        self.ends: dict[int, int] = {}  # partition -> offset after the last record read
        self.parsed: list[tuple[float, Any]] = []  # (arrival time, parse(value))
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._consumer: Any = None
        self._behind = True

    def run(self) -> None:
        import logging

        from kafka import KafkaConsumer, TopicPartition

        # A paused or stopped broker is what the benchmarks do on purpose: not worth a log line each.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=60_000,
        )
        parts: list[Any] = []
        while not parts and not self._halt.is_set():
            parts = [
                TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or ())
            ]
            if not parts:
                time.sleep(0.2)
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        while not self._halt.is_set():
            try:
                batches = consumer.poll(timeout_ms=500, max_records=2000)
            except Exception:  # noqa: BLE001 - a paused broker: keep trying
                time.sleep(0.5)
                continue
            now = time.time()
            with self._lock:
                for recs in batches.values():
                    for rec in recs:
                        self.messages += 1
                        self.ends[rec.partition] = rec.offset + 1
                        key = rec.key.decode(errors="replace") if rec.key else ""
                        self.keys[key] = self.keys.get(key, 0) + 1
                        if self.parse is not None:
                            try:
                                self.parsed.append((now, self.parse(rec.value)))
                            except Exception:  # noqa: BLE001 - a foreign record; counted above
                                pass
                behind = False
                for tp in parts:
                    end = consumer.highwater(tp)
                    if end is None or consumer.position(tp) < end:
                        behind = True
                self._behind = behind
        consumer.close()

    def partition_ends(self) -> dict[int, int]:
        with self._lock:
            return dict(self.ends)

    def has(self, key: str) -> bool:
        with self._lock:
            return key in self.keys

    def caught_up(self) -> bool:
        return not self._behind

    def snapshot(self) -> tuple[int, dict[str, int]]:
        with self._lock:
            return self.messages, dict(self.keys)

    def take_parsed(self) -> list[tuple[float, Any]]:
        with self._lock:
            out, self.parsed = self.parsed, []
            return out

    def close(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def read_keys(bootstrap: str, topic: str, timeout_s: float = 120) -> dict[str, int]:
    """Messages per key on ``topic``, read from the start by a fresh group-less consumer until its
    position meets the high watermark of its own fetches (fresh, so nothing produced before the
    call is missed; Tansu's ListOffsets would answer short of the end)."""
    import logging

    from kafka import KafkaConsumer, TopicPartition

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        counts: dict[str, int] = {}
        deadline = time.monotonic() + timeout_s
        left = set(parts)
        while left and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500, max_records=5000).values():
                for rec in recs:
                    key = rec.key.decode(errors="replace") if rec.key else ""
                    counts[key] = counts.get(key, 0) + 1
            for tp in list(left):
                end = consumer.highwater(tp)
                if end is not None and consumer.position(tp) >= end:
                    left.discard(tp)
        if left:
            raise click.ClickException(f"could not read {topic} to its end in {timeout_s:.0f}s")
        return counts
    finally:
        consumer.close()


class GroupLag:
    """A consumer group's lag per partition from outside: the end of each partition (as a
    :class:`TopicCounter` of the topic has read it) minus the group's committed offset. Committed,
    not fetched: the workers commit after each finished batch, so this counts what is not yet done."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        from kafka import KafkaConsumer

        # Never subscribes, so it never joins the group: it only reads the group's committed offsets.
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        self.topic = topic

    def lags(self, ends: dict[int, int]) -> dict[int, int]:
        from kafka import TopicPartition

        out = {}
        for partition, end in ends.items():
            committed = self.consumer.committed(TopicPartition(self.topic, partition)) or 0
            out[partition] = max(0, end - committed)
        return out

    def close(self) -> None:
        self.consumer.close()


def rss_mb(pid: int) -> float:
    """Resident set size of a process and its children, in MiB (0 when it is gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return float(total) / 2**20
    except psutil.Error:
        return 0.0


def machine() -> dict[str, Any]:
    """What the figures were taken on: cores, the load when the run ended, the CPU's name."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()], "cpu": cpu}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def emit(figures: dict[str, Any]) -> None:
    """The benchmark's one JSON line, last, on stdout."""
    click.echo(json.dumps(figures))
