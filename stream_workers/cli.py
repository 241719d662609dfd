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
    """Run a stream worker: consume image events, detect in batches, write verdicts."""
    import faust

    from stream_workers.app import create_app

    settings = load_settings(worker_web_port=web_port)
    if noop_detector:
        from detector.noop import NoopDetector

        detector = NoopDetector()
    else:
        detector = load_detector(settings)
    app = create_app(settings, detector)
    faust.Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()


def summary_line(verdict: Any) -> str:
    """``<image id> <label> by <source> [flagged] [unstable] provenance=<state> model=<label> scores``."""
    parts = [verdict.image_id[:16], verdict.label, f"by {verdict.label_source}"]
    parts += ["flagged"] * verdict.flagged + ["unstable"] * bool(verdict.unstable)
    if verdict.provenance is not None:
        parts.append(f"provenance={verdict.provenance.state}")
    if verdict.model_label is not None and verdict.model_label != verdict.label:
        parts.append(f"model={verdict.model_label}")
    parts.append(" ".join(f"{k[:5]}={v:.2f}" for k, v in verdict.scores.items()))
    return " ".join(parts)


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
    default=True,
    help="JSON lines, the whole verdict with its provenance evidence (default), or one short line each",
)
def tail(flagged: bool, from_beginning: bool, max_count: int, timeout: float, as_json: bool) -> None:
    """Print verdicts as they arrive, one a line on stdout: JSON objects (with the model's scores,
    the provenance evidence, the final label and its source), or with --text a short summary.

    Without --from-beginning it starts at the end of the feed. A message that is not a valid Verdict
    is reported on stderr and skipped, so one bad producer cannot stop a subscriber.
    """
    from core.contracts.base import ContractError
    from core.contracts.verdicts import Verdict

    settings = load_settings()
    consumer = replay_consumer(
        settings.kafka_bootstrap,
        settings.topic_verdicts,
        from_beginning=from_beginning,
        idle_s=timeout or None,
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
    from stream_workers.recovery import RebuildStats, RecordsWatch
    from stream_workers.sinks import RedisSink

    settings = load_settings()

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
