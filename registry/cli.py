"""``misinfo registry list|promote|rollback``: the model registry for people."""

from __future__ import annotations

import json

import click


def _store(*needs: str):  # type: ignore[no-untyped-def]
    """The registry and a control-topic publisher, after checking (within seconds) that MLflow and
    the services in ``needs`` answer: a one-line error beats minutes of client retries."""
    from core.config import load_settings
    from core.reach import require
    from registry.promotion import kafka_publisher
    from registry.store import RegistryStore

    settings = load_settings()
    require(settings, "mlflow", *needs)
    return (
        RegistryStore(settings.mlflow_tracking_uri, settings.model_name),
        kafka_publisher(settings.kafka_bootstrap, settings.topic_control),
    )


@click.group()
def registry() -> None:
    """Registered detector versions and the champion alias (MISINFO_MLFLOW_TRACKING_URI, MISINFO_MODEL_NAME)."""


@registry.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per version")
def list_(as_json: bool) -> None:
    """Every version, newest first, with its aliases and evaluation figures."""
    store, _ = _store()
    versions = store.list_versions()
    if as_json:
        for v in versions:
            click.echo(json.dumps(v.to_dict()))
        return
    if not versions:
        click.echo(
            f"no versions of {store.name} in the registry at {store.tracking_uri} yet: a training "
            "registers one (`misinfo train status` shows how far the next one is)"
        )
        return
    click.echo(f"{'version':>7}  {'aliases':<20} {'macro_f1':>8}  {'gate':<8} source")
    for v in versions:
        click.echo(
            f"{v.version:>7}  {','.join(v.aliases) or '-':<20} {v.tags.get('eval.macro_f1', '-'):>8.8}  "
            f"{v.tags.get('gate', '-'):<8} {v.source}"
        )


@registry.command()
@click.argument("version")
def promote(version: str) -> None:
    """Make VERSION the champion and tell the workers (ModelUpdate on the control topic)."""
    from registry.promotion import promote as do_promote

    store, publish = _store("broker")
    update = do_promote(store, version, publish)
    click.echo(json.dumps(update.to_dict()))


@registry.command()
@click.option("--to", "to_version", default=None, help="this version (default: the previous champion)")
def rollback(to_version: str | None) -> None:
    """Move the champion back to the previous one (or --to VERSION) and tell the workers."""
    from registry.promotion import PromotionError
    from registry.promotion import rollback as do_rollback

    store, publish = _store("broker")
    try:
        update = do_rollback(store, publish, to_version)
    except PromotionError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(update.to_dict()))
