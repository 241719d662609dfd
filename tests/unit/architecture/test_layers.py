"""The package floors hold (import-linter), and breaking one is caught; contracts and Redis keys each
have one home."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("core", "detector", "ingest", "registry", "stream_workers", "moderation", "trainer", "misinfo")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
CONTRACTS = ("ImageEvent", "DeadLetter", "Verdict", "Label", "ModelUpdate", "TrainingRequest")


def sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH puts ``root``'s packages ahead of the installed (editable) ones.
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("tree")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_floors_hold_on_the_tree_as_it_is(tree_copy: Path) -> None:
    result = lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("core/keys.py", "import stream_workers.app"),  # the ground reaching up to a service
        ("detector/answer.py", "from ingest import etl"),  # the model core reaching up to ingest
        ("stream_workers/sinks.py", "import trainer.trigger"),  # one service importing another
        ("trainer/trigger.py", "import misinfo.demo"),  # anything importing the shell
    ],
)
def test_an_import_that_breaks_a_floor_fails_the_check(tree_copy: Path, module: str, upward: str) -> None:
    path = tree_copy / module
    original = path.read_text()
    path.write_text(original + f"\n{upward}  # added by the test\n")
    try:
        result = lint_imports(tree_copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    importer = module.removesuffix(".py").replace("/", ".")
    assert "BROKEN" in result.stdout and importer in result.stdout, result.stdout


def test_each_contract_class_is_defined_once_in_core_contracts() -> None:
    where: dict[str, list[str]] = {name: [] for name in CONTRACTS}
    pattern = re.compile(r"^class (\w+)\b", re.M)
    for path in sources():
        for name in pattern.findall(path.read_text()):
            if name in where:
                where[name].append(str(path.relative_to(ROOT)))
    for name, files in where.items():
        assert len(files) == 1 and files[0].startswith("core/contracts/"), (name, files)


# A Redis key spelled out: an f-string that starts with a prefix variable and a colon, or a literal
# holding one of the layout's segments between colons.
KEY_FSTRING = re.compile(r"""f["']\{[\w.]*(?:prefix|\.p|\.k)\}:""")
KEY_SEGMENT = re.compile(
    r"""["'][^"'\n]*:(?:verdict|labels|review|sightings|index|training|session|token|user|users|login|audit|skipped|ingest|lock|undo):"""
)


def test_no_redis_key_is_built_outside_the_key_module() -> None:
    offenders = []
    for path in sources():
        if path == ROOT / "core" / "keys.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if KEY_FSTRING.search(code) or KEY_SEGMENT.search(code):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "Redis keys built outside core/keys.py:\n" + "\n".join(offenders)


def test_the_key_check_would_see_a_key_built_by_hand() -> None:
    # The patterns above must match what they are meant to forbid.
    assert KEY_FSTRING.search('r.hget(f"{settings.redis_prefix}:verdict:{image_id}", "label")')
    assert KEY_FSTRING.search('return f"{self.p}:review"')
    assert KEY_SEGMENT.search('r.scan_iter("misinfo:labels:*")')
    assert not KEY_FSTRING.search('f"{prefix}-bench"')
