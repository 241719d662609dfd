"""Create the stack's S3 buckets on MinIO (run by the minio-init one-shot); idempotent."""

from __future__ import annotations

import os
import sys
import time

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError


def main() -> int:
    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])
    for name in os.environ["BUCKETS"].split():
        for attempt in range(30):
            try:
                s3.head_bucket(Bucket=name)
                print(f"bucket {name}: exists")
                break
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
                    raise
                s3.create_bucket(Bucket=name)
                print(f"bucket {name}: created")
                break
            except EndpointConnectionError:
                print(f"waiting for {os.environ['S3_ENDPOINT_URL']} ({attempt + 1}/30)", file=sys.stderr)
                time.sleep(2)
        else:
            print(f"bucket {name}: S3 endpoint never answered", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
