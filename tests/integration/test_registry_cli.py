"""`misinfo registry list|promote|rollback` against the session's MLflow server and broker: the alias
moves and every move is a ModelUpdate on the control topic."""

from __future__ import annotations

import dataclasses
import json
import uuid

import mlflow
import pytest

from core.contracts.models import ModelUpdate
from core.kafka import replay_consumer
from registry.store import CHAMPION, RegistryStore
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def test_promote_and_rollback_from_the_command_line(settings, mlflow_uri, tmp_path):
    s = dataclasses.replace(
        settings, mlflow_tracking_uri=mlflow_uri, model_name=f"cli-{uuid.uuid4().hex[:8]}"
    )
    store = RegistryStore(mlflow_uri, s.model_name)
    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("registry-cli") or client.get_experiment(
        client.create_experiment("registry-cli")
    )
    for n in (1, 2):
        model = tmp_path / f"adapter{n}"
        model.mkdir()
        (model / "adapter_config.json").write_text("{}")
        store.register(
            client.create_run(exp.experiment_id).info.run_id, model, tags={"eval.macro_f1": 0.5 + n / 10}
        )

    listed = run_cli(s, "registry", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["version"] for line in listed.stdout.splitlines()] == ["2", "1"]

    for args in (("promote", "1"), ("promote", "2"), ("rollback",)):
        out = run_cli(s, "registry", *args)
        assert out.returncode == 0, out.stderr
    assert store.get_by_alias(CHAMPION).version == "1"
    table = run_cli(s, "registry", "list")
    assert "champion" in table.stdout and "0.7" in table.stdout

    refused = run_cli(s, "registry", "rollback")
    assert refused.returncode != 0 and "no earlier champion" in refused.stderr

    consumer = replay_consumer(s.kafka_bootstrap, s.topic_control, idle_s=8.0)
    updates = [(m.key.decode(), ModelUpdate.parse(m.value)) for m in consumer]
    consumer.close()
    assert [(k, u.version, u.alias) for k, u in updates] == [
        (s.model_name, v, CHAMPION) for v in ("1", "2", "1")
    ]
    assert updates[-1][1].model_uri == store.get("1").source
