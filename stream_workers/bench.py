"""``misinfo bench pipeline``: N images through collector → broker → worker → Redis, measured
against the parts alone, all in one run on the same broker:

- pipeline, tiny detector: a real worker process, the folder collector publishing while it runs;
  images/s = N / (last verdict's decided_at − first event's collected_at); p50/p99 end to end.
- pipeline, no-op detector (``misinfo worker --noop-detector``): the same, judging nothing.
- bare detector: the same detector in-process on the same images, same batch size.
- bare transport: an aiokafka loop consuming the N events and producing one record each.

``detector_ratio`` = tiny pipeline ÷ bare detector; ``transport_ratio`` = no-op pipeline ÷ bare loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import click

from misinfo.config import Settings, load_settings


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _fresh(settings: Settings, tag: str) -> Settings:
    return dataclasses.replace(
        settings,
        topic_images=f"bench-{tag}.images",
        topic_verdicts=f"bench-{tag}.verdicts",
        topic_feedback=f"bench-{tag}.feedback",
        topic_dead_letters=f"bench-{tag}.dead-letters",
        topic_control=f"bench-{tag}.control",
        redis_prefix=f"bench:{tag}",
        state_dir=str(Path(settings.state_dir) / "bench" / tag),  # own collector cursors
        worker_group=f"bench-{tag}",
        train_trigger=False,
    )


def _misinfo(settings: Settings, *args: str, log: Path | None = None) -> Any:
    cmd = [str(Path(sys.executable).with_name("misinfo")), *args]
    env = {**os.environ, **settings.env()}
    if log is None:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    fh = open(log, "ab")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        fh.close()


def _owned_partitions(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return resp.read().decode().count("misinfo_consumer_lag{")
    except OSError:
        return 0


def _wait(cond: Any, timeout: float, what: str, proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise click.ClickException(f"the worker exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_pipeline(settings: Settings, folder: Path, n: int, noop: bool, logs: Path) -> dict[str, Any]:
    """One pipeline run on fresh topics; returns throughput and end-to-end latency figures."""
    import redis

    from misinfo.devstack import DevStack
    from stream_workers.contracts import Verdict

    s = _fresh(settings, uuid.uuid4().hex[:8])
    DevStack(s).create_topics()
    r = redis.Redis.from_url(s.redis_url)
    args = ["worker", "--noop-detector"] if noop else ["worker"]
    worker = _misinfo(s, *args, log=logs / f"worker-{'noop' if noop else 'model'}.log")
    try:
        _wait(lambda: _owned_partitions(s.worker_web_port) >= 1, 180, "the worker to join", worker)
        started = time.perf_counter()
        out = _misinfo(s, "collect", "folder", str(folder), "--once")
        if out.returncode != 0:
            raise click.ClickException(f"collector failed: {out.stderr[-1500:]}")
        published = json.loads(out.stdout.strip().splitlines()[-1])["published"]
        if published != n:
            raise click.ClickException(f"the collector published {published} of {n} images")
        collector_s = time.perf_counter() - started
        pattern = f"{s.redis_prefix}:verdict:*"
        _wait(lambda: sum(1 for _ in r.scan_iter(pattern, count=1000)) >= n, 900, f"{n} verdicts", worker)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
    collected, decided = [], []
    for key in r.scan_iter(pattern, count=1000):
        rec = r.hgetall(key)
        verdict = Verdict.parse(rec[b"verdict"])
        event = json.loads(rec[b"event"])
        from datetime import datetime

        c = datetime.fromisoformat(event["collected_at"].replace("Z", "+00:00"))
        collected.append(c.timestamp())
        decided.append(verdict.decided_at.timestamp())
    for key in r.scan_iter(f"{s.redis_prefix}:*", count=1000):
        r.delete(key)
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
    from ingest.etl import decode_rgb
    from stream_workers.loading import load_detector

    det = load_detector(settings, model_path=model)
    images = [decode_rgb(p.read_bytes(), settings.max_image_pixels)[1] for p in sorted(folder.iterdir())]
    det.detect(images[:batch])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(images), batch):
        det.detect(images[i : i + batch])
    return len(images) / (time.perf_counter() - started)


async def _bare_transport(bootstrap: str, topic: str, n: int) -> float:
    """Consume the N image events and produce one record each, awaiting delivery: images/s."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    out_topic = f"{topic}.bare-out"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
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
    from misinfo.devstack import DevStack
    from misinfo.samples import write_samples
    from stream_workers.loading import ensure_model

    base = dataclasses.replace(load_settings(), max_batch=batch_size, max_wait_s=0.05)
    stack = DevStack(base)
    already = {c.name for c in stack.status() if c.healthy}
    stack.up(["broker", "redis"], progress=lambda m: _say("  " + m))
    try:
        model = ensure_model(base)
        base = dataclasses.replace(base, model_path=model)
        with tempfile.TemporaryDirectory(prefix="misinfo-bench-") as tmp:
            folder, logs = Path(tmp) / "images", Path(tmp) / "logs"
            logs.mkdir()
            _say(f"writing {n} sample images")
            write_samples(folder, n=n, seed=4242)
            _say("pipeline with the tiny detector ...")
            model_run = run_pipeline(base, folder, n, noop=False, logs=logs)
            _say(f"  {model_run['images_per_s']:.1f} images/s")
            _say("pipeline with the no-op detector ...")
            noop_run = run_pipeline(base, folder, n, noop=True, logs=logs)
            _say(f"  {noop_run['images_per_s']:.1f} images/s")
            _say("bare detector in-process ...")
            det_rate = bare_detector(model, folder, batch_size, base)
            _say(f"  {det_rate:.1f} images/s")
            _say("bare aiokafka consume-and-produce loop ...")
            loop_rate = asyncio.run(_bare_transport(base.kafka_bootstrap, noop_run["topic"], n))
            _say(f"  {loop_rate:.1f} images/s")
    finally:
        started = [
            c.name for c in stack.components if c.name in ("broker", "redis") and c.name not in already
        ]
        if started:
            stack.down(started, progress=lambda m: _say("  " + m))
    figures = {
        "benchmark": "pipeline",
        "images": n,
        "batch_size": batch_size,
        "images_per_s": round(model_run["images_per_s"], 2),
        "p50_ms": round(model_run["p50_ms"], 1),
        "p99_ms": round(model_run["p99_ms"], 1),
        "detector_ratio": round(model_run["images_per_s"] / det_rate, 3),
        "transport_ratio": round(noop_run["images_per_s"] / loop_rate, 3),
        "bare_detector_images_per_s": round(det_rate, 2),
        "noop_images_per_s": round(noop_run["images_per_s"], 2),
        "noop_p50_ms": round(noop_run["p50_ms"], 1),
        "bare_transport_images_per_s": round(loop_rate, 2),
        "collector_images_per_s": round(model_run["collector_images_per_s"], 2),
        "model": "tiny-random-qwen2.5-vl(seed=0)",
        "device": "cpu",
    }
    click.echo(json.dumps(figures))
