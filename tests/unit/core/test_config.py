from __future__ import annotations

import pytest

from core.config import SecretStr, Settings, env_names, load_settings


def test_environment_variables_override_defaults_with_types():
    s = load_settings(
        {"MISINFO_MAX_BATCH": "16", "MISINFO_FLAG_THRESHOLD": "0.7", "MISINFO_TOPIC_IMAGES": "x"}
    )
    assert (s.max_batch, s.flag_threshold, s.topic_images) == (16, 0.7, "x")


def test_bad_number_names_the_variable():
    with pytest.raises(ValueError, match="MISINFO_MAX_BATCH='many'"):
        load_settings({"MISINFO_MAX_BATCH": "many"})


def test_secrets_never_show_in_repr_or_str():
    s = load_settings({"MISINFO_X_BEARER_TOKEN": "very-secret-token"})
    assert "very-secret-token" not in repr(s)
    assert "very-secret-token" not in str(s.x_bearer_token)
    assert isinstance(s.x_bearer_token, SecretStr)
    assert s.x_bearer_token.reveal() == "very-secret-token"
    assert s.env()["MISINFO_X_BEARER_TOKEN"] == "very-secret-token"  # for child processes only


def test_env_round_trips_through_load_settings():
    s = load_settings({}, max_batch=3, state_dir="/tmp/x", topic_partitions=7)
    assert load_settings(s.env()) == s
    assert sorted(s.env()) == sorted(env_names())


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().max_batch = 2  # type: ignore[misc]


def test_isolated_settings_have_topics_group_and_prefix_of_their_own():
    base = load_settings({}, redis_prefix="misinfo")
    a, b = base.isolated("run-a", max_batch=3), base.isolated("run-b")
    assert (a.topic_images, a.topic_control, a.worker_group, a.redis_prefix) == (
        "run-a.images",
        "run-a.control",
        "run-a",
        "misinfo:run-a",
    )
    assert a.max_batch == 3 and a.kafka_bootstrap == base.kafka_bootstrap

    def topics(s: Settings) -> set[str]:
        return {s.topic_images, s.topic_verdicts, s.topic_feedback, s.topic_dead_letters, s.topic_control}

    assert not topics(a) & topics(b)
