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
