"""``misinfo model ...``: build checkpoints for tests, demos and speed measurements."""

from __future__ import annotations

import click


@click.group()
def model() -> None:
    """Model checkpoints."""


@model.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True, help="same seed, same files")
@click.option("--real-size", is_flag=True, help="the real 3B configuration (random weights), for benchmarks")
def tiny(path: str, seed: int, real_size: bool) -> None:
    """Write a complete random-weight Qwen2.5-VL checkpoint to PATH (no model hub needed)."""
    from detector.tiny import build_tiny_checkpoint

    out = build_tiny_checkpoint(path, seed=seed, real_size=real_size)
    click.echo(str(out))
