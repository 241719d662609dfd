"""``misinfo bench pipeline``: N images through collector → broker → worker → Redis, measured
against the parts alone, all in one run on the same broker:

- pipeline, tiny detector: a real worker process, the folder collector publishing while it runs;
  images/s = N / (last verdict's decided_at − first event's collected_at); p50/p99 end to end.
- pipeline, no-op detector (``misinfo worker --noop-detector``): the same, judging nothing.
- bare detector: the same detector in-process on the same images, same batch size.
- bare transport: an aiokafka loop consuming the N events and producing one record each.

- worker alone (tiny and no-op): the same N events copied to a fresh topic as a backlog, drained by a
  fresh worker: broker → worker → Redis + verdicts topic, without the collector competing for CPU.

``detector_ratio`` = worker alone (tiny) ÷ bare detector; ``transport_ratio`` = worker alone (no-op) ÷
bare loop; ``end_to_end_detector_ratio`` = collector+worker (tiny) ÷ bare detector. On a 2-core box
the collector and the worker share the CPU, so the end-to-end rate is bounded by the collector.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click

from core.config import Settings, load_settings
from core.keys import Keys
from misinfo.bench.support import Worker, fresh, say, wait
from misinfo.procs import run_misinfo


def _records(s: Settings) -> list[tuple[float, float]]:
    """(collected_at, decided_at) of every verdict record of this phase; then the records go."""
    from datetime import datetime

    import redis

    from core.contracts.verdicts import Verdict

    r = redis.Redis.from_url(s.redis_url)
    out = []
    for key in r.scan_iter(Keys(s.redis_prefix).pattern("verdict"), count=1000):
        rec = r.hgetall(key)
        collected = json.loads(rec[b"event"])["collected_at"].replace("Z", "+00:00")
        out.append(
            (
                datetime.fromisoformat(collected).timestamp(),
                Verdict.parse(rec[b"verdict"]).decided_at.timestamp(),
            )
        )
    for key in r.scan_iter(Keys(s.redis_prefix).pattern(), count=1000):
        r.delete(key)
    return out


def _count(s: Settings) -> int:
    import redis

    r = redis.Redis.from_url(s.redis_url)
    return sum(1 for _ in r.scan_iter(Keys(s.redis_prefix).pattern("verdict"), count=1000))


def drain(settings: Settings, source_topic: str, n: int, noop: bool, logs: Path) -> float:
    """The worker alone: the N events already waiting on a fresh topic; steady images/s, i.e. the
    images after the first batch over the time from the first batch's verdicts to the last."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from misinfo.devstack import DevStack

    s = fresh(settings, uuid.uuid4().hex[:8])
    DevStack(s).create_topics()
    consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False)
    parts = [
        TopicPartition(source_topic, p) for p in sorted(consumer.partitions_for_topic(source_topic) or [])
    ]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    copied = 0
    while copied < n:
        for records in consumer.poll(timeout_ms=1000).values():
            for rec in records:
                producer.send(s.topic_images, key=rec.key, value=rec.value)
                copied += 1
    producer.flush()
    producer.close()
    consumer.close()
    with Worker(s, noop, logs / f"drain-{'noop' if noop else 'model'}.log") as proc:
        wait(lambda: _count(s) >= n, 900, f"{n} verdicts", proc)
    decided = sorted(d for _, d in _records(s))
    first_batch = min(settings.max_batch, n - 1)
    return (n - first_batch) / max(1e-9, decided[-1] - decided[first_batch - 1])


def run_pipeline(settings: Settings, folder: Path, n: int, noop: bool, logs: Path) -> dict[str, Any]:
    """Collector and worker running together on fresh topics: end-to-end rate and latency."""
    from misinfo.devstack import DevStack

    s = fresh(settings, uuid.uuid4().hex[:8])
    DevStack(s).create_topics()
    with Worker(s, noop, logs / f"worker-{'noop' if noop else 'model'}.log") as proc:
        started = time.perf_counter()
        out = run_misinfo(s, "collect", "folder", str(folder), "--once")
        if out.returncode != 0:
            raise click.ClickException(f"collector failed: {out.stderr[-1500:]}")
        published = json.loads(out.stdout.strip().splitlines()[-1])["published"]
        if published != n:
            raise click.ClickException(f"the collector published {published} of {n} images")
        collector_s = time.perf_counter() - started
        wait(lambda: _count(s) >= n, 900, f"{n} verdicts", proc)
    pairs = _records(s)
    collected, decided = [c for c, _ in pairs], [d for _, d in pairs]
    lat_ms = sorted((d - c) * 1000 for c, d in zip(collected, decided, strict=True))
    span = max(decided) - min(collected)
    return {
        "images_per_s": n / span,
        "p50_ms": statistics.median(lat_ms),
        "p99_ms": lat_ms[min(len(lat_ms) - 1, int(0.99 * len(lat_ms)))],
        "collector_images_per_s": n / collector_s,
        "topic": s.topic_images,
    }


def bare_detector(model: str, folder: Path, batch: int, settings: Settings) -> float:
    """The tiny detector in this process on the same images and batch size: images/s."""
    from detector.loading import load_detector
    from ingest.etl import decode_rgb

    det = load_detector(settings, model_path=model)
    images = [decode_rgb(p.read_bytes(), settings.max_image_pixels)[1] for p in sorted(folder.iterdir())]
    det.detect(images[:batch])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(images), batch):
        det.detect(images[i : i + batch])
    return len(images) / (time.perf_counter() - started)


async def _bare_transport(bootstrap: str, topic: str, n: int) -> float:
    """Consume the N image events and produce one record each, awaiting delivery: images/s."""
    from aiokafka import AIOKafkaProducer

    from core.kafka import async_replay_consumer

    out_topic = f"{topic}.bare-out"
    consumer = async_replay_consumer(bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        seen = 0
        started = time.perf_counter()
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            futures = []
            for records in batches.values():
                for rec in records:
                    futures.append(await producer.send(out_topic, key=rec.key, value=rec.value))
            await asyncio.gather(*futures)
            seen += len(futures)
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


@click.command("pipeline")
@click.option("--images", "n", default=300, show_default=True, help="images to drive through")
@click.option("--batch-size", default=8, show_default=True)
def bench_pipeline(n: int, batch_size: int) -> None:
    """Pipeline throughput and latency vs the bare detector and the bare transport (one JSON line)."""
    from detector.loading import ensure_model
    from misinfo.devstack import DevStack
    from misinfo.samples import write_samples

    base = dataclasses.replace(load_settings(), max_batch=batch_size, max_wait_s=0.05)
    stack = DevStack(base)
    already = {c.name for c in stack.status() if c.healthy}
    stack.up(["broker", "redis"], progress=lambda m: say("  " + m))
    try:
        model = ensure_model(base)
        base = dataclasses.replace(base, model_path=model)
        with tempfile.TemporaryDirectory(prefix="misinfo-bench-") as tmp:
            folder, logs = Path(tmp) / "images", Path(tmp) / "logs"
            logs.mkdir()
            say(f"writing {n} sample images")
            write_samples(folder, n=n, seed=4242)
            say("pipeline with the tiny detector ...")
            model_run = run_pipeline(base, folder, n, noop=False, logs=logs)
            say(f"  {model_run['images_per_s']:.1f} images/s")
            say("pipeline with the no-op detector ...")
            noop_run = run_pipeline(base, folder, n, noop=True, logs=logs)
            say(f"  {noop_run['images_per_s']:.1f} images/s")
            say("worker alone on a backlog, tiny detector ...")
            drain_model = drain(base, model_run["topic"], n, noop=False, logs=logs)
            say(f"  {drain_model:.1f} images/s")
            say("worker alone on a backlog, no-op detector ...")
            drain_noop = drain(base, noop_run["topic"], n, noop=True, logs=logs)
            say(f"  {drain_noop:.1f} images/s")
            say("bare detector in-process ...")
            det_rate = bare_detector(model, folder, batch_size, base)
            say(f"  {det_rate:.1f} images/s")
            say("bare aiokafka consume-and-produce loop ...")
            loop_rate = asyncio.run(_bare_transport(base.kafka_bootstrap, noop_run["topic"], n))
            say(f"  {loop_rate:.1f} images/s")
    finally:
        started = [
            c.name for c in stack.components if c.name in ("broker", "redis") and c.name not in already
        ]
        if started:
            stack.down(started, progress=lambda m: say("  " + m))
    figures = {
        "benchmark": "pipeline",
        "images": n,
        "batch_size": batch_size,
        "images_per_s": round(model_run["images_per_s"], 2),
        "p50_ms": round(model_run["p50_ms"], 1),
        "p99_ms": round(model_run["p99_ms"], 1),
        "detector_ratio": round(drain_model / det_rate, 3),
        "transport_ratio": round(drain_noop / loop_rate, 3),
        "worker_images_per_s": round(drain_model, 2),
        "noop_worker_images_per_s": round(drain_noop, 2),
        "end_to_end_detector_ratio": round(model_run["images_per_s"] / det_rate, 3),
        "bare_detector_images_per_s": round(det_rate, 2),
        "noop_images_per_s": round(noop_run["images_per_s"], 2),
        "noop_p50_ms": round(noop_run["p50_ms"], 1),
        "bare_transport_images_per_s": round(loop_rate, 2),
        "collector_images_per_s": round(model_run["collector_images_per_s"], 2),
        "model": "tiny-random-qwen2.5-vl(seed=0)",
        "device": "cpu",
    }
    click.echo(json.dumps(figures))
