"""A retraining cycle trains at the resolution the workers serve at, unless the overrides choose."""

from __future__ import annotations

from core.config import load_settings
from trainer.config import load_config
from trainer.cycle import train_at_serving_resolution


def _settings(**env: str):  # type: ignore[no-untyped-def]
    return load_settings({f"MISINFO_{k.upper()}": v for k, v in env.items()})


def test_training_follows_the_serving_resolution():
    settings = _settings(verdict_side="336", verdict_keep_aspect="true")
    cfg = load_config(None, [])
    assert (cfg.model.verdict_side, cfg.model.keep_aspect) != (336, True)
    train_at_serving_resolution(cfg, settings, [])
    assert (cfg.model.verdict_side, cfg.model.keep_aspect) == (336, True)


def test_an_explicit_override_still_wins():
    settings = _settings(verdict_side="336", verdict_keep_aspect="true")
    overrides = ["model.verdict_side=224", "model.keep_aspect=false"]
    cfg = load_config(None, overrides)
    train_at_serving_resolution(cfg, settings, overrides)
    assert (cfg.model.verdict_side, cfg.model.keep_aspect) == (224, False)
