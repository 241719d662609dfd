"""``misinfo dev up|down|status``: the embedded stack for development, the demo and the tests."""

from __future__ import annotations

import dataclasses
import json

import click

from core.config import load_settings


def _stack():  # type: ignore[no-untyped-def]
    from misinfo.devstack.stack import DevStack

    return DevStack(load_settings())


@click.group()
def dev() -> None:
    """Run the embedded stack (broker, Redis, MLflow, Ray head) as local child processes."""


@dev.command()
@click.argument("components", nargs=-1)
def up(components: tuple[str, ...]) -> None:
    """Start the stack (or the named COMPONENTS); harmless when already up."""
    from misinfo.devstack.stack import StackError

    try:
        statuses = _stack().up(list(components) or None, progress=lambda m: click.echo(m, err=True))
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    for s in statuses:
        click.echo(f"{s.name:8} {'healthy' if s.healthy else 'DOWN':8} {s.endpoint}")


@dev.command()
@click.argument("components", nargs=-1)
def down(components: tuple[str, ...]) -> None:
    """Stop what `up` started; leaves no process behind."""
    _stack().down(list(components) or None, progress=lambda m: click.echo(m, err=True))


@dev.command()
@click.option(
    "--json", "as_json", is_flag=True, help="one JSON object: the addresses and topics, and each component"
)
def status(as_json: bool) -> None:
    """Show each component's health and this stack's addresses; exits 1 when any is down.

    With --json, one object with what a subscriber or a script needs (kafka_bootstrap, topics,
    redis_url, ...) and a "components" list."""
    from core.kafka import Topics

    stack = _stack()
    statuses = stack.status()
    s = stack.settings
    if as_json:
        doc = {
            "state_dir": s.state_dir,
            "kafka_bootstrap": s.kafka_bootstrap,
            "redis_url": s.redis_url,
            "redis_prefix": s.redis_prefix,
            "mlflow_tracking_uri": s.mlflow_tracking_uri,
            "ray_address": s.ray_address,
            "topics": dataclasses.asdict(Topics.from_settings(s)),
            "healthy": all(st.healthy for st in statuses),
            "components": [st.__dict__ for st in statuses],
        }
        click.echo(json.dumps(doc))
    else:
        click.echo(f"state {s.state_dir}")
        for st in statuses:
            owner = f"pid {st.pid}" if st.managed else "NOT started by this stack" if st.healthy else "-"
            click.echo(f"{st.name:8} {'healthy' if st.healthy else 'DOWN':8} {st.endpoint:32} {owner}")
    if not all(st.healthy for st in statuses):
        raise SystemExit(1)
