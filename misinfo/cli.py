"""The one console script, ``misinfo``. Subcommands come from the packages that own them.

Packages register a click command or group under an entry-point group (``misinfo.commands`` for
top-level commands, ``misinfo.bench`` for benchmarks; see pyproject.toml), so this root knows none of
them and imports each only when it is used.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

import click


def _broken(name: str, exc: BaseException) -> click.Command:
    """Stands in for a command whose module fails to import, so one broken part never hides the rest."""

    # No --help of its own: `misinfo NAME --help` must fail too, so checks of the CLI see the breakage.
    @click.command(
        name=name,
        help=f"(unavailable: {exc})",
        add_help_option=False,
        context_settings={"ignore_unknown_options": True},
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"`{name}` cannot load: {type(exc).__name__}: {exc}")

    return cmd


class EntryPointGroup(click.Group):
    """A click group whose subcommands are entry points of ``ep_group``, loaded lazily."""

    def __init__(self, *args: object, ep_group: str = "misinfo.commands", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.ep_group = ep_group

    def _eps(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.ep_group)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._eps()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        ep = self._eps().get(name)
        if ep is None:
            return None
        try:
            loaded = ep.load()
        except ImportError as exc:
            return _broken(name, exc)
        if not isinstance(loaded, click.Command):
            raise TypeError(f"entry point {ep.value} is not a click command")
        return loaded


@click.group(cls=EntryPointGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True, envvar="MISINFO_LOG_LEVEL")
def cli(log_level: str) -> None:
    """Watch social media for manipulated and AI-synthesized images."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Client libraries log every connection at INFO; keep their warnings only.
    for noisy in ("kafka", "aiokafka", "urllib3", "mlflow", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def main() -> None:
    cli(prog_name="misinfo")
