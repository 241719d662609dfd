"""``misinfo worker`` (the Faust app) and ``misinfo verdicts tail`` (a subscriber)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from core.config import load_settings
from core.kafka import replay_consumer
from detector.loading import load_detector


@click.command()
@click.option("--web-port", type=int, default=None, help="metrics port (default: MISINFO_WORKER_WEB_PORT)")
@click.option(
    "--noop-detector", is_flag=True, help="judge nothing (fixed scores): measures the transport alone"
)
def worker(web_port: int | None, noop_detector: bool) -> None:
    """Run a stream worker: consume image events, detect in batches, write verdicts.

    Started before the broker or Redis, it waits for them, saying so once every 10 s. Metrics are
    served on MISINFO_WORKER_WEB_BIND:MISINFO_WORKER_WEB_PORT (127.0.0.1:6066 by default)."""
    import faust

    from core.reach import require_port, wait_until_reachable
    from stream_workers.app import create_app

    settings = load_settings(worker_web_port=web_port)
    check_model_path(settings.model_path)
    setting = "MISINFO_WORKER_WEB_PORT (or --web-port)"
    require_port("the worker's metrics server", settings.worker_web_bind, settings.worker_web_port, setting)
    wait_until_reachable(settings, ("broker", "redis"), who="worker", say=lambda m: click.echo(m, err=True))
    if noop_detector:
        from detector.noop import NoopDetector

        detector = NoopDetector()
    else:
        detector = load_detector(settings)
    app = create_app(settings, detector)
    faust.Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()


def check_model_path(path: str) -> None:
    """A model path that names a local directory must exist (a hub id such as
    ``Qwen/Qwen2.5-VL-3B-Instruct`` is not checked): say so in one line before anything loads."""
    from pathlib import Path

    from core.config import SettingError

    if path and path.startswith(("/", "./", "../", "~")) and not Path(path).expanduser().is_dir():
        raise SettingError(
            f"MISINFO_MODEL_PATH={path!r} is not a directory: point it at a checkpoint directory or a "
            "hub id (Qwen/Qwen2.5-VL-3B-Instruct), or unset it for the tiny random checkpoint"
        )


def summary_line(verdict: Any) -> str:
    """One readable line: when, flag, label and who decided it, P(fake), then what it is about
    (source, account, post URL, caption excerpt) and the image id.

    ``02:41:07 FLAGGED manipulated by model P(fake)=0.83 provenance=absent | reddit @alice
    https://... "caption" | image 3f2a9c1b7d0e``"""
    v = verdict
    fake = v.scores.get("manipulated", 0.0) + v.scores.get("synthesized", 0.0)
    parts = [
        v.decided_at.strftime("%H:%M:%S"),
        "FLAGGED" if v.flagged else "ok",
        v.label,
        f"by {v.label_source}",
    ]
    parts.append(f"P(fake)={fake:.2f}")
    if v.unstable:
        parts.append("unstable")
    if v.provenance is not None:
        parts.append(f"provenance={v.provenance.state}")
    if v.model_label is not None and v.model_label != v.label:
        parts.append(f"model={v.model_label}")
    about = []
    if v.context is not None:
        c = v.context
        about = [c.source] + ([f"@{c.account}"] if c.account else []) + [c.post_url]
        if c.media_url:
            about.append(f"media {c.media_url}")
        if c.caption:
            about.append(
                json.dumps(c.caption[:80] + ("…" if len(c.caption) > 80 else ""), ensure_ascii=False)
            )
    return " ".join(parts) + (" | " + " ".join(about) if about else "") + f" | image {v.image_id[:12]}"


@click.group()
def verdicts() -> None:
    """Subscribe to the verdict feed."""


@verdicts.command()
@click.option("--flagged", is_flag=True, help="only flagged verdicts")
@click.option("--from-beginning", is_flag=True, help="start at the oldest retained verdict")
@click.option("--max", "max_count", type=int, default=0, help="stop after this many (0 = follow forever)")
@click.option("--timeout", type=float, default=0.0, help="stop after this many idle seconds (0 = never)")
@click.option(
    "--json/--text",
    "as_json",
    default=False,
    help="the whole Verdict as one JSON object a line (scores, provenance evidence, post context), "
    "or one readable line each (the default)",
)
def tail(flagged: bool, from_beginning: bool, max_count: int, timeout: float, as_json: bool) -> None:
    """Print verdicts as they arrive, one a line on stdout: a readable line (when, flagged or not, the
    label and who decided it, P(fake), the source, account, post URL and caption excerpt, the image
    id), or with --json the whole Verdict as a JSON object.

    Without --from-beginning it starts at the end of the feed. A message that is not a valid Verdict
    is reported on stderr and skipped, so one bad producer cannot stop a subscriber.
    """
    from core.contracts.base import ContractError
    from core.contracts.verdicts import Verdict
    from core.reach import require

    settings = load_settings()
    require(settings, "broker")
    consumer = replay_consumer(
        settings.kafka_bootstrap,
        settings.topic_verdicts,
        from_beginning=from_beginning,
        idle_s=timeout or None,
        bootstrap_timeout_s=10.0,
    )
    shown = 0
    try:
        for msg in consumer:
            try:
                verdict = Verdict.parse(msg.value)
            except ContractError as exc:
                click.echo(
                    f"skipped a message that is not a Verdict ({msg.topic}[{msg.partition}]@{msg.offset}): {exc}",
                    err=True,
                )
                continue
            if flagged and not verdict.flagged:
                continue
            sys.stdout.write((json.dumps(verdict.to_dict()) if as_json else summary_line(verdict)) + "\n")
            sys.stdout.flush()
            shown += 1
            if max_count and shown >= max_count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


@verdicts.command()
def rebuild() -> None:
    """Rebuild the verdict records in Redis from the verdicts and images topics.

    Writes each record that is missing or older than the topic's last verdict for its image (with
    its indexes and review-queue entry), then marks the records whole. Workers do this by themselves
    when they notice that Redis lost its data; this is the same rebuild, by hand. Prints one JSON line.
    """
    import asyncio

    import redis.asyncio as aioredis

    from core.kafka import Topics
    from core.reach import require
    from stream_workers.recovery import RebuildStats, RecordsWatch
    from stream_workers.sinks import RedisSink

    settings = load_settings()
    require(settings, "redis", "broker")

    async def run() -> RebuildStats | None:
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            sink = RedisSink(client, settings.redis_prefix)
            watch = RecordsWatch(settings.kafka_bootstrap, Topics.from_settings(settings), sink)
            return await watch.check(force=True)
        finally:
            await client.aclose()

    stats = asyncio.run(run())
    click.echo(json.dumps(stats.to_dict() if stats is not None else {"restored": 0}))
