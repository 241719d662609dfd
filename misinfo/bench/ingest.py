"""``misinfo bench ingest``: JPEGs of about 100 KB from a folder through the whole ingest path (read,
decode, verify, hash, phash, blob store, dedup, publish with acks=all) to the broker, against a bare
kafka-python producer sending the same files' bytes to the same broker in the same run.

Prints progress on stderr and, last, one JSON line: ``images_per_s`` (ingest), ``bare_images_per_s``
and ``ratio`` (ingest / bare), with the sizes and timings they come from.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import click

from core.kafka import create_topics
from core.keys import Keys

log = logging.getLogger(__name__)


def make_jpegs(folder: Path, n: int, target_kb: int, seed: int = 0) -> list[Path]:
    """``n`` distinct procedural photos, JPEG, sized so each file is about ``target_kb`` KB."""
    from misinfo.samples import scene

    folder.mkdir(parents=True, exist_ok=True)
    # Noise-rich scenes compress to roughly 0.16 bytes per pixel at quality 90: pick the side from that.
    side = int((target_kb * 1024 / 0.16) ** 0.5)
    size = (int(side * 1.2), int(side / 1.2))
    paths = []
    for i in range(n):
        path = folder / f"bench-{seed}-{i:05d}.jpg"
        if not path.exists():
            scene(seed * 100_000 + i, size).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def bare_send(bootstrap: str, topic: str, paths: list[Path]) -> float:
    """Seconds for a plain acks=all producer to read and send every file's bytes and get the acks."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=2 * 1024 * 1024
    )
    try:
        start = time.perf_counter()
        for p in paths:
            producer.send(topic, key=p.name.encode(), value=p.read_bytes())
        producer.flush()
        return time.perf_counter() - start
    finally:
        producer.close()


@click.command("ingest")
@click.option("--n", "count", default=1000, show_default=True, help="number of JPEGs")
@click.option("--kb", default=100, show_default=True, help="approximate size of each JPEG")
@click.option(
    "--folder", type=click.Path(file_okay=False), default=None, help="where the JPEGs are (made if missing)"
)
def bench_ingest(count: int, kb: int, folder: str | None) -> None:
    """Folder → ingest → broker, against a bare kafka-python producer of the same bytes."""
    import redis

    from core.config import load_settings
    from ingest.collectors.folder import FolderCollector
    from ingest.factory import build_ingestor

    base = load_settings()
    tag = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="misinfo-bench-ingest-"))
    src = Path(folder) if folder else work / "jpegs"
    click.echo(f"making {count} JPEGs of ~{kb} KB in {src}", err=True)
    paths = make_jpegs(src, count, kb)
    total_bytes = sum(p.stat().st_size for p in paths)
    settings = dataclasses.replace(
        base,
        topic_images=f"bench-{tag}.images",
        topic_dead_letters=f"bench-{tag}.dead-letters",
        redis_prefix=f"bench:{tag}",
        blob_uri=str(work / "blobs"),
        state_dir=str(work / "state"),
    )
    bare_topic = f"bench-{tag}.bare"
    create_topics(
        settings.kafka_bootstrap,
        {
            n: settings.topic_partitions
            for n in (settings.topic_images, settings.topic_dead_letters, bare_topic)
        },
    )

    click.echo("bare kafka-python producer ...", err=True)
    bare_s = bare_send(settings.kafka_bootstrap, bare_topic, paths)

    click.echo("ingest pipeline ...", err=True)
    collector = FolderCollector(
        build_ingestor(settings),
        cursor_path=work / "state" / "cursor.json",
        root=src,
        max_bytes=base.max_download_bytes,
    )
    start = time.perf_counter()
    counts = collector.run_once()
    ingest_s = time.perf_counter() - start
    collector.ingestor.publisher.close()

    r = redis.Redis.from_url(settings.redis_url)
    keys = list(r.scan_iter(Keys(settings.redis_prefix).pattern(), count=1000))
    for i in range(0, len(keys), 500):
        r.delete(*keys[i : i + 500])

    shutil.rmtree(work, ignore_errors=True)  # the generated JPEGs and the blobs (~200 MB)

    images_per_s = counts["published"] / ingest_s
    bare_per_s = count / bare_s
    click.echo(
        json.dumps(
            {
                "images": count,
                "avg_kb": round(total_bytes / count / 1024, 1),
                "published": counts["published"],
                "dead_letters": counts["dead_letters"],
                "ingest_s": round(ingest_s, 3),
                "bare_s": round(bare_s, 3),
                "images_per_s": round(images_per_s, 1),
                "bare_images_per_s": round(bare_per_s, 1),
                "ratio": round(images_per_s / bare_per_s, 4),
                "machine": f"{platform.machine()} cpus={os.cpu_count()}",
            }
        )
    )
