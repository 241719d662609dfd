"""Content-addressed blob store: the claim check. A blob is written before its event is published.

``file://`` (or a bare path) is a local directory; ``s3://bucket/prefix`` is any S3-compatible store.
Keys are the sha256 of the bytes, so writing the same image twice is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class BlobNotFound(KeyError):
    """No blob under that URI."""


class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store ``data``; return its URI. Idempotent."""

    def get(self, uri: str) -> bytes:
        """The bytes behind ``uri``; raise :class:`BlobNotFound` when there are none."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


def open_blob_store(uri: str) -> BlobStore:
    """The store for a root URI: a local path / ``file://`` directory, or ``s3://bucket/prefix``."""
    if uri.startswith("s3://"):
        from ingest.s3store import S3BlobStore  # boto3 is needed only for S3

        return S3BlobStore(uri)
    return LocalBlobStore(urlparse(uri).path if uri.startswith("file://") else uri)


def read_blob(uri: str) -> bytes:
    """Read a blob by its full URI, whatever store wrote it."""
    if uri.startswith("s3://"):
        from ingest.s3store import S3BlobStore

        return S3BlobStore.read_uri(uri)
    return LocalBlobStore("/").get(uri)
