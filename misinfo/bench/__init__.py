"""``misinfo bench <what>``: benchmarks added by the packages that own them.

Every benchmark prints progress to stderr and, last, one JSON line of figures on stdout.
"""

from __future__ import annotations

import click

from misinfo.cli import EntryPointGroup


@click.group(cls=EntryPointGroup, ep_group="misinfo.bench")
def bench() -> None:
    """Measure a part of the system; prints one JSON line of figures last."""
