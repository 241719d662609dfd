"""A folder of images: once (backfill), or watching for new files (``--every``). The cursor remembers
each file's size and modification time, so a changed file is read again and an unchanged one never is.
A file caught half-written becomes a dead letter and is read again once its size or time changes.
A file that is gone leaves the cursor at the next pass, so a drop folder emptied after collection
keeps a small cursor (a file put back later is read again; dedup makes it a duplicate)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.collectors.base import Collector
from ingest.exceptions import BadInput
from ingest.pipeline import RawItem


class FolderCollector(Collector):
    name = "folder"

    def __init__(self, *args: Any, root: str | Path, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.cursor.setdefault("files", {})

    def pending(self) -> int:
        """How many files the next pass will read (for a progress bar)."""
        seen: dict[str, str] = self.cursor["files"]
        return sum(1 for rel, stamp in self._files() if seen.get(rel) != stamp)

    def _files(self) -> Iterator[tuple[str, str]]:
        for path in sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            st = path.stat()
            yield str(path.relative_to(self.root)), f"{st.st_size}:{st.st_mtime_ns}"

    def poll(self) -> Iterator[RawItem]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"not a directory: {self.root}")
        seen: dict[str, str] = self.cursor["files"]
        files = list(self._files())
        present = {rel for rel, _ in files}
        for rel in [r for r in seen if r not in present]:
            del seen[rel]
        for rel, stamp in files:
            if seen.get(rel) == stamp:
                continue
            path = self.root / rel
            size, mtime_ns = (int(v) for v in stamp.split(":"))
            common: dict[str, Any] = dict(
                source="folder",
                source_item_id=f"{rel}@{mtime_ns}",
                source_url=path.resolve().as_uri(),
                posted_at=datetime.fromtimestamp(mtime_ns / 1e9, UTC),
                text=path.stem,
            )
            if size > self.max_bytes:
                err = BadInput("fetch", f"file of {size} bytes exceeds the {self.max_bytes}-byte cap")
                yield RawItem(error=err, **common)
            else:
                try:
                    data = path.read_bytes()
                except OSError as exc:  # vanished or unreadable: data, not a crash
                    yield RawItem(error=BadInput("fetch", f"cannot read {rel}: {exc.strerror}"), **common)
                else:
                    yield RawItem(data=data, **common)
            seen[rel] = stamp
