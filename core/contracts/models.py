"""Contract the registry publishes on the control topic when an alias moves: ``ModelUpdate``."""

from __future__ import annotations

from pydantic import Field

from core.contracts.base import Contract, Timestamp, utcnow


class ModelUpdate(Contract):
    """Tells every worker which model version now serves under ``alias``."""

    model_name: str
    version: str
    alias: str
    profile_uri: str | None
    model_uri: str | None = None  # where the worker loads the weights/adapter from
    promoted_at: Timestamp = Field(default_factory=utcnow)
