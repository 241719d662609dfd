"""Content-addressed blob store: the claim check. A blob is written before its event is published.

``file://`` (or a bare path) is a local directory; ``s3://bucket/prefix`` is any S3-compatible store.
Keys are the sha256 of the bytes, so writing the same image twice is a no-op.
"""

from __future__ import annotations

from urllib.parse import urlparse

from ingest.blobs.base import BlobNotFound, BlobStore, sha256_hex
from ingest.blobs.local import LocalBlobStore

__all__ = ["BlobNotFound", "BlobStore", "LocalBlobStore", "open_blob_store", "read_blob", "sha256_hex"]


def open_blob_store(uri: str) -> BlobStore:
    """The store for a root URI: a local path / ``file://`` directory, or ``s3://bucket/prefix``."""
    if uri.startswith("s3://"):
        from ingest.blobs.s3 import S3BlobStore  # boto3 is needed only for S3

        return S3BlobStore(uri)
    return LocalBlobStore(urlparse(uri).path if uri.startswith("file://") else uri)


def read_blob(uri: str) -> bytes:
    """Read a blob by its full URI, whatever store wrote it."""
    if uri.startswith("s3://"):
        from ingest.blobs.s3 import S3BlobStore

        return S3BlobStore.read_uri(uri)
    return LocalBlobStore("/").get(uri)
