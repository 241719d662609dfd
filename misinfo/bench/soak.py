"""``misinfo bench soak --minutes 10``: a steady stream for minutes; does anything grow or lag?

A stack of its own (Tansu broker, a Redis the stack starts), one `misinfo worker` and one
`misinfo collect folder --every` collector. First the capacity: a burst of images offered at once,
capacity = images / (last record − offer). Then images are offered at ``--fraction`` of it, steadily,
for ``--minutes``; each is a distinct file (a JPEG comment makes its bytes, so its image id, unique;
near-duplicate linking is off, so every image goes through the model), and a file leaves the folder
once it is published. Every ``--sample-s`` seconds: the worker's and the collector's RSS, the
broker's RSS, Redis' used memory, the worker group's lag per partition (log end − committed offset),
the backlog (images offered and not yet judged, collector included), and the end-to-end latency
(``decided_at`` − ``collected_at``) of the verdicts that arrived in the window.

Figures (one JSON line): growth of each memory figure after warm-up (mean of the last tenth of the
samples against the first tenth after warm-up), the lag's slope over the last half and its maximum,
latency p50/p99 after warm-up, images offered and judged; a PNG plot of everything over time.
Redis and the broker keep every record and message by design, so their growth is the data, not a
leak; the worker's and the collector's RSS are the ones that must stay flat.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from core.config import Settings, load_settings
from misinfo.bench.support import (
    Child,
    GroupLag,
    TopicCounter,
    component_pid,
    emit,
    machine,
    own_stack,
    owned_partitions,
    percentile,
    records,
    rss_mb,
    say,
    stop_on_sigterm,
    worker_settings,
)


class Images:
    """Distinct JPEGs from a pool of scenes: a comment segment with a counter makes each file unique."""

    def __init__(self, pool: int, seed: int = 77) -> None:
        import io

        from misinfo.samples import scene

        sizes = [(320, 240), (240, 320), (400, 300), (256, 256)]
        self.pool = []
        for i in range(pool):
            buf = io.BytesIO()
            scene(seed * 10_000 + i, sizes[i % len(sizes)]).save(buf, "JPEG", quality=90)
            self.pool.append(buf.getvalue())
        self.n = 0

    def next(self) -> bytes:
        base = self.pool[self.n % len(self.pool)]
        comment = f"misinfo soak {self.n}".encode()
        self.n += 1
        segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        return base[:2] + segment + base[2:]  # after SOI: a valid JPEG with other bytes


class Feeder:
    """Offers files to the watched folder and removes them once the images topic has them."""

    def __init__(self, watch: Path, images: Images, published: TopicCounter) -> None:
        self.watch, self.images, self.published = watch, images, published
        self.waiting: dict[str, Path] = {}  # image id -> file not yet seen on the images topic
        self.offered = 0

    def offer(self, count: int) -> None:
        import hashlib

        for _ in range(count):
            data = self.images.next()
            image_id = hashlib.sha256(data).hexdigest()
            path = self.watch / f"soak-{self.offered:07d}.jpg"
            tmp = self.watch / f".{path.name}.part"  # hidden: the collector skips it
            tmp.write_bytes(data)
            tmp.rename(path)
            self.waiting[image_id] = path
            self.offered += 1

    def clean(self) -> None:
        for image_id in [i for i in self.waiting if self.published.has(i)]:
            self.waiting.pop(image_id).unlink(missing_ok=True)


def _redis_memory_mb(s: Settings) -> float:
    import redis

    try:
        info = redis.Redis.from_url(s.redis_url, socket_timeout=2).info("memory")
        return float(info["used_memory"]) / 2**20
    except (redis.RedisError, OSError):
        return float("nan")


def _latency(verdict: Any) -> float | None:
    context = getattr(verdict, "context", None)
    collected = getattr(context, "collected_at", None) if context is not None else None
    if collected is None:
        return None
    return float((verdict.decided_at - collected).total_seconds())


def _growth(series: list[float], start: int) -> float | None:
    """Percent change from the first tenth after warm-up to the last tenth of the samples."""
    tail = series[start:]
    k = max(1, len(tail) // 10)
    if len(tail) < 2 * k:
        return None
    first, last = statistics.fmean(tail[:k]), statistics.fmean(tail[-k:])
    return round(100.0 * (last - first) / first, 2) if first else None


def _slope_per_min(ts: list[float], ys: list[float]) -> float | None:
    if len(ts) < 3:
        return None
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return (
        round(60.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / den, 3) if den else None
    )


def plot(samples: list[dict[str, Any]], warmup_s: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), sharex=True)
    panels = [
        ("process RSS (MiB)", [("worker", "worker_rss_mb"), ("collector", "collector_rss_mb")]),
        ("broker RSS / Redis used (MiB)", [("broker", "broker_rss_mb"), ("redis", "redis_used_mb")]),
        ("lag: committed / offered, unjudged", [("group lag", "lag"), ("backlog", "backlog")]),
        ("end-to-end latency (s)", [("p50", "p50_s"), ("p99", "p99_s")]),
        ("images/s in the window", [("offered", "offered_per_s"), ("judged", "judged_per_s")]),
        ("records in Redis", [("records", "records")]),
    ]
    for ax, (name, lines) in zip(axes.flat, panels, strict=True):
        for label, key in lines:
            ax.plot(t, [s[key] for s in samples], label=label)
        if name.startswith("lag"):
            parts = sorted({p for s in samples for p in s["lags"]})
            for p in parts:
                ax.plot(t, [s["lags"].get(p, 0) for s in samples], lw=0.6, label=f"partition {p}")
        ax.axvline(warmup_s / 60, color="grey", ls="--", lw=0.8)
        ax.set_title(name)
        ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_soak(
    base: Settings, minutes: float, fraction: float, sample_s: float, burst: int, tmp: Path, plot_path: Path
) -> dict[str, Any]:
    from core.contracts.verdicts import Verdict

    watch, logs = tmp / "watch", tmp / "logs"
    watch.mkdir(parents=True)
    logs.mkdir()
    say("writing the image pool")
    images = Images(pool=200)
    with own_stack(base, tmp / "state") as (s, stack):
        (ws,) = worker_settings(s, 1)
        worker = Child("worker", ws, ["worker"], logs / "worker.log").start()
        collector = Child(
            "collector", s, ["collect", "folder", str(watch), "--every", "0.5s"], logs / "collector.log"
        )
        published = TopicCounter(s.kafka_bootstrap, s.topic_images)
        verdicts = TopicCounter(s.kafka_bootstrap, s.topic_verdicts, parse=Verdict.parse)
        published.start()
        verdicts.start()
        feeder = Feeder(watch, images, published)
        group = GroupLag(s.kafka_bootstrap, s.worker_group, s.topic_images)
        try:
            deadline = time.monotonic() + 300
            while owned_partitions(ws.worker_web_port) < 1:
                if not worker.alive() or time.monotonic() > deadline:
                    raise click.ClickException(f"the worker did not join; see {logs / 'worker.log'}")
                time.sleep(0.2)
            collector.start()

            say(f"capacity: a burst of {burst} images")
            started = time.monotonic()
            feeder.offer(burst)
            while records(s) < burst:
                if time.monotonic() - started > 600:
                    raise click.ClickException("the burst was not judged in 10 minutes")
                feeder.clean()
                time.sleep(0.2)
            capacity = burst / (time.monotonic() - started)
            rate = fraction * capacity
            say(f"  {capacity:.1f} images/s; soaking at {rate:.1f} images/s for {minutes:g} min")
            verdicts.take_parsed()

            samples: list[dict[str, Any]] = []
            broker_pid, t0 = component_pid(stack, "broker"), time.monotonic()
            next_sample, judged_before, offered_before = t0 + sample_s, records(s), 0
            while (now := time.monotonic()) - t0 < minutes * 60:
                due = int(rate * (now - t0)) - feeder.offered + burst
                if due > 0:
                    feeder.offer(due)
                if now >= next_sample:
                    feeder.clean()
                    window = now - (next_sample - sample_s)
                    lat = [x for _, v in verdicts.take_parsed() if (x := _latency(v)) is not None]
                    judged = records(s)
                    lags = group.lags(published.partition_ends())
                    sample = {
                        "t": round(now - t0, 1),
                        "worker_rss_mb": round(rss_mb(worker.pid), 1),
                        "collector_rss_mb": round(rss_mb(collector.pid), 1),
                        "broker_rss_mb": round(rss_mb(broker_pid), 1),
                        "redis_used_mb": round(_redis_memory_mb(s), 1),
                        "lags": lags,
                        "lag": sum(lags.values()),
                        "backlog": feeder.offered - judged,  # offered, not yet judged (collector too)
                        "p50_s": round(percentile(lat, 0.5), 3),
                        "p99_s": round(percentile(lat, 0.99), 3),
                        "latencies": len(lat),
                        "offered_per_s": round((feeder.offered - burst - offered_before) / window, 2),
                        "judged_per_s": round((judged - judged_before) / window, 2),
                        "records": judged,
                    }
                    samples.append(sample)
                    offered_before, judged_before = feeder.offered - burst, judged
                    next_sample += sample_s
                    say(
                        f"[{sample['t']:6.0f}s] worker {sample['worker_rss_mb']:.0f} MiB, collector "
                        f"{sample['collector_rss_mb']:.0f} MiB, lag {sample['lag']:.0f}, p50 {sample['p50_s']} s"
                    )
                time.sleep(0.1)
            say("draining")
            drained_at = time.monotonic()
            while records(s) < feeder.offered and time.monotonic() - drained_at < 300:
                feeder.clean()
                time.sleep(0.5)
            judged_total = records(s)
            alive = {"worker": worker.alive(), "collector": collector.alive()}
        finally:
            worker.stop()
            collector.stop()
            published.close()
            verdicts.close()
            group.close()

    warmup_s = min(120.0, 0.2 * minutes * 60)
    start = next((i for i, x in enumerate(samples) if x["t"] >= warmup_s), len(samples))
    after = samples[start:]
    half = samples[len(samples) // 2 :]
    all_lat = [x["p50_s"] for x in after]
    figures = {
        "benchmark": "soak",
        "minutes": minutes,
        "fraction": fraction,
        "capacity_images_per_s": round(capacity, 2),
        "rate_images_per_s": round(rate, 2),
        "images_offered": feeder.offered,
        "images_judged": judged_total,
        "samples": len(samples),
        "warmup_s": warmup_s,
        "growth_pct_after_warmup": {
            key.removesuffix("_mb"): _growth([x[key] for x in samples], start)
            for key in ("worker_rss_mb", "collector_rss_mb", "broker_rss_mb", "redis_used_mb")
        },
        "rss_mb_end": {"worker": samples[-1]["worker_rss_mb"], "collector": samples[-1]["collector_rss_mb"]}
        if samples
        else {},
        "lag_max": max((x["lag"] for x in after), default=None),
        "backlog_max": max((x["backlog"] for x in after), default=None),
        "backlog_slope_last_half_per_min": _slope_per_min(
            [x["t"] for x in half], [x["backlog"] for x in half]
        ),
        "lag_mean_last_half": round(statistics.fmean(x["lag"] for x in half), 1) if half else None,
        "lag_slope_last_half_per_min": _slope_per_min([x["t"] for x in half], [x["lag"] for x in half]),
        "lag_mean_by_quarter": [
            round(statistics.fmean(q), 1)
            if (q := [x["lag"] for x in samples[i * len(samples) // 4 : (i + 1) * len(samples) // 4]])
            else None
            for i in range(4)
        ],
        "latency_p50_s_median": round(statistics.median(all_lat), 3) if all_lat else None,
        "latency_p99_s_max": max((x["p99_s"] for x in after), default=None),
        "alive": alive,
        "plot": str(plot_path),
        "batch_size": base.max_batch,
        "model": "tiny-random-qwen2.5-vl(seed=0)",
        "machine": machine(),
    }
    plot(samples, warmup_s, plot_path, f"misinfo bench soak: {minutes:g} min at {rate:.0f} images/s")
    return figures


@click.command("soak")
@click.option("--minutes", default=10.0, show_default=True)
@click.option("--fraction", default=0.8, show_default=True, help="of the measured capacity")
@click.option("--sample-s", default=5.0, show_default=True, help="seconds between samples")
@click.option("--burst", default=300, show_default=True, help="images of the capacity measurement")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--plot", "plot_path", default="soak.png", show_default=True, type=click.Path(dir_okay=False))
def bench_soak(
    minutes: float, fraction: float, sample_s: float, burst: int, batch_size: int, plot_path: str
) -> None:
    """A steady stream at a fraction of capacity: memory growth, lag, latency (JSON line + PNG plot)."""
    from detector.loading import ensure_model

    stop_on_sigterm()
    base = load_settings()
    base = replace(
        base,
        model_path=base.model_path or ensure_model(base),
        max_batch=batch_size,
        max_wait_s=0.2,
        train_trigger=False,
        near_duplicate_distance=-1,  # every image through the model
    )
    tmp = tempfile.TemporaryDirectory(prefix="misinfo-soak-")
    try:
        figures = run_soak(
            base, minutes, fraction, sample_s, burst, Path(tmp.name), Path(plot_path).resolve()
        )
        emit(figures)  # before the clean-up, which takes a while after a long run
    finally:
        tmp.cleanup()
