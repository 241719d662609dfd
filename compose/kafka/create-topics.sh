#!/bin/sh
# Creates the project's topics on the compose Kafka (run by the kafka-init one-shot service).
# Idempotent: creates what is missing, raises partitions that are below MISINFO_TOPIC_PARTITIONS
# (Kafka can never lower them), and re-applies retention, so it is safe after any .env change.
#
# Topic names come from the same MISINFO_TOPIC_* variables the services read (misinfo/config.py).
set -eu

BIN=/opt/kafka/bin
BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka:9092}"
PARTITIONS="${MISINFO_TOPIC_PARTITIONS:?}"
REPLICATION="${KAFKA_REPLICATION_FACTOR:-1}"

topics() { "$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" "$@"; }

# ensure TOPIC PARTITIONS CONFIG...   (CONFIG: key=value pairs for the topic)
ensure() {
    topic="$1"; want="$2"; shift 2
    if ! topics --describe --topic "$topic" >/dev/null 2>&1; then
        echo "create $topic: $want partitions, $*"
        args=""
        for kv in "$@"; do args="$args --config $kv"; done
        # shellcheck disable=SC2086  # word splitting of $args is wanted
        topics --create --if-not-exists --topic "$topic" --partitions "$want" \
            --replication-factor "$REPLICATION" $args
        return
    fi
    have=$(topics --describe --topic "$topic" | grep -c "Partition: " || true)
    if [ "$have" -lt "$want" ]; then
        echo "raise $topic partitions: $have -> $want (keys move to new partitions from now on)"
        topics --alter --topic "$topic" --partitions "$want"
    elif [ "$have" -gt "$want" ]; then
        echo "warning: $topic has $have partitions, more than $want; Kafka cannot lower them" >&2
    fi
    configs=$(echo "$*" | tr ' ' ',')
    echo "configure $topic: $configs"
    "$BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --alter --entity-type topics \
        --entity-name "$topic" --add-config "$configs"
}

# Work topics: partitions bound how many workers share the load (one consumer per partition).
ensure "${MISINFO_TOPIC_IMAGES:?}" "$PARTITIONS" "retention.ms=${RETENTION_IMAGES_MS:-604800000}" \
    "cleanup.policy=delete"
ensure "${MISINFO_TOPIC_VERDICTS:?}" "$PARTITIONS" "retention.ms=${RETENTION_VERDICTS_MS:-2592000000}" \
    "cleanup.policy=delete"
ensure "${MISINFO_TOPIC_FEEDBACK:?}" "$PARTITIONS" "retention.ms=${RETENTION_FEEDBACK_MS:--1}" \
    "cleanup.policy=delete"
ensure "${MISINFO_TOPIC_DEAD_LETTERS:?}" "$PARTITIONS" \
    "retention.ms=${RETENTION_DEAD_LETTERS_MS:-1209600000}" "cleanup.policy=delete"
# Control: model updates, few and ordered. One partition keeps their order; compaction keeps the latest
# update per model, so a worker that starts late still learns the current champion.
ensure "${MISINFO_TOPIC_CONTROL:?}" 1 "cleanup.policy=compact" "retention.ms=-1"

topics --list
