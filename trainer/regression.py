"""Frozen regression sets, one per family: the images every candidate must keep getting right.

A regression set is a named, versioned, read-only copy of labeled images (family ``A``: the
splices the champion was trained on; ``feedback-ds-…``: the held-out labels of a cycle that was
promoted). The gate scores candidate and champion on each one and refuses a candidate that loses
more than ``MISINFO_GATE_MAX_RECALL_DROP`` of any class's recall on any of them, so a model that
learns a new kind of fake cannot quietly forget an old one.

Layout under the regression directory (``MISINFO_TRAIN_REGRESSION_DIR``, default
``<state_dir>/regression``; a shared volume when the Ray job runs on other machines)::

    <name>/<version>/records.json    conversation records, images relative to this folder
    <name>/<version>/images/…        the image files, named by their sha256
    <name>/<version>/manifest.json   name, version, digest, counts, created_at

The version is ``rs-`` and the first 12 hex digits of the digest over (sha256 of each image, label),
sorted: freezing the same images again is a no-op that returns the same version, freezing other
images under the same name adds a version beside it, and the cycle uses each name's newest one.
Files are written read-only, and :func:`load_sets` checks every image against its digest before a
set is used: a set that was changed after freezing is an error, never silently a new baseline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detector.answer import CLASSES, format_answer
from trainer.data import conversation_record, read_records

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RegressionSetError(ValueError):
    """A regression set that cannot be frozen or used (bad name or label, changed after freezing)."""


@dataclass(frozen=True)
class RegressionSet:
    name: str
    version: str
    path: Path  # the version's folder
    counts: dict[str, int]
    created_at: str

    @property
    def records(self) -> Path:
        return self.path / "records.json"

    def examples(self) -> list[tuple[Path, str]]:
        return [(ex.image, ex.label) for ex in read_records(self.records)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            "counts": self.counts,
            "created_at": self.created_at,
        }


def _digest(rows: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(rows)).encode()).hexdigest()


def _read_only(path: Path) -> None:
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def freeze(root: str | Path, name: str, items: Sequence[tuple[str | Path, str]]) -> RegressionSet:
    """Freeze ``items`` ((image file, class) pairs) as regression set ``name``; returns its version.

    The same images and labels give the same version (nothing is written again)."""
    if not NAME.match(name):
        raise RegressionSetError(
            f"regression set name {name!r}: use letters, digits, '.', '_' or '-' (up to 64)"
        )
    if not items:
        raise RegressionSetError(f"regression set {name}: no images to freeze")
    rows = []
    blobs = []
    for image, label in items:
        if label not in CLASSES:
            raise RegressionSetError(f"regression set {name}: label {label!r} is not one of {CLASSES}")
        data = Path(image).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        rows.append((sha, label))
        blobs.append((sha, Path(image).suffix or ".img", data))
    digest = _digest(rows)
    version = f"rs-{digest[:12]}"
    folder = Path(root) / name / version
    if (folder / "manifest.json").exists():
        return _load_one(folder)
    tmp = folder.with_name(f".{version}.tmp-{os.getpid()}")
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for (sha, label), (_, suffix, data) in zip(rows, blobs, strict=True):
        rel = f"images/{sha}{suffix}"
        if not (tmp / rel).exists():
            (tmp / rel).write_bytes(data)
            _read_only(tmp / rel)
        records.append(conversation_record(rel, format_answer(label), id=sha))
    (tmp / "records.json").write_text(json.dumps(records, indent=1))
    manifest = {
        "name": name,
        "version": version,
        "digest": digest,
        "created_at": datetime.now(UTC).isoformat(),
        "counts": dict(Counter(label for _, label in rows)),
        "images": [{"sha256": sha, "label": label} for sha, label in rows],
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for f in ("records.json", "manifest.json"):
        _read_only(tmp / f)
    try:
        tmp.rename(folder)
    except OSError:  # frozen concurrently by another process: theirs is the same content
        pass
    return _load_one(folder)


def _load_one(folder: Path) -> RegressionSet:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise RegressionSetError(f"{folder}: unreadable manifest ({exc})") from None
    return RegressionSet(
        manifest["name"], manifest["version"], folder, dict(manifest["counts"]), manifest["created_at"]
    )


def verify(rs: RegressionSet) -> None:
    """Every image is still the one frozen (sha256) and the labels still hash to the version."""
    manifest = json.loads((rs.path / "manifest.json").read_text())
    rows = []
    for ex in read_records(rs.records):
        sha = hashlib.sha256(ex.image.read_bytes()).hexdigest()
        if not ex.image.name.startswith(sha):
            raise RegressionSetError(
                f"regression set {rs.name} {rs.version}: {ex.image.name} changed after it was frozen; "
                "freeze a new version instead of editing one"
            )
        rows.append((sha, ex.label))
    if _digest(rows) != manifest["digest"]:
        raise RegressionSetError(
            f"regression set {rs.name} {rs.version}: its records no longer match the frozen digest; "
            "freeze a new version instead of editing one"
        )


def list_sets(root: str | Path) -> list[RegressionSet]:
    """Every frozen version under ``root``, oldest first within each name."""
    out = []
    base = Path(root)
    if not base.is_dir():
        return []
    for name_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = [_load_one(v) for v in name_dir.iterdir() if (v / "manifest.json").is_file()]
        out += sorted(versions, key=lambda rs: rs.created_at)
    return out


def load_sets(root: str | Path) -> list[RegressionSet]:
    """The newest version of each name, each checked against its digest."""
    newest: dict[str, RegressionSet] = {}
    for rs in list_sets(root):
        newest[rs.name] = rs  # oldest first: the last one wins
    for rs in newest.values():
        verify(rs)
    return list(newest.values())
