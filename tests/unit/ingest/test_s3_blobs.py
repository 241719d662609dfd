"""S3BlobStore's calls, checked with botocore's Stubber (the integration test uses a real S3 server)."""

from __future__ import annotations

import io

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from ingest.blobs import BlobNotFound, sha256_hex
from ingest.blobs.s3 import S3BlobStore, split_uri


@pytest.fixture
def client():
    return boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")


def test_put_uploads_once_under_the_content_address(client):
    data = b"image bytes"
    digest = sha256_hex(data)
    key = f"root/{digest[:2]}/{digest[2:4]}/{digest}"
    store = S3BlobStore("s3://bucket/root/", client=client)
    with Stubber(client) as stub:
        stub.add_client_error("head_object", "404", expected_params={"Bucket": "bucket", "Key": key})
        stub.add_response(
            "put_object", {}, {"Bucket": "bucket", "Key": key, "Body": data, "ChecksumSHA256": ANY}
        )
        stub.add_response("head_object", {}, {"Bucket": "bucket", "Key": key})  # second put: exists
        assert store.put(data) == f"s3://bucket/{key}"
        assert store.put(data) == f"s3://bucket/{key}"
        stub.assert_no_pending_responses()


def test_get_and_missing(client):
    store = S3BlobStore("s3://bucket", client=client)
    with Stubber(client) as stub:
        stub.add_response(
            "get_object", {"Body": StreamingBody(io.BytesIO(b"abc"), 3)}, {"Bucket": "bucket", "Key": "a/b"}
        )
        stub.add_client_error("get_object", "NoSuchKey", http_status_code=404)
        assert store.get("s3://bucket/a/b") == b"abc"
        with pytest.raises(BlobNotFound):
            store.get("s3://bucket/missing")


def test_uri_parsing():
    assert split_uri("s3://b/x/y") == ("b", "x/y")
    with pytest.raises(ValueError):
        split_uri("file:///x")
