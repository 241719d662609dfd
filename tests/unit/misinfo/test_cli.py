from __future__ import annotations

import click
from click.testing import CliRunner

from misinfo.cli import EntryPointGroup, _broken, cli


def test_help_lists_the_subcommands_of_every_package():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("dev", "demo", "collect", "worker", "verdicts", "model", "bench"):
        assert name in result.output


def test_a_command_that_cannot_load_fails_even_for_help():
    cmd = _broken("ghost", ImportError("No module named 'ghost'"))
    group = click.Group(commands={"ghost": cmd})
    result = CliRunner().invoke(group, ["ghost", "--help"])
    assert result.exit_code != 0
    assert "cannot load" in result.output


def test_entry_point_group_loads_lazily():
    group = EntryPointGroup(name="x", ep_group="misinfo.no-such-group")
    assert group.list_commands(click.Context(group)) == []


def test_known_mistakes_become_one_line_with_the_setting_and_the_fix(monkeypatch, tmp_path):
    import errno

    import redis
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    from core.config import SettingError
    from misinfo.cli import one_line

    monkeypatch.setenv("MISINFO_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("MISINFO_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    broker, code = one_line(KafkaConnectionError())  # type: ignore[misc]
    assert code == 2 and "127.0.0.1:1" in broker and "MISINFO_KAFKA_BOOTSTRAP" in broker
    assert "misinfo dev up" in broker
    assert one_line(KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:1"))[0] == broker  # type: ignore[index]
    wrapped = RuntimeError("publish failed")
    wrapped.__cause__ = redis.exceptions.ConnectionError("refused")
    assert "MISINFO_REDIS_URL" in one_line(wrapped)[0]  # type: ignore[index]
    assert one_line(SettingError("MISINFO_X='y' is not a valid int")) == (
        "MISINFO_X='y' is not a valid int",
        2,
    )
    assert "port" in one_line(OSError(errno.EADDRINUSE, "Address already in use"))[0]  # type: ignore[index]
    assert one_line(ValueError("a bug")) is None  # anything else keeps its traceback


def test_the_root_prints_a_known_mistake_as_one_line():
    import redis

    @click.command("boom")
    def boom() -> None:
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6399")

    cli.add_command(boom)
    try:
        result = CliRunner().invoke(cli, ["boom"], env={"MISINFO_REDIS_URL": "redis://127.0.0.1:6399/0"})
    finally:
        cli.commands.pop("boom")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "misinfo boom: cannot reach Redis at redis://127.0.0.1:6399/0: start the embedded stack with "
        "`misinfo dev up`, or set MISINFO_REDIS_URL to where it runs"
    ]
