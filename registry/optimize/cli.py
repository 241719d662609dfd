"""``misinfo optimize``: measure detector configurations here, write the optimization profile."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import click


def _csv(value: str | None, cast: type = str) -> list | None:  # type: ignore[type-arg]
    if not value:
        return None
    return [cast(v.strip()) for v in value.split(",") if v.strip()]


@click.command("optimize")
@click.option(
    "--model",
    "model_path",
    required=True,
    help="checkpoint directory, or a registry version: models:/<name>/<version or alias>",
)
@click.option("--registry-uri", default=None, help="registry for models:/ [--mlflow-uri, else settings]")
@click.option("--base-model", default=None, help="base checkpoint when the registry version is an adapter")
@click.option("--eval-set", default=None, help="directory of images to measure on (required, not empty)")
@click.option("--out", default="profile.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--adapter", "adapter_path", default=None, help="PEFT LoRA adapter: adds merged vs unmerged")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("--dtypes", default=None, help="comma list of float32,bfloat16,float16 [all supported]")
@click.option("--attn", default=None, help="comma list of eager,sdpa,flash_attention_2 [all available]")
@click.option("--batch-size", default=8, show_default=True, help="the baseline's (and reference's) batch")
@click.option("--batch-sizes", default="1,16", show_default=True, help="other batch sizes to try")
@click.option("--threads", default=None, help="comma list of CPU thread counts [all cores, 1]")
@click.option(
    "--compile/--no-compile", "compile_", default=None, help="try torch.compile [GPU: on, CPU: off]"
)
@click.option("--int8/--no-int8", default=True, show_default=True, help="try dynamic int8 (CPU only)")
@click.option(
    "--vision-attention",
    "vision",
    default=None,
    help="comma list of batched,varlen to try beside stock (compiled blocks follow --compile) [all here]",
)
@click.option(
    "--grid", type=click.Choice(["one-at-a-time", "full"]), default="one-at-a-time", show_default=True
)
@click.option("--min-agreement", default=0.99, show_default=True, help="argmax agreement with the baseline")
@click.option("--memory-budget-mb", default=None, type=float, help="peak memory a choice may use")
@click.option("--max-images", default=64, show_default=True, help="use at most this many eval images")
@click.option("--min-batches", default=30, show_default=True, help="timed batches per candidate (at least)")
@click.option("--candidate-timeout", default=900.0, show_default=True, help="seconds per candidate")
@click.option("--mlflow-uri", default=None, help="log runs here (e.g. sqlite:///mlflow.db); off when unset")
@click.option("--experiment", default="misinfo-optimize", show_default=True, help="MLflow experiment")
@click.option("--plot/--no-plot", default=True, show_default=True, help="write <out>.png beside the JSON")
def optimize(
    model_path: str,
    registry_uri: str | None,
    base_model: str | None,
    eval_set: str | None,
    out: str,
    adapter_path: str | None,
    device: str,
    dtypes: str | None,
    attn: str | None,
    batch_size: int,
    batch_sizes: str,
    threads: str | None,
    compile_: bool | None,
    int8: bool,
    vision: str | None,
    grid: str,
    min_agreement: float,
    memory_budget_mb: float | None,
    max_images: int,
    min_batches: int,
    candidate_timeout: float,
    mlflow_uri: str | None,
    experiment: str,
    plot: bool,
) -> None:
    """Measure candidates (dtype, attention, vision attention, compile, int8, LoRA merge, batch, threads) here,
    pick the fastest that keeps agreement with the float32 eager baseline, write the profile JSON.

    Prints progress on stderr and, last, one JSON line (profile path, choice, speed-up, agreement).
    """
    from detector.profile import write_profile
    from registry.optimize.candidates import OptimizeError, default_grid, eval_images
    from registry.optimize.choose import optimize as run_optimize
    from registry.optimize.report import log_to_mlflow, plot_candidates
    from registry.store import REGISTRY_PREFIX, ModelRefError, resolve_model

    workdir = tempfile.mkdtemp(prefix="misinfo-optimize-")
    model_ref = model_path
    try:
        eval_images(eval_set, 1)  # refuse early, before any model is loaded
        if model_path.startswith(REGISTRY_PREFIX) and not (registry_uri or mlflow_uri):
            from core.config import load_settings

            registry_uri = load_settings().mlflow_tracking_uri
        model_path, from_registry = resolve_model(model_path, registry_uri or mlflow_uri, workdir, base_model)
        if from_registry:
            if adapter_path:
                raise OptimizeError("the registry version is an adapter already; drop --adapter")
            adapter_path = from_registry
        candidates = default_grid(
            device,
            batch_size=batch_size,
            batch_sizes=_csv(batch_sizes, int) or [],
            dtypes=_csv(dtypes),
            attns=_csv(attn),
            threads=_csv(threads, int),
            compile=compile_,
            int8=int8,
            vision=_csv(vision) if vision is not None else None,
            adapter=bool(adapter_path),
            full=grid == "full",
        )
        doc = run_optimize(
            model_path,
            eval_set,
            candidates=candidates,
            adapter_path=adapter_path,
            device=device,
            min_agreement=min_agreement,
            memory_budget_mb=memory_budget_mb,
            max_images=max_images,
            min_batches=min_batches,
            candidate_timeout_s=candidate_timeout,
            progress=lambda msg: click.echo(msg, err=True),
        )
        if model_ref != model_path:
            doc["model"]["registry"] = model_ref  # the downloaded copy is gone after this command
    except (OptimizeError, ModelRefError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise click.ClickException(str(exc)) from exc
    path = write_profile(doc, out)
    click.echo(f"wrote {path}", err=True)
    artifacts = [path]
    if plot:
        artifacts.append(plot_candidates(doc, Path(out).with_suffix(".png")))
        click.echo(f"wrote {artifacts[-1]}", err=True)
    run_id = None
    if mlflow_uri:
        run_id = log_to_mlflow(doc, mlflow_uri, experiment, artifacts)
        click.echo(f"logged MLflow run {run_id} (experiment {experiment}) to {mlflow_uri}", err=True)
    choice = doc["choice"]
    click.echo(
        json.dumps(
            {
                "profile": str(path),
                "profile_id": doc["profile_id"],
                "device_kind": doc["machine"]["device_kind"],
                "candidates": len(doc["candidates"]),
                "choice": choice["id"] if choice else None,
                "speedup_vs_baseline": round(choice["speedup_vs_baseline"], 3) if choice else None,
                "label_agreement": choice["label_agreement"] if choice else None,
                "baseline": doc["criteria"]["baseline"],
                "mlflow_run_id": run_id,
            }
        )
    )
    shutil.rmtree(workdir, ignore_errors=True)
    if choice is None:
        raise SystemExit(2)
