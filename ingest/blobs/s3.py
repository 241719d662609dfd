"""The blob store on any S3-compatible service (AWS S3, MinIO, Ceph...) through boto3.

``s3://bucket/prefix`` names the root; a blob's key is ``prefix/ab/cd/<sha256>``, the same layout as
the local store. Credentials, endpoint and region come from boto3's standard chain: the
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_ENDPOINT_URL_S3`` / ``AWS_DEFAULT_REGION``
variables the compose file sets, a profile, or an instance role. Readers (the workers) get only the
blob URI, so they build the same client from the same environment.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from functools import cache
from typing import Any
from urllib.parse import urlparse

from ingest.blobs.base import BlobNotFound, sha256_hex

log = logging.getLogger(__name__)

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> (bucket, key)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


@cache
def default_client() -> Any:
    """One client per process (boto3 clients are thread-safe), with retries in standard mode."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - boto3 is a declared dependency
        raise ImportError("the S3 blob store needs boto3: pip install boto3") from exc
    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}))


class S3BlobStore:
    """Content-addressed blobs in a bucket; ``put`` skips the upload when the key already exists."""

    def __init__(self, root: str, client: Any | None = None) -> None:
        self.bucket, prefix = split_uri(root)
        self.prefix = prefix.strip("/")
        self.client = client or default_client()

    def key(self, digest: str) -> str:
        rel = f"{digest[:2]}/{digest[2:4]}/{digest}"
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        key = self.key(digest)
        if not self._exists(key):
            # ChecksumSHA256 makes the service verify what it stored against what we sent.
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
            )
        return f"s3://{self.bucket}/{key}"

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                return False
            raise

    def get(self, uri: str) -> bytes:
        return self.read_uri(uri, self.client)

    @staticmethod
    def read_uri(uri: str, client: Any | None = None) -> bytes:
        """The bytes behind ``s3://bucket/key``; :class:`BlobNotFound` when there are none."""
        from botocore.exceptions import ClientError

        bucket, key = split_uri(uri)
        try:
            obj = (client or default_client()).get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                raise BlobNotFound(uri) from None
            raise
        return bytes(obj["Body"].read())
