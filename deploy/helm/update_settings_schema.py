"""Refresh the list of setting names in the chart's values.schema.json from core/config.py.

    .venv/bin/python deploy/helm/update_settings_schema.py

values.schema.json lets a `settings` map hold only MISINFO_* names that the code reads, so `helm
install` refuses a misspelt or retired setting. tests/unit/deploy/ fails when the list and the
settings drift apart; this script is the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA = Path(__file__).resolve().parent / "misinfo-watch" / "values.schema.json"


def setting_names() -> list[str]:
    """What the code reads: the settings, and the CLI root's own options (MISINFO_LOG_LEVEL)."""
    from core.config import env_names
    from misinfo.cli import cli

    cli_envvars = {p.envvar for p in cli.params if isinstance(p.envvar, str)}
    return sorted(set(env_names()) | cli_envvars)


def main() -> None:
    schema = json.loads(SCHEMA.read_text())
    schema["$defs"]["settingName"]["enum"] = setting_names()
    SCHEMA.write_text(json.dumps(schema, indent=2) + "\n")
    print(f"{SCHEMA}: {len(schema['$defs']['settingName']['enum'])} setting names")


if __name__ == "__main__":
    main()
