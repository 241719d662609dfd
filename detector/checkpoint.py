"""What a model directory holds: a PEFT adapter (``adapter_config.json``) or a full checkpoint
(``config.json``). Decided here once, for the registry, the worker's hot swap, training and evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

ADAPTER_FILE = "adapter_config.json"
CHECKPOINT_FILE = "config.json"


class NotAModelDirectory(FileNotFoundError):
    """The directory holds neither an adapter nor a full checkpoint."""


def checkpoint_kind(model_dir: str | Path) -> Literal["adapter", "full"]:
    d = Path(model_dir)
    if (d / ADAPTER_FILE).exists():
        return "adapter"
    if (d / CHECKPOINT_FILE).exists():
        return "full"
    raise NotAModelDirectory(
        f"{d} holds neither {ADAPTER_FILE} (an adapter) nor {CHECKPOINT_FILE} (a checkpoint)"
    )


def adapter_base(model_dir: str | Path) -> str | None:
    """The base model an adapter names (``base_model_name_or_path``), if any."""
    base = json.loads((Path(model_dir) / ADAPTER_FILE).read_text()).get("base_model_name_or_path")
    return str(base) if base else None


def model_location(model_dir: str | Path, base_model: str | None) -> tuple[str | None, str | None]:
    """(checkpoint path, adapter path) to load ``model_dir``: an adapter loads on ``base_model`` (or,
    when that is None, on the base the adapter names); a full checkpoint loads alone."""
    if checkpoint_kind(model_dir) == "adapter":
        return base_model or adapter_base(model_dir), str(model_dir)
    return str(model_dir), None
