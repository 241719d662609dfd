"""The S3 blob store against a real S3-compatible server (moto's server mode, started here), end to
end through the Ingestor; and a record the real broker refuses becoming a dead letter."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from core.contracts.images import DeadLetter, ImageEvent
from ingest.blobs import BlobNotFound, read_blob
from ingest.factory import build_ingestor
from ingest.pipeline import RawItem
from ingest.publisher import Publisher, PublisherConfig
from misinfo.devstack.stack import wait_for
from tests.conftest import free_port
from tests.integration.ingest_support import images
from tests.integration.ingest_support.topics import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_endpoint(monkeypatch):  # type: ignore[no-untyped-def]
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(url, timeout=1).status_code < 500
        except requests.ConnectionError:
            return proc.poll() is not None

    wait_for(up, 60, 0.2, "moto S3 server")
    assert proc.poll() is None
    for k, v in {
        "AWS_ENDPOINT_URL_S3": url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    from ingest.blobs.s3 import default_client

    default_client.cache_clear()
    default_client().create_bucket(Bucket="misinfo-blobs")
    yield url
    default_client.cache_clear()
    proc.terminate()
    proc.wait(timeout=30)


def test_upload_through_s3_blob_store_to_the_broker(settings, s3_endpoint):
    s = dataclasses.replace(settings, blob_uri="s3://misinfo-blobs/images")
    ingestor = build_ingestor(s)  # what the moderation service's uploads go through
    data = images.jpeg(61)
    assert (
        ingestor.ingest(RawItem(source="upload", source_item_id="u1", source_url="upload://u1", data=data))
        == "published"
    )
    assert (
        ingestor.ingest(RawItem(source="upload", source_item_id="u2", source_url="upload://u2", data=data))
        == "duplicate"
    )
    ingestor.flush()
    ingestor.publisher.close()
    (record,) = read_topic(s.kafka_bootstrap, s.topic_images, 1)
    event = ImageEvent.parse(record.value)
    assert event.blob_uri.startswith("s3://misinfo-blobs/images/")
    assert read_blob(event.blob_uri) == data  # how the workers read it: the URI and the environment
    with pytest.raises(BlobNotFound):
        read_blob("s3://misinfo-blobs/images/00/00/" + "0" * 64)
    assert os.environ["AWS_ENDPOINT_URL_S3"] == s3_endpoint


def test_refused_record_becomes_a_dead_letter(settings):
    pub = Publisher(PublisherConfig(bootstrap=settings.kafka_bootstrap))
    failures: list[Exception] = []
    pub.send(settings.topic_images, "k", b"x" * (2 * 1024 * 1024), on_failure=failures.append)  # > 1 MB
    pub.close()
    assert len(failures) == 1 and "MessageSizeTooLarge" in type(failures[0]).__name__

    ingestor = build_ingestor(settings)
    ingestor.publisher.max_pending = 1
    real_send = ingestor.publisher.producer.send

    def refusing_send(topic, key, value):  # type: ignore[no-untyped-def]
        if topic == settings.topic_images:  # the broker refuses the event; the dead letter goes through
            return real_send(topic, key=key, value=b"y" * (2 * 1024 * 1024))
        return real_send(topic, key=key, value=value)

    ingestor.publisher.producer.send = refusing_send
    item = RawItem(source="upload", source_item_id="big", source_url="upload://big", data=images.jpeg(62))
    ingestor.ingest(item)
    ingestor.flush()
    ingestor.publisher.close()
    assert dict(ingestor.counts) == {"seen": 1, "dead_letters": 1}
    (letter,) = [
        DeadLetter.parse(r.value)
        for r in read_topic(settings.kafka_bootstrap, settings.topic_dead_letters, 1)
    ]
    assert letter.stage == "publish" and "broker refused" in letter.reason and letter.event["image_id"]
