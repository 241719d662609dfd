"""What every blob store shares: the protocol, the missing-blob error and the content address."""

from __future__ import annotations

import hashlib
from typing import Protocol


class BlobNotFound(KeyError):
    """No blob under that URI."""


class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store ``data``; return its URI. Idempotent."""

    def get(self, uri: str) -> bytes:
        """The bytes behind ``uri``; raise :class:`BlobNotFound` when there are none."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
