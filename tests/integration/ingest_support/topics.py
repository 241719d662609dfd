"""Read a whole topic back from the real broker (no consumer group: assign every partition).

End offsets are not used to decide when the topic is read: Tansu reports them per record batch,
not per record (a batch of 5 records can read as end offset 1), so counting them undercounts.
Instead: read from the beginning until ``expect`` records arrived, then keep reading until the
topic stays quiet, so a duplicate beyond ``expect`` is still seen.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from misinfo.devstack.stack import wait_for


def read_topic(
    bootstrap: str, topic: str, expect: int | None = None, timeout_s: float = 30, quiet_s: float = 1.5
) -> list[Any]:
    """Every record of ``topic`` (waiting up to ``timeout_s`` for at least ``expect`` of them)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        wait_for(lambda: bool(consumer.partitions_for_topic(topic)), timeout_s, 0.2, f"metadata of {topic}")
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        last_new = time.monotonic()

        def done() -> bool:
            nonlocal last_new
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
                last_new = time.monotonic()
            enough = expect is None or len(records) >= expect
            return enough and time.monotonic() - last_new >= quiet_s

        wait_for(done, timeout_s + quiet_s, 0.0, f"{expect} records on {topic} (got {len(records)})")
        return records
    finally:
        consumer.close()
