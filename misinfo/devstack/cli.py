"""``misinfo dev up|down|status``: the embedded stack for development, the demo and the tests."""

from __future__ import annotations

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
@click.option("--json", "as_json", is_flag=True, help="one JSON object per component")
def status(as_json: bool) -> None:
    """Show each component's health; exits 1 when any is down."""
    statuses = _stack().status()
    for s in statuses:
        if as_json:
            click.echo(json.dumps(s.__dict__))
        else:
            owner = f"pid {s.pid}" if s.managed else "external" if s.healthy else "-"
            click.echo(f"{s.name:8} {'healthy' if s.healthy else 'DOWN':8} {s.endpoint:32} {owner}")
    if not all(s.healthy for s in statuses):
        raise SystemExit(1)
