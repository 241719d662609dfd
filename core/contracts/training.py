"""Training requests: what the retrain watcher (or a person) asks the trainer for.

It travels as JSON (the Ray job's environment, the trigger's history in Redis), so it is a contract
like the others. Its identity (model, prefix, label count, who asked) makes the Ray submission id:
a retry of the same request never starts a second job.
"""

from __future__ import annotations

import hashlib
import json
import time

from pydantic import Field

from core.contracts.base import Contract


class TrainingRequest(Contract):
    SCHEMA_VERSION = 1

    model_name: str
    redis_prefix: str
    labels_total: int
    reason: str
    created_at: float = Field(default_factory=time.time)
    requested_by: str = "trigger"

    @property
    def request_id(self) -> str:
        ident = json.dumps([self.model_name, self.redis_prefix, self.labels_total, self.requested_by])
        return hashlib.sha256(ident.encode()).hexdigest()[:16]

    @property
    def submission_id(self) -> str:
        return f"misinfo-train-{self.request_id}"

    @classmethod
    def from_json(cls, raw: str | bytes) -> TrainingRequest:
        return cls.parse(raw)
