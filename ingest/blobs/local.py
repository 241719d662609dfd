"""Blobs as files in a local directory (``file://`` or a bare path)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from ingest.blobs.base import BlobNotFound, sha256_hex


class LocalBlobStore:
    """Blobs as files ``<root>/ab/cd/<sha256>``, written atomically (temp file + rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return path.resolve().as_uri()

    def get(self, uri: str) -> bytes:
        path = Path(urlparse(uri).path) if uri.startswith("file://") else Path(uri)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(uri) from None
