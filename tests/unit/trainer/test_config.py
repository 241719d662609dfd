import json

import pytest

from trainer.config import DEEPSPEED_PRESETS, DS_CONFIG_DIR, LM_TARGETS, ConfigError, describe, load_config


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("model:\n  mode: full\ntrain:\n  learning_rate: 0.001\n  max_steps: 5\nlora:\n  r: 8\n")
    cfg = load_config(path, ["train.max_steps=7", "tracking.mlflow_uri=off", "data.jpeg_quality=[50, 60]"])
    assert cfg.model.mode == "full" and cfg.train.learning_rate == 0.001 and cfg.lora.r == 8
    assert cfg.train.max_steps == 7
    assert cfg.tracking.mlflow_uri == "off"  # a string field keeps the text, not YAML's False
    assert cfg.data.jpeg_quality == [50, 60]
    assert cfg.flat()["train.max_steps"] == 7


def test_round_trip_through_dump(tmp_path):
    cfg = load_config(None, ["lora.alpha=32", "train.deepspeed=zero3"])
    again = load_config(cfg.dump(tmp_path / "c.yaml"))
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    "override",
    [
        "train.nope=1",
        "nosection.x=1",
        "model.mode=half",
        "train.max_steps=many",
        "train.deepspeed=zero9",
        "bad",
    ],
)
def test_bad_values_are_refused(override):
    with pytest.raises(ConfigError):
        load_config(None, [override])


def test_default_targets_are_the_language_model_projections():
    cfg = load_config()
    assert cfg.lora_targets() == LM_TARGETS and cfg.lora.r == 64 and cfg.lora.alpha == 16
    assert "visual" in load_config(None, ["model.train_vision=true"]).lora_targets()


def test_deepspeed_presets_are_valid_files_without_train_batch_size():
    for preset, name in DEEPSPEED_PRESETS.items():
        doc = json.loads((DS_CONFIG_DIR / name).read_text())
        # torchrun with 2 CPU processes trips DeepSpeed's batch assertion when this is set (PITFALLS)
        assert "train_batch_size" not in doc
        assert doc["zero_optimization"]["stage"] == (3 if preset.startswith("zero3") else 2)
        assert ("offload_optimizer" in doc["zero_optimization"]) == preset.endswith("offload")
    assert load_config().deepspeed_config().endswith("zero2.json")
    assert load_config(None, ["train.deepspeed="]).deepspeed_config() is None


def test_every_key_has_help_text():
    for line in describe().splitlines():
        if line.startswith("  "):
            assert line.split("#", 1)[1].strip(), line
