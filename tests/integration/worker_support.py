"""Helpers for tests that drive real worker processes."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import redis

from core.config import Settings
from core.keys import Keys
from misinfo.samples import write_samples
from tests.conftest import run_cli


def publish_samples(settings: Settings, folder: Path, n: int, seed: int) -> None:
    write_samples(folder, n=n, seed=seed)
    out = run_cli(settings, "collect", "folder", str(folder), "--once")
    assert out.returncode == 0, out.stderr


def verdict_ids(settings: Settings) -> set[str]:
    r = redis.Redis.from_url(settings.redis_url)
    return {
        k.decode().rsplit(":", 1)[1]
        for k in r.scan_iter(Keys(settings.redis_prefix).pattern("verdict"), count=1000)
    }


def metric(port: int, name: str) -> float:
    """The sum of a metric's samples scraped from a worker's /metrics (0 when absent or down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    values = [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    return sum(values)
