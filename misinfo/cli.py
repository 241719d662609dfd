"""The one console script, ``misinfo``. Subcommands come from the packages that own them.

Packages register a click command or group under an entry-point group (``misinfo.commands`` for
top-level commands, ``misinfo.bench`` for benchmarks; see pyproject.toml), so this root knows none of
them and imports each only when it is used.
"""

from __future__ import annotations

import errno
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


# Client libraries log every retry and connection attempt; without -v only our own one-line errors
# speak (faust and mode keep their errors: a crashed worker must say so).
QUIET_LIBRARIES = ("kafka", "aiokafka", "urllib3", "mlflow", "ray", "httpx", "botocore", "filelock")
FRAMEWORKS = ("faust", "mode")


# (top-level module, class name) of the client errors that mean "no broker answered".
BROKER_DOWN = {
    ("kafka", "NoBrokersAvailable"),
    ("kafka", "KafkaConnectionError"),
    ("aiokafka", "KafkaConnectionError"),
}


def one_line(exc: BaseException) -> tuple[str, int] | None:
    """A known mistake as (one line with its cause and remedy, exit status); None for anything else.

    Commands check what they need first (core.reach); this catches what slipped through, by the
    exception's class in the chain of causes, without importing any client library."""
    from core.config import SettingError
    from core.reach import PortTaken, Unreachable

    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in chain:
        if isinstance(e, Unreachable | PortTaken | SettingError):
            return str(e), 2
    for e in chain:
        names = {(c.__module__.split(".")[0], c.__name__) for c in type(e).__mro__}
        if names & BROKER_DOWN or (("kafka", "KafkaTimeoutError") in names and "bootstrap" in str(e)):
            return _unreachable("broker"), 2
        if names & {("redis", "ConnectionError"), ("redis", "TimeoutError")}:
            return _unreachable("redis"), 2
        if ("mlflow", "MlflowException") in names and "Max retries" in str(e):
            return _unreachable("mlflow"), 2
        if ("detector", "NotAModelDirectory") in names:
            return (
                f"{e}: set MISINFO_MODEL_PATH to a checkpoint directory or a hub id, or unset it for the tiny one",
                2,
            )
        if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
            return (
                f"a port this command listens on is taken ({e}): stop the other process or pick another port",
                2,
            )
    return None


def _unreachable(name: str) -> str:
    from core.config import load_settings
    from core.reach import services

    try:
        (svc,) = services(load_settings(), name)
    except ValueError as exc:  # the settings themselves are broken: that is the message then
        return str(exc)
    return str(svc.error())


class RootGroup(EntryPointGroup):
    """The root: a known mistake in any subcommand ends as one line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - only known mistakes are rewritten; the rest re-raises
            known = one_line(exc)
            if known is None:
                raise
            where = f"misinfo {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "misinfo"
            click.echo(f"{where}: {known[0]}", err=True)
            ctx.exit(known[1])


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True, envvar="MISINFO_LOG_LEVEL")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="show client libraries' warnings (-v) and their info (-vv); hidden otherwise",
)
def cli(log_level: str, verbose: int) -> None:
    """Watch social media for manipulated and AI-synthesized images."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    quiet_level = {0: logging.CRITICAL, 1: logging.WARNING}.get(verbose, logging.INFO)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(quiet_level)
    for name in FRAMEWORKS:
        logging.getLogger(name).setLevel(min(quiet_level, logging.ERROR))


def main() -> None:
    cli(prog_name="misinfo")
