"""The one console script, ``misinfo``. Subcommands come from the packages that own them.

Packages register a click command or group under the ``misinfo.commands`` entry-point group
(see pyproject.toml), so this root knows none of them and imports each only when it is used.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import click


class _EntryPointGroup(click.Group):
    """A click group whose subcommands are entry points, loaded lazily so `--help` stays fast."""

    def _eps(self) -> dict[str, object]:
        return {ep.name: ep for ep in entry_points(group="misinfo.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._eps()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        ep = self._eps().get(name)
        return ep.load() if ep is not None else None  # type: ignore[attr-defined,no-any-return]


@click.group(cls=_EntryPointGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True, envvar="MISINFO_LOG_LEVEL")
def cli(log_level: str) -> None:
    """Watch social media for manipulated and AI-synthesized images."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    cli(prog_name="misinfo")
