"""``misinfo worker`` (the Faust app) and ``misinfo verdicts tail`` (a subscriber)."""

from __future__ import annotations

import json
import sys

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


@click.group()
def verdicts() -> None:
    """Subscribe to the verdict feed."""


@verdicts.command()
@click.option("--flagged", is_flag=True, help="only flagged verdicts")
@click.option("--from-beginning", is_flag=True, help="start at the oldest retained verdict")
@click.option("--max", "max_count", type=int, default=0, help="stop after this many (0 = follow forever)")
@click.option("--timeout", type=float, default=0.0, help="stop after this many idle seconds (0 = never)")
def tail(flagged: bool, from_beginning: bool, max_count: int, timeout: float) -> None:
    """Print verdicts as JSON lines as they arrive (one object a line, on stdout).

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
            sys.stdout.write(json.dumps(verdict.to_dict()) + "\n")
            sys.stdout.flush()
            shown += 1
            if max_count and shown >= max_count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
