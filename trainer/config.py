"""Training configuration: dataclasses with help text, loadable from YAML, overridable from the CLI.

``misinfo train run --config train.yaml --set train.learning_rate=1e-4 --set lora.r=16``: the YAML has
one mapping per section (``model``, ``lora``, ``data``, ``train``, ``tracking``); ``--set`` takes
dotted ``section.field=value`` pairs, with values parsed as YAML scalars.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

DS_CONFIG_DIR = Path(__file__).resolve().parent / "ds_configs"
DEEPSPEED_PRESETS = {
    "zero2": "zero2.json",
    "zero2_offload": "zero2_offload.json",
    "zero3": "zero3.json",
    "zero3_offload": "zero3_offload.json",
}

# Qwen2.5-VL's language-model projections (the seed's targets) and the vision tower's linear layers.
LM_TARGETS = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
VISION_TARGETS = r".*visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(gate|up|down)_proj)"


def _f(default: Any, help: str) -> Any:  # noqa: A002 - "help" reads best in the declarations
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    base_model: str = _f("", "base checkpoint directory or hub id ('' = MISINFO_MODEL_PATH)")
    mode: str = _f("lora", "lora: train a PEFT LoRA adapter; full: fine-tune every weight")
    train_vision: bool = _f(False, "lora: also adapt the vision tower; full: also train it")
    dtype: str = _f("auto", "auto (bf16 on a GPU that supports it, fp32 on CPU), float32, bfloat16")
    attn_implementation: str = _f("sdpa", "eager, sdpa or flash_attention_2")
    min_pixels: int = _f(0, "processor's smallest image area in pixels (0 = the checkpoint's)")
    max_pixels: int = _f(0, "processor's largest image area in pixels (0 = the checkpoint's)")
    verdict_side: int = _f(
        448, "images resized to side x side px as serving does (MISINFO_VERDICT_SIDE); 0 = processor's own"
    )
    keep_aspect: bool = _f(False, "keep aspect ratio, as serving with MISINFO_VERDICT_KEEP_ASPECT")


@dataclass
class LoraConfig:
    r: int = _f(64, "LoRA rank")
    alpha: int = _f(16, "LoRA alpha (scale = alpha / r)")
    dropout: float = _f(0.05, "LoRA dropout")
    target_modules: str = _f("", "regex of modules to adapt ('' = language-model projections)")


@dataclass
class DataConfig:
    train_file: str = _f("", "training records in the conversation JSON format (list of records)")
    eval_file: str = _f("", "held-out records in the same format (optional)")
    image_root: str = _f("", "directory that relative image paths are resolved against ('' = the file's)")
    augment: bool = _f(True, "re-share augmentations on training images (JPEG, resize, crop)")
    jpeg_quality: list = _f([35, 95], "JPEG re-encoding quality range [lo, hi]")
    resize_scale: list = _f([0.5, 1.0], "resize factor range [lo, hi]")
    crop_fraction: list = _f([0.8, 1.0], "kept side fraction of a random crop [lo, hi]")
    augment_probability: float = _f(0.8, "chance that each augmentation is applied to an image")


@dataclass
class TrainConfig:
    output_dir: str = _f("runs/train", "checkpoints and the final model are written here")
    num_train_epochs: float = _f(3.0, "epochs over the training set (ignored when max_steps > 0)")
    max_steps: int = _f(-1, "stop after this many optimizer steps (-1 = use epochs)")
    per_device_train_batch_size: int = _f(4, "micro-batch per device")
    gradient_accumulation_steps: int = _f(4, "micro-batches per optimizer step")
    learning_rate: float = _f(2e-4, "peak learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    warmup_ratio: float = _f(0.03, "share of steps for linear warm-up")
    lr_scheduler_type: str = _f("cosine", "learning-rate schedule (HF names)")
    max_grad_norm: float = _f(1.0, "gradient clipping")
    gradient_checkpointing: bool = _f(True, "recompute activations in backward (less memory)")
    deepspeed: str = _f("zero2", "zero2, zero2_offload, zero3, zero3_offload, a JSON path, or '' (off)")
    logging_steps: int = _f(1, "log loss every N steps")
    save_steps: int = _f(200, "checkpoint every N steps (for resume)")
    save_total_limit: int = _f(2, "checkpoints kept")
    resume: bool = _f(True, "resume from the last checkpoint in output_dir when there is one")
    seed: int = _f(0, "random seed")
    dataloader_num_workers: int = _f(0, "data loader worker processes")
    nproc_per_node: int = _f(1, "processes (GPUs) per node when launched by `misinfo train cycle`")


@dataclass
class TrackingConfig:
    mlflow_uri: str = _f("", "MLflow tracking URI ('' = MISINFO_MLFLOW_TRACKING_URI; 'off' = none)")
    experiment: str = _f("misinfo-train", "MLflow experiment")
    run_name: str = _f("", "MLflow run name ('' = generated)")
    system_metrics: bool = _f(True, "log CPU/GPU/memory system metrics")
    manifest: str = _f("", "dataset manifest JSON logged as the run's input ('' = none)")
    tags: dict = _f({}, "extra MLflow run tags")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """``section.field`` -> value, for MLflow parameters."""
        return {f"{s}.{k}": v for s, sub in self.to_dict().items() for k, v in sub.items()}

    def dump(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return out

    def lora_targets(self) -> str:
        if self.lora.target_modules:
            return self.lora.target_modules
        return f"({LM_TARGETS}|{VISION_TARGETS})" if self.model.train_vision else LM_TARGETS

    def deepspeed_config(self) -> str | None:
        """The DeepSpeed JSON file to use, or None when DeepSpeed is off."""
        name = self.train.deepspeed
        if not name or name.lower() in {"off", "none"}:
            return None
        if name in DEEPSPEED_PRESETS:
            return str(DS_CONFIG_DIR / DEEPSPEED_PRESETS[name])
        if not Path(name).is_file():
            raise ConfigError(
                f"train.deepspeed: {name!r} is neither a preset {sorted(DEEPSPEED_PRESETS)} nor a file"
            )
        return name


class ConfigError(ValueError):
    """A configuration that cannot be used (unknown key, bad value)."""


SECTIONS = {f.name: f.type for f in fields(Config)}


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def _apply(cfg: Config, section: str, key: str, value: Any) -> None:
    types = _section_types()
    if section not in types:
        raise ConfigError(f"unknown section {section!r} (known: {', '.join(types)})")
    sub = getattr(cfg, section)
    known = {f.name: f for f in fields(sub)}
    if key not in known:
        raise ConfigError(f"unknown key {section}.{key} (known: {', '.join(known)})")
    current = getattr(sub, key)
    try:
        if isinstance(current, bool):
            value = (
                value if isinstance(value, bool) else str(value).strip().lower() in {"1", "true", "yes", "on"}
            )
        elif isinstance(current, int) and not isinstance(current, bool):
            value = int(value)
        elif isinstance(current, float):
            value = float(value)
        elif isinstance(current, str):
            value = "" if value is None else str(value)
        elif isinstance(current, list | dict):
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, type(current)):
                raise TypeError(f"expected a {type(current).__name__}")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{section}.{key}={value!r}: {exc}") from None
    setattr(sub, key, value)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A config from YAML (sections of fields; missing ones keep defaults) plus ``section.key=value``s."""
    cfg = Config()
    if path:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections")
        for section, values in raw.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: section {section!r} must be a mapping")
            for key, value in values.items():
                _apply(cfg, section, key, value)
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        dotted, raw_value = item.split("=", 1)
        section, key = dotted.split(".", 1)
        # Scalars stay text until _apply casts them to the field's type ("off" is not YAML's False).
        _apply(cfg, section, key, raw_value)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    if cfg.model.mode not in {"lora", "full"}:
        raise ConfigError(f"model.mode must be lora or full, got {cfg.model.mode!r}")
    if cfg.model.dtype not in {"auto", "float32", "bfloat16"}:
        raise ConfigError(f"model.dtype must be auto, float32 or bfloat16, got {cfg.model.dtype!r}")
    for name in ("jpeg_quality", "resize_scale", "crop_fraction"):
        lo_hi = getattr(cfg.data, name)
        if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
            raise ConfigError(f"data.{name} must be [lo, hi], got {lo_hi!r}")
    cfg.deepspeed_config()


def describe() -> str:
    """Every key with its default and help text (for ``misinfo train config``)."""
    lines = []
    cfg = Config()
    for section in SECTIONS:
        lines.append(f"{section}:")
        sub = getattr(cfg, section)
        for f in fields(sub):
            lines.append(f"  {f.name}: {getattr(sub, f.name)!r}  # {f.metadata.get('help', '')}")
    return "\n".join(lines)
