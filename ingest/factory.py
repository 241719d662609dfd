"""Public factories: the ingest chain and the fetcher built from settings, for collectors, uploads
and benchmarks alike (never reached through a CLI module)."""

from __future__ import annotations

from typing import Any

from core.config import Settings


def build_ingestor(settings: Settings) -> Any:
    """The ETL + dedup + publisher chain for ``settings``; ``.ingest(RawItem)`` then ``.flush()``."""
    import redis

    from core.kafka import Topics
    from ingest.blobs import open_blob_store
    from ingest.dedup import Dedup
    from ingest.pipeline import Ingestor
    from ingest.provenance import ProvenanceConfig
    from ingest.publisher import Publisher, PublisherConfig

    provenance = ProvenanceConfig.from_settings(settings)  # a bad trust list fails before any connection
    return Ingestor(
        blobs=open_blob_store(settings.blob_root),
        publisher=Publisher(PublisherConfig(bootstrap=settings.kafka_bootstrap)),
        dedup=Dedup(
            redis.Redis.from_url(settings.redis_url),
            settings.redis_prefix,
            near_distance=settings.near_duplicate_distance,
        ),
        topics=Topics.from_settings(settings),
        max_pixels=settings.max_image_pixels,
        provenance=provenance,
    )


def build_fetcher(settings: Settings) -> Any:
    from ingest.fetcher import FetchConfig, Fetcher

    return Fetcher(FetchConfig.from_settings(settings))
