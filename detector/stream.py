"""Scoring a stream of batches while the next ones are prepared: the model never waits for the CPU.

:meth:`Detector.prepare` (resize, processor) runs on a thread pool; :meth:`Detector.score` runs on
the calling thread, in order. While batch k is in the model, batches k+1 .. k+ahead are being
prepared. The benchmark measures the detector this way; a worker overlaps the same two calls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

from PIL import Image


def score_stream(
    detector: Any, batches: Iterable[list[Image.Image]], pool: Executor, ahead: int = 2
) -> Iterator[list[Any]]:
    """The detections of each batch, in order; up to ``ahead`` batches are prepared in advance."""
    if ahead < 1:
        raise ValueError(f"ahead must be at least 1, got {ahead}")
    source = iter(batches)
    pending: deque[Future[Any]] = deque()

    def refill() -> None:
        while len(pending) < ahead:
            batch = next(source, None)
            if batch is None:
                return
            pending.append(pool.submit(detector.prepare, batch))

    refill()
    while pending:
        prepared = pending.popleft().result()
        refill()  # the next batch starts preparing before this one goes into the model
        yield detector.score(prepared)
