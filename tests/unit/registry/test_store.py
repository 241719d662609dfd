"""The registry interface and promotion/rollback against a real MLflow store (local SQLite, no server)."""

import json

import mlflow
import pytest

from core.contracts.models import ModelUpdate
from registry.promotion import PromotionError, promote, rollback
from registry.store import CHALLENGER, CHAMPION, RegistryStore


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default artifact root (./mlruns) lands in the temp dir
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return RegistryStore(uri, "detector")


def new_version(store, tmp_path, n: int, kind: str = "adapter"):
    client = mlflow.MlflowClient(store.tracking_uri)
    exp = client.get_experiment_by_name("t") or client.get_experiment(client.create_experiment("t"))
    run = client.create_run(exp.experiment_id)
    model = tmp_path / f"model{n}"
    model.mkdir()
    (model / ("adapter_config.json" if kind == "adapter" else "config.json")).write_text("{}")
    report = tmp_path / f"report{n}.json"
    report.write_text(json.dumps({"macro_f1": 0.1 * n}))
    return store.register(run.info.run_id, model, artifacts={"eval": report}, tags={"eval.macro_f1": 0.1 * n})


def test_register_alias_tag_and_list(store, tmp_path):
    assert store.list_versions() == [] and store.get_by_alias(CHAMPION) is None
    v1 = new_version(store, tmp_path, 1)
    v2 = new_version(store, tmp_path, 2, kind="full")
    assert [v.version for v in store.list_versions()] == ["2", "1"]
    store.set_alias(CHALLENGER, v2.version)
    store.tag(v2.version, "profile_uri", "file:///p.json")
    got = store.get_by_alias(CHALLENGER)
    assert got.version == "2" and got.profile_uri == "file:///p.json" and CHALLENGER in got.aliases
    local = store.download(v1.source, tmp_path / "dl")
    assert (local / "adapter_config.json").exists()
    assert store.read_json(v1.tags["eval_uri"], tmp_path / "r") == {"macro_f1": 0.1}
    with pytest.raises(ValueError):
        store.register("x", tmp_path)  # neither an adapter nor a checkpoint


def test_promote_and_rollback_move_the_alias_and_publish(store, tmp_path):
    sent: list[ModelUpdate] = []
    for n in (1, 2, 3):
        new_version(store, tmp_path, n)
    store.set_alias(CHALLENGER, "2")
    promote(store, "1", sent.append)
    promote(store, "2", sent.append)
    assert store.get_by_alias(CHAMPION).version == "2" and store.get_by_alias(CHALLENGER) is None
    promote(store, "3", sent.append)
    assert [(u.version, u.alias) for u in sent] == [("1", CHAMPION), ("2", CHAMPION), ("3", CHAMPION)]
    assert sent[-1].model_uri == store.get("3").source and sent[-1].model_name == "detector"
    assert rollback(store, sent.append).version == "2"
    assert rollback(store, sent.append).version == "1"
    assert store.get_by_alias(CHAMPION).version == "1"
    with pytest.raises(PromotionError):
        rollback(store, sent.append)
    assert rollback(store, sent.append, to_version="3").version == "3"
    assert store.get("2").tags.get("rolled_back") == "true"


def test_the_list_shows_aliases(store, tmp_path):
    new_version(store, tmp_path, 1)
    new_version(store, tmp_path, 2)
    store.set_alias(CHAMPION, "1")
    store.set_alias(CHALLENGER, "2")
    assert [(v.version, v.aliases) for v in store.list_versions()] == [
        ("2", (CHALLENGER,)),
        ("1", (CHAMPION,)),
    ]
