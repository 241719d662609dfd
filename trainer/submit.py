"""Ray job submission through the Jobs API (``JobSubmissionClient``): idempotent submit, status, logs,
stop, wait. The trigger and ``misinfo train submit`` use this same code.

The job's entrypoint runs ``trainer.cli cycle`` (dataset → DeepSpeed training → evaluation →
registration → profile → gate → promotion) with the interpreter given by ``train_python`` (default:
this process's ``sys.executable``, right for a local head; set it on a cluster where the path
differs). The submission id is derived from the request, so a retry never starts a second job: Ray
refuses a reused id, and that refusal is read as "already submitted".
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from core.contracts.training import TrainingRequest
from trainer.trigger import TERMINAL

log = logging.getLogger(__name__)

REQUEST_ENV = "MISINFO_TRAINING_REQUEST"


def job_env(settings: Any) -> dict[str, str]:
    """The settings for the job as environment variables, secrets left out (Ray shows job env vars)."""
    from dataclasses import fields

    from core.config import PREFIX, SecretStr

    out = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if not isinstance(value, SecretStr):
            out[PREFIX + f.name.upper()] = str(value)
    return out


def cluster_gpus(address: str, timeout: float = 5.0) -> int:
    """Total GPUs the Ray cluster reports (0 when it reports none or cannot be asked)."""
    try:
        with urllib.request.urlopen(f"{address.rstrip('/')}/nodes?view=summary", timeout=timeout) as resp:  # noqa: S310
            data = json.loads(resp.read())
        total = 0.0
        for node in data.get("data", {}).get("summary", []):
            raylet = node.get("raylet", {})
            if raylet.get("state", "ALIVE") == "ALIVE":
                total += float(raylet.get("resources", {}).get("GPU", 0))
        return int(total)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot read the cluster's GPUs from %s (%s); requesting none", address, exc)
        return 0


class RaySubmitter:
    def __init__(
        self,
        settings: Any,
        *,
        address: str | None = None,
        python: str | None = None,
        gpus: int | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        from ray.job_submission import JobSubmissionClient

        self.settings = settings
        self.address = address or settings.ray_address
        self.client = JobSubmissionClient(self.address)
        self.python = python or getattr(settings, "train_python", "") or sys.executable
        self.gpus = settings.train_gpus if gpus is None else gpus
        extra = getattr(settings, "train_runtime_env", "")
        self.runtime_env = runtime_env if runtime_env is not None else (json.loads(extra) if extra else {})

    def entrypoint(self) -> str:
        return f"{shlex.quote(self.python)} -m trainer.cli cycle"

    def num_gpus(self) -> int:
        """GPUs to reserve for the job: ``train_gpus`` (-1: one when the cluster has any, else none)."""
        if self.gpus >= 0:
            return self.gpus
        return 1 if cluster_gpus(self.address) > 0 else 0

    def submit(self, request: TrainingRequest) -> str:
        """Submit (idempotently) and return the submission id."""
        sid = request.submission_id
        env = {**job_env(self.settings), **self.runtime_env.get("env_vars", {})}
        env[REQUEST_ENV] = request.to_json().decode()
        env.setdefault("PYTHONUNBUFFERED", "1")
        runtime_env = {**self.runtime_env, "env_vars": env}
        gpus = self.num_gpus()
        try:
            self.client.submit_job(
                entrypoint=self.entrypoint(),
                submission_id=sid,
                runtime_env=runtime_env,
                entrypoint_num_gpus=gpus or None,
                metadata={"misinfo.request_id": request.request_id, "misinfo.reason": request.reason[:200]},
            )
            log.info("submitted Ray job %s (%d GPU) to %s", sid, gpus, self.address)
        except RuntimeError as exc:
            if "already exists" not in str(exc):
                raise
            log.info("Ray job %s was already submitted; not starting another", sid)
        return sid

    def status(self, submission_id: str) -> str:
        try:
            return str(self.client.get_job_status(submission_id).value)
        except RuntimeError as exc:
            if "does not exist" in str(exc) or "not found" in str(exc).lower():
                return "NOT_FOUND"
            raise

    def logs(self, submission_id: str) -> str:
        return str(self.client.get_job_logs(submission_id))

    def stop(self, submission_id: str) -> bool:
        return bool(self.client.stop_job(submission_id))

    def wait(
        self,
        submission_id: str,
        timeout_s: float = 3600,
        poll_s: float = 2.0,
        progress: Callable[[str], None] | None = None,
    ) -> str:
        """Poll until the job ends (or ``timeout_s``); ``progress`` gets new log text as it arrives."""
        deadline = time.monotonic() + timeout_s
        shown = 0
        while True:
            status = self.status(submission_id)
            if progress is not None:
                text = self.logs(submission_id)
                if len(text) > shown:
                    progress(text[shown:])
                    shown = len(text)
            if status in TERMINAL:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray job {submission_id} still {status} after {timeout_s:.0f}s")
            time.sleep(poll_s)
