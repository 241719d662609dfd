"""Measuring one candidate: in a fresh child process (``python -m registry.optimize.measure SPEC OUT``).

A child of its own gives each candidate its own load time, thread settings, compile caches and peak
memory, and a candidate that crashes costs only its row in the table.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.optimize.candidates import Candidate

log = logging.getLogger(__name__)

CHILD_MODULE = "registry.optimize.measure"  # this module, run as a child: see run_candidate


@dataclass
class Result:
    """A measured candidate (or a failed one); ``eligible``/``why_not`` are filled by the selection."""

    candidate: Candidate
    status: str  # ok | failed
    error: str | None = None
    fallbacks: list[str] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    probs: list[list[float]] | None = None
    eligible: bool = False
    why_not: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "id": self.candidate.id,
            "options": self.candidate.options(),
            "status": self.status,
            "error": self.error,
            "fallbacks": self.fallbacks,
            "metrics": self.metrics,
            "eligible": self.eligible,
            "why_not": self.why_not,
        }


# ---------------------------------------------------------------- measuring one candidate (child side)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _peak_memory_mb(device: Any) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_candidate(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the detector as the candidate says, run the eval set, return figures and probabilities.

    Runs in a child process (see :func:`run_candidate`); ``spec`` is JSON-able.
    """
    import torch
    from PIL import Image

    from detector.model import Detector
    from detector.options import LoadOptions

    cand = Candidate(**spec["candidate"])
    images = []
    for p in spec["images"]:
        with Image.open(p) as im:
            images.append(im.convert("RGB"))
    opts = LoadOptions(
        device=spec["device"],
        dtype=cand.dtype,
        attn_implementation=cand.attn_implementation,
        adapter_path=spec.get("adapter_path"),
        merge_adapter=cand.merge_adapter,
        compile=cand.compile,
        quantize_int8=cand.quantize_int8,
        num_threads=cand.num_threads,
        vision_attention=cand.vision_attention,
        compile_blocks=cand.compile_blocks,
    )
    import warnings

    import transformers  # noqa: F401 - imported before the clock starts: load_s is the model's load only

    _ = transformers.AutoModelForImageTextToText, transformers.AutoProcessor
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fallbacks are reported in load_report
        det = Detector.load(spec["model_path"], opts)
    load_s = time.perf_counter() - started
    if det.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(det.device)
    b = cand.batch_size
    batches = [images[i : i + b] for i in range(0, len(images), b)]

    def sync() -> None:
        if det.device.type == "cuda":
            torch.cuda.synchronize(det.device)

    started = time.perf_counter()
    det.class_probabilities(batches[0])  # warm-up (compiles, allocator, caches)
    sync()
    warmup_s = time.perf_counter() - started
    passes = max(1, math.ceil(spec["min_batches"] / len(batches)))
    latencies: list[float] = []
    rates: list[float] = []
    probs: list[list[float]] = []
    total_started = time.perf_counter()
    for p in range(passes):
        for batch in batches:
            t0 = time.perf_counter()
            out = det.class_probabilities(batch)
            sync()
            latencies.append(time.perf_counter() - t0)
            rates.append(len(batch) / latencies[-1])
            if p == 0:
                probs += out.tolist()
    total_s = time.perf_counter() - total_started
    return {
        "fallbacks": det.load_report["fallbacks"],
        "probs": probs,
        "metrics": {
            "p50_ms": percentile(latencies, 50) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "images_per_s": passes * len(images) / total_s,
            "images_per_s_median": percentile(rates, 50),
            "peak_memory_mb": _peak_memory_mb(det.device),
            "load_s": load_s,
            "warmup_s": warmup_s,
            "batches": len(latencies),
        },
    }


def _child_main(spec_path: str, out_path: str) -> int:
    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = measure_candidate(spec)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a failed candidate
        log.exception("candidate failed")
        result = {"error": f"{type(exc).__name__}: {exc}"}
    Path(out_path).write_text(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------- parent side


def run_candidate(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Measure one candidate in a fresh Python process; failures come back as ``{"error": ...}``."""
    with tempfile.TemporaryDirectory(prefix="misinfo-opt-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", CHILD_MODULE, str(spec_path), str(out_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:.0f}s"}
        if out_path.exists():
            return json.loads(out_path.read_text())
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        return {"error": f"child exited {proc.returncode}: {' | '.join(tail)}"}


if __name__ == "__main__":
    sys.exit(_child_main(*sys.argv[1:3]))
