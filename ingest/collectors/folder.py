"""A folder of images: once (backfill), or watching for new files. The cursor remembers each file's
size and modification time, so a changed file is read again and an unchanged one never is."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from ingest.collectors.base import Collector
from ingest.exceptions import BadInput
from ingest.pipeline import RawItem


class FolderCollector(Collector):
    name = "folder"

    def __init__(self, *args, root: str | Path, max_bytes: int, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.cursor.setdefault("files", {})

    def poll(self) -> Iterator[RawItem]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"not a directory: {self.root}")
        seen: dict[str, str] = self.cursor["files"]
        for path in sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            st = path.stat()
            rel = str(path.relative_to(self.root))
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
            if seen.get(rel) == stamp:
                continue
            item_id = f"{rel}@{st.st_mtime_ns}"
            common = dict(
                source="folder",
                source_item_id=item_id,
                source_url=path.resolve().as_uri(),
                posted_at=datetime.fromtimestamp(st.st_mtime, UTC),
                text=path.stem,
            )
            if st.st_size > self.max_bytes:
                err = BadInput("fetch", f"file of {st.st_size} bytes exceeds the {self.max_bytes}-byte cap")
                yield RawItem(error=err, **common)  # type: ignore[arg-type]
            else:
                yield RawItem(data=path.read_bytes(), **common)  # type: ignore[arg-type]
            seen[rel] = stamp
