"""``misinfo collect <source> ...``: run a collector continuously (``--every``) or once (``--once``).

With ``--once`` it shows progress and prints, last, one JSON line: seen, published, duplicates,
dead_letters.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from misinfo.config import Settings, load_settings


def parse_duration(text: str) -> float:
    """``60``, ``60s``, ``5m``, ``1h`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise click.BadParameter(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def build_ingestor(settings: Settings) -> Any:
    import redis

    from ingest.blobstore import open_blob_store
    from ingest.dedup import Dedup
    from ingest.pipeline import Ingestor, Topics
    from ingest.publisher import Publisher, PublisherConfig

    return Ingestor(
        blobs=open_blob_store(settings.blob_root),
        publisher=Publisher(PublisherConfig(bootstrap=settings.kafka_bootstrap)),
        dedup=Dedup(redis.Redis.from_url(settings.redis_url), settings.redis_prefix),
        topics=Topics(images=settings.topic_images, dead_letters=settings.topic_dead_letters),
        max_pixels=settings.max_image_pixels,
    )


def cursor_path(settings: Settings, source: str, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")[:120] or "default"
    return Path(settings.state_dir) / "cursors" / source / f"{safe}.json"


def run_collector(collector: Any, once: bool, every: str) -> None:
    """Shared run logic: progress + JSON summary with --once; a stoppable loop otherwise."""
    signal.signal(signal.SIGTERM, lambda *_: collector.stop())
    try:
        if once:
            progress = _progress()
            counts = collector.run_once(on_item=progress)
            click.echo("", err=True)
            click.echo(json.dumps(counts))
        else:
            collector.run_forever(parse_duration(every))
    except KeyboardInterrupt:
        collector.stop()
    finally:
        collector.ingestor.publisher.close()


def _progress() -> Callable[[Any, str], None]:
    n = {"items": 0}

    def show(item: Any, outcome: str) -> None:
        n["items"] += 1
        if sys.stderr.isatty() or n["items"] % 50 == 0:
            click.echo(f"\rcollected {n['items']} items (last: {outcome})", err=True, nl=False)

    return show


run_options = [
    click.option("--once", is_flag=True, help="one pass (a backfill), then print a JSON summary"),
    click.option("--every", default="60s", show_default=True, help="poll interval when continuous"),
]


def with_run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(run_options):
        f = opt(f)
    return f


@click.group()
def collect() -> None:
    """Collect images from a source and publish image events."""


@collect.command()
@click.argument("path", type=click.Path(file_okay=False, exists=True))
@with_run_options
def folder(path: str, once: bool, every: str) -> None:
    """Every image file under PATH (recursively); with --every, new and changed files as they appear."""
    from ingest.collectors.folder import FolderCollector

    settings = load_settings()
    collector = FolderCollector(
        build_ingestor(settings),
        cursor_path=cursor_path(settings, "folder", str(Path(path).resolve())),
        root=path,
        max_bytes=settings.max_download_bytes,
    )
    run_collector(collector, once, every)
