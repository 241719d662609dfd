"""Ingest's errors. An expected drop (bad input) becomes a dead letter with the reason; bugs raise."""


class IngestError(Exception):
    """Root of ingest's errors."""


class BadInput(IngestError):
    """Input that must be dead-lettered: ``stage`` says where, the message says what was wrong."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"{stage}: {reason}")


class PublishError(IngestError):
    """The broker refused a record permanently (after retries)."""


class StoreUnavailable(IngestError):
    """Redis (dedup, sightings) did not answer within the collector's patience."""
