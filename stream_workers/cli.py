"""``misinfo worker`` (the Faust app) and ``misinfo verdicts tail`` (a subscriber)."""

from __future__ import annotations

import json
import sys

import click

from misinfo.config import Settings, load_settings


def ensure_model(settings: Settings) -> str:
    """The configured model path, or a tiny random checkpoint under the state dir when none is set."""
    if settings.model_path:
        return settings.model_path
    from pathlib import Path

    from detector.tiny import build_tiny_checkpoint

    path = Path(settings.state_dir) / "models" / "tiny"
    if not (path / "config.json").exists():
        click.echo(f"no MISINFO_MODEL_PATH: building a tiny random checkpoint at {path}", err=True)
        build_tiny_checkpoint(path)
    return str(path)


def load_detector(settings: Settings):  # type: ignore[no-untyped-def]
    from detector.model import Detector, LoadOptions, Thresholds

    return Detector.load(
        ensure_model(settings),
        LoadOptions(device=settings.device, adapter_path=settings.adapter_path or None),
        thresholds=Thresholds(settings.uncertain_below, settings.flag_threshold),
        name=settings.model_name,
        version=settings.model_version,
    )


@click.command()
@click.option(
    "--web-port", type=int, default=None, help="metrics/web port (default: MISINFO_WORKER_WEB_PORT)"
)
def worker(web_port: int | None) -> None:
    """Run a stream worker: consume image events, detect in batches, write verdicts."""
    import faust

    from stream_workers.app import create_app

    settings = load_settings(worker_web_port=web_port)
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
    from kafka import KafkaConsumer

    from misinfo.schema import ContractError
    from stream_workers.contracts import Verdict

    settings = load_settings()
    consumer = KafkaConsumer(
        settings.topic_verdicts,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=int(timeout * 1000) if timeout else float("inf"),  # type: ignore[arg-type]
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
