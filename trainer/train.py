"""The training entrypoint: Hugging Face Trainer with a PEFT LoRA (or a full fine-tune) of Qwen2.5-VL,
DeepSpeed (ZeRO-2 by default), MLflow tracking, resume from the last checkpoint.

Run it as ``misinfo train run --config FILE``: one process, or one per GPU under
``torchrun``/``deepspeed`` (the launcher sets ``RANK``/``WORLD_SIZE``; rank 0 alone talks to MLflow).
Writes ``<output_dir>/model`` (the adapter directory with ``adapter_config.json``, or a full
checkpoint with ``config.json`` and the processor files) and ``<output_dir>/train_result.json``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch

from trainer.config import Config

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def single_process_env() -> None:
    """DeepSpeed needs a process group even for one process: give it the env a launcher would."""
    if "RANK" in os.environ:
        return
    os.environ.update(
        {
            "RANK": "0",
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "1",
            "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
        }
    )
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def pick_dtype(cfg: Config) -> torch.dtype:
    """bf16 on a GPU that supports it, fp32 on CPU (fp16 does not run on CPU; bf16 is slow there)."""
    if cfg.model.dtype == "float32":
        return torch.float32
    if cfg.model.dtype == "bfloat16":
        return torch.bfloat16
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model(cfg: Config, base: str, dtype: torch.dtype) -> tuple[Any, Any]:
    """The processor and the trainable model: a PEFT-wrapped one (lora) or the whole model (full)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    kw = {k: v for k, v in (("min_pixels", cfg.model.min_pixels), ("max_pixels", cfg.model.max_pixels)) if v}
    processor = AutoProcessor.from_pretrained(base, **kw)
    model = AutoModelForImageTextToText.from_pretrained(
        base, dtype=dtype, attn_implementation=cfg.model.attn_implementation
    )
    model.config.use_cache = False
    if cfg.model.mode == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora_targets(),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)  # type: ignore[assignment]
    elif not cfg.model.train_vision:
        for name, p in model.named_parameters():
            if ".visual." in f".{name}":
                p.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info(
        "%s: %d of %d parameters trainable (%.2f%%)",
        cfg.model.mode,
        trainable,
        total,
        100 * trainable / total,
    )
    return processor, model


def plot_loss(history: list[dict[str, Any]], path: Path) -> Path | None:
    points = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (answer tokens)")
    ax.set_title("loss curve")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _mlflow_callback(mlflow: Any) -> Any:
    from transformers import TrainerCallback

    class MlflowMetrics(TrainerCallback):  # type: ignore[misc]
        """Logs every Trainer log line (loss, learning rate, grad norm, epoch) to the active run."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if state.is_world_process_zero and logs:
                metrics = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}
                if metrics:
                    mlflow.log_metrics(metrics, step=state.global_step)

    return MlflowMetrics()


def _start_mlflow(cfg: Config, out: Path, tracking_uri: str) -> Any:
    """Start (or resume, after a restart) the run on rank 0; returns the mlflow module or None."""
    if rank() != 0 or not tracking_uri or tracking_uri == "off":
        return None
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    id_file = out / "mlflow_run_id"
    run_id = id_file.read_text().strip() if id_file.exists() else None
    run = mlflow.start_run(
        run_id=run_id,
        run_name=cfg.tracking.run_name or None,
        log_system_metrics=cfg.tracking.system_metrics,
    )
    id_file.write_text(run.info.run_id)
    if run_id is None:
        mlflow.log_params({k: str(v)[:500] for k, v in cfg.flat().items()})
        mlflow.set_tags({"misinfo.role": "train", "misinfo.mode": cfg.model.mode, **cfg.tracking.tags})
        if cfg.tracking.manifest:
            from trainer.dataset import log_manifest_input

            log_manifest_input(cfg.tracking.manifest)
    return mlflow


def run_training(cfg: Config, *, tracking_uri: str = "", base_model: str = "") -> dict[str, Any]:
    """Train as ``cfg`` says; returns (and writes to ``train_result.json``) what was produced."""
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    from detector.resolution import Resolution
    from trainer.augment import Reshare
    from trainer.data import Collator, ConversationDataset, read_records

    base = cfg.model.base_model or base_model
    if not base:
        raise ValueError("model.base_model is not set (nor MISINFO_MODEL_PATH)")
    if not cfg.data.train_file:
        raise ValueError("data.train_file is not set")
    ds_config = cfg.deepspeed_config()
    if ds_config:
        single_process_env()
    out = Path(cfg.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)

    dtype = pick_dtype(cfg)
    processor, model = load_model(cfg, base, dtype)
    examples = read_records(cfg.data.train_file, cfg.data.image_root or None)
    augment = None
    if cfg.data.augment:
        augment = Reshare(
            tuple(cfg.data.jpeg_quality),  # type: ignore[arg-type]
            tuple(cfg.data.resize_scale),  # type: ignore[arg-type]
            tuple(cfg.data.crop_fraction),  # type: ignore[arg-type]
            cfg.data.augment_probability,
        )
    train_ds = ConversationDataset(examples, augment, seed=cfg.train.seed + rank())
    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=cfg.train.num_train_epochs,
        max_steps=cfg.train.max_steps,
        per_device_train_batch_size=cfg.train.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        learning_rate=cfg.train.learning_rate,
        weight_decay=cfg.train.weight_decay,
        # transformers 5 folds warmup_ratio into warmup_steps: a float below 1 is a ratio.
        warmup_steps=cfg.train.warmup_ratio,
        lr_scheduler_type=cfg.train.lr_scheduler_type,
        max_grad_norm=cfg.train.max_grad_norm,
        gradient_checkpointing=cfg.train.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.train.gradient_checkpointing else None,
        bf16=dtype == torch.bfloat16,
        deepspeed=ds_config,
        logging_steps=cfg.train.logging_steps,
        save_strategy="steps",
        save_steps=cfg.train.save_steps,
        save_total_limit=cfg.train.save_total_limit,
        seed=cfg.train.seed,
        dataloader_num_workers=cfg.train.dataloader_num_workers,
        remove_unused_columns=False,
        report_to=[],
        use_cpu=not cuda,
        disable_tqdm=False,
    )
    mlflow = _start_mlflow(cfg, out, tracking_uri or cfg.tracking.mlflow_uri)
    callbacks = [_mlflow_callback(mlflow)] if mlflow else []
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        data_collator=Collator(processor, Resolution(cfg.model.verdict_side, cfg.model.keep_aspect)),
        callbacks=callbacks,
    )
    resume = get_last_checkpoint(str(out)) if cfg.train.resume and any(out.glob("checkpoint-*")) else None
    if resume:
        log.info("resuming from %s", resume)
    started = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=resume)
        seconds = time.perf_counter() - started
        model_dir = out / "model"
        trainer.save_model(str(model_dir))
        summary: dict[str, Any] = {
            "model_dir": str(model_dir.resolve()),
            "mode": cfg.model.mode,
            "base_model": base,
            "train_loss": float(result.training_loss),
            "global_step": int(trainer.state.global_step),
            "train_seconds": seconds,
            "examples": len(examples),
            "resumed_from": resume,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "dtype": str(dtype).removeprefix("torch."),
            "deepspeed": ds_config,
        }
        if trainer.is_world_process_zero():
            if cfg.model.mode == "full":
                processor.save_pretrained(str(model_dir))  # a complete, loadable checkpoint directory
            curve = plot_loss(trainer.state.log_history, out / "loss_curve.png")
            if mlflow:
                summary["mlflow_run_id"] = mlflow.active_run().info.run_id
                mlflow.log_metrics(
                    {"train_seconds": seconds, "final_train_loss": summary["train_loss"]},
                    step=summary["global_step"],
                )
                if curve:
                    mlflow.log_artifact(str(curve))
            (out / "train_result.json").write_text(json.dumps(summary, indent=2))
        return summary
    finally:
        if mlflow:
            mlflow.end_run()
