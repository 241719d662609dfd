"""Loading the serving detector from settings, or from a model update's resolved paths."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.config import Settings

log = logging.getLogger(__name__)


def ensure_model(settings: Settings) -> str:
    """The configured model path, or a tiny random checkpoint under the state dir when none is set."""
    if settings.model_path:
        return settings.model_path
    from detector.tiny import build_tiny_checkpoint

    path = Path(settings.state_dir) / "models" / "tiny"
    if not (path / "config.json").exists():
        log.warning("no MISINFO_MODEL_PATH: building a tiny random checkpoint at %s", path)
        build_tiny_checkpoint(path)
    return str(path)


def compile_blocks_option(value: str) -> bool | None:
    """``MISINFO_COMPILE_BLOCKS``: auto -> None (on a GPU only), on/off (or true/false, 1/0) -> bool."""
    v = value.strip().lower()
    if v == "auto":
        return None
    if v in {"on", "true", "1", "yes"}:
        return True
    if v in {"off", "false", "0", "no"}:
        return False
    raise ValueError(f"MISINFO_COMPILE_BLOCKS={value!r}: expected auto, on or off")


def load_detector(
    settings: Settings,
    *,
    model_path: str | None = None,
    adapter_path: str | None = None,
    profile: str | None = None,
    version: str | None = None,
    model_name: str | None = None,
) -> Any:
    """A :class:`detector.Detector` configured from settings; keyword arguments override them."""
    from detector.model import Detector, Thresholds
    from detector.options import LoadOptions

    options = LoadOptions(
        device=settings.device,
        adapter_path=adapter_path if adapter_path is not None else (settings.adapter_path or None),
        profile=profile if profile is not None else (settings.profile_path or None),
        vision_attention=settings.vision_attention,
        compile_blocks=compile_blocks_option(settings.compile_blocks),
        verdict_side=settings.verdict_side,
        keep_aspect=settings.verdict_keep_aspect,
        preprocess_on_device=settings.preprocess_on_device,
    )
    return Detector.load(
        model_path or ensure_model(settings),
        options,
        thresholds=Thresholds(settings.uncertain_below, settings.flag_threshold),
        name=model_name or settings.model_name,
        version=version or settings.model_version,
    )
