"""Read a whole topic back from the real broker (no consumer group: assign every partition)."""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, TopicPartition

from misinfo.devstack.stack import wait_for


def read_topic(bootstrap: str, topic: str, expect: int | None = None, timeout_s: float = 30) -> list[Any]:
    """Every record of ``topic`` up to its end offsets (waiting for ``expect`` records when given)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if expect is not None:
            wait_for(
                lambda: sum(consumer.end_offsets(parts).values()) >= expect,
                timeout_s,
                0.2,
                f"{expect} records on {topic}",
            )
        end = consumer.end_offsets(parts)
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []

        def done() -> bool:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            return all(consumer.position(p) >= end[p] for p in parts)

        wait_for(done, timeout_s, 0.0, f"reading {topic} to its end")
        return records
    finally:
        consumer.close()
