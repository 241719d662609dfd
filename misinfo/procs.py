"""Run ``misinfo ...`` as a child process with a given ``Settings`` as its environment.

The demo, the benchmarks and the tests drive real processes (worker, collectors) this way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.config import Settings

MISINFO = str(Path(sys.executable).with_name("misinfo"))


def _env(settings: Settings, extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **settings.env(), **extra}


def run_misinfo(
    settings: Settings, *args: str, timeout: float | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``misinfo ARGS`` to completion; stdout and stderr captured as text."""
    return subprocess.run(
        [MISINFO, *args],
        env=_env(settings, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_misinfo(settings: Settings, *args: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start ``misinfo ARGS`` in its own process group, stdout and stderr appended to ``log``."""
    with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [MISINFO, *args],
            env=_env(settings, env),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
